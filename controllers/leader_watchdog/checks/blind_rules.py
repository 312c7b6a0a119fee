"""blind-alert-rules: after an upgrade, alerting rules whose selectors had series before it began and have none
now. Such a rule can no longer fire (the incident of an upgrade that renamed or removed a metric); Prometheus
evaluates it happily and says nothing.

Pure: what Prometheus's ``/api/v1/rules`` says (untrusted, bounded here), which selectors to ask about, when
to ask, and which rules went blind given the answers. ``controllers/leader_watchdog/effects.py`` asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controllers.leader_watchdog.checks import interface
from controllers.structs import fields, promql, times

BLIND = interface.Kind("blind-alert-rule", "warning", "AlertRuleBlind")
MAX_RULES = 5000  # alerting rules read from one answer; more are reported, not read
MAX_SELECTORS = 2000  # distinct selectors asked about in one round; more are reported, not asked
MAX_NAME = 200  # characters of a group or rule name kept (they end up in Events and /status)
SHOWN = 3  # selectors quoted in a finding's evidence


def _text(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def alert_rules(data: object) -> tuple[tuple[interface.AlertRule, ...], tuple[str, ...]]:
    """The alerting rules of an ``/api/v1/rules`` answer's ``data`` (``{"groups": [{"name", "rules": [{"type",
    "name", "query"}]}]}``), each with the selectors of its expression; and what could not be read."""
    rules: list[interface.AlertRule] = []
    problems: list[str] = []
    for group in fields.mappings(fields.mapping(data).get("groups")):
        for rule in fields.mappings(group.get("rules")):
            if rule.get("type") != "alerting":
                continue  # a recording rule: the alerts that select what it records are checked themselves
            if len(rules) == MAX_RULES:
                problems.append(f"more than {MAX_RULES} alerting rules: the rest not read")
                return tuple(rules), tuple(problems)
            selection = promql.metric_names(rule.get("query"))
            found = interface.AlertRule(
                _text(group.get("name")),
                _text(rule.get("name")),
                tuple(sorted(selection.selectors)),
                absent=selection.absent,
            )
            # A __name__ regex that names no list is a problem for reading names, not selectors: it is asked.
            unread = [p for p in selection.problem.split("; ") if p and not p.startswith(promql.NAME_REGEX)]
            problems.extend(f"{found.subject}: {problem}" for problem in unread)
            rules.append(found)
    return tuple(rules), tuple(problems)


def selectors(rules: Iterable[interface.AlertRule]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The distinct selectors to ask about (those of rules that call ``absent`` are not: missing series are
    what such a rule watches for), at most :data:`MAX_SELECTORS`; and what was left out."""
    wanted = sorted({selector for rule in rules if not rule.absent for selector in rule.selectors})
    if len(wanted) <= MAX_SELECTORS:
        return tuple(wanted), ()
    return tuple(wanted[:MAX_SELECTORS]), (
        f"{len(wanted)} distinct selectors: only the first {MAX_SELECTORS} asked about",
    )


def silent(now: Mapping[str, int]) -> tuple[str, ...]:
    """The selectors with no series now: the only ones whose past is worth a question."""
    return tuple(selector for selector, count in sorted(now.items()) if count == 0)


def due(
    *,
    began: float | None,
    phase: str | None,
    last: tuple[float, float] | None,
    interval_seconds: float,
    now: float,
) -> bool:
    """Whether to ask Prometheus now: an upgrade has begun (``began``) and its control plane is done (the
    masters agree: no ``control-plane`` phase; the workers may still be on their way), and the last round
    (``last``: when the upgrade it asked about began, when it was asked) is about another upgrade or
    ``interval_seconds`` old."""
    if began is None or phase == "control-plane":
        return False
    return last is None or last[0] != began or now - last[1] >= interval_seconds


def blind(
    rules: Iterable[interface.AlertRule], *, now: Mapping[str, int], before: Mapping[str, int]
) -> list[tuple[interface.AlertRule, tuple[str, ...]]]:
    """Each rule with the selectors that went blind: none now, some before. A selector not answered for
    either moment is not judged; a rule that calls ``absent`` never is."""
    found = []
    for rule in rules:
        if rule.absent:
            continue
        gone = tuple(s for s in rule.selectors if now.get(s) == 0 and before.get(s, 0) > 0)
        if gone:
            found.append((rule, gone))
    return found


def _quoted(gone: tuple[str, ...]) -> str:
    shown = ", ".join(_text(selector) for selector in gone[:SHOWN])
    return shown + (f" and {len(gone) - SHOWN} more" if len(gone) > SHOWN else "")


def find(situation: interface.Situation) -> list[interface.Finding]:
    probe = situation.snapshot.rules_probe
    if probe is None:
        return []
    window = f"{probe.window_seconds:g}s"
    return [
        interface.Finding(
            BLIND,
            rule.subject,
            f"{_quoted(gone)}: series within {window} before the upgrade began ({times.iso(probe.began)}), none "
            f"now ({times.iso(probe.at)}): the rule can no longer fire",
            probe.at,
            probe.ref,
        )
        for rule, gone in blind(probe.rules, now=probe.now, before=probe.before)
    ]


CHECK = interface.WatchdogCheck(
    name="blind-alert-rules", needs=frozenset({"prometheus"}), judge=find, kinds=(BLIND,)
)

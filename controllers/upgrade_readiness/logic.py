"""upgrade-readiness's decisions: is the cluster ready for the next minor? (pure: no I/O, no clock).

Each check (``checks/``, listed in one table) is a pure function from what the cluster shows to a
:class:`interface.Judgement`: findings (blocker, warning or info), and a reason when it could not be evaluated
(unknown). The target is chosen here, and the span of the release delta the checks compare the cluster with;
:func:`judge_acks` reads the admins' acknowledgements (per target minor, with an expiry); :func:`evaluate`
applies them and ``strict`` and says whether the cluster is upgradeable.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from controllers.agreement import masters, version
from controllers.agreement.version import Version
from controllers.structs import gate, status, times
from controllers.upgrade_readiness import checks
from controllers.upgrade_readiness.checks import interface

# pass: nothing found (or information only); warning: findings that do not block (they do with strict).
CheckStatus = Literal["pass", "warning", "blocked", "acknowledged", "unknown"]
STATUSES: tuple[CheckStatus, ...] = get_args(CheckStatus)


@dataclasses.dataclass(frozen=True, slots=True)
class TargetMinor:
    """The minor the cluster is judged against, and how it was chosen (``version`` None: no target)."""

    version: Version | None
    reason: str


def next_minor(current: Version) -> Version:
    return Version(current.major, current.minor + 1, 0, raw=f"v{current.major}.{current.minor + 1}")


def parse_target(text: str) -> Version | None:
    """``v1.37`` or ``1.37`` (a patch is accepted and ignored); None when it is no version."""
    parsed = version.parse_version(text if text.count(".") >= 2 else f"{text}.0")
    if parsed is None:
        return None
    return Version(parsed.major, parsed.minor, 0, raw=f"v{parsed.major}.{parsed.minor}")


def choose_target(statuses: Sequence[masters.MasterStatus], *, override: Version | None) -> TargetMinor:
    """``override``; else the masters' minor + 1 when they agree on one minor; while they disagree (an
    upgrade under way), the newest minor among them."""
    if override is not None:
        return TargetMinor(override, f"--target-version {override.minor_text}")
    versions = sorted(m.version for m in statuses if m.version is not None)
    if not versions:
        return TargetMinor(None, "no master reports a parseable version")
    minors = {v.minor_key for v in versions}
    if len(minors) == 1:
        return TargetMinor(next_minor(versions[-1]), f"the masters' minor {versions[-1].minor_text} + 1")
    newest = versions[-1]
    return TargetMinor(
        Version(newest.major, newest.minor, 0, raw=f"v{newest.minor_text}"),
        f"the masters disagree ({', '.join(sorted({v.minor_text for v in versions}))}): the newest minor",
    )


def delta_span(statuses: Sequence[masters.MasterStatus], *, target: Version) -> tuple[str, str] | str:
    """The minors the release delta the checks compare with spans: from the oldest master's minor (mid-upgrade
    too: what the masters not yet upgraded set is what the target must accept) to the target; or why there
    is none."""
    minors = sorted({m.version.minor_key for m in statuses if m.version is not None})
    if not minors:
        return "no master reports a parseable version: no release delta to compare with"
    if minors[0] >= target.minor_key:
        return f"the masters run {'.'.join(map(str, minors[0]))} already: nothing the upgrade to {target.minor_text} removes"
    return ".".join(map(str, minors[0])), target.minor_text


# --- acknowledgements: one target minor, one check, an optional expiry ----------------------------------
#
# Like OpenShift's admin-acks (``ack-4.9-…`` keys), each key of the acknowledgements ConfigMap waives one check
# for one target minor, and its value says until when and why, as a JSON object (both fields optional):
#
#     ack-1.38-drain-blockers: '{"until": "2026-12-01T00:00:00Z", "reason": "payments PDB, CHG-1234"}'
#
# An acknowledgement for 1.38 never waives anything for 1.39. One that expired, names an unknown check or
# cannot be read waives nothing and is reported (log, Event, /status, metric). The old unscoped key
# ``acknowledged`` (a list of checks, for every minor, for ever) is refused the same way, its message showing
# the keys to write instead. ``ack_key`` and ``ack_value`` write what ``judge_acks`` reads, so a command that
# acknowledges writes exactly this format. No clock here: the caller passes ``now``.

ACK_PREFIX = "ack-"
LEGACY_ACK_KEY = "acknowledged"  # the unscoped key of earlier releases: refused
ACK_FIELDS = ("until", "reason")
MAX_ACK_VALUE = 4096  # characters of one value: bounded before it is parsed
AckState = Literal["active", "expired", "other-target", "unknown", "malformed"]
ACK_STATES: tuple[AckState, ...] = get_args(AckState)
ACK_WAIVES: AckState = "active"
_ACK_KEY = re.compile(r"ack-(\d{1,4})\.(\d{1,4})-([a-z0-9][a-z0-9-]*)")


@dataclasses.dataclass(frozen=True, slots=True)
class Ack:
    """One key of the acknowledgements ConfigMap as judged against the target at one moment."""

    key: str
    state: AckState
    target: str = ""  # the minor it is for ("1.38"); "" when the key does not say
    check: str = ""
    until: float | None = None  # Unix time; None: no expiry
    reason: str = ""  # the admin's words
    problem: str = ""  # why it waives nothing ("" while active)

    def as_json(self) -> dict[str, Any]:
        """Its entry in ``/status`` (and in the verdict other tools read)."""
        return {
            "key": self.key,
            "state": self.state,
            "target": self.target,
            "check": self.check,
            "until": times.rfc3339(self.until) if self.until is not None else "",
            "reason": self.reason,
            "problem": self.problem,
        }

    @property
    def note(self) -> str:
        """One line for a log or an Event."""
        what = f"acknowledgement {self.key}"
        if self.state == ACK_WAIVES:
            until = f" until {times.rfc3339(self.until)}" if self.until is not None else " (no expiry)"
            return f"{what} waives {self.check} for {self.target}{until}" + (
                f": {self.reason}" if self.reason else ""
            )
        return f"{what} is {self.state}: {self.problem}"


def ack_key(*, target: Version, check: str) -> str:
    """The key that acknowledges ``check`` for the ``target`` minor: ``ack-1.38-drain-blockers``."""
    return f"{ACK_PREFIX}{target.major}.{target.minor}-{check}"


def ack_value(*, until: datetime.datetime | None = None, reason: str = "") -> str:
    """The value of an acknowledgement key: ``{"until": "<RFC 3339>", "reason": "..."}`` (fields optional;
    ``until`` must carry a time zone)."""
    fields: dict[str, str] = {}
    if until is not None:
        if until.tzinfo is None:
            raise ValueError("until needs a time zone (RFC 3339), e.g. 2026-12-01T00:00:00Z")
        fields["until"] = times.rfc3339(until.timestamp())
    if reason:
        fields["reason"] = reason
    return json.dumps(fields, ensure_ascii=False)


def judge_acks(
    data: Mapping[str, object],
    *,
    target: Version | None,
    now: float,
    known: Sequence[str] = checks.TABLE.names,
) -> tuple[Ack, ...]:
    """Every key of the ConfigMap's ``data``, judged for ``target`` at Unix time ``now`` (sorted by key)."""
    return tuple(
        _judge_ack(str(name), raw, known=known, target=target, now=now) for name, raw in sorted(data.items())
    )


def waived_checks(acks: Iterable[Ack]) -> frozenset[str]:
    """The checks that active acknowledgements waive."""
    return frozenset(ack.check for ack in acks if ack.state == ACK_WAIVES)


def next_ack_expiry(acks: Iterable[Ack], *, now: float) -> float | None:
    """Seconds until the first active acknowledgement expires (None: none will): the controller judges
    again then, without waiting for anything else to change."""
    ends = [ack.until - now for ack in acks if ack.state == ACK_WAIVES and ack.until is not None]
    return max(0.0, min(ends)) if ends else None


def ack_counts(acks: Iterable[Ack]) -> dict[AckState, int]:
    found = dict.fromkeys(ACK_STATES, 0)
    for ack in acks:
        found[ack.state] += 1
    return found


def _judge_ack(name: str, raw: object, *, known: Sequence[str], target: Version | None, now: float) -> Ack:
    minor = f"{target.major}.{target.minor}" if target is not None else "<major>.<minor>"
    if name == LEGACY_ACK_KEY:
        listed = [c for c in re.split(r"[\s,]+", str(raw)) if c in known] or ["<check>"]
        instead = ", ".join(f"{ACK_PREFIX}{minor}-{c}" for c in listed)
        return Ack(name, "malformed", problem=(
            f"unscoped: '{LEGACY_ACK_KEY}' would waive its checks for every later minor too, and is no longer read; "
            f"write one key per target minor and check instead: {instead}, each with the value "
            '{"until": "<RFC 3339>", "reason": "<why>"}'
        ))  # fmt: skip
    parts = _ACK_KEY.fullmatch(name)
    if parts is None:
        state: AckState = "malformed" if name.startswith(ACK_PREFIX) else "unknown"
        return Ack(name, state, problem=f"not an acknowledgement key: write {ACK_PREFIX}{minor}-<check>")
    acked_minor, check = f"{int(parts[1])}.{int(parts[2])}", parts[3]
    if check not in known:
        return Ack(
            name,
            "unknown",
            acked_minor,
            check,
            problem=f"unknown check {check!r} (known: {', '.join(known)})",
        )
    fields = _ack_fields(raw)
    if isinstance(fields, str):
        return Ack(name, "malformed", acked_minor, check, problem=fields)
    until, reason = fields
    ack = Ack(name, ACK_WAIVES, acked_minor, check, until, reason)
    if target is None:
        return dataclasses.replace(
            ack, state="other-target", problem="there is no target minor to waive it for"
        )
    if acked_minor != minor:
        return dataclasses.replace(
            ack, state="other-target", problem=f"for {acked_minor}; the target is {minor}"
        )
    if until is not None and until <= now:
        return dataclasses.replace(ack, state="expired", problem=f"expired at {times.rfc3339(until)}")
    return ack


def _ack_fields(raw: object) -> tuple[float | None, str] | str:
    """(until, reason) from a value, or what is wrong with it."""
    if not isinstance(raw, str):
        return "the value is not a string"
    if len(raw) > MAX_ACK_VALUE:
        return f"the value is longer than {MAX_ACK_VALUE} characters"
    shape = 'a JSON object such as {"until": "2026-12-01T00:00:00Z", "reason": "why"}'
    try:
        parsed = json.loads(raw or "{}")
    except (ValueError, RecursionError):
        return f"the value is not {shape}"
    if not isinstance(parsed, dict):
        return f"the value is not {shape}"
    unknown = sorted(str(field) for field in parsed if field not in ACK_FIELDS)
    if unknown:  # a typo such as "untill" must not turn into an acknowledgement without expiry
        return f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(ACK_FIELDS)})"
    reason = parsed.get("reason", "")
    if not isinstance(reason, str):
        return "reason is not a string"
    if "until" not in parsed:
        return None, reason
    until = times.parse_rfc3339(parsed["until"])
    if until is None:
        return f"until {str(parsed['until'])[:64]!r} is not an RFC 3339 time with a time zone, e.g. 2026-12-01T00:00:00Z"
    return until, reason


# --- the whole judgement ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    status: CheckStatus
    findings: tuple[interface.Finding, ...]
    reason: str  # one line: what blocks, why it is unknown, what it warns of or tells

    @property
    def blockers(self) -> int:
        """Its findings that block the upgrade (0 unless blocked: acknowledged ones do not)."""
        return sum(f.severity == "blocker" for f in self.findings) if self.status == "blocked" else 0


@dataclasses.dataclass(frozen=True, slots=True)
class DeltaUsed:
    """The release delta the checks compared the cluster with: the releases it was read from."""

    source: str  # v1.37.2
    target: str  # v1.38.0-beta.0
    prerelease: bool  # the target is a prerelease (its facts may change before its release)

    def as_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "prerelease": self.prerelease}

    @property
    def note(self) -> str:
        prerelease = f" (the target is a prerelease: {self.target})" if self.prerelease else ""
        return f"release delta {self.source} -> {self.target}{prerelease}"


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    target: TargetMinor
    results: tuple[CheckResult, ...]
    strict: bool
    delta: DeltaUsed | None = None

    @property
    def blocking(self) -> tuple[CheckResult, ...]:
        blocking: tuple[CheckStatus, ...] = ("blocked", "unknown") if self.strict else ("blocked",)
        return tuple(r for r in self.results if r.status in blocking)

    @property
    def upgradeable(self) -> bool:
        return self.target.version is not None and not self.blocking

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why not upgradeable (or what to know: unknown and acknowledged checks)."""
        if self.target.version is None:
            return (f"no target version: {self.target.reason}",)
        return tuple(f"{r.check}: {r.reason}" for r in self.results if r.status != "pass")

    def summary(self) -> dict[str, Any]:
        """The JSON document of ``/status`` and ``readiness --output json``."""
        target = self.target.version
        return {
            "upgradeable": self.upgradeable,
            "target": target.minor_text if target else "",
            "targetReason": self.target.reason,
            "strict": self.strict,
            "reasons": list(self.reasons),
            "releaseDelta": self.delta.as_json() if self.delta else None,
            "checks": [
                {
                    "check": r.check,
                    "status": r.status,
                    "reason": r.reason,
                    "findings": [
                        {"subject": f.subject, "message": f.message, "severity": f.severity}
                        for f in r.findings
                    ],
                }
                for r in self.results
            ],
        }


def evaluate(
    target: TargetMinor,
    verdicts: Iterable[interface.Judgement],
    *,
    acknowledged: frozenset[str],
    strict: bool,
    delta: DeltaUsed | None = None,
) -> Report:
    """Each check's status: blocked by blocker findings (acknowledged when an active acknowledgement for the
    target waives the check, waived_checks: shown, never hidden), unknown when it could not be evaluated,
    warning when it found only what does not block, else pass (information, if any, listed). ``strict``:
    warnings are blockers (and unknown blocks the upgrade, Report.blocking)."""
    results = []
    for verdict in verdicts:
        findings = verdict.findings
        if strict:
            findings = tuple(
                dataclasses.replace(f, severity="blocker") if f.severity == "warning" else f for f in findings
            )
        blocking = [f for f in findings if f.severity == "blocker"]
        warnings = [f for f in findings if f.severity == "warning"]
        status: CheckStatus
        if blocking:
            status = "acknowledged" if verdict.check in acknowledged else "blocked"
            reason = _first(blocking)
            if verdict.unknown:
                reason += f"; also not evaluated: {verdict.unknown}"
        elif verdict.unknown:
            status, reason = "unknown", verdict.unknown
        elif warnings:
            status, reason = "warning", _first(warnings)
        else:
            status, reason = "pass", _first(findings) if findings else ""
        results.append(CheckResult(verdict.check, status, findings, reason))
    return Report(target=target, results=tuple(results), strict=strict, delta=delta)


def _first(findings: Sequence[interface.Finding]) -> str:
    more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
    return f"{findings[0].subject}: {findings[0].message}{more}"


def unknown_all(names: Iterable[str], reason: str) -> list[interface.Judgement]:
    """Every check unknown for one reason (no target to judge against)."""
    return [interface.Judgement(name, unknown=reason) for name in names]


def conditions(report: Report) -> tuple[status.Condition, ...]:
    """One condition per check (its status; ``Check<Status>`` Events, a Warning for blocked, warning and
    unknown; a check that passes when first judged is no news), then ``Upgradeable`` (Event reason: the
    phase)."""
    found = [
        status.Condition(
            r.check,
            r.status,
            f"Check{r.status.capitalize()}",
            (f"{r.check} is {r.status}" + (f": {r.reason}" if r.reason else ""))[:1024],
            warning=r.status in ("blocked", "unknown", "warning"),
            quiet=r.status == "pass",
        )
        for r in report.results
    ]
    target = report.target.version
    found.append(
        status.Condition(
            "Upgradeable",
            str(report.upgradeable),
            phase(report),
            f"target {target.minor_text if target else '-'}: "
            + ("; ".join(report.reasons) or "nothing blocks")[:900],
            warning=not report.upgradeable,
        )
    )
    return tuple(found)


def phase(report: Report) -> str:
    return "Upgradeable" if report.upgradeable else "NotUpgradeable"


def to_status(report: Report, acks: Iterable[Ack]) -> status.Status:
    """The status: Upgradeable or NotUpgradeable for the target minor, the blockers counted as progress, a
    condition per check; the whole judgement (``upgradeable``, ``reasons``, each check) as its own keys."""
    target = report.target.version
    blockers = sum(r.blockers for r in report.results)
    counts = {s: sum(1 for r in report.results if r.status == s) for s in STATUSES}
    return status.Status(
        phase=phase(report),
        version=target.minor_text if target else "",
        progress=f"{blockers} blocker(s); checks: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
        conditions=conditions(report),
        data={"upgradeable": str(report.upgradeable), "reasons": json.dumps(list(report.reasons))},
        detail={"synced": True, **report.summary(), "acknowledgements": [a.as_json() for a in acks]},
    )


def gate_verdict(report: Report, acks: Iterable[Ack], *, acknowledge: str) -> gate.GateVerdict:
    """What admission policies and the verdict relay read (``acknowledge``: the command that acknowledges a
    blocker for the target). Its ``expires`` is the first active acknowledgement's expiry: the controller
    judges again then and writes the new verdict (CEL has no clock)."""
    active = [ack for ack in acks if ack.state == ACK_WAIVES]
    ends = [ack.until for ack in active if ack.until is not None]
    target = report.target.version
    return gate.GateVerdict(
        upgradeable=report.upgradeable,
        target=target.minor_text if target else "",
        reasons="; ".join(report.reasons),
        acknowledged="; ".join(
            ack.key
            + (f" until {times.rfc3339(ack.until)}" if ack.until is not None else " (no expiry)")
            + (f" ({ack.reason})" if ack.reason else "")
            for ack in active
        ),
        expires=min(ends) if ends else None,
        acknowledge=acknowledge if target else "",
    )

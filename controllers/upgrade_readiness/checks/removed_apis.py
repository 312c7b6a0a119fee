"""removed-apis: APIs the target removes that clients still request (each apiserver's /metrics)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from controllers.agreement.version import Version
from controllers.structs import checking
from controllers.upgrade_readiness.checks import interface


def update_usage(
    previous: Mapping[tuple[str, interface.Gvr], interface.Usage],
    samples: Iterable[interface.ApiserverMetrics],
    *,
    now: float,
) -> dict[tuple[str, interface.Gvr], interface.Usage]:
    """The counters of the deprecated APIs after one scrape. A count seen for the first time, or a counter
    that restarted, counts as requested now: the gauge alone never does (it stays 1 until the apiserver
    restarts, kubernetes/kubernetes#106668). Apiservers that did not answer keep their last usage."""
    usage: dict[tuple[str, interface.Gvr], interface.Usage] = {}
    answered = set()
    for sample in samples:
        if sample.error:
            continue
        answered.add(sample.address)
        for gvr in sample.deprecated:
            count = sample.requests.get(gvr, 0.0)
            last = previous.get((sample.address, gvr))
            rate: float | None
            if last is None:  # no earlier count to measure a rate against
                increased, rate = (now if count > 0 else None), None
            elif count != last.count:  # up, or down after a restart of the apiserver
                increased = now if count > 0 else last.increased_at
                delta = count - last.count if count > last.count else count
                rate = delta / max(now - last.seen_at, 1e-9)
            else:
                increased, rate = last.increased_at, 0.0
            usage[(sample.address, gvr)] = interface.Usage(count, now, increased, rate)
    usage.update({key: value for key, value in previous.items() if key[0] not in answered})
    return usage


def _removed_by(removed_release: str, target: Version) -> bool:
    match = re.fullmatch(r"(\d+)\.(\d+)", removed_release)
    return match is not None and (int(match[1]), int(match[2])) <= target.minor_key


def removed_apis(
    samples: Sequence[interface.ApiserverMetrics],
    usage: Mapping[tuple[str, interface.Gvr], interface.Usage],
    *,
    target: Version,
    window_seconds: float,
    now: float,
) -> interface.Judgement:
    """APIs removed at or before ``target`` that clients requested within the window, per group/version/
    resource across the apiservers (with the request rate last seen)."""
    used: dict[interface.Gvr, tuple[str, list[str], float | None]] = {}
    for sample in samples:
        for gvr, removed in sample.deprecated.items():
            seen = usage.get((sample.address, gvr))
            if not _removed_by(removed, target) or seen is None or seen.increased_at is None:
                continue
            if now - seen.increased_at > window_seconds:
                continue
            _, addresses, rate = used.get(gvr, (removed, [], None))
            known = [r for r in (rate, seen.rate) if r is not None]
            used[gvr] = (removed, [*addresses, sample.address], sum(known) if known else None)
    findings = []
    for (group, api_version, resource, subresource), (removed, addresses, rate) in sorted(used.items()):
        api = f"{group}/{api_version}" if group else api_version
        subject = f"{api} {resource}" + (f"/{subresource}" if subresource else "")
        lately = "first seen in this scrape" if rate is None else f"{rate:.3g} requests/s lately"
        message = (
            f"removed in {removed}, requested within the last {window_seconds:g} s through "
            f"{interface.shown(sorted(addresses))} ({lately}): move its clients to a served version"
        )
        findings.append(interface.Finding("removed-apis", subject, message))
    failed = [f"{s.address}: {s.error}" for s in samples if s.error]
    unknown = "; ".join(failed) if failed else ("" if samples else "no apiserver to read /metrics from")
    return interface.Judgement("removed-apis", tuple(findings), unknown)


def judge(observed: interface.Evidence) -> interface.Judgement:
    return removed_apis(
        observed.samples,
        observed.usage,
        target=observed.target,
        window_seconds=observed.deprecated_api_window_seconds,
        now=observed.now,
    )


CHECK = checking.Check(name="removed-apis", needs=frozenset({"metrics"}), judge=judge)

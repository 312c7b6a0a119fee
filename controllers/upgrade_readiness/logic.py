"""upgrade-readiness's decisions: is the cluster ready for the next minor? (pure: no I/O, no clock).

Each check is one function from what the cluster shows to a :class:`Verdict`: findings (blockers), and a
reason when it could not be evaluated (unknown). :func:`judge_acks` reads the admins' acknowledgements (per
target minor, with an expiry); :func:`evaluate` applies them and ``strict`` and says whether the cluster is
upgradeable.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from controllers.agreement import masters, selector, version
from controllers.agreement.version import Version

Check = Literal["removed-apis", "kubelet-skew", "crd-stored-versions", "drain-blockers", "addon-bundle"]
CHECKS: tuple[Check, ...] = get_args(Check)
Status = Literal["pass", "blocked", "acknowledged", "unknown"]
STATUSES: tuple[Status, ...] = get_args(Status)
# The skew policy: a kubelet may be up to 3 minors older than the apiserver, never newer.
MAX_KUBELET_MINORS_BEHIND = 3
SHOWN = 5  # subjects named in one message


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    check: Check
    subject: str  # what blocks: "Node w1", "CustomResourceDefinition widgets.example.com", ...
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """One check's result: its blockers, and why it could not be (fully) evaluated."""

    check: Check
    findings: tuple[Finding, ...] = ()
    unknown: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """The minor the cluster is judged against, and how it was chosen (``version`` None: no target)."""

    version: Version | None
    reason: str


def _shown(names: Sequence[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def next_minor(current: Version) -> Version:
    return Version(current.major, current.minor + 1, 0, raw=f"v{current.major}.{current.minor + 1}")


def parse_target(text: str) -> Version | None:
    """``v1.37`` or ``1.37`` (a patch is accepted and ignored); None when it is no version."""
    parsed = version.parse_version(text if text.count(".") >= 2 else f"{text}.0")
    if parsed is None:
        return None
    return Version(parsed.major, parsed.minor, 0, raw=f"v{parsed.major}.{parsed.minor}")


def choose_target(statuses: Sequence[masters.MasterStatus], *, override: Version | None) -> Target:
    """``override``; else the masters' minor + 1 when they agree on one minor; while they disagree (an
    upgrade under way), the newest minor among them."""
    if override is not None:
        return Target(override, f"--target-version {override.minor_text}")
    versions = sorted(m.version for m in statuses if m.version is not None)
    if not versions:
        return Target(None, "no master reports a parseable version")
    minors = {v.minor_key for v in versions}
    if len(minors) == 1:
        return Target(next_minor(versions[-1]), f"the masters' minor {versions[-1].minor_text} + 1")
    newest = versions[-1]
    return Target(
        Version(newest.major, newest.minor, 0, raw=f"v{newest.minor_text}"),
        f"the masters disagree ({', '.join(sorted({v.minor_text for v in versions}))}): the newest minor",
    )


# --- kubelet skew -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    kubelet: str  # as reported
    version: Version | None
    master: bool


def node_view(obj: Mapping[str, Any], *, selectors: Sequence[selector.Selector]) -> NodeView:
    reported = masters.kubelet_version(obj)
    return NodeView(
        name=str(obj["metadata"]["name"]),
        kubelet=reported,
        version=version.parse_version(reported),
        master=selector.matches_any(selectors, masters.node_labels(obj)),
    )


def kubelet_skew(nodes: Iterable[NodeView], *, target: Version) -> Verdict:
    """Nodes whose kubelet the skew policy leaves out at ``target``: more than 3 minors below it, or newer."""
    findings, unparsed = [], []
    for node in sorted(nodes, key=lambda n: n.name):
        if node.version is None:
            unparsed.append(f"{node.name}={node.kubelet or '<none>'!r}")
            continue
        behind = version.minors_behind(newer=target, older=node.version)
        if behind > MAX_KUBELET_MINORS_BEHIND:
            why = f"kubelet {node.kubelet} is {behind} minors below {target.minor_text} (at most 3 allowed)"
        elif behind < 0:
            why = f"kubelet {node.kubelet} is newer than {target.minor_text}"
        else:
            continue
        findings.append(Finding("kubelet-skew", f"Node {node.name}", why))
    unknown = f"unparseable kubelet version on {_shown(unparsed)}" if unparsed else ""
    return Verdict("kubelet-skew", tuple(findings), unknown)


# --- CRD stored versions ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CrdView:
    name: str
    served: frozenset[str]
    stored: tuple[str, ...]  # status.storedVersions


def crd_view(obj: Mapping[str, Any]) -> CrdView:
    versions = obj.get("spec", {}).get("versions") or []
    return CrdView(
        name=str(obj["metadata"]["name"]),
        served=frozenset(str(v["name"]) for v in versions if v.get("served")),
        stored=tuple(str(v) for v in obj.get("status", {}).get("storedVersions") or []),
    )


def crd_stored_versions(crds: Iterable[CrdView]) -> Verdict:
    """CRDs whose storedVersions list a version no longer served: objects may still be stored at it, and a
    release that drops it cannot read them (uso-runner migrates them and clears the list)."""
    findings = []
    for crd in sorted(crds, key=lambda c: c.name):
        unserved = [v for v in crd.stored if v not in crd.served]
        if unserved:
            message = (
                f"storedVersions {list(crd.stored)} include {', '.join(unserved)}, no longer served: "
                "migrate the stored objects (uso-runner) so that only served versions remain"
            )
            findings.append(Finding("crd-stored-versions", f"CustomResourceDefinition {crd.name}", message))
    return Verdict("crd-stored-versions", tuple(findings))


# --- drain blockers -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PdbView:
    namespace: str
    name: str
    selector: Mapping[str, Any] | None  # spec.selector (None: selects no pod)
    disruptions_allowed: int | None  # None: the disruption controller has not computed it (yet)


@dataclasses.dataclass(frozen=True, slots=True)
class PodView:
    namespace: str
    name: str
    node: str
    labels: Mapping[str, str]


def pdb_view(obj: Mapping[str, Any]) -> PdbView:
    meta, status = obj["metadata"], obj.get("status") or {}
    computed = (status.get("observedGeneration") or 0) >= (meta.get("generation") or 0) and status
    allowed = status.get("disruptionsAllowed") if computed else None
    return PdbView(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        selector=obj.get("spec", {}).get("selector"),
        disruptions_allowed=int(allowed) if allowed is not None else None,
    )


def pod_view(obj: Mapping[str, Any]) -> PodView | None:
    """Pods bound to a node that a drain would evict (finished pods are not evicted)."""
    node = obj.get("spec", {}).get("nodeName")
    if not node or obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return None
    meta = obj["metadata"]
    return PodView(str(meta["namespace"]), str(meta["name"]), str(node), dict(meta.get("labels") or {}))


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector: matchLabels and matchExpressions all hold (``{}`` matches every pod)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if not {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(operator, False):
            return False
    return True


def nodes_to_drain(nodes: Iterable[NodeView], *, target: Version) -> frozenset[str]:
    """Workers the upgrade drains: every one below the target (an unparseable version counts as below)."""
    return frozenset(
        n.name
        for n in nodes
        if not n.master and (n.version is None or n.version.minor_key < target.minor_key)
    )


def drain_blockers(pdbs: Iterable[PdbView], pods: Iterable[PodView], *, draining: frozenset[str]) -> Verdict:
    """PodDisruptionBudgets allowing no disruption over pods on workers that the upgrade will drain: the
    drain of those workers would wait forever."""
    by_namespace: dict[str, list[PodView]] = {}
    for pod in pods:
        if pod.node in draining:
            by_namespace.setdefault(pod.namespace, []).append(pod)
    findings, uncomputed = [], []
    for pdb in sorted(pdbs, key=lambda p: (p.namespace, p.name)):
        if pdb.disruptions_allowed is not None and pdb.disruptions_allowed > 0:
            continue
        covered = [p for p in by_namespace.get(pdb.namespace, ()) if selector_matches(pdb.selector, p.labels)]
        if not covered:
            continue
        if pdb.disruptions_allowed is None:
            uncomputed.append(f"{pdb.namespace}/{pdb.name}")
            continue
        nodes = sorted({p.node for p in covered})
        message = (
            f"allows no disruption and covers {len(covered)} pod(s) on {len(nodes)} worker(s) to drain "
            f"({_shown(nodes)}): their drain would wait until it allows one"
        )
        findings.append(Finding("drain-blockers", f"PodDisruptionBudget {pdb.namespace}/{pdb.name}", message))
    unknown = ""
    if uncomputed:
        unknown = (
            f"disruptionsAllowed not computed for {_shown(uncomputed)} (is kube-controller-manager's "
            "disruption controller running?)"
        )
    return Verdict("drain-blockers", tuple(findings), unknown)


# --- removed APIs still requested ---------------------------------------------------------------------------

Gvr = tuple[str, str, str, str]  # group, version, resource, subresource
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
DEPRECATED_METRIC = "apiserver_requested_deprecated_apis"
REQUESTS_METRIC = "apiserver_request_total"


@dataclasses.dataclass(frozen=True, slots=True)
class ApiserverMetrics:
    """What one apiserver's /metrics says about deprecated APIs: the APIs its gauge marks as requested
    (with their removed_release), and the request counter per group/version/resource."""

    address: str
    deprecated: Mapping[Gvr, str]  # → removed_release ("" when none is planned)
    requests: Mapping[Gvr, float]
    error: str = ""  # not evaluated: why


def _series(line: str) -> tuple[dict[str, str], float] | None:
    head, _, rest = line.rpartition("}")
    labels_text = head.partition("{")[2]
    try:
        value = float(rest.split()[0])
    except (IndexError, ValueError):
        return None
    return {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(labels_text)}, value


def parse_apiserver_metrics(text: str, *, address: str) -> ApiserverMetrics:
    """The two metrics out of an apiserver's /metrics text (every other line is skipped unparsed)."""
    deprecated: dict[Gvr, str] = {}
    requests: dict[Gvr, float] = {}
    for line in text.splitlines():
        if line.startswith(DEPRECATED_METRIC + "{"):
            parsed = _series(line)
            if parsed and parsed[1] == 1:
                labels = parsed[0]
                deprecated[_gvr(labels)] = labels.get("removed_release", "")
        elif line.startswith(REQUESTS_METRIC + "{"):
            parsed = _series(line)
            if parsed:
                key = _gvr(parsed[0])
                requests[key] = requests.get(key, 0.0) + parsed[1]
    return ApiserverMetrics(address=address, deprecated=deprecated, requests=requests)


def _gvr(labels: Mapping[str, str]) -> Gvr:
    return (labels.get("group", ""), labels.get("version", ""), labels.get("resource", ""),
            labels.get("subresource", ""))  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """The request counter of one API on one apiserver, as last seen, and when it last went up."""

    count: float
    seen_at: float
    increased_at: float | None  # None: never seen requested
    rate: float | None = None  # requests per second between the last two observations (None: seen once)


def update_usage(
    previous: Mapping[tuple[str, Gvr], Usage], samples: Iterable[ApiserverMetrics], *, now: float
) -> dict[tuple[str, Gvr], Usage]:
    """The counters of the deprecated APIs after one scrape. A count seen for the first time, or a counter
    that restarted, counts as requested now: the gauge alone never does (it stays 1 until the apiserver
    restarts, kubernetes/kubernetes#106668). Apiservers that did not answer keep their last usage."""
    usage: dict[tuple[str, Gvr], Usage] = {}
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
            usage[(sample.address, gvr)] = Usage(count, now, increased, rate)
    usage.update({key: value for key, value in previous.items() if key[0] not in answered})
    return usage


def _removed_by(removed_release: str, target: Version) -> bool:
    match = re.fullmatch(r"(\d+)\.(\d+)", removed_release)
    return match is not None and (int(match[1]), int(match[2])) <= target.minor_key


def removed_apis(
    samples: Sequence[ApiserverMetrics],
    usage: Mapping[tuple[str, Gvr], Usage],
    *,
    target: Version,
    window_seconds: float,
    now: float,
) -> Verdict:
    """APIs removed at or before ``target`` that clients requested within the window, per group/version/
    resource across the apiservers (with the request rate last seen)."""
    used: dict[Gvr, tuple[str, list[str], float | None]] = {}
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
            f"{_shown(sorted(addresses))} ({lately}): move its clients to a served version"
        )
        findings.append(Finding("removed-apis", subject, message))
    failed = [f"{s.address}: {s.error}" for s in samples if s.error]
    unknown = "; ".join(failed) if failed else ("" if samples else "no apiserver to read /metrics from")
    return Verdict("removed-apis", tuple(findings), unknown)


# --- the next add-on bundle ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BundleProbe:
    """What addon-updater's own code said about the bundle for the target minor."""

    minor: str  # the minor looked for
    chosen: str  # the bundle's minor ("" when none fits)
    source: str
    problem: str = ""  # why it is invalid ("" when valid)


def addon_bundle(probe: BundleProbe) -> Verdict:
    if not probe.chosen:
        message = f"no bundle for {probe.minor} in {probe.source}: addon-updater would change nothing"
        return Verdict("addon-bundle", (Finding("addon-bundle", f"bundle {probe.minor}", message),))
    if probe.problem:
        message = f"the bundle {probe.chosen} from {probe.source} is invalid: {probe.problem}"
        return Verdict("addon-bundle", (Finding("addon-bundle", f"bundle {probe.chosen}", message),))
    return Verdict("addon-bundle")


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
            "until": _rfc3339(self.until) if self.until is not None else "",
            "reason": self.reason,
            "problem": self.problem,
        }

    @property
    def note(self) -> str:
        """One line for a log or an Event."""
        what = f"acknowledgement {self.key}"
        if self.state == ACK_WAIVES:
            until = f" until {_rfc3339(self.until)}" if self.until is not None else " (no expiry)"
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
        fields["until"] = _rfc3339(until.timestamp())
    if reason:
        fields["reason"] = reason
    return json.dumps(fields, ensure_ascii=False)


def judge_acks(
    data: Mapping[str, object], *, target: Version | None, now: float, checks: Sequence[str] = CHECKS
) -> tuple[Ack, ...]:
    """Every key of the ConfigMap's ``data``, judged for ``target`` at Unix time ``now`` (sorted by key)."""
    return tuple(
        _judge_ack(str(name), raw, checks=checks, target=target, now=now)
        for name, raw in sorted(data.items())
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


def _judge_ack(name: str, raw: object, *, checks: Sequence[str], target: Version | None, now: float) -> Ack:
    minor = f"{target.major}.{target.minor}" if target is not None else "<major>.<minor>"
    if name == LEGACY_ACK_KEY:
        listed = [c for c in re.split(r"[\s,]+", str(raw)) if c in checks] or ["<check>"]
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
    if check not in checks:
        return Ack(
            name,
            "unknown",
            acked_minor,
            check,
            problem=f"unknown check {check!r} (known: {', '.join(checks)})",
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
        return dataclasses.replace(ack, state="expired", problem=f"expired at {_rfc3339(until)}")
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
    until = _parse_rfc3339(parsed["until"])
    if until is None:
        return f"until {str(parsed['until'])[:64]!r} is not an RFC 3339 time with a time zone, e.g. 2026-12-01T00:00:00Z"
    return until, reason


def _parse_rfc3339(text: object) -> float | None:
    if not isinstance(text, str) or "T" not in text.upper():
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):
        return None


def _rfc3339(moment: float | None) -> str:
    if moment is None:
        return ""
    try:
        return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return str(moment)


# --- the whole judgement ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    check: Check
    status: Status
    findings: tuple[Finding, ...]
    reason: str  # one line: what blocks, or why it is unknown


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    target: Target
    results: tuple[CheckResult, ...]
    strict: bool

    @property
    def blocking(self) -> tuple[CheckResult, ...]:
        blocking: tuple[Status, ...] = ("blocked", "unknown") if self.strict else ("blocked",)
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
            "checks": [
                {
                    "check": r.check,
                    "status": r.status,
                    "reason": r.reason,
                    "findings": [{"subject": f.subject, "message": f.message} for f in r.findings],
                }
                for r in self.results
            ],
        }


def evaluate(
    target: Target, verdicts: Iterable[Verdict], *, acknowledged: frozenset[str], strict: bool
) -> Report:
    """Each check's status: blocked by findings (acknowledged when an active acknowledgement for the target
    waives the check, waived_checks: shown, never hidden), unknown when it could not be evaluated, else pass."""
    results = []
    for verdict in verdicts:
        if verdict.findings:
            status: Status = "acknowledged" if verdict.check in acknowledged else "blocked"
            first = verdict.findings[0]
            more = f" (+{len(verdict.findings) - 1} more)" if len(verdict.findings) > 1 else ""
            reason = f"{first.subject}: {first.message}{more}"
            if verdict.unknown:
                reason += f"; also not evaluated: {verdict.unknown}"
        elif verdict.unknown:
            status, reason = "unknown", verdict.unknown
        else:
            status, reason = "pass", ""
        results.append(CheckResult(verdict.check, status, verdict.findings, reason))
    return Report(target=target, results=tuple(results), strict=strict)


def unknown_all(checks: Iterable[Check], reason: str) -> list[Verdict]:
    """Every check unknown for one reason (no target to judge against)."""
    return [Verdict(check, unknown=reason) for check in checks]

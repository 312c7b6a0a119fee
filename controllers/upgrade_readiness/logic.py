"""upgrade-readiness's decisions: is the cluster ready for the next minor? (pure: no I/O, no clock).

Each check is one function from what the cluster shows to a :class:`Verdict`: findings (blockers), and a
reason when it could not be evaluated (unknown). :func:`evaluate` adds the acknowledgements and ``strict``
and says whether the cluster is upgradeable.
"""

from __future__ import annotations

import dataclasses
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
ACKNOWLEDGED_KEY = "acknowledged"  # the key of the acknowledgements ConfigMap
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


# --- the whole judgement ------------------------------------------------------------------------------------


def parse_acknowledgements(text: str) -> tuple[frozenset[Check], tuple[str, ...]]:
    """The checks named in the acknowledgements key (commas or whitespace between), and unknown names."""
    names = [name for name in re.split(r"[\s,]+", text) if name]
    known = frozenset(name for name in names if name in CHECKS)
    return known, tuple(name for name in names if name not in CHECKS)


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
    target: Target, verdicts: Iterable[Verdict], *, acknowledged: frozenset[Check], strict: bool
) -> Report:
    """Each check's status: blocked by findings (acknowledged when an admin accepted the check: shown,
    never hidden), unknown when it could not be evaluated, else pass."""
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

"""The watchdog's judgement, pure: raw API objects → typed records → a :class:`Snapshot` → findings.

``evaluate(snapshot, now=…, rules=…, history=…)`` is the whole decision. Time is an explicit Unix timestamp
(staleness is time passing, so the caller re-evaluates on a timer as well as on every watch event), and the
little the watchdog must remember between evaluations — when the master set last changed, how many nodes
were NotReady just before, since when each finding has been seen — travels in an immutable :class:`History`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from controllers.agreement import masters as agreement_masters
from controllers.agreement import selector, version
from controllers.structs import fields, leases, refs, status, times

Severity = Literal["critical", "warning"]
Check = Literal[
    "stale-leader",
    "leader-missing",
    "leader-on-unknown-master",
    "leader-on-notready-master",
    "leader-version-skew",
    "stale-apiserver",
    "stale-endpoint",
    "nodes-not-ready",
    "outage-pattern",
]
CheckGroup = Literal["leaders", "apiservers", "endpoints", "heartbeats"]
CHECK_GROUPS: tuple[CheckGroup, ...] = get_args(CheckGroup)

# Each check has one severity (so the metrics' label sets are fixed and can be pre-initialised) and one
# Event reason (Kubernetes reasons are CamelCase).
_KINDS: Mapping[Check, tuple[Severity, str]] = {
    "stale-leader": ("critical", "StaleLeader"),
    "leader-missing": ("warning", "LeaderLeaseMissing"),
    "leader-on-unknown-master": ("critical", "LeaderOnUnknownMaster"),
    "leader-on-notready-master": ("warning", "LeaderOnNotReadyMaster"),
    "leader-version-skew": ("warning", "LeaderVersionSkew"),
    "stale-apiserver": ("critical", "StaleApiserver"),
    "stale-endpoint": ("critical", "StaleEndpoint"),
    "nodes-not-ready": ("warning", "NodesNotReady"),
    "outage-pattern": ("critical", "NotReadyAfterMasterChange"),
}
SEVERITY: Mapping[Check, Severity] = {check: severity for check, (severity, _) in _KINDS.items()}
REASON: Mapping[Check, str] = {check: reason for check, (_, reason) in _KINDS.items()}
CHECKS: tuple[Check, ...] = tuple(SEVERITY)
# Checks whose findings rest on time passing without an update (a Lease not renewed, a heartbeat not seen):
# what a lagging watch also looks like. The controller confirms a new one with a fresh read before raising it.
SILENCE_BASED: frozenset[Check] = frozenset({"stale-leader", "nodes-not-ready", "outage-pattern"})


def needs_confirmation(findings: Iterable[Finding], *, known: Iterable[tuple[str, str]]) -> bool:
    """Whether ``findings`` holds a silence-based finding that is not among the ``known`` ones yet."""
    seen = set(known)
    return any(f.check in SILENCE_BASED and f.key not in seen for f in findings)


HOSTNAME_LABEL = "kubernetes.io/hostname"
NAMES_SHOWN = 10  # node names quoted in evidence; the count is always complete


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    check: Check
    object: str  # what is wrong, as a person reads it: "Lease kube-system/kube-scheduler"
    evidence: str
    since: float  # Unix time: when it became true, as far as the evidence tells, else first seen
    ref: refs.ObjectRef

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.check]

    @property
    def key(self) -> tuple[str, str]:
        return (self.check, self.object)

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "object": self.object,
            "evidence": self.evidence,
            "since": times.iso(self.since),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseRecord:
    namespace: str
    name: str
    holder: str
    renew_time: float | None  # Unix time of the last renewal (acquireTime when never renewed)
    duration_seconds: float
    transitions: int
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def holder_hostname(self) -> str:
        """client-go identities are ``<hostname>_<uuid>``."""
        return self.holder.split("_", 1)[0]

    @property
    def expires_at(self) -> float | None:
        return leases.expires_at(self.renew_time, self.duration_seconds)

    def expired(self, *, now: float) -> bool:
        return leases.expired(self.renew_time, self.duration_seconds, now=now)

    def leaderless_for(self, *, now: float) -> float | None:
        """Seconds nobody has led by this Lease: since it was released (no holder), or since the holder's
        claim ran out; ``inf`` when it carries no time; None while it is held."""
        if self.holder and not self.expired(now=now):
            return None
        since = self.expires_at if self.holder else self.renew_time
        return math.inf if since is None else max(0.0, now - since)


@dataclasses.dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    master: bool
    ready: bool
    version: str = ""  # as reported by the configured version source ("" when unknown)
    hostnames: frozenset[str] = frozenset()  # lower-cased: the name, the hostname label, Hostname addresses
    addresses: frozenset[str] = frozenset()  # InternalIP / ExternalIP


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What the watches show at one moment."""

    leaders: Mapping[str, LeaseRecord | None]  # "namespace/name" → the Lease (None: not found)
    apiservers: Sequence[LeaseRecord]  # kube-apiserver identity Leases
    heartbeats: Mapping[str, LeaseRecord]  # node name → its heartbeat Lease
    nodes: Sequence[NodeRecord]
    endpoint_ips: Sequence[str] | None  # the kubernetes Service's endpoints (None: no EndpointSlice)
    agreed_version: str | None = None  # the settled agreed version, when the masters agree
    checks: frozenset[CheckGroup] = frozenset(CHECK_GROUPS)

    @property
    def masters(self) -> tuple[NodeRecord, ...]:
        return tuple(node for node in self.nodes if node.master)


@dataclasses.dataclass(frozen=True, slots=True)
class Rules:
    # A failover leaves a Lease expired (or released) for a moment: the next candidate takes it at its next
    # retry (every 2 s by default). Only a longer gap is a stale leader.
    leader_failover_seconds: float = 15.0
    heartbeat_stale_seconds: float = 40.0
    outage_window_seconds: float = 300.0
    notready_jump_min: int = 3
    notready_jump_fraction: float = 0.1

    def jump_threshold(self, workers: int) -> int:
        return max(self.notready_jump_min, math.ceil(self.notready_jump_fraction * workers), 1)


Phase = Literal["control-plane", "workers"]
PHASES: tuple[Phase, ...] = get_args(Phase)


@dataclasses.dataclass(frozen=True, slots=True)
class Upgrade:
    """An upgrade under way: the ``leader_watchdog_upgrade_in_progress`` series at 1.

    ``from_version``/``to_version`` are written ``v1.36.1`` (see :func:`version_label`)."""

    phase: Phase
    from_version: str
    to_version: str
    started: float  # Unix time the phase began (or was first seen, after a restart of the watchdog)

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "from": self.from_version,
            "to": self.to_version,
            "started": times.iso(self.started),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class History:
    """What one evaluation hands to the next."""

    masters: frozenset[str] | None = None  # None: no master set seen yet
    masters_changed_at: float | None = None
    notready_before_change: int = 0
    pattern_since: float | None = None
    since: Mapping[tuple[str, str], float] = dataclasses.field(default_factory=dict)
    holders: Mapping[str, str] = dataclasses.field(default_factory=dict)  # leader Lease → holder
    agreed: version.Version | None = None  # the version the masters last agreed on (None: none seen yet)
    upgrade: Upgrade | None = None  # the upgrade under way (None: none)


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    lease: str
    previous: str
    holder: str


@dataclasses.dataclass(frozen=True, slots=True)
class NodeHealth:
    workers: int
    not_ready: tuple[str, ...]  # workers NotReady by condition or by a stale heartbeat, sorted
    condition_not_ready: int
    heartbeat_stale: int


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    findings: tuple[Finding, ...]
    history: History
    transitions: tuple[Transition, ...]
    nodes: NodeHealth
    master_set_changed: bool

    @property
    def upgrade(self) -> Upgrade | None:
        return self.history.upgrade

    @property
    def critical(self) -> bool:
        return any(finding.severity == "critical" for finding in self.findings)


# --- raw objects → records ----------------------------------------------------------------------------


def lease_record(raw: Mapping[str, Any]) -> LeaseRecord:
    meta = fields.mapping(raw.get("metadata"))
    labels = fields.mapping(meta.get("labels"))
    return LeaseRecord(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        holder=leases.holder(raw),
        renew_time=leases.renewed_at(raw),
        duration_seconds=leases.duration_seconds(raw),
        transitions=leases.transitions(raw),
        labels={str(k): str(v) for k, v in labels.items()},
    )


def node_record(
    raw: Mapping[str, Any], *, selectors: Sequence[selector.Selector], reported_version: str | None = None
) -> NodeRecord:
    """``reported_version`` overrides the kubelet version (the apiserver version source)."""
    meta = fields.mapping(raw.get("metadata"))
    name = str(meta.get("name") or "")
    labels = agreement_masters.node_labels(raw)
    hostnames = {name.lower()}
    if labels.get(HOSTNAME_LABEL):
        hostnames.add(str(labels[HOSTNAME_LABEL]).lower())
    addresses = set()
    for address in fields.mappings(fields.dig(raw, "status", "addresses")):
        value = str(address.get("address") or "")
        if not value:
            continue
        if address.get("type") == "Hostname":
            hostnames.add(value.lower())
        elif address.get("type") in ("InternalIP", "ExternalIP"):
            addresses.add(value)
    return NodeRecord(
        name=name,
        master=selector.matches_any(selectors, labels),
        ready=agreement_masters.node_ready(raw),
        version=agreement_masters.kubelet_version(raw) if reported_version is None else reported_version,
        hostnames=frozenset(hostnames),
        addresses=frozenset(addresses),
    )


KUBERNETES_SERVICE = refs.ObjectRef(kind="Service", name="kubernetes", namespace="default")
KUBERNETES_SLICES = "kubernetes.io/service-name=kubernetes"  # label selector, in the Service's namespace


def endpoint_slice_ips(raw: Mapping[str, Any]) -> frozenset[str]:
    """Every address (ready or not) of one EndpointSlice."""
    return frozenset(
        address
        for endpoint in fields.mappings(raw.get("endpoints"))
        for address in fields.strings(endpoint.get("addresses"))
    )


def service_endpoint_ips(slices: Iterable[frozenset[str]]) -> tuple[str, ...] | None:
    """The addresses of a Service's EndpointSlices, sorted, without duplicates (None: no slice at all)."""
    found = list(slices)
    return tuple(sorted(frozenset().union(*found))) if found else None


# --- the checks -----------------------------------------------------------------------------------------


def lease_ref(key: str) -> refs.ObjectRef:
    """The Lease ``namespace/name``."""
    namespace, _, name = key.partition("/")
    return refs.ObjectRef(kind="Lease", name=name, namespace=namespace, api_version="coordination.k8s.io/v1")


# kube-apiserver renews its identity Lease every 10 s (--identity-lease-renew-interval-seconds); three
# renewals missed and it is silent, not live.
APISERVER_SILENT_SECONDS = 30.0


def _age(now: float, moment: float | None) -> str:
    return "never" if moment is None else f"{now - moment:.1f}s ago"


def _master_of(hostname: str, masters: Iterable[NodeRecord]) -> NodeRecord | None:
    wanted = hostname.lower()
    return next((m for m in masters if wanted in m.hostnames), None) if wanted else None


def _names(masters: Sequence[NodeRecord]) -> str:
    return ", ".join(m.name for m in masters) or "none"


def check_leader(
    key: str,
    lease: LeaseRecord | None,
    *,
    masters: Sequence[NodeRecord],
    agreed_version: str | None,
    failover_seconds: float,
    now: float,
) -> Finding | None:
    """One leader Lease: present, led (a leaderless gap up to ``failover_seconds`` is a failover), held from a
    current Ready master on the agreed version."""
    ref = lease_ref(key)

    def finding(check: Check, evidence: str, since: float = now) -> Finding:
        return Finding(check, str(ref), evidence, since, ref)

    if lease is None:
        return finding("leader-missing", "the Lease does not exist: no component has ever led here")
    leaderless = lease.leaderless_for(now=now)
    if leaderless is not None and leaderless > failover_seconds:
        return finding(
            "stale-leader",
            f"holder {lease.holder or '<none>'!r} last renewed {_age(now, lease.renew_time)}; "
            f"leaseDurationSeconds {lease.duration_seconds:g}",
            now - leaderless if math.isfinite(leaderless) else now,
        )
    if leaderless is not None:
        return None  # a failover under way: whoever takes the Lease next is checked then
    master = _master_of(lease.holder_hostname, masters)
    if master is None:
        return finding(
            "leader-on-unknown-master",
            f"holder {lease.holder!r}: host {lease.holder_hostname!r} is not a current master "
            f"(masters: {_names(masters)})",
        )
    if not master.ready:
        return finding(
            "leader-on-notready-master",
            f"holder {lease.holder!r} runs on master {master.name}, which is not Ready",
        )
    agreed = version.parse_version(agreed_version)
    runs = version.parse_version(master.version)
    if agreed is not None and runs is not None and runs.key != agreed.key:
        return finding(
            "leader-version-skew",
            f"holder {lease.holder!r} runs on master {master.name} at {master.version}; the masters agree on {agreed_version}",
        )
    return None


def check_apiservers(
    apiservers: Iterable[LeaseRecord], *, masters: Sequence[NodeRecord], now: float
) -> list[Finding]:
    """An unexpired kube-apiserver identity Lease whose hostname is no current master is a stale master."""
    findings = []
    for lease in apiservers:
        if lease.expired(now=now):
            continue  # that apiserver is gone; the apiserver's own GC removes its Lease
        hostname = lease.labels.get(HOSTNAME_LABEL, "")
        if _master_of(hostname, masters) is not None:
            continue
        ref = lease_ref(lease.key)
        findings.append(
            Finding(
                "stale-apiserver",
                str(ref),
                f"{_apiserver_on(hostname, lease, now=now)} is not a current master (masters: {_names(masters)})",
                now,
                ref,
            )
        )
    return findings


def _apiserver_on(hostname: str, lease: LeaseRecord, *, now: float) -> str:
    """A kube-apiserver renews its identity Lease every 10 s but lets it live an hour: one silent for a few
    renewals is not known to be running (lost without shutting down, or cut off from etcd)."""
    host = hostname or "<unlabelled>"
    if lease.renew_time is not None and now - lease.renew_time <= APISERVER_SILENT_SECONDS:
        return f"a live kube-apiserver on host {host!r} (renewed {_age(now, lease.renew_time)})"
    expires = lease.expires_at
    until = f"; its Lease expires in {expires - now:.0f}s" if expires is not None else ""
    return (
        f"a kube-apiserver on host {host!r}, silent since its identity Lease was renewed "
        f"{_age(now, lease.renew_time)} (lost without shutting down, or cut off from etcd{until}),"
    )


def check_endpoints(ips: Sequence[str] | None, *, masters: Sequence[NodeRecord], now: float) -> list[Finding]:
    """Every endpoint of the ``default/kubernetes`` Service must be an address of a current master."""
    if ips is None:
        return []
    known = {address for master in masters for address in master.addresses}
    ref = KUBERNETES_SERVICE
    return [
        Finding(
            "stale-endpoint",
            f"{ref} endpoint {ip}",
            f"clients of the kubernetes Service are sent to {ip}, which no current master has "
            f"(master addresses: {', '.join(sorted(known)) or 'none'})",
            now,
            ref,
        )
        for ip in ips
        if ip not in known
    ]


def node_health(
    nodes: Iterable[NodeRecord], heartbeats: Mapping[str, LeaseRecord], *, rules: Rules, now: float
) -> NodeHealth:
    """Workers (non-masters) NotReady by their Ready condition or by a heartbeat Lease older than the
    threshold — the node lifecycle controller marks the second kind NotReady only after its grace period."""
    workers = [node for node in nodes if not node.master]
    not_ready: list[str] = []
    by_condition = stale = 0
    for node in workers:
        lease = heartbeats.get(node.name)
        heartbeat_stale = (
            lease is not None
            and lease.renew_time is not None
            and now - lease.renew_time > rules.heartbeat_stale_seconds
        )
        by_condition += not node.ready
        stale += heartbeat_stale
        if heartbeat_stale or not node.ready:
            not_ready.append(node.name)
    return NodeHealth(
        workers=len(workers),
        not_ready=tuple(sorted(not_ready)),
        condition_not_ready=by_condition,
        heartbeat_stale=stale,
    )


def _quote(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def check_heartbeats(
    health: NodeHealth, *, history: History, rules: Rules, now: float
) -> tuple[list[Finding], float | None]:
    """NotReady workers; a jump of them within the window after the master set changed is the outage
    pattern (nodes still talking to a removed master). Returns the findings and the pattern's start."""
    ref = refs.ObjectRef(kind="Namespace", name="kube-node-lease")
    findings: list[Finding] = []
    count = len(health.not_ready)
    if count:
        findings.append(
            Finding(
                "nodes-not-ready",
                "Nodes",
                f"{count} of {health.workers} worker(s) NotReady ({health.condition_not_ready} by Ready condition, "
                f"{health.heartbeat_stale} with a heartbeat older than {rules.heartbeat_stale_seconds:g}s): "
                f"{_quote(health.not_ready)}",
                now,
                ref,
            )
        )
    jump = count - history.notready_before_change
    threshold = rules.jump_threshold(health.workers)
    changed_at = history.masters_changed_at
    pattern_since = history.pattern_since if jump >= threshold else None
    if (
        pattern_since is None
        and jump >= threshold
        and changed_at is not None
        and now - changed_at <= rules.outage_window_seconds
    ):
        pattern_since = now
    if pattern_since is not None and changed_at is not None:
        findings.append(
            Finding(
                "outage-pattern",
                "Nodes",
                f"NotReady workers jumped from {history.notready_before_change} to {count} (threshold +{threshold}) "
                f"{pattern_since - changed_at:.0f}s after the master set changed to {sorted(history.masters or ())}: "
                f"nodes may still talk to a removed master; {_quote(health.not_ready)}",
                pattern_since,
                ref,
            )
        )
    return findings, pattern_since


def transitions(
    previous: Mapping[str, str], leaders: Mapping[str, LeaseRecord | None]
) -> tuple[Transition, ...]:
    """Leader Leases whose holder changed since the last evaluation (a first sight is no transition)."""
    return tuple(
        Transition(lease=key, previous=previous[key], holder=lease.holder)
        for key, lease in sorted(leaders.items())
        if lease is not None and key in previous and lease.holder != previous[key]
    )


# --- the upgrade signal ----------------------------------------------------------------------------------


def version_label(parsed: version.Version) -> str:
    """How the signal writes a version: ``v<major>.<minor>.<patch>``, the form ``kubeadm upgrade apply`` takes
    and release notes use. A vendor suffix (``-eks-…``, ``+k3s1``) is dropped: versions compare by (major,
    minor, patch), so a suffix alone is no upgrade and must not make a new series."""
    return f"v{parsed.major}.{parsed.minor}.{parsed.patch}"


def _target(reported: Iterable[version.Version], *, base: version.Version) -> version.Version | None:
    """The version the masters move to from ``base``: the highest reported above it, else (a downgrade) the
    lowest below it; None while every master reports ``base``."""
    others = [v for v in reported if v.key != base.key]
    above = [v for v in others if v.key > base.key]
    return max(above) if above else min(others, default=None)


def upgrade_progress(
    *,
    masters: Sequence[NodeRecord],
    workers: Sequence[NodeRecord],
    agreed: version.Version | None,
    history: History,
    now: float,
) -> Upgrade | None:
    """The upgrade under way at ``now``, given the settled agreement of the masters (``agreed``; None while
    they do not agree) and what the last evaluation saw (``history.agreed``, ``history.upgrade``).

    - ``control-plane``: from the moment a master reports another version than the one last agreed, until
      the masters agree again. A master that reports no parseable version neither starts nor ends it.
    - ``workers``: then, while a worker's kubelet is below the newly agreed version (a worker whose version
      cannot be parsed does not count). A downgrade has no workers phase: its workers are above, not below.
    - Neither: no upgrade. A watchdog started mid-upgrade has no agreed version yet: masters on different
      versions are a control-plane phase from the lowest to the highest, and once they agree, workers below
      are a workers phase from the lowest of them.
    """
    current = history.upgrade
    reported = [v for m in masters if (v := version.parse_version(m.version)) is not None]
    if agreed is not None:
        behind = [
            v for w in workers if (v := version.parse_version(w.version)) is not None and v.key < agreed.key
        ]
        if not behind:
            return None
        to = version_label(agreed)
        if current is not None and current.phase == "workers" and current.to_version == to:
            return current
        if current is not None:
            start = current.from_version
        elif history.agreed is not None and history.agreed.key != agreed.key:
            start = version_label(history.agreed)  # the masters moved between two evaluations
        else:
            start = version_label(min(behind))
        return Upgrade("workers", from_version=start, to_version=to, started=now)
    if current is not None and current.phase == "control-plane":
        base = version.parse_version(current.from_version)
        target = _target(reported, base=base) if base is not None else None
        return current if target is None else dataclasses.replace(current, to_version=version_label(target))
    if history.agreed is None:
        if len({v.key for v in reported}) < 2:
            return current
        low, high = min(reported), max(reported)
        return Upgrade("control-plane", version_label(low), version_label(high), started=now)
    target = _target(reported, base=history.agreed)
    if target is None:
        return current  # no agreement for another reason (a master NotReady, too few): nothing moved
    return Upgrade("control-plane", version_label(history.agreed), version_label(target), started=now)


def evaluate(snapshot: Snapshot, *, now: float, rules: Rules, history: History) -> Evaluation:
    """All checks at ``now``; returns the findings and the history for the next evaluation."""
    masters = snapshot.masters
    master_names = frozenset(m.name for m in masters)
    health = node_health(snapshot.nodes, snapshot.heartbeats, rules=rules, now=now)

    changed = history.masters is not None and master_names != history.masters
    if changed:
        in_window = (
            history.masters_changed_at is not None
            and now - history.masters_changed_at <= rules.outage_window_seconds
        )
        # A replacement is often two changes (one master removed, one added): keep the baseline from the first.
        baseline = (
            min(history.notready_before_change, len(health.not_ready)) if in_window else len(health.not_ready)
        )
        history = dataclasses.replace(history, masters_changed_at=now, notready_before_change=baseline)
    history = dataclasses.replace(history, masters=master_names)

    findings: list[Finding] = []
    if "leaders" in snapshot.checks:
        for key, lease in sorted(snapshot.leaders.items()):
            leader = check_leader(
                key,
                lease,
                masters=masters,
                agreed_version=snapshot.agreed_version,
                failover_seconds=rules.leader_failover_seconds,
                now=now,
            )
            if leader is not None:
                findings.append(leader)
    if "apiservers" in snapshot.checks:
        findings.extend(check_apiservers(snapshot.apiservers, masters=masters, now=now))
    if "endpoints" in snapshot.checks:
        findings.extend(check_endpoints(snapshot.endpoint_ips, masters=masters, now=now))
    pattern_since = None
    if "heartbeats" in snapshot.checks:
        node_findings, pattern_since = check_heartbeats(health, history=history, rules=rules, now=now)
        findings.extend(node_findings)

    # A finding keeps the earliest "since" it has been seen with, so that /status says how long it has lasted.
    since = {f.key: min(f.since, history.since.get(f.key, f.since)) for f in findings}
    findings = [dataclasses.replace(f, since=since[f.key]) for f in findings]
    holders = {key: lease.holder for key, lease in snapshot.leaders.items() if lease is not None}
    agreed = version.parse_version(snapshot.agreed_version)
    upgrade = upgrade_progress(
        masters=masters,
        workers=[node for node in snapshot.nodes if not node.master],
        agreed=agreed,
        history=history,
        now=now,
    )
    return Evaluation(
        findings=tuple(findings),
        history=dataclasses.replace(
            history,
            since=since,
            holders=holders,
            pattern_since=pattern_since,
            agreed=agreed or history.agreed,
            upgrade=upgrade,
        ),
        transitions=transitions(history.holders, snapshot.leaders),
        nodes=health,
        master_set_changed=changed,
    )


def conditions(
    findings: Iterable[Finding], leaders: Mapping[str, LeaseRecord | None], *, holders: Mapping[str, str]
) -> tuple[status.Condition, ...]:
    """The conditions the skeleton turns into Events: one per finding (a Warning when it appears, Normal
    ``<Reason>Cleared`` when it clears), and one per leader Lease whose status is its holder (``LeaderChanged``
    when the holder changes from ``holders``, the last evaluation's; a first sight is no news)."""
    found = [
        status.Condition(
            f.check, "True", REASON[f.check], f"{f.object}: {f.evidence}", f.object, f.ref, warning=True
        )
        for f in findings
    ]
    found += [
        status.Condition(
            "leader",
            lease.holder,
            "LeaderChanged",
            f"leader changed from {holders.get(key, '')!r} to {lease.holder!r}",
            key,
            lease_ref(key),
            quiet=True,
        )
        for key, lease in sorted(leaders.items())
        if lease is not None
    ]
    return tuple(found)


def to_status(
    evaluation: Evaluation, snapshot: Snapshot, *, holders: Mapping[str, str], now: float
) -> status.Status:
    """The watchdog's status: Critical, Warning (findings, none critical) or Healthy; the upgrade under way as
    its progress; a condition per finding and per leader Lease; the rest of :func:`status_json` as its own."""
    count = len(evaluation.findings)
    critical = sum(1 for f in evaluation.findings if f.severity == "critical")
    upgrade = evaluation.upgrade
    return status.Status(
        phase="Critical" if critical else "Warning" if count else "Healthy",
        version=snapshot.agreed_version or "",
        reason=f"{count} finding(s), {critical} critical" if count else "",
        progress=f"{upgrade.phase} {upgrade.from_version} -> {upgrade.to_version}" if upgrade else "",
        conditions=conditions(evaluation.findings, snapshot.leaders, holders=holders),
        detail=status_json(evaluation, snapshot, now=now),
    )


def status_json(evaluation: Evaluation, snapshot: Snapshot, *, now: float) -> dict[str, Any]:
    """The ``/status`` document (and ``--once`` output)."""
    history = evaluation.history
    masters = snapshot.masters
    return {
        "time": times.iso(now),
        "critical": evaluation.critical,
        "findings": [finding.to_json() for finding in evaluation.findings],
        "masters": [
            {"name": m.name, "ready": m.ready, "version": m.version or None, "addresses": sorted(m.addresses)}
            for m in masters
        ],
        "agreedVersion": snapshot.agreed_version,
        "upgrade": evaluation.upgrade.to_json() if evaluation.upgrade else None,
        "masterSetChangedAt": times.iso(history.masters_changed_at),
        "leaders": [
            {
                "lease": key,
                "holder": lease.holder if lease else None,
                "renewTime": times.iso(lease.renew_time) if lease else None,
                "leaseDurationSeconds": lease.duration_seconds if lease else None,
                "leaseTransitions": lease.transitions if lease else None,
            }
            for key, lease in sorted(snapshot.leaders.items())
        ],
        "apiservers": [
            {
                "lease": lease.key,
                "hostname": lease.labels.get(HOSTNAME_LABEL, ""),
                "live": not lease.expired(now=now),
                "master": (
                    found.name
                    if (found := _master_of(lease.labels.get(HOSTNAME_LABEL, ""), masters))
                    else None
                ),
                "renewTime": times.iso(lease.renew_time),
            }
            for lease in sorted(snapshot.apiservers, key=lambda lease: lease.key)
        ],
        "endpoints": list(snapshot.endpoint_ips) if snapshot.endpoint_ips is not None else None,
        "nodes": {
            "workers": evaluation.nodes.workers,
            "notReady": len(evaluation.nodes.not_ready),
            "notReadyByCondition": evaluation.nodes.condition_not_ready,
            "heartbeatStale": evaluation.nodes.heartbeat_stale,
            "notReadyBeforeMasterChange": history.notready_before_change
            if history.masters_changed_at
            else None,
        },
    }

"""The whole decision of node-tainter, pure: which taint each node should carry, and what must change.

Once all masters agree on version V, a worker whose kubelet is below V carries the suite's taint (value = its
kubelet version, effect PreferNoSchedule by default); a worker at or above V, a master, an excluded node and a
node whose version cannot be read carry none. No agreement: nothing changes. Versions compare by
(major, minor, patch), so vendor suffixes never count. In NoSchedule mode at most a fraction of the
schedulable workers may be made unschedulable; the rest wait.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from controllers.agreement import selector, version
from controllers.structs import fields

DEFAULT_TAINT_KEY = "upgrade.kube-upgrade-controllers.io/outdated"
Effect = Literal["PreferNoSchedule", "NoSchedule"]
EFFECTS: tuple[Effect, ...] = get_args(Effect)
TaintAction = Literal["taint", "untaint", "update"]
ACTIONS: tuple[TaintAction, ...] = get_args(TaintAction)
# The version skew policy: a kubelet may be up to 3 minors older than the apiserver, never newer.
MAX_SKEW_MINORS = 3

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_VALUE_BAD = re.compile(r"[^-A-Za-z0-9_.]")


@dataclasses.dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}"


@dataclasses.dataclass(frozen=True, slots=True)
class TaintPolicy:
    """What the decision depends on besides the nodes and the agreed version (from the config)."""

    taint_key: str = DEFAULT_TAINT_KEY
    effect: Effect = "PreferNoSchedule"
    master_selectors: tuple[selector.Selector, ...] = ()
    exclude: selector.Selector | None = None
    max_unschedulable_fraction: float = 0.25


@dataclasses.dataclass(frozen=True, slots=True)
class TaintableNode:
    """What the decision needs of one Node (built by :func:`node_view` from the API object)."""

    name: str
    resource_version: str
    uid: str
    reported: str  # the kubelet version as reported ("" when none)
    version: version.Version | None
    master: bool
    excluded: bool
    unschedulable: bool  # cordoned (spec.unschedulable)
    taints: tuple[Mapping[str, Any], ...]  # every taint, as the API has it
    ours: tuple[Taint, ...]  # the taints under our key


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """Make node ``node`` carry ``taint`` under our key (None: carry none) instead of ``previous``."""

    node: str
    taint: Taint | None
    previous: tuple[Taint, ...]

    @property
    def action(self) -> TaintAction:
        if self.taint is None:
            return "untaint"
        return "update" if self.previous else "taint"


@dataclasses.dataclass(frozen=True, slots=True)
class TaintPlan:
    agreed: version.Version | None
    changes: tuple[Change, ...] = ()
    outdated: int = 0  # workers below the agreed version (excluded ones included)
    tainted: int = 0  # nodes carrying our taint now
    to_taint: int = 0  # nodes that should carry it (once the plan is done, cap permitting)
    waiting: tuple[str, ...] = ()  # outdated workers held back by the NoSchedule cap
    unknown: tuple[str, ...] = ()  # nodes whose kubelet version cannot be parsed
    too_old: int = 0  # skew violations: kubelet more than MAX_SKEW_MINORS minors behind the masters
    too_new: int = 0  # skew violations: kubelet on a newer minor than the masters


def valid_taint_key(key: str) -> str | None:
    """None when ``key`` is a valid taint key (a qualified name), else what is wrong."""
    prefix, _, name = key.rpartition("/")
    if "/" in prefix or (prefix and (len(prefix) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, prefix))):
        return "must be a qualified name: an optional DNS subdomain prefix and '/', then a name"
    if not name or len(name) > 63 or not re.fullmatch(_NAME, name):
        return "must end in a name of at most 63 characters: alphanumerics, '-', '_' or '.'"
    return None


def taint_value(reported: str) -> str:
    """The kubelet version as a valid taint value (a label value): ``v1.30.2+k3s1`` → ``v1.30.2_k3s1``."""
    return _LABEL_VALUE_BAD.sub("_", reported)[:63].strip("-_.")


def node_view(obj: Mapping[str, Any], *, policy: TaintPolicy) -> TaintableNode | None:
    """The decision's view of a Node object; None when it has no name (never raises on odd input)."""
    meta = fields.mapping(obj.get("metadata"))
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    spec = fields.mapping(obj.get("spec"))
    taints = tuple(fields.mappings(spec.get("taints")))
    labels = fields.mapping(meta.get("labels"))
    reported = str(
        fields.mapping(fields.mapping(obj.get("status")).get("nodeInfo")).get("kubeletVersion") or ""
    )
    return TaintableNode(
        name=name,
        resource_version=str(meta.get("resourceVersion") or ""),
        uid=str(meta.get("uid") or ""),
        reported=reported,
        version=version.parse_version(reported),
        master=selector.matches_any(policy.master_selectors, labels),
        excluded=policy.exclude is not None and policy.exclude.matches(labels),
        unschedulable=bool(spec.get("unschedulable")),
        taints=taints,
        ours=tuple(
            Taint(key=str(t.get("key")), value=str(t.get("value") or ""), effect=str(t.get("effect") or ""))
            for t in taints
            if t.get("key") == policy.taint_key
        ),
    )


def desired_taint(node: TaintableNode, *, agreed: version.Version, policy: TaintPolicy) -> Taint | None:
    """THE rule: a worker whose kubelet is below the agreed version carries our taint; nothing else does."""
    if node.master or node.excluded or node.version is None or node.version >= agreed:
        return None
    return Taint(key=policy.taint_key, value=taint_value(node.reported), effect=policy.effect)


def change_for(node: TaintableNode, taint: Taint | None) -> Change | None:
    """The change that makes ``node`` carry exactly ``taint`` under our key; None when it already does."""
    if node.ours == ((taint,) if taint else ()):
        return None
    return Change(node=node.name, taint=taint, previous=node.ours)


def plan(nodes: Iterable[TaintableNode], *, agreed: version.Version | None, policy: TaintPolicy) -> TaintPlan:
    """Every change needed now, with the NoSchedule cap applied. No agreement: no change."""
    nodes = sorted(nodes, key=lambda n: n.name)
    tainted = sum(1 for n in nodes if n.ours)
    unknown = tuple(n.name for n in nodes if n.version is None)
    if agreed is None:
        return TaintPlan(agreed=None, tainted=tainted, unknown=unknown)
    desired = {n.name: desired_taint(n, agreed=agreed, policy=policy) for n in nodes}
    waiting = _over_cap(nodes, desired, policy=policy) if policy.effect == "NoSchedule" else set()
    workers = [n for n in nodes if not n.master and n.version is not None]
    behind = [version.minors_behind(newer=agreed, older=n.version) for n in workers if n.version]
    changes = (change_for(n, desired[n.name]) for n in nodes if n.name not in waiting)
    return TaintPlan(
        agreed=agreed,
        changes=tuple(c for c in changes if c is not None),
        outdated=sum(1 for n in workers if n.version is not None and n.version < agreed),
        tainted=tainted,
        to_taint=sum(1 for name, t in desired.items() if t is not None and name not in waiting),
        waiting=tuple(sorted(waiting)),
        unknown=unknown,
        too_old=sum(1 for b in behind if b > MAX_SKEW_MINORS),
        too_new=sum(1 for b in behind if b < 0),
    )


def _over_cap(
    nodes: Sequence[TaintableNode], desired: Mapping[str, Taint | None], *, policy: TaintPolicy
) -> set[str]:
    """The nodes that would newly become unschedulable beyond the cap (oldest kubelet first gets a slot).

    Only schedulable (uncordoned) workers count: a cordoned node is unschedulable already. Nodes we hold
    unschedulable now keep their slot."""
    schedulable = [n for n in nodes if not n.master and not n.unschedulable]
    budget = math.floor(policy.max_unschedulable_fraction * len(schedulable) + 1e-9)
    wanted = [n for n in schedulable if desired[n.name] is not None]
    held = [n for n in wanted if any(t.effect == "NoSchedule" for t in n.ours)]
    candidates = sorted(
        (n for n in wanted if not any(t.effect == "NoSchedule" for t in n.ours)),
        key=lambda n: (n.version.key if n.version else (0, 0, 0), n.name),
    )
    room = max(0, budget - len(held))
    return {n.name for n in candidates[room:]}


def edit_taints(
    taints: Sequence[Mapping[str, Any]], *, key: str, taint: Taint | None
) -> list[dict[str, Any]]:
    """``taints`` with every entry under ``key`` replaced by ``taint`` (or removed); others untouched, in order."""
    kept = [dict(t) for t in taints if t.get("key") != key]
    return [*kept, taint.to_json()] if taint else kept


def explain(node: TaintableNode, *, agreed: version.Version) -> str:
    """Why the rule decides as it does for ``node`` (for Events and logs)."""
    if node.master:
        return "masters never carry the taint"
    if node.excluded:
        return "the node matches the exclude selector"
    if node.version is None:
        return f"kubelet version {node.reported or '<none>'!r} cannot be parsed"
    if node.version < agreed:
        return f"kubelet {node.reported} is below the agreed control-plane version {agreed}"
    return f"kubelet {node.reported} is at or above the agreed control-plane version {agreed}"

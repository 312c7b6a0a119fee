"""drain-blockers: PodDisruptionBudgets that allow no disruption over pods on workers the upgrade drains."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controllers.agreement.version import Version
from controllers.structs import checking
from controllers.upgrade_readiness.checks import interface


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


def nodes_to_drain(nodes: Iterable[interface.NodeView], *, target: Version) -> frozenset[str]:
    """Workers the upgrade drains: every one below the target (an unparseable version counts as below)."""
    return frozenset(
        n.name
        for n in nodes
        if not n.master and (n.version is None or n.version.minor_key < target.minor_key)
    )


def drain_blockers(
    pdbs: Iterable[interface.PdbView], pods: Iterable[interface.PodView], *, draining: frozenset[str]
) -> interface.Judgement:
    """PodDisruptionBudgets allowing no disruption over pods on workers that the upgrade will drain: the
    drain of those workers would wait forever."""
    by_namespace: dict[str, list[interface.PodView]] = {}
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
            f"({interface.shown(nodes)}): their drain would wait until it allows one"
        )
        findings.append(
            interface.Finding("drain-blockers", f"PodDisruptionBudget {pdb.namespace}/{pdb.name}", message)
        )
    unknown = ""
    if uncomputed:
        unknown = (
            f"disruptionsAllowed not computed for {interface.shown(uncomputed)} (is kube-controller-manager's "
            "disruption controller running?)"
        )
    return interface.Judgement("drain-blockers", tuple(findings), unknown)


def judge(observed: interface.Evidence) -> interface.Judgement:
    draining = nodes_to_drain(observed.nodes, target=observed.target)
    return drain_blockers(observed.pdbs, observed.pods, draining=draining)


CHECK = checking.Check(name="drain-blockers", needs=frozenset({"nodes", "pdbs", "pods"}), judge=judge)

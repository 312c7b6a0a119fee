"""kubelet-skew: nodes whose kubelet the skew policy leaves out at the target."""

from __future__ import annotations

from collections.abc import Iterable

from controllers.agreement import version
from controllers.agreement.version import Version
from controllers.structs import checking
from controllers.upgrade_readiness.checks import interface

# The skew policy: a kubelet may be up to 3 minors older than the apiserver, never newer.
MAX_KUBELET_MINORS_BEHIND = 3


def kubelet_skew(nodes: Iterable[interface.NodeView], *, target: Version) -> interface.Judgement:
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
        findings.append(interface.Finding("kubelet-skew", f"Node {node.name}", why))
    unknown = f"unparseable kubelet version on {interface.shown(unparsed)}" if unparsed else ""
    return interface.Judgement("kubelet-skew", tuple(findings), unknown)


def judge(observed: interface.Evidence) -> interface.Judgement:
    return kubelet_skew(observed.nodes, target=observed.target)


CHECK = checking.Check(name="kubelet-skew", needs=frozenset({"nodes"}), judge=judge)

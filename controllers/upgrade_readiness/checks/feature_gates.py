"""feature-gates: feature gates the cluster sets (static pods, kubeadm's ClusterConfiguration, the kubelet and
kube-proxy configurations) that the target removes, or locks to the other value: the component refuses to
start. kubeadm's own featureGates against the target's kubeadm."""

from __future__ import annotations

from collections.abc import Iterable

from controllers.release_delta import model
from controllers.structs import checking
from controllers.upgrade_readiness.checks import component_settings, interface, next_release

NAME = "feature-gates"


def feature_gates(
    settings: Iterable[component_settings.Settings], *, delta: model.Delta
) -> interface.Judgement:
    """Gates the cluster sets that the target removes, or locks to the other value: blockers naming the
    component, the node (where per node), the place and the gate."""
    settings = tuple(settings)
    findings = []
    for where in settings:
        for gate, enabled in where.gates:
            message = gate_problem(where.component, gate, enabled, delta=delta)
            if message:
                findings.append(interface.Finding(NAME, f"{where.where}: {gate}", message))
    return interface.Judgement(NAME, tuple(findings), next_release.problems(settings))


def gate_problem(
    component: component_settings.Configured, gate: str, enabled: bool, *, delta: model.Delta
) -> str:
    target = next_release.target_text(delta)
    if component == "kubeadm":
        if gate in delta.kubeadm_gates_removed:
            return (
                f"kubeadm {target} no longer knows this feature gate and refuses the configuration: remove it"
            )
        locked = next((g for g in delta.kubeadm_gates_locked if g.name == gate), None)
        if locked is not None and locked.default != enabled:
            return f"kubeadm {target} locks it to {str(locked.default).lower()}: remove it"
        return ""
    removed = delta.removed_gate(gate)
    if removed is not None and component in removed.components:
        return (
            f"{target} removes this feature gate ({gate}={str(enabled).lower()} is set): {component} would refuse "
            "to start on an unknown gate; remove it before the upgrade"
        )
    locked_gate = delta.locked_gate(gate)
    if locked_gate is not None and component in locked_gate.components and locked_gate.default != enabled:
        return (
            f"{target} locks this feature gate to {str(locked_gate.default).lower()}: {component} would refuse "
            f"to start with {gate}={str(enabled).lower()}; remove it before the upgrade"
        )
    return ""


def judge(observed: interface.Evidence) -> interface.Judgement:
    shown = next_release.configured(observed)
    return next_release.against_delta(NAME, lambda delta: feature_gates(shown, delta=delta))(observed)


CHECK = checking.Check(
    name=NAME,
    needs=frozenset({"delta", "static-pods", "kubeadm-config", "kubelet-config", "kube-proxy-config"}),
    judge=judge,
)

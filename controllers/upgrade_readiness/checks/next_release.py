"""What the checks that compare the live cluster with the release delta of the target minor share (pure):
``feature-gates``, ``component-flags``, ``kubeadm-config``, ``alert-metrics`` and ``component-versions``
(each its module here). The delta is the shipped one from the masters' minor to the target
(:mod:`controllers.release_delta`, docs/release-delta.md); what the cluster configures is read by
:mod:`.component_settings` and :mod:`.promql`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from controllers.release_delta import model
from controllers.upgrade_readiness.checks import component_settings, interface


def target_text(delta: model.Delta) -> str:
    """The target as a message names it: ``1.37``, or ``1.38 (v1.38.0-beta.0, a prerelease)``."""
    return (
        f"{delta.target.minor} ({delta.target.version}, a prerelease)"
        if delta.prerelease
        else delta.target.minor
    )


def problems(settings: Iterable[component_settings.Settings]) -> str:
    """What could not be read, one place after the other."""
    return "; ".join(f"{s.where}: {s.problem}" for s in settings if s.problem)


def configured(observed: interface.Evidence) -> tuple[component_settings.Settings, ...]:
    """Every place the cluster configures a component: each control plane's static pods, kubeadm's
    ClusterConfiguration (extraArgs, its own featureGates), the kubelet-config and kube-proxy ConfigMaps."""
    found = [s for pod in sorted(observed.static_pods, key=lambda p: p.node) for s in pod.settings]
    if observed.kubeadm_config is not None:
        if observed.kubeadm_config.problem:
            found.append(
                component_settings.Settings(
                    "kubeadm",
                    f"{component_settings.KUBEADM_CONFIG} ClusterConfiguration",
                    problem=observed.kubeadm_config.problem,
                )
            )
        found.extend(observed.kubeadm_config.settings)
    found.extend(s for s in (observed.kubelet_config, observed.kube_proxy_config) if s is not None)
    return tuple(found)


def against_delta(
    check: str, judge: Callable[[model.Delta], interface.Judgement]
) -> Callable[[interface.Evidence], interface.Judgement]:
    """A check's ``judge`` from its judgement against the delta: unknown (why) where there is no delta."""

    def judged(observed: interface.Evidence) -> interface.Judgement:
        if isinstance(observed.delta, str):
            return interface.Judgement(check, unknown=observed.delta or "no release delta to judge against")
        return judge(observed.delta)

    return judged

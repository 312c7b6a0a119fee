"""kubeadm-config: the ClusterConfiguration kubeadm stored (ConfigMap kube-system/kubeadm-config) is in an
API version the target's kubeadm reads (``kubeadm upgrade`` reads it first)."""

from __future__ import annotations

from controllers.release_delta import model
from controllers.structs import checking
from controllers.upgrade_readiness.checks import component_settings, interface, next_release

NAME = "kubeadm-config"


def kubeadm_config(
    config: component_settings.ClusterConfiguration | None, *, delta: model.Delta
) -> interface.Judgement:
    """The stored ClusterConfiguration's apiVersion against what the target's kubeadm reads (None: the
    cluster has no kubeadm-config, it is not a kubeadm cluster: nothing to check). Not read: blocker;
    read with a deprecation warning: warning."""
    if config is None:
        return interface.Judgement(NAME)
    if not config.api_version:
        return interface.Judgement(NAME, unknown=f"{component_settings.KUBEADM_CONFIG}: {config.problem}")
    subject = f"{component_settings.KUBEADM_CONFIG} ClusterConfiguration {config.api_version}"
    served = delta.served_kubeadm_api(config.api_version)
    target = next_release.target_text(delta)
    readable = ", ".join(f"{a.version} ({a.status})" for a in delta.kubeadm_apis)
    if served is None or served.status == "experimental":
        why = "no longer reads" if config.api_version in delta.kubeadm_apis_removed else "does not read"
        message = (
            f"kubeadm {target} {why} {config.api_version} (it reads {readable}): "
            "`kubeadm config migrate` the stored configuration first"
        )
        return interface.Judgement(NAME, (interface.Finding(NAME, subject, message),))
    if served.status == "deprecated":
        message = (
            f"kubeadm {target} reads {config.api_version} with a deprecation warning (it reads {readable})"
        )
        return interface.Judgement(NAME, (interface.Finding(NAME, subject, message, "warning"),))
    return interface.Judgement(NAME)


def judge(observed: interface.Evidence) -> interface.Judgement:
    config = observed.kubeadm_config
    return next_release.against_delta(NAME, lambda delta: kubeadm_config(config, delta=delta))(observed)


CHECK = checking.Check(name=NAME, needs=frozenset({"delta", "kubeadm-config"}), judge=judge)

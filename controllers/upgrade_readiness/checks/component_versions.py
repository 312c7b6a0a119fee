"""component-versions: the etcd, CoreDNS and pause versions kubeadm of the target installs where they change
(information: what the upgrade brings, with the etcd its static pods run)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controllers.agreement import version
from controllers.release_delta import model
from controllers.structs import checking
from controllers.upgrade_readiness.checks import interface, next_release

NAME = "component-versions"


def component_versions(
    delta: model.Delta, *, running: Mapping[model.Installed, str] | None = None
) -> interface.Judgement:
    """What kubeadm of the target installs by default where it changes (with what runs now, when known)."""
    running = running or {}
    findings = []
    target = next_release.target_text(delta)
    for change in delta.versions:
        now = f" (the cluster runs {running[change.name]})" if running.get(change.name) else ""
        message = (
            f"kubeadm {target} installs {change.name} {change.after}, {delta.source.minor} installed "
            f"{change.before}{now}"
        )
        findings.append(interface.Finding(NAME, change.name, message, "info"))
    return interface.Judgement(NAME, tuple(findings))


def running_etcd(pods: Iterable[interface.StaticPod]) -> dict[model.Installed, str]:
    """The etcd the static pods run (their ``etcd`` containers' image tags; several when they differ)."""
    tags = sorted({version.image_tag(p.images["etcd"]) for p in pods if p.images.get("etcd")} - {""})
    return {"etcd": ", ".join(tags)} if tags else {}


def judge(observed: interface.Evidence) -> interface.Judgement:
    running = running_etcd(observed.static_pods)
    return next_release.against_delta(NAME, lambda delta: component_versions(delta, running=running))(
        observed
    )


CHECK = checking.Check(name=NAME, needs=frozenset({"delta", "static-pods"}), judge=judge)

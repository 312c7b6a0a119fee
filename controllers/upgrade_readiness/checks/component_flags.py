"""component-flags: flags the control-plane components are given (their static pods' command lines,
kubeadm's extraArgs) that the target removes (blocker: the component refuses to start) or deprecates
(warning)."""

from __future__ import annotations

from collections.abc import Iterable

from controllers.release_delta import model
from controllers.structs import checking
from controllers.upgrade_readiness.checks import component_settings, interface, next_release

NAME = "component-flags"


def component_flags(
    settings: Iterable[component_settings.Settings], *, delta: model.Delta
) -> interface.Judgement:
    """Flags the cluster sets that the target removes (blocker) or deprecates (warning)."""
    settings = tuple(settings)
    findings = []
    target = next_release.target_text(delta)
    for where in settings:
        if where.component == "kubeadm":
            continue
        for flag in dict.fromkeys(where.flags):
            subject = f"{where.where}: --{flag}"
            if delta.removed_flag(where.component, flag) is not None:
                message = (
                    f"{target} removes --{flag}: {where.component} would refuse to start; remove it first"
                )
                findings.append(interface.Finding(NAME, subject, message))
                continue
            deprecated = next(
                (f for f in delta.flags_deprecated if f.component == where.component and f.matches(flag)),
                None,
            )
            if deprecated is not None:
                note = f": {deprecated.message}" if deprecated.message else ""
                findings.append(
                    interface.Finding(NAME, subject, f"{target} deprecates --{flag}{note}", "warning")
                )
    return interface.Judgement(NAME, tuple(findings), next_release.problems(settings))


def judge(observed: interface.Evidence) -> interface.Judgement:
    shown = next_release.configured(observed)
    return next_release.against_delta(NAME, lambda delta: component_flags(shown, delta=delta))(observed)


CHECK = checking.Check(name=NAME, needs=frozenset({"delta", "static-pods", "kubeadm-config"}), judge=judge)

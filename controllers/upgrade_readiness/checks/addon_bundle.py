"""addon-bundle: the bundle addon-updater would choose for the target exists and passes its validation."""

from __future__ import annotations

from controllers.structs import checking
from controllers.upgrade_readiness.checks import interface


def addon_bundle(probe: interface.BundleProbe) -> interface.Judgement:
    if not probe.chosen:
        message = f"no bundle for {probe.minor} in {probe.source}: addon-updater would change nothing"
        return interface.Judgement(
            "addon-bundle", (interface.Finding("addon-bundle", f"bundle {probe.minor}", message),)
        )
    if probe.problem:
        message = f"the bundle {probe.chosen} from {probe.source} is invalid: {probe.problem}"
        return interface.Judgement(
            "addon-bundle", (interface.Finding("addon-bundle", f"bundle {probe.chosen}", message),)
        )
    return interface.Judgement("addon-bundle")


def judge(observed: interface.Evidence) -> interface.Judgement:
    if isinstance(observed.bundle, str):
        return interface.Judgement("addon-bundle", unknown=observed.bundle)
    return addon_bundle(observed.bundle)


CHECK = checking.Check(name="addon-bundle", needs=frozenset({"bundle"}), judge=judge)

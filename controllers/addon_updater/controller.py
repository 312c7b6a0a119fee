"""addon-updater's sync: once all masters agree on a minor, bring the add-on bundle to that minor's bundle.

One round (``reconcile``): gather the facts (the bundles there are, the one that fits, the variables, what
the state and the target show), let ``logic.decide`` choose, then act on its decision: report a missing or
invalid bundle, refresh the health of the current one, or switch the target (the apply target validates
every object with a server-side dry-run first). Any validation failure changes nothing; the reason goes to
the log, an Event on the state ConfigMap, the state and a metric.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import pathlib
import time
from collections.abc import Mapping
from typing import Any, Literal

from controllers.addon_updater import logic
from controllers.addon_updater import metrics as metrics_module
from controllers.addon_updater.effects import admission, apply_target, directory
from controllers.agreement import version as version_module
from controllers.bundles import model, policy
from controllers.bundles import source as bundle_source
from controllers.kube import discovery
from controllers.runtime import config, context, reconciler
from controllers.structs import redact, status, times

log = logging.getLogger(__name__)

# How often the workloads of a bundle just applied are looked at until they are available or time out.
HEALTH_POLL_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class AddonUpdaterConfig(config.BaseConfig):
    bundle_source: Literal["directory", "configmap"] = config.option(
        "directory",
        "Where bundles come from: a directory tree <bundleDir>/<major.minor>/*.yaml, or ConfigMaps labelled "
        f"{model.CONFIGMAP_MINOR_LABEL}=<major.minor>.",
    )
    bundle_dir: str = config.option(
        "/bundles", "Root of the bundle tree (directory source): one <major.minor> directory per bundle."
    )
    bundle_namespace: str = config.option(
        "",
        "Namespace of the bundle ConfigMaps (configmap source) and of the variables ConfigMap: one that only "
        "admins may write (never --namespace, where the suite's ServiceAccounts create ConfigMaps); required "
        "with either.",
    )
    selection: Literal["exact", "nearestLower"] = config.option(
        "exact",
        "Which bundle fits the agreed minor: exactly that minor, or else the closest lower one (nearestLower).",
    )
    target: Literal["apply", "directory"] = config.option(
        "apply",
        "apply: server-side apply to the cluster and prune; directory: switch the addon directory that "
        "kube-addon-manager reads.",
    )
    target_dir: str = config.option(
        "/etc/kubernetes/addons",
        "The addon directory (directory target): a symlink, switched atomically to a sibling generation "
        "directory.",
    )
    variables: tuple[str, ...] = config.option(
        [],
        "Variables NAME=VALUE substituted for ${NAME} in the bundle (they override the variables ConfigMap).",
        check=model.variable_problem,
    )
    variables_config_map: str = config.option(
        "", "ConfigMap in --bundle-namespace whose keys are variables for the bundle; empty: none."
    )
    allowed_resources: tuple[str, ...] = config.option(
        list(policy.DEFAULT_RESOURCES),
        "The bundle policy: the kinds a bundle may contain, as plural.group (plural alone for the core group), "
        "e.g. deployments.apps. A bundle with any other kind is refused whole.",
        check=policy.resources_problem,
    )
    allowed_namespaces: tuple[str, ...] = config.option(
        [policy.ANY_NAMESPACE],
        "The bundle policy: the namespaces a bundle's objects may be in and the Namespaces it may create; * "
        "any but the suite's own: --namespace only when named here (and never its objects), --bundle-namespace "
        "never.",
        check=policy.namespaces_problem,
    )
    allow_privileged_rbac: bool = config.option(
        False,
        "Let bundles hold (Cluster)Roles that grant * (verbs, resources, groups, URLs), escalate, bind or "
        "impersonate or aggregate roles, and bindings to them or to cluster-admin; off: such a bundle is refused "
        "whole.",
    )
    field_manager: str = config.option("addon-updater", "Field manager name of server-side apply.")
    default_namespace: str = config.option(
        "default", "Namespace of namespaced bundle objects that name none (apply target)."
    )
    prune: bool = config.option(
        True,
        "Delete the objects the suite created (its inventory) that left the bundle (apply target); an object "
        f"that existed before its first apply is adopted and never deleted, nor one annotated "
        f"{logic.PRUNE_ANNOTATION}=disabled.",
    )
    prune_max_fraction: float = config.option(
        0.5,
        "Prune nothing when a switch would delete more than this fraction of the objects the suite created "
        "(an empty bundle never prunes); 1: no limit.",
        check=config.fraction,
    )
    crd_timeout_seconds: float = config.option(
        60.0, "How long to wait for the bundle's CRDs to be Established.", check=config.positive
    )
    health_timeout_seconds: float = config.option(
        300.0,
        "How long the bundle's Deployments and DaemonSets may take to become available after a switch before "
        "it is reported unhealthy (followed without blocking: other changes are handled meanwhile).",
        check=config.non_negative,
    )
    resync_seconds: float = config.option(
        300.0,
        "Re-check the bundle this often (a changed bundle is applied again, health is refreshed); 0: only "
        "on agreement changes.",
        check=config.non_negative,
    )

    def __post_init__(self) -> None:
        bundle_source.check_namespace(self)

    @property
    def rules(self) -> policy.Policy:
        """The bundle policy."""
        return policy.Policy(
            resources=frozenset(self.allowed_resources),
            namespaces=frozenset(self.allowed_namespaces),
            allow_privileged_rbac=self.allow_privileged_rbac,
            release=self.release,
            release_namespace=self.namespace,
            bundle_namespace=self.bundle_namespace,
        )


RoundResult = Literal["switched", "current", "missing", "invalid", "failed", "planned", "no-agreement"]


@dataclasses.dataclass(frozen=True)
class SwitchRound:
    """What one round did (``/status``, ``--once``, the daemon's log)."""

    result: RoundResult
    message: str
    minor: str = ""
    digest: str = ""
    applied: tuple[model.ObjectKey, ...] = ()
    pruned: tuple[model.ObjectKey, ...] = ()
    unavailable: dict[model.ObjectKey, str] = dataclasses.field(default_factory=dict)
    health: str = ""  # of an applied bundle: Healthy, Progressing or Unhealthy

    @property
    def ok(self) -> bool:
        return self.result in ("switched", "current", "planned")

    def summary(self) -> dict[str, object]:
        return {
            "result": self.result,
            "message": self.message,
            "minor": self.minor,
            "digest": self.digest,
            "applied": [str(k) for k in self.applied],
            "pruned": [str(k) for k in self.pruned],
            "unavailable": {str(k): v for k, v in self.unavailable.items()},
            "health": self.health,
        }

    def to_status(self) -> status.Status:
        """The common status over this round: its phase as the state ConfigMap names it, the message as the
        reason (and as the last error when the round could not switch), the round's own keys."""
        failed = self.result in ("missing", "invalid", "failed")
        return status.Status(
            phase=ROUND_PHASES[self.result],
            version=self.minor,
            reason=self.message,
            last_error=self.message if failed else "",
            detail=self.summary(),
        )


# The state ConfigMap's phase of each round's result ("" where the round records none).
ROUND_PHASES: dict[RoundResult, str] = {
    "switched": "Done", "current": "Done", "missing": "BundleMissing", "invalid": "Invalid", "failed": "Failed",
    "planned": "Planned", "no-agreement": "",
}  # fmt: skip


class AddonUpdater(reconciler.Reconciler[AddonUpdaterConfig]):
    name = "addon-updater"
    description = (
        "Switch the cluster's add-on bundle to the one made for the Kubernetes minor all masters agree on: "
        "validated first, never half-applied, reversible."
    )
    config_type = AddonUpdaterConfig

    def __init__(self, ctx: context.Context[AddonUpdaterConfig]) -> None:
        super().__init__(ctx)
        self.cfg = ctx.config
        self.metrics = metrics_module.Metrics(ctx.exporter)
        self.source = bundle_source.Source(
            kube=ctx.kube,
            kind=self.cfg.bundle_source,
            directory=self.cfg.bundle_dir,
            namespace=self.cfg.bundle_namespace,
        )
        self.last: SwitchRound | None = None
        self.lock = asyncio.Lock()

    def wakes(self) -> reconciler.Wakes:
        """The agreement, and every resync period (a changed bundle is applied, health refreshed)."""
        return reconciler.Wakes(agreement=True, every=self.cfg.resync_seconds or None)

    def status(self) -> dict[str, Any]:
        """The common status over the last round (``result``, ``message``, ``minor``, ``digest``, …)."""
        if self.last is None:
            return status.Status(
                reason="no round yet", detail={"result": "none", "message": "no round yet"}
            ).to_json()
        return self.last.to_status().to_json()

    async def sync(self) -> reconciler.Synced:
        agreement = self.ctx.agreements.current
        if agreement is None:
            self.last = SwitchRound("no-agreement", reconciler.no_agreement(self.ctx))
            return reconciler.Synced(ok=False)
        previous = self.last
        outcome = await self.reconcile(agreement.version)
        gist = (outcome.result, outcome.minor, outcome.digest)
        if previous is None or gist != (previous.result, previous.minor, previous.digest):
            log.info("agreed %s: %s", agreement.version, outcome.message)
        # While the workloads come up, look again soon (a sync never waits for them).
        again = HEALTH_POLL_SECONDS if outcome.health == "Progressing" else None
        return reconciler.Synced(ok=outcome.ok, again_in=again)

    async def reconcile(self, agreed: version_module.Version) -> SwitchRound:
        """Bring the target to the bundle of the agreed version's minor (one round). A bad bundle is a
        SwitchRound; a failure to act (the apiserver, the bundle source, the file system) is raised: the
        skeleton reports it (:meth:`failed`) and tries again with backoff."""
        async with self.lock:
            self.last = await self._reconcile(agreed)
            return self.last

    async def _reconcile(self, agreed: version_module.Version) -> SwitchRound:
        cfg = self.cfg
        state = await self.ctx.read_state()
        minor = model.select_bundle(
            wanted=agreed.minor_key, available=await self.source.minors(), selection=cfg.selection
        )
        bundle: model.Bundle | model.BundleError | None = None
        if minor is not None:
            try:
                bundle = await self.source.load(minor)
            except model.BundleError as error:
                bundle = error
        variables = await bundle_source.variables(
            self.ctx.kube,
            configured=model.parse_variables(cfg.variables),
            configmap=cfg.variables_config_map,
            namespace=cfg.bundle_namespace,
        )
        generation = None
        if cfg.target == "directory":
            generation = await asyncio.to_thread(directory.current_generation, pathlib.Path(cfg.target_dir))
        decision = logic.decide(
            bundle=bundle,
            minor=minor or "",
            variables=variables,
            recorded=logic.Recorded.of(state.data),
            version=agreed.raw,
            target=cfg.target,
            generation=generation,
        )
        if decision.action == "missing":
            return await self._missing(agreed)
        self.metrics.observe_missing(False)
        assert decision.bundle is not None
        if decision.action == "known-invalid":
            return SwitchRound(
                "invalid", state.get("lastError"), minor=decision.bundle.minor, digest=decision.digest
            )
        if decision.action == "invalid":
            assert decision.error is not None
            return await self._invalid(agreed, decision, decision.error)
        if decision.action == "current":
            return await self._current(agreed, decision)
        try:
            if cfg.target == "directory":
                return await self._switch_directory(agreed, decision)
            return await self._switch_apply(agreed, decision)
        except model.BundleError as error:  # the apiserver rejected an object in its dry-run
            return await self._invalid(agreed, decision, error)

    # --- outcomes ----------------------------------------------------------------------------------------

    async def _missing(self, agreed: version_module.Version) -> SwitchRound:
        self.metrics.observe_missing(True)
        message = (
            f"no bundle for {agreed.minor_text} (selection {self.cfg.selection}) in {self._source_text()}; "
            "nothing changed"
        )
        current = await self.ctx.read_state()
        if current.get("phase") != "BundleMissing" or current.get("version") != agreed.raw:
            log.warning("%s", message)
            await self._event("BundleMissing", message, warning=True)
            await self.ctx.update_state(
                current,
                {"version": agreed.raw, "phase": "BundleMissing", "progress": "", "lastError": message},
            )
        return SwitchRound("missing", message)

    async def _invalid(
        self, agreed: version_module.Version, decision: logic.SwitchDecision, error: model.BundleError
    ) -> SwitchRound:
        assert decision.bundle is not None
        minor, source = decision.bundle.minor, decision.bundle.source or self._source_text()
        message = f"bundle {minor} from {source} is invalid ({error.reason}): {error}; nothing changed"
        log.error("%s", message)
        self.metrics.observe_invalid(error.reason)
        await self._event("BundleInvalid", message, warning=True)
        await self.ctx.record(
            {
                "version": agreed.raw,
                "phase": "Invalid",
                "lastError": message,
                "failedDigest": decision.digest,
                "progress": "",
            }
        )
        return SwitchRound("invalid", message, minor=minor, digest=decision.digest)

    async def failed(self, error: Exception) -> None:
        """A round that could not act: its metric, a Warning Event and the state Failed (the skeleton has
        logged it and tries again with backoff)."""
        message = f"switch failed: {redact.describe(error)}"
        self.last = SwitchRound("failed", message)
        self.metrics.observe_failed()
        await self._event("SwitchFailed", f"{message}; trying again with backoff", warning=True)
        agreement = self.ctx.agreements.current
        version = {"version": agreement.version.raw} if agreement else {}
        await self.ctx.record({**version, "phase": "Failed", "lastError": message})

    async def _current(self, agreed: version_module.Version, decision: logic.SwitchDecision) -> SwitchRound:
        """The bundle is in place: refresh its health (one look, no waiting) and the metrics."""
        assert decision.bundle is not None
        minor = decision.bundle.minor
        self.metrics.observe_active(minor=minor, digest=decision.digest)
        unavailable: dict[model.ObjectKey, str] = {}
        health = ""
        if self.cfg.target == "apply":
            wanted = logic.workload_keys(decision.manifests, default_namespace=self.cfg.default_namespace)
            unavailable = await apply_target.wait_available(
                self.ctx.kube, wanted, release=self.cfg.release, seconds=0.0
            )
            health = await self._health(unavailable, workloads=len(wanted), minor=minor)
        current = await self.ctx.read_state()
        if current.get("version") != agreed.raw:
            await self.ctx.update_state(current, {"version": agreed.raw})
        return SwitchRound(
            "current",
            f"bundle {minor} is already in place",
            minor=minor,
            digest=decision.digest,
            unavailable=unavailable,
            health=health,
        )

    async def _switch_directory(
        self, agreed: version_module.Version, decision: logic.SwitchDecision
    ) -> SwitchRound:
        bundle, files, manifests = decision.bundle, decision.files, decision.manifests
        assert bundle is not None
        target = pathlib.Path(self.cfg.target_dir)
        await admission.admit(  # what kube-addon-manager will apply is judged by the same policy
            self.ctx.kube,
            manifests,
            served=await discovery.discover(self.ctx.kube),
            rules=self.cfg.rules,
            default_namespace=self.cfg.default_namespace,
            minor=bundle.minor,
            digest=decision.digest,
        )
        if self.cfg.dry_run:
            message = f"dry-run: would switch {target} to bundle {bundle.minor} ({len(files)} files, {len(manifests)} objects)"
            log.info("%s", message)
            return SwitchRound("planned", message, minor=bundle.minor, digest=decision.digest)
        await self.ctx.record(
            {"version": agreed.raw, "phase": "Switching", "progress": f"writing {len(files)} files"}
        )
        generation = await asyncio.to_thread(
            directory.install, target, files=files, minor=bundle.minor, digest=decision.digest
        )
        message = (
            f"switched {target} to bundle {bundle.minor} from {bundle.source} "
            f"({len(files)} files, {len(manifests)} objects, {generation})"
        )
        return await self._switched(agreed, decision, message, applied=len(manifests), pruned=0)

    async def _switch_apply(
        self, agreed: version_module.Version, decision: logic.SwitchDecision
    ) -> SwitchRound:
        cfg, bundle = self.cfg, decision.bundle
        assert bundle is not None
        settings = apply_target.ApplySettings(
            release=cfg.release,
            field_manager=cfg.field_manager,
            default_namespace=cfg.default_namespace,
            prune=cfg.prune,
            prune_max_fraction=cfg.prune_max_fraction,
            crd_timeout_seconds=cfg.crd_timeout_seconds,
            rules=cfg.rules,
        )
        inventory = logic.parse_inventory((await self.ctx.read_state()).get("inventory"))
        await self.ctx.record({"version": agreed.raw, "phase": "Switching", "progress": "validating"})
        progress: list[str] = []
        result = await apply_target.switch(
            self.ctx.kube,
            decision.manifests,
            settings=settings,
            minor=bundle.minor,
            digest=decision.digest,
            inventory=inventory,
            dry_run_only=cfg.dry_run,
            progress=progress.append,
        )
        skipped = f"; {result.prune_skipped}" if result.prune_skipped else ""
        if cfg.dry_run:
            message = (
                f"dry-run: bundle {bundle.minor} passes validation; would apply {len(result.applied)} and prune "
                f"{len(result.pruned)} object(s): {', '.join(map(str, result.pruned)) or 'none'}{skipped}"
            )
            log.info("%s", message)
            return SwitchRound(
                "planned",
                message,
                minor=bundle.minor,
                digest=decision.digest,
                applied=result.applied,
                pruned=result.pruned,
            )
        pruned = f"; pruned {', '.join(map(str, result.pruned))}" if result.pruned else ""
        kept = "".join(f"; kept {key} ({why})" for key, why in sorted(result.kept.items()))
        message = (
            f"switched to bundle {bundle.minor} from {bundle.source}: applied {len(result.applied)} object(s)"
            f"{pruned}{kept}{skipped}"
        )
        if result.prune_skipped:
            log.warning("bundle %s: %s", bundle.minor, result.prune_skipped)
        outcome = await self._switched(
            agreed,
            decision,
            message,
            applied=len(result.applied),
            pruned=len(result.pruned),
            recorded={"inventory": logic.inventory_text(result.inventory)},
        )
        await self.ctx.record({"health": "Progressing", "switchedAt": times.micro_time()})
        health = await self._health(result.unavailable, workloads=result.workloads, minor=bundle.minor)
        return dataclasses.replace(
            outcome,
            applied=result.applied,
            pruned=result.pruned,
            unavailable=dict(result.unavailable),
            health=health,
        )

    async def _switched(
        self,
        agreed: version_module.Version,
        decision: logic.SwitchDecision,
        message: str,
        *,
        applied: int,
        pruned: int,
        recorded: Mapping[str, str] | None = None,
    ) -> SwitchRound:
        bundle = decision.bundle
        assert bundle is not None
        log.info("%s", message)
        self.metrics.observe_switched(applied=applied, pruned=pruned)
        self.metrics.observe_active(minor=bundle.minor, digest=decision.digest)
        await self._event("BundleSwitched", message)
        await self.ctx.record(
            {
                "version": agreed.raw,
                "phase": "Done",
                "progress": "",
                "lastError": "",
                "failedDigest": "",
                "bundleMinor": bundle.minor,
                "bundleDigest": decision.digest,
                "bundleSource": bundle.source,
                "target": self.cfg.target,
                **(recorded or {}),
            }
        )
        return SwitchRound("switched", message, minor=bundle.minor, digest=decision.digest)

    # --- health ------------------------------------------------------------------------------------------

    async def _health(self, problems: Mapping[model.ObjectKey, str], *, workloads: int, minor: str) -> str:
        """Judge the applied bundle's health now against the time of its switch; record it, and say it in an
        Event when it settled on something new. Returns it."""
        self.metrics.observe_health(unavailable=len(problems))
        current = await self.ctx.read_state()
        switched_at = times.parse_time(current.get("switchedAt"))
        waited = time.time() - switched_at if switched_at is not None else math.inf
        timeout = self.cfg.health_timeout_seconds
        health = logic.health(unavailable=len(problems), waited=waited, timeout=timeout)
        if not logic.health_settled(recorded=current.get("health"), now=health):
            return health
        if health == "Healthy":
            if workloads:
                await self._event("BundleHealthy", f"bundle {minor}: all {workloads} workload(s) available")
        else:
            shown = "; ".join(f"{key}: {why}" for key, why in sorted(problems.items()))
            await self._event(
                "BundleUnhealthy",
                f"bundle {minor}: {len(problems)} of {workloads} workload(s) not available after "
                f"{timeout:.0f} s: {shown}",
                warning=True,
            )
        await self.ctx.update_state(current, {"health": health})
        return health

    async def _event(self, reason: str, note: str, *, warning: bool = False) -> None:
        await self.ctx.event(reason, note, action="SwitchBundle", warning=warning)

    def _source_text(self) -> str:
        if self.cfg.bundle_source == "directory":
            return f"directory {self.cfg.bundle_dir}"
        return f"ConfigMaps in {self.cfg.bundle_namespace}"

"""addon-updater: once all masters agree on a minor, switch the add-on bundle to that minor's bundle.

One round (``reconcile``): pick the bundle → substitute variables → validate every document → (apply
target) dry-run every object on the apiserver → switch the target → record the result. Any validation
failure changes nothing; the reason goes to the log, an Event on the state ConfigMap, the state and a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import pathlib
from collections.abc import AsyncIterator, Mapping
from typing import Literal

from controllers.addon_updater import apply_target, bundles, directory, logic
from controllers.addon_updater import metrics as metrics_module
from controllers.agreement import masters
from controllers.agreement import version as version_module
from controllers.kube.client import ApiError
from controllers.runtime import app, config
from controllers.structs import refs

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AddonConfig(config.BaseConfig):
    bundle_source: Literal["directory", "configmap"] = config.option(
        "directory",
        "Where bundles come from: a directory tree <bundleDir>/<major.minor>/*.yaml, or ConfigMaps labelled "
        f"{logic.CONFIGMAP_MINOR_LABEL}=<major.minor>.",
    )
    bundle_dir: str = config.option(
        "/bundles", "Root of the bundle tree (directory source): one <major.minor> directory per bundle."
    )
    bundle_namespace: str = config.option(
        "", "Namespace of the bundle ConfigMaps (configmap source); empty: --namespace."
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
        check=logic.variable_problem,
    )
    variables_config_map: str = config.option(
        "", "ConfigMap in --namespace whose keys are variables for the bundle; empty: none."
    )
    field_manager: str = config.option("addon-updater", "Field manager name of server-side apply.")
    default_namespace: str = config.option(
        "default", "Namespace of namespaced bundle objects that name none (apply target)."
    )
    prune: bool = config.option(
        True, f"Delete objects labelled {logic.BUNDLE_LABEL}=<release> that left the bundle (apply target)."
    )
    crd_timeout_seconds: float = config.option(
        60.0, "How long to wait for the bundle's CRDs to be Established.", check=config.positive
    )
    health_timeout_seconds: float = config.option(
        300.0,
        "How long to wait for the bundle's Deployments and DaemonSets to become available before reporting "
        "it unhealthy.",
        check=config.non_negative,
    )
    resync_seconds: float = config.option(
        300.0,
        "Re-check the bundle this often (a changed bundle is applied again, health is refreshed); 0: only "
        "on agreement changes.",
        check=config.non_negative,
    )


Result = Literal["switched", "current", "missing", "invalid", "failed", "planned"]


@dataclasses.dataclass(frozen=True)
class Outcome:
    result: Result
    message: str
    minor: str = ""
    digest: str = ""
    applied: tuple[logic.ObjectKey, ...] = ()
    pruned: tuple[logic.ObjectKey, ...] = ()
    unavailable: dict[logic.ObjectKey, str] = dataclasses.field(default_factory=dict)

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
        }


class Updater:
    """The effects of one controller process (its Context, metrics and bundle source)."""

    def __init__(self, ctx: app.Context[AddonConfig]) -> None:
        self.ctx = ctx
        self.cfg = ctx.config
        self.metrics = metrics_module.Metrics(ctx.exporter)
        self.source = bundles.Source(
            kube=ctx.kube,
            kind=self.cfg.bundle_source,
            directory=self.cfg.bundle_dir,
            namespace=self.cfg.bundle_namespace or self.cfg.namespace,
        )
        self.last: Outcome | None = None
        self.lock = asyncio.Lock()
        ctx.routes["/status"] = self.status

    def status(self) -> dict[str, object]:
        return {"lastOutcome": self.last.summary() if self.last else None}

    async def reconcile(self, agreed: version_module.Version) -> Outcome:
        """Bring the target to the bundle of the agreed version's minor (one round; never raises for a bad
        bundle or an apiserver error: the Outcome says what happened)."""
        async with self.lock:
            try:
                outcome = await self._reconcile(agreed)
            except (ApiError, bundles.SourceError, apply_target.SwitchError, OSError) as error:
                outcome = await self._failed(agreed, f"switch failed: {error}")
            except Exception as error:  # odd input must not end the daemon; the traceback shows the bug
                log.exception("unexpected error while switching to the bundle of %s", agreed)
                outcome = await self._failed(
                    agreed, f"switch failed: unexpected {type(error).__name__}: {error}"
                )
            self.last = outcome
            return outcome

    async def _reconcile(self, agreed: version_module.Version) -> Outcome:
        cfg = self.cfg
        state = await self.ctx.read_state()
        minor = self._choose(await self.source.minors(), agreed)
        if minor is None:
            return await self._missing(agreed)
        self.metrics.observe_missing(False)
        try:
            bundle = await self.source.load(minor)
        except logic.BundleError as error:
            unreadable = logic.Bundle(minor=minor, source=self._source_text(), files=())
            return await self._invalid(agreed, unreadable, error, digest="")
        variables = await bundles.variables(
            self.ctx.kube,
            configured=logic.parse_variables(cfg.variables),
            configmap=cfg.variables_config_map,
            namespace=cfg.namespace,
        )
        digest = logic.bundle_digest(bundle, variables=variables)
        action = logic.decide(
            recorded=logic.Recorded.of(state.data),
            version=agreed.raw,
            minor=minor,
            digest=digest,
            target_matches=self._target_matches(minor, digest),
        )
        if action == "known-invalid":
            return Outcome("invalid", state.get("lastError"), minor=minor, digest=digest)
        try:
            files = logic.render(bundle, variables=variables)
            manifests = logic.parse_documents(files)
            if action == "current":
                return await self._current(agreed, manifests, minor=minor, digest=digest)
            if cfg.target == "directory":
                return await self._switch_directory(agreed, bundle, files, manifests, digest=digest)
            return await self._switch_apply(agreed, bundle, manifests, digest=digest)
        except logic.BundleError as error:
            return await self._invalid(agreed, bundle, error, digest=digest)

    def _choose(self, available: list[str], agreed: version_module.Version) -> str | None:
        return logic.select_bundle(wanted=agreed.minor_key, available=available, policy=self.cfg.selection)

    def _target_matches(self, minor: str, digest: str) -> bool:
        if self.cfg.target != "directory":
            return True
        return directory.current_generation(pathlib.Path(self.cfg.target_dir)) == logic.generation_name(
            minor=minor, digest=digest
        )

    # --- outcomes ----------------------------------------------------------------------------------------

    async def _missing(self, agreed: version_module.Version) -> Outcome:
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
        return Outcome("missing", message)

    async def _invalid(
        self, agreed: version_module.Version, bundle: logic.Bundle, error: logic.BundleError, *, digest: str
    ) -> Outcome:
        message = f"bundle {bundle.minor} from {bundle.source} is invalid ({error.reason}): {error}; nothing changed"
        log.error("%s", message)
        self.metrics.observe_invalid(error.reason)
        await self._event("BundleInvalid", message, warning=True)
        await self._record(
            {
                "version": agreed.raw,
                "phase": "Invalid",
                "lastError": message,
                "failedDigest": digest,
                "progress": "",
            }
        )
        return Outcome("invalid", message, minor=bundle.minor, digest=digest)

    async def _failed(self, agreed: version_module.Version, message: str) -> Outcome:
        log.error("%s", message)
        self.metrics.observe_failed()
        await self._event("SwitchFailed", message, warning=True)
        try:
            await self._record({"version": agreed.raw, "phase": "Failed", "lastError": message})
        except ApiError as error:  # the apiserver may be what failed; the next round records it
            log.warning("could not record the failure in the state ConfigMap: %s", error)
        return Outcome("failed", message)

    async def _current(
        self,
        agreed: version_module.Version,
        manifests: tuple[logic.Manifest, ...],
        *,
        minor: str,
        digest: str,
    ) -> Outcome:
        """The bundle is in place: refresh the metrics (health at a glance, no waiting)."""
        self.metrics.observe_active(minor=minor, digest=digest)
        unavailable: dict[logic.ObjectKey, str] = {}
        if self.cfg.target == "apply":
            wanted = logic.workload_keys(manifests, default_namespace=self.cfg.default_namespace)
            unavailable = await apply_target.wait_available(
                self.ctx.kube, wanted, release=self.cfg.release, seconds=0.0
            )
            self.metrics.observe_health(unavailable=len(unavailable))
        current = await self.ctx.read_state()
        if current.get("version") != agreed.raw:
            await self.ctx.update_state(current, {"version": agreed.raw})
        return Outcome(
            "current",
            f"bundle {minor} is already in place",
            minor=minor,
            digest=digest,
            unavailable=unavailable,
        )

    async def _switch_directory(
        self,
        agreed: version_module.Version,
        bundle: logic.Bundle,
        files: tuple[logic.BundleFile, ...],
        manifests: tuple[logic.Manifest, ...],
        *,
        digest: str,
    ) -> Outcome:
        target = pathlib.Path(self.cfg.target_dir)
        if self.cfg.dry_run:
            message = f"dry-run: would switch {target} to bundle {bundle.minor} ({len(files)} files, {len(manifests)} objects)"
            log.info("%s", message)
            return Outcome("planned", message, minor=bundle.minor, digest=digest)
        await self._record(
            {"version": agreed.raw, "phase": "Switching", "progress": f"writing {len(files)} files"}
        )
        generation = await asyncio.to_thread(
            directory.install, target, files=files, minor=bundle.minor, digest=digest
        )
        message = (
            f"switched {target} to bundle {bundle.minor} from {bundle.source} "
            f"({len(files)} files, {len(manifests)} objects, {generation})"
        )
        return await self._switched(agreed, bundle, message, digest=digest, applied=len(manifests), pruned=0)

    async def _switch_apply(
        self,
        agreed: version_module.Version,
        bundle: logic.Bundle,
        manifests: tuple[logic.Manifest, ...],
        *,
        digest: str,
    ) -> Outcome:
        cfg = self.cfg
        settings = apply_target.Settings(
            release=cfg.release,
            field_manager=cfg.field_manager,
            default_namespace=cfg.default_namespace,
            prune=cfg.prune,
            crd_timeout_seconds=cfg.crd_timeout_seconds,
            health_timeout_seconds=cfg.health_timeout_seconds,
        )
        if not cfg.dry_run:
            await self._record({"version": agreed.raw, "phase": "Switching", "progress": "validating"})
        progress: list[str] = []
        result = await apply_target.switch(
            self.ctx.kube,
            manifests,
            settings=settings,
            minor=bundle.minor,
            digest=digest,
            dry_run_only=cfg.dry_run,
            progress=progress.append,
        )
        if cfg.dry_run:
            message = (
                f"dry-run: bundle {bundle.minor} passes validation; would apply {len(result.applied)} and prune "
                f"{len(result.pruned)} object(s): {', '.join(map(str, result.pruned)) or 'none'}"
            )
            log.info("%s", message)
            return Outcome(
                "planned",
                message,
                minor=bundle.minor,
                digest=digest,
                applied=result.applied,
                pruned=result.pruned,
            )
        pruned = f"; pruned {', '.join(map(str, result.pruned))}" if result.pruned else ""
        message = (
            f"switched to bundle {bundle.minor} from {bundle.source}: applied {len(result.applied)} object(s)"
            f"{pruned}"
        )
        outcome = await self._switched(
            agreed, bundle, message, digest=digest, applied=len(result.applied), pruned=len(result.pruned)
        )
        self.metrics.observe_health(unavailable=len(result.unavailable))
        await self._health_event(result.unavailable, workloads=result.workloads, minor=bundle.minor)
        await self._record({"health": "Unhealthy" if result.unavailable else "Healthy"})
        return dataclasses.replace(
            outcome, applied=result.applied, pruned=result.pruned, unavailable=dict(result.unavailable)
        )

    async def _switched(
        self,
        agreed: version_module.Version,
        bundle: logic.Bundle,
        message: str,
        *,
        digest: str,
        applied: int,
        pruned: int,
    ) -> Outcome:
        log.info("%s", message)
        self.metrics.observe_switched(applied=applied, pruned=pruned)
        self.metrics.observe_active(minor=bundle.minor, digest=digest)
        await self._event("BundleSwitched", message)
        await self._record(
            {
                "version": agreed.raw,
                "phase": "Done",
                "progress": "",
                "lastError": "",
                "failedDigest": "",
                "bundleMinor": bundle.minor,
                "bundleDigest": digest,
                "bundleSource": bundle.source,
                "target": self.cfg.target,
            }
        )
        return Outcome("switched", message, minor=bundle.minor, digest=digest)

    # --- health ------------------------------------------------------------------------------------------

    async def _health_event(
        self, problems: Mapping[logic.ObjectKey, str], *, workloads: int, minor: str
    ) -> None:
        if not problems:
            if workloads:
                await self._event("BundleHealthy", f"bundle {minor}: all {workloads} workload(s) available")
            return
        shown = "; ".join(f"{key}: {why}" for key, why in sorted(problems.items()))
        timeout = self.cfg.health_timeout_seconds
        await self._event(
            "BundleUnhealthy",
            f"bundle {minor}: {len(problems)} of {workloads} workload(s) not available after {timeout:.0f} s: {shown}",
            warning=True,
        )

    # --- state and Events --------------------------------------------------------------------------------

    async def _record(self, changes: dict[str, str]) -> None:
        await self.ctx.update_state(await self.ctx.read_state(), changes)

    async def _event(self, reason: str, note: str, *, warning: bool = False) -> None:
        """An Event on the state ConfigMap (never fails: Events are best effort)."""
        uid = ""
        if self.ctx.recorder.enabled:
            with contextlib.suppress(ApiError):
                uid = (await self.ctx.read_state()).uid or ""
        ref = refs.ObjectRef(
            kind="ConfigMap", name=self.ctx.state_name, namespace=self.cfg.namespace, uid=uid
        )
        await self.ctx.recorder.emit(
            ref, reason=reason, note=note, type="Warning" if warning else "Normal", action="SwitchBundle"
        )

    def _source_text(self) -> str:
        if self.cfg.bundle_source == "directory":
            return f"directory {self.cfg.bundle_dir}"
        return f"ConfigMaps in {self.cfg.bundle_namespace or self.cfg.namespace}"


async def _agreements_or_resync(
    ctx: app.Context[AddonConfig],
) -> AsyncIterator[tuple[version_module.Version, bool]]:
    """Each new agreement, and every resync period the agreement in force (flagged as a resync)."""
    changes = ctx.agreements.changes()
    period = ctx.config.resync_seconds or None
    # One pending read survives the resync timeouts: cancelling it would end the changes generator.
    pending: asyncio.Future[masters.Agreement] | None = None
    while True:
        pending = pending or asyncio.ensure_future(anext(changes))
        done, _ = await asyncio.wait({pending}, timeout=period)
        if not done:
            if ctx.agreements.current is not None:
                yield ctx.agreements.current.version, True
            continue
        agreement, pending = pending.result(), None
        yield agreement.version, False


class AddonUpdater:
    name = "addon-updater"
    description = (
        "Switch the cluster's add-on bundle to the one made for the Kubernetes minor all masters agree on: "
        "validated first, never half-applied, reversible."
    )
    config_type = AddonConfig

    async def run(self, ctx: app.Context[AddonConfig]) -> None:
        updater = Updater(ctx)
        ctx.health.ready, ctx.health.reason = True, "waiting for the masters to agree"
        async for agreed, resync in _agreements_or_resync(ctx):
            outcome = await updater.reconcile(agreed)
            if not resync or outcome.result not in ("current", "invalid"):
                log.info("agreed %s: %s", agreed, outcome.message)

    async def once(self, ctx: app.Context[AddonConfig]) -> int:
        observation = await ctx.agreements.now()
        if not observation.agreed or observation.version is None:
            log.error("masters do not agree: %s", observation.reason)
            print(json.dumps({"result": "no-agreement", "message": observation.reason}))
            return app.EXIT_FAILED
        outcome = await Updater(ctx).reconcile(observation.version)
        print(json.dumps(outcome.summary(), indent=2))
        return app.EXIT_OK if outcome.ok else app.EXIT_FAILED

"""uso-runner on the shared runtime: on an agreed-version change, migrate what changed, checkpointing as it goes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any, Literal

from controllers.agreement.version import Version
from controllers.kube import discovery
from controllers.kube import state as state_module
from controllers.kube.client import ApiError
from controllers.runtime import config, context, reconciler
from controllers.structs import refs
from controllers.uso_runner import logic
from controllers.uso_runner import metrics as metrics_module
from controllers.uso_runner.effects import builtin as builtin_module
from controllers.uso_runner.effects import crds as crds_module
from controllers.uso_runner.effects import migrate

log = logging.getLogger(__name__)
NAME = "uso-runner"
INSTANCE_LABEL = "app.kubernetes.io/instance"


def _resource_names(values: tuple[str, ...]) -> str | None:
    bad = [v for v in values if not v or " " in v or v.startswith(".")]
    return f"not resource names (plural or plural.group): {bad}" if bad else None


@dataclasses.dataclass(frozen=True)
class UsoRunnerConfig(config.BaseConfig):
    trigger: Literal["minor", "any"] = config.option(
        "minor", "Which agreed-version changes start a run: a new minor (default) or any change."
    )
    all_resources: bool = config.option(
        False, "Migrate every stored resource, not only those whose storageVersionHash changed."
    )
    resources: tuple[str, ...] = config.option(
        [],
        "Only these resources (plural.group, e.g. configmaps,widgets.example.com); empty: all.",
        check=_resource_names,
    )
    skip_resources: tuple[str, ...] = config.option(
        list(logic.DEFAULT_SKIP), "Resources never migrated (plural.group).", check=_resource_names
    )
    workers: int = config.option(
        16, "Object writes in flight at once, across all resources.", check=config.positive
    )
    resource_workers: int = config.option(4, "Resources migrated at the same time.", check=config.positive)
    qps: float = config.option(
        200.0, "Client-side limit of object writes per second (0: no limit).", check=config.non_negative
    )
    page_size: int = config.option(500, "Objects per list page.", check=config.positive)
    max_retries: int = config.option(
        5,
        "Retries of a failing write or list (backoff 0.2 s doubling, max 5 s); then the resource fails.",
        check=config.non_negative,
    )
    retry_seconds: float = config.option(
        300.0, "After a run with failed resources, run again after this long.", check=config.positive
    )
    use_builtin: bool = config.option(
        False,
        "Hand each resource to kube-controller-manager's built-in migrator (a StorageVersionMigration of "
        "storagemigration.k8s.io) instead of rewriting its objects; rewrites them itself when that API is "
        "not served.",
    )
    builtin_timeout_seconds: float = config.option(
        3600.0,
        "With --use-builtin: how long one StorageVersionMigration may take before its resource fails.",
        check=config.positive,
    )


Ctx = context.Context[UsoRunnerConfig]


@dataclasses.dataclass
class Report:
    action: str
    reason: str
    target: str = ""
    results: list[logic.ResourceResult] = dataclasses.field(default_factory=list)
    unchanged: list[str] = dataclasses.field(default_factory=list)
    already_done: list[str] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    stored_versions: dict[str, str] = dataclasses.field(default_factory=dict)
    method: str = "rewrite"
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "target": self.target,
            "method": self.method,
            "ok": self.ok,
            "objectsMigrated": sum(r.migrated for r in self.results),
            "resources": {r.group_resource: r.as_json() for r in self.results},
            "failedResources": [r.group_resource for r in self.results if not r.ok],
            "unchanged": self.unchanged,
            "alreadyDone": self.already_done,
            "skipped": [{"resource": name, "why": why} for name, why in self.skipped],
            "storedVersions": self.stored_versions,
            "durationSeconds": round(self.duration_seconds, 3),
        }


class UsoRunner(reconciler.Reconciler[UsoRunnerConfig]):
    name = NAME
    description = (
        "Rewrite stored objects whose storage version changed, once all masters agree on a new version."
    )
    config_type = UsoRunnerConfig

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.metrics = metrics_module.Metrics(ctx.exporter)
        self.last: dict[str, Any] = {"action": "none", "reason": "no run yet"}

    def wakes(self) -> reconciler.Wakes:
        # A run of many objects takes as long as it takes inside sync; its progress shows in the state and
        # the metrics, so liveness does not bound it.
        return reconciler.Wakes(agreement=True, sync_seconds=None)

    def status(self) -> dict[str, Any]:
        """The last run's report (or why there was none)."""
        return self.last

    async def sync(self) -> reconciler.Synced:
        """Run (or resume) a migration for the agreement in force when due; a failed run is tried again
        after ``retrySeconds``."""
        agreement = self.ctx.agreements.current
        if agreement is None:
            self.last = {"action": "none", "reason": reconciler.no_agreement(self.ctx)}
            return reconciler.Synced(ok=False)
        try:
            report = await self.reconcile(agreement.version, follow_agreement=not self.ctx.config.once)
        except ApiError as error:
            log.error("migration run failed: %s %s", error.status, error.reason)
            self.last = {"action": "none", "reason": f"migration run failed: {error.status} {error.reason}"}
            return reconciler.Synced(ok=False, again_in=self.ctx.config.retry_seconds)
        self.last = report.as_json()
        return reconciler.Synced(ok=report.ok, again_in=None if report.ok else self.ctx.config.retry_seconds)

    async def reconcile(self, agreed: Version, *, follow_agreement: bool = False) -> Report:
        """Decide against the checkpoint; run (or resume) a migration when due. ``follow_agreement`` (the
        daemon, whose agreement feed is live): write only while the masters still agree on ``agreed``."""
        ctx, cfg, metrics = self.ctx, self.ctx.config, self.metrics
        current = await ctx.read_state()
        checkpoint = logic.read_checkpoint(current.data)
        decision = logic.decide(checkpoint=checkpoint, agreed=agreed, mode=cfg.trigger)
        log.info("masters agree on %s: %s", agreed, decision.reason)
        if decision.action == "none":
            return Report(action="none", reason=decision.reason, target=agreed.raw)
        if decision.action == "start":
            checkpoint = logic.start_run(checkpoint, target=agreed.raw)
        served, aggregated = await asyncio.gather(
            discovery.discover(ctx.kube), discovery.aggregated(ctx.kube)
        )
        discovered = served.at_preferred_versions()
        plan = logic.plan(
            discovered=discovered,
            aggregated=aggregated,
            checkpoint=checkpoint,
            skip=cfg.skip_resources,
            only=cfg.resources,
            all_resources=cfg.all_resources,
        )
        report = Report(
            action=decision.action,
            reason=decision.reason,
            target=checkpoint.run_target,
            unchanged=[r.group_resource for r in plan.unchanged],
            already_done=[r.group_resource for r in plan.done],
            skipped=list(plan.skipped),
        )
        run = _Run(
            ctx=ctx,
            metrics=metrics,
            checkpoint=checkpoint,
            state=current,
            plan=plan,
            report=report,
            guarded=agreed if follow_agreement else None,
        )
        run.method = await self._method(run, discovered)
        report.method = run.method.name
        await run.execute()
        return report

    async def _method(
        self, run: _Run, discovered: tuple[discovery.ApiResource, ...]
    ) -> migrate.Migrator | builtin_module.Builtin:
        """How this run migrates, chosen once: rewriting every object itself, or (``--use-builtin``, when
        storagemigration.k8s.io is served) one StorageVersionMigration per resource."""
        cfg = self.ctx.config
        version = logic.builtin_version(discovered) if cfg.use_builtin else None
        if version is not None:
            labels = {
                state_module.PART_OF_LABEL: state_module.PART_OF,
                state_module.CONTROLLER_LABEL: NAME,
                INSTANCE_LABEL: cfg.release,
            }
            return builtin_module.Builtin(
                kube=self.ctx.kube,
                metrics=self.metrics,
                version=version,
                release=cfg.release,
                labels=labels,
                timeout=cfg.builtin_timeout_seconds,
                dry_run=cfg.dry_run,
            )
        if cfg.use_builtin:
            why = (
                f"--use-builtin: {logic.SVM_RESOURCE}.{logic.SVM_GROUP} is not served (kube-apiserver needs "
                f"--runtime-config={logic.SVM_GROUP}/v1beta1=true and the StorageVersionMigrator feature "
                "gate); rewriting the objects instead"
            )
            log.warning("%s", why)
            await self.ctx.event("BuiltinMigrationUnavailable", why, action="Migrate", warning=True)
        return migrate.Migrator(
            kube=self.ctx.kube,
            metrics=self.metrics,
            workers=cfg.workers,
            page_size=cfg.page_size,
            max_retries=cfg.max_retries,
            qps=cfg.qps,
            dry_run=cfg.dry_run,
            gate=run.gate if run.guarded else None,
        )


@dataclasses.dataclass
class _Run:
    """One migration run: the plan's resources, the checkpoint written after each, the CRDs' storedVersions."""

    ctx: Ctx
    metrics: metrics_module.Metrics
    checkpoint: logic.Checkpoint
    state: state_module.State
    plan: logic.Plan
    report: Report
    guarded: Version | None = None  # the daemon's agreed version: writes pause while masters disagree
    method: migrate.Migrator | builtin_module.Builtin | None = None

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()
        self._gate_lock = asyncio.Lock()
        self._done = 0
        self._failed = 0

    def _progress(self) -> str:
        total = len(self.plan.migrate)
        return f"{self._done}/{total} resources ({len(self.plan.done)} done before a restart, {self._failed} failed)"

    async def execute(self) -> None:
        cfg, method = self.ctx.config, self.method
        assert method is not None
        started = time.monotonic()
        pending = [r.group_resource for r in self.plan.migrate]
        log.info(
            "run for %s: %d resource(s) to migrate (%s), %d unchanged, %d already done, %d skipped%s",
            self.checkpoint.run_target,
            len(pending),
            method.name,
            len(self.plan.unchanged),
            len(self.plan.done),
            len(self.plan.skipped),
            " (dry run: nothing written)" if cfg.dry_run else "",
        )
        self.metrics.observe_run_started()
        self.metrics.observe_resources(pending=len(pending), done=0, failed=0)
        await self._save({"phase": "Running", "progress": self._progress(), "lastError": ""})
        note = f"migrating {len(pending)} resource(s) for {self.checkpoint.run_target}"
        await self.ctx.event("MigrationStarted", note, action="Migrate")
        crds = await crds_module.generations(self.ctx.kube, (r.group_resource for r in self.plan.migrate))
        slots = asyncio.Semaphore(cfg.resource_workers)

        async def one(res: logic.Discovered) -> None:
            assert isinstance(res, discovery.ApiResource) and method is not None
            async with slots:
                try:
                    await self.gate()
                    result = await method.migrate(res, target=self.checkpoint.run_target)
                except migrate.Stop as stop:
                    result = logic.ResourceResult(res.group_resource, error=f"stopped: {stop}")
                self.report.results.append(result)
                await self._finished(res, result, crds)

        await asyncio.gather(*(one(res) for res in self.plan.migrate))
        self.report.duration_seconds = time.monotonic() - started
        await self._conclude()

    async def _finished(
        self, res: discovery.ApiResource, result: logic.ResourceResult, crds: dict[str, int]
    ) -> None:
        log.info("%s: %s", res.group_resource, result.summary())
        if not result.ok:
            self._failed += 1
        elif not self.ctx.config.dry_run:
            if res.group_resource in crds:
                try:
                    await self._stored_versions(res.group_resource, crds[res.group_resource])
                except ApiError as error:
                    result.error = f"storedVersions: {error.status} {error.reason}"
                    self.report.stored_versions[res.group_resource] = f"failed: {error.status} {error.reason}"
            if result.ok:
                self._done += 1
            else:
                self._failed += 1
        async with self._lock:
            if result.ok and not self.ctx.config.dry_run:
                self.checkpoint = logic.finish_resource(
                    self.checkpoint, group_resource=res.group_resource, storage_hash=res.storage_version_hash
                )
            total = len(self.plan.migrate)
            self.metrics.observe_resources(
                pending=total - self._done - self._failed, done=self._done, failed=self._failed
            )
            await self._save({"progress": self._progress()})

    async def gate(self) -> None:
        """Before each write (and each resource) of a daemon's run: go on while the masters agree on the run's
        target; wait while they agree on nothing; stop when they settled on another trigger version."""
        if self.guarded is None or self._verdict() == "go":
            return
        async with self._gate_lock:  # one waiter reports the pause; the others queue behind it
            if self._verdict() == "pause":
                await self._pause()
            if self._verdict() == "superseded":
                current = self.ctx.agreements.current
                raise migrate.Stop(f"masters now agree on {current.version if current else '?'}")

    def _verdict(self) -> logic.Guard:
        assert self.guarded is not None
        current = self.ctx.agreements.current
        return logic.guard(
            current=current.version if current else None, target=self.guarded, mode=self.ctx.config.trigger
        )

    async def _pause(self) -> None:
        observation = self.ctx.agreements.observation
        why = observation.reason if observation is not None else "no observation"
        target = self.checkpoint.run_target
        log.warning("pausing the run for %s: the masters no longer agree on it (%s)", target, why)
        self.metrics.observe_paused(True)
        async with self._lock:
            await self._save({"phase": "Paused", "progress": self._progress()})
        note = f"no writes until the masters agree again on {target}: {why}"
        await self.ctx.event("MigrationPaused", note, action="Migrate", warning=True)
        await self.ctx.agreements.wait_until(lambda agreement: agreement is not None)
        self.metrics.observe_paused(False)
        if self._verdict() == "go":
            log.info("resuming the run for %s: the masters agree on it again", target)
            async with self._lock:
                await self._save({"phase": "Running", "progress": self._progress()})
            await self.ctx.event("MigrationResumed", f"the masters agree on {target} again", action="Migrate")

    async def _conclude(self) -> None:
        report, target, method = self.report, self.checkpoint.run_target, self.method
        assert method is not None
        end = logic.conclude(
            results=report.results, target=target, method=method.name, dry_run=self.ctx.config.dry_run
        )
        self.metrics.observe_run_finished(
            duration_seconds=report.duration_seconds, succeeded=end.phase == "Succeeded"
        )
        if not end.phase:
            log.info("%s", end.note)
            return
        async with self._lock:
            if end.phase == "Succeeded":
                self.checkpoint = logic.finish_run(self.checkpoint)
            await self._save({"phase": end.phase, "lastError": end.last_error, "progress": self._progress()})
        failed = end.phase == "Failed"
        await self.ctx.event(end.reason, end.note, action="Migrate", warning=failed)
        if failed:
            log.error("run for %s: %s", target, end.note)
            return
        try:
            for name in await method.tidy(target=target):
                log.info("deleted StorageVersionMigration %s of an earlier run", name)
        except ApiError as error:  # housekeeping: the run itself succeeded
            log.warning("deleting earlier StorageVersionMigrations failed: %s %s", error.status, error.reason)
        log.info("run for %s finished in %.1f s: %s", target, report.duration_seconds, end.note)

    async def _save(self, changes: dict[str, str]) -> None:
        self.state = await self.ctx.update_state(
            self.state, {**logic.checkpoint_data(self.checkpoint), **changes}
        )

    async def _stored_versions(self, name: str, generation: int) -> None:
        """Set the CRD's status.storedVersions to its storage version (skip when the CRD changed)."""
        trimmed = await crds_module.trim_stored_versions(self.ctx.kube, name, generation=generation)
        if trimmed is None:
            self.report.stored_versions[name] = "unchanged: kept conflicting"
            return
        crd, why, updated = trimmed
        self.report.stored_versions[name] = f"{'updated' if updated else 'unchanged'}: {why}"
        if updated or "generation changed" in why:  # else: already right, or nothing to say
            note = why if updated else f"storedVersions left alone: {why}"
            log.log(logging.INFO if updated else logging.WARNING, "%s: %s", name, note)
            await self.ctx.recorder.emit(
                refs.ObjectRef.of(crd),
                reason="StoredVersionsUpdated" if updated else "StoredVersionsSkipped",
                note=note,
                action="UpdateStoredVersions",
                type="Normal" if updated else "Warning",
            )

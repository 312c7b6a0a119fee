"""uso-runner on the shared runtime: on an agreed-version change, migrate what changed, checkpointing as it goes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any, Literal

from controllers.agreement.version import Version
from controllers.kube import discovery, retry
from controllers.kube import state as state_module
from controllers.kube.client import ApiError
from controllers.runtime import config, context, reconciler
from controllers.structs import refs, status
from controllers.uso_runner import logic
from controllers.uso_runner import metrics as metrics_module
from controllers.uso_runner.effects import builtin as builtin_module
from controllers.uso_runner.effects import crds as crds_module
from controllers.uso_runner.effects import migrate

log = logging.getLogger(__name__)
NAME = "uso-runner"
INSTANCE_LABEL = "app.kubernetes.io/instance"


def _budget(value: float) -> str | None:
    return (
        None if value == 0 or value > 1 else "must be 0 (off) or more than 1 (a multiple of the idle latency)"
    )


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
    latency_budget: float = config.option(
        1.5,
        "Self-pacing: object writes may take up to this many times their idle latency (learned before the "
        "run and every 30 s); the writes in flight (at most --workers) follow it. 0: off (--workers always).",
        check=_budget,
    )
    qps: float = config.option(
        0.0,
        "Client-side limit of object writes per second (0: none; the pacing decides).",
        check=config.non_negative,
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
    method: logic.MigrationMethod = config.option(  # noqa: RUF009 (a Literal, immutable, like trigger's)
        "rewrite",
        "How resources are migrated: rewrite (every object PUT back by uso-runner), builtin (one "
        "StorageVersionMigration per resource for kube-controller-manager's migrator; rewrite when "
        "storagemigration.k8s.io is not served), auto (the paced rewrite where uso-runner paces itself and may "
        "rewrite; otherwise StorageVersionMigrations when served, any that stalls rewritten by uso-runner "
        "instead, and rewrite when not served).",
    )
    use_builtin: bool = config.option(
        False, "Deprecated (removed in the next release): the same as --method=builtin."
    )
    rewrite_fallback: bool = config.option(
        True,
        "With --method=auto|builtin: rewrite a resource's objects itself when kube-controller-manager's "
        "migrator cannot (storagemigration.k8s.io not served; auto: its StorageVersionMigration stalled). That "
        "needs get/list/update on every resource (the chart grants it only with usoRunner.rewriteFallback). "
        "false: such a resource fails instead, loudly (log, Warning Event, "
        "uso_runner_rewrite_fallback_refused_total, the KubeUpgradeMigrationFailed alert).",
    )
    builtin_pickup_seconds: float = config.option(
        60.0,
        "With --method=auto|builtin: how long a StorageVersionMigration may wait for kube-controller-manager "
        "to pick it up (auto: then its resource is rewritten instead; builtin: it fails).",
        check=config.positive,
    )
    builtin_timeout_seconds: float = config.option(
        3600.0,
        "With --method=auto|builtin: how long one StorageVersionMigration may take (auto: then its resource "
        "is rewritten instead; builtin: it fails).",
        check=config.positive,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.use_builtin and self.method == "auto":
            raise config.ConfigError("--use-builtin (deprecated: --method=builtin) contradicts --method=auto")
        if not self.rewrite_fallback and self.migration_method == "rewrite":
            raise config.ConfigError(
                "--no-rewrite-fallback contradicts --method=rewrite (rewriting is the method)"
            )

    @property
    def migration_method(self) -> logic.MigrationMethod:
        """--method, or builtin for the deprecated --use-builtin."""
        return "builtin" if self.use_builtin else self.method


Ctx = context.Context[UsoRunnerConfig]


@dataclasses.dataclass
class RunReport:
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
    pacing: dict[str, float | int] | None = None  # the rewrite's pacer at the end (None: nothing rewritten)

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
            **({"pacing": self.pacing} if self.pacing is not None else {}),
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
        self.published = status.Status(reason="no run yet", detail={"action": "none"})
        # The run in progress, beside the loop (sync never waits), and the version it runs for.
        self._run: reconciler.Work[RunReport] | None = None
        self._run_for: Version | None = None
        if ctx.config.use_builtin:
            log.warning("--use-builtin is deprecated and goes away in the next release: use --method=builtin")

    def wakes(self) -> reconciler.Wakes:
        # A run is spawned beside the loop (sync never waits for it), so liveness bounds sync as usual.
        return reconciler.Wakes(agreement=True)

    async def sync(self) -> reconciler.Synced:
        """Start (or resume) a migration run for the agreement in force when due, as long work beside the
        loop (the skeleton's: it wakes the loop when it ends); a failed run is tried again after
        ``retrySeconds``. Errors propagate (the skeleton retries with backoff), a run's own when the sync
        after it collects its result."""
        if self._run is not None and self._run.running:
            return reconciler.Synced()  # the run reads the agreement itself (pause, stop)
        # A run cancelled with an earlier term of leadership is not collected: the checkpoint resumes it.
        if self._run is not None and not self._run.abandoned:
            run, ran_for, self._run, self._run_for = self._run, self._run_for, None, None
            report = run.result()  # raises the run's own failure: the skeleton retries with backoff
            await self._show(report.as_json(), phase="Succeeded" if report.ok else "Failed")
            current = self.ctx.agreements.current
            if current is not None and current.version == ran_for:
                return reconciler.Synced(
                    ok=report.ok, again_in=None if report.ok else self.ctx.config.retry_seconds
                )
            # The agreement moved on during the run (which then paused or stopped): act on it now.
        self._run = self._run_for = None
        agreement = self.ctx.agreements.current
        if agreement is None:
            await self._show({"action": "none", "reason": reconciler.no_agreement(self.ctx)}, phase="")
            return reconciler.Synced(ok=False)
        once = self.ctx.config.once
        prepared = await self.prepare(agreement.version, follow_agreement=not once)
        if isinstance(prepared, RunReport):
            await self._show(prepared.as_json(), phase="Idle")
            return reconciler.Synced()
        progress = {
            "action": prepared.report.action,
            "reason": "run in progress",
            "target": agreement.version.raw,
        }
        await self._show(progress, phase="Running")
        self._run, self._run_for = self.beside(prepared.execute()), agreement.version
        if not once:
            return reconciler.Synced()
        run, self._run, self._run_for = self._run, None, None
        report = await run.wait()  # --once: the process exits with the run's verdict (or what ended it)
        await self._show(report.as_json(), phase="Succeeded" if report.ok else "Failed")
        return reconciler.Synced(ok=report.ok)

    async def _show(self, report: dict[str, Any], *, phase: str) -> None:
        """``/status`` and ``--once``: the run's report under the common status (Idle: nothing was due;
        Running; Succeeded; Failed). Its state ConfigMap is the run's own: the checkpoint changes with it."""
        own = {key: value for key, value in report.items() if key != "reason"}
        shown = status.Status(
            phase=phase, version=report.get("target", ""), reason=report["reason"], detail=own
        )
        await self.publish(shown, record=False)

    async def reconcile(self, agreed: Version, *, follow_agreement: bool = False) -> RunReport:
        """Decide against the checkpoint; run (or resume) a migration when due, to its end (tests)."""
        prepared = await self.prepare(agreed, follow_agreement=follow_agreement)
        return prepared if isinstance(prepared, RunReport) else await prepared.execute()

    async def prepare(self, agreed: Version, *, follow_agreement: bool = False) -> RunReport | _Run:
        """Decide against the checkpoint: the report when nothing is due, else the run to execute.
        ``follow_agreement`` (the daemon, whose agreement feed is live): the run writes only while the
        masters still agree on ``agreed``."""
        ctx, cfg, metrics = self.ctx, self.ctx.config, self.metrics
        current = await ctx.read_state()
        checkpoint = logic.read_checkpoint(current.data)
        decision = logic.decide(checkpoint=checkpoint, agreed=agreed, mode=cfg.trigger)
        log.info("masters agree on %s: %s", agreed, decision.reason)
        if decision.action == "none":
            return RunReport(action="none", reason=decision.reason, target=agreed.raw)
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
        choice = logic.choose_method(
            asked=cfg.migration_method,
            discovered=discovered,
            rewrite_fallback=cfg.rewrite_fallback,
            paced=cfg.latency_budget > 0,
        )
        if choice.preferred:
            log.info("--method=%s: %s", cfg.migration_method, choice.preferred)
        report = RunReport(
            action=decision.action,
            reason=decision.reason,
            target=checkpoint.run_target,
            unchanged=[r.group_resource for r in plan.unchanged],
            already_done=[r.group_resource for r in plan.done],
            skipped=list(plan.skipped),
            method=choice.method,
        )
        if choice.unavailable:
            instead = (
                f"every resource fails: {choice.no_rewrite}"
                if choice.no_rewrite
                else "rewriting the objects instead"
            )
            why = f"--method={cfg.migration_method}: {choice.unavailable}; {instead}"
            log.warning("%s", why)
            await self.ctx.event("BuiltinMigrationUnavailable", why, action="Migrate", warning=True)
        return _Run(
            ctx=ctx,
            metrics=metrics,
            checkpoint=checkpoint,
            state=current,
            plan=plan,
            report=report,
            guarded=agreed if follow_agreement else None,
            choice=choice,
        )


@dataclasses.dataclass
class _Run:
    """One migration run: the plan's resources, the checkpoint written after each, the CRDs' storedVersions."""

    ctx: Ctx
    metrics: metrics_module.Metrics
    checkpoint: logic.Checkpoint
    state: state_module.State
    plan: logic.MigrationPlan
    report: RunReport
    choice: logic.MethodChoice
    guarded: Version | None = None  # the daemon's agreed version: writes pause while masters disagree

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()
        self._gate_lock = asyncio.Lock()
        self._done = 0
        self._failed = 0
        self._unanswered = ""  # auto: a StorageVersionMigration was never picked up (then rewrite the rest)
        cfg = self.ctx.config
        self.rewrite = migrate.Migrator(
            kube=self.ctx.kube,
            metrics=self.metrics,
            workers=cfg.workers,
            page_size=cfg.page_size,
            max_retries=cfg.max_retries,
            qps=cfg.qps,
            dry_run=cfg.dry_run,
            gate=self.gate if self.guarded else None,
            bookmarks=self,
            latency_budget=cfg.latency_budget,
            announce=self._backed_off,
        )
        self.migrator: migrate.Migrator | builtin_module.Builtin = self.rewrite
        if self.choice.method == "builtin":
            self.migrator = builtin_module.Builtin(
                kube=self.ctx.kube,
                metrics=self.metrics,
                version=self.choice.version,
                release=cfg.release,
                labels={
                    state_module.PART_OF_LABEL: state_module.PART_OF,
                    state_module.CONTROLLER_LABEL: NAME,
                    INSTANCE_LABEL: cfg.release,
                },
                timeout=cfg.builtin_timeout_seconds,
                pickup=cfg.builtin_pickup_seconds,
                withdraw=self.choice.fallback,
                dry_run=cfg.dry_run,
            )

    def _progress(self) -> str:
        total = len(self.plan.migrate)
        return f"{self._done}/{total} resources ({len(self.plan.done)} done before a restart, {self._failed} failed)"

    async def execute(self) -> RunReport:
        """Migrate every planned resource, checkpointing as it goes; the report."""
        cfg, migrator = self.ctx.config, self.migrator
        started = time.monotonic()
        pending = [r.group_resource for r in self.plan.migrate]
        log.info(
            "run for %s: %d resource(s) to migrate (%s), %d unchanged, %d already done, %d skipped%s",
            self.checkpoint.run_target,
            len(pending),
            migrator.name,
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
            assert isinstance(res, discovery.ApiResource)
            async with slots:
                try:
                    await self.gate()
                    result = await self._migrate(res)
                except migrate.Stop as stop:
                    result = logic.ResourceResult(res.group_resource, error=f"stopped: {stop}")
                self.report.results.append(result)
                await self._finished(res, result, crds)

        await asyncio.gather(*(one(res) for res in self.plan.migrate))
        self.report.duration_seconds = time.monotonic() - started
        if any(not r.delegated_to for r in self.report.results) and not cfg.dry_run:
            self.report.pacing = self.rewrite.pacing_report()
        await self._conclude()
        return self.report

    async def _migrate(self, res: discovery.ApiResource) -> logic.ResourceResult:
        """One resource by the run's method; in auto mode a StorageVersionMigration that stalled is replaced
        by rewriting, loudly (log, Warning Event, metric); once one was never picked up, the rest of the run
        rewrites without asking kube-controller-manager again."""
        target = self.checkpoint.run_target
        if self.choice.no_rewrite and self.choice.method == "rewrite":  # not served, and no fallback
            return await self._refuse(
                res, logic.ResourceResult(res.group_resource), why=self.choice.unavailable
            )
        if self._unanswered:
            return await self._fall_back(res, stalled=self._unanswered)
        result = await self.migrator.migrate(res, target=target)
        if self.choice.no_rewrite and result.delegated_to and result.stalled:
            return await self._refuse(res, result, why=result.error, reason=result.stalled)
        if not logic.falls_back(self.choice, result):
            return result
        if result.stalled == "not_picked_up":
            self._unanswered = f"{result.delegated_to} was never picked up"
        return await self._fall_back(res, stalled=f"{result.error}", reason=result.stalled)

    async def _refuse(
        self,
        res: discovery.ApiResource,
        result: logic.ResourceResult,
        *,
        why: str,
        reason: logic.Stall | Literal["not_served"] = "not_served",
    ) -> logic.ResourceResult:
        """What kube-controller-manager's migrator did not do is not rewritten either (no rewrite fallback):
        the resource fails, loudly (log, Warning Event, metric; KubeUpgradeMigrationFailed fires)."""
        note = f"{res.group_resource} not migrated: {why}; {self.choice.no_rewrite}"
        log.warning("%s", note)
        self.metrics.observe_fallback_refused(reason)
        await self.ctx.event("RewriteFallbackDisabled", note[:1024], action="Migrate", warning=True)
        result.error = note
        return result

    async def _backed_off(self, note: str) -> None:
        """The pacer backed off hard (at most once a minute): an Event says so."""
        await self.ctx.event("MigrationBackedOff", note, action="Migrate")

    async def _fall_back(
        self, res: discovery.ApiResource, *, stalled: str, reason: logic.Stall = "not_picked_up"
    ) -> logic.ResourceResult:
        why = f"rewriting {res.group_resource} instead of waiting for kube-controller-manager: {stalled}"
        log.warning("%s", why)
        self.metrics.observe_fallback(reason)
        await self.ctx.event("BuiltinMigrationFallback", why, action="Migrate", warning=True)
        result = await self.rewrite.migrate(res, target=self.checkpoint.run_target)
        result.fallback_from = stalled
        return result

    async def _finished(
        self, res: discovery.ApiResource, result: logic.ResourceResult, crds: dict[str, int]
    ) -> None:
        log.info("%s: %s", res.group_resource, result.summary())
        if not result.ok:
            self._failed += 1
        elif not self.ctx.config.dry_run:
            if result.delegated_to:  # kube-controller-manager's migrator sets a CRD's storedVersions itself
                if res.group_resource in crds:
                    self.report.stored_versions[res.group_resource] = "left to kube-controller-manager"
            elif res.group_resource in crds:
                try:
                    await self._stored_versions(res.group_resource, crds[res.group_resource])
                except (
                    ApiError
                ) as error:  # refused (403, 422...): the resource fails; transient errors propagate
                    if retry.classify(error) in retry.TRANSIENT:
                        raise
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

    def start(self, group_resource: str) -> str:
        """Where this run's list of ``group_resource`` starts: its bookmark from an earlier term, or the top."""
        return self.checkpoint.run_continue.get(group_resource, "")

    async def reached(self, group_resource: str, token: str) -> None:
        """Every object of ``group_resource`` listed before ``token`` is rewritten: save the bookmark."""
        async with self._lock:
            self.checkpoint = logic.bookmark(self.checkpoint, group_resource=group_resource, token=token)
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
        report, target, migrator = self.report, self.checkpoint.run_target, self.migrator
        end = logic.conclude(results=report.results, target=target, dry_run=self.ctx.config.dry_run)
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
            for name in await migrator.tidy(target=target):
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
        crd, update = trimmed
        updated = update.stored is not None
        self.report.stored_versions[name] = f"{'updated' if updated else 'unchanged'}: {update.note}"
        if updated or update.warn:  # else: already right, or nothing to say
            note = update.note if updated else f"storedVersions left alone: {update.note}"
            log.log(logging.INFO if updated else logging.WARNING, "%s: %s", name, note)
            await self.ctx.recorder.emit(
                refs.ObjectRef.of(crd),
                reason="StoredVersionsUpdated" if updated else "StoredVersionsSkipped",
                note=note,
                action="UpdateStoredVersions",
                type="Normal" if updated else "Warning",
            )

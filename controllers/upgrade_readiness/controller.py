"""upgrade-readiness's sync: judge the cluster against the next minor, report, never change anything.

Woken by changes of what the enabled checks watch (Nodes, CRDs, PodDisruptionBudgets, Pods, the static pods'
mirror pods and kubeadm's ConfigMaps in kube-system, PrometheusRules), by the masters, and every evaluation
interval (when it also reads every live apiserver's /metrics). Each round builds every check's verdict from
the stores, the reads and the release delta of the target, lets ``logic.evaluate`` judge, and reports:
metrics, ``/status``, the state ConfigMap (``Upgradeable``, reasons) and an Event on it for every check whose
status changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from controllers.agreement import version
from controllers.bundles import model, source
from controllers.kube import resources, state, watch
from controllers.kube.client import Kube
from controllers.release_delta import catalog
from controllers.release_delta import model as delta_model
from controllers.runtime import config, context, reconciler
from controllers.structs import status
from controllers.upgrade_readiness import checks, effects, logic
from controllers.upgrade_readiness import metrics as metrics_module
from controllers.upgrade_readiness.checks import component_settings, interface, removed_apis

log = logging.getLogger(__name__)

NAME = "upgrade-readiness"
DESCRIPTION = (
    "Judge, continuously and read-only, whether the cluster is ready for the next Kubernetes minor (the "
    "masters' minor + 1): removed APIs still requested, kubelets outside the skew policy, CRDs storing an "
    "unserved version, PodDisruptionBudgets that would block the drains, the next add-on bundle, and from "
    "the target's release delta: feature gates and flags the components are given that it removes, the "
    "kubeadm configuration's API version, alert rules on metrics it no longer exports, the etcd and CoreDNS "
    "it installs. Reports Upgradeable with reasons (metrics, /status, its state ConfigMap, Events); admins "
    "acknowledge a check for one target minor, until a time, in a ConfigMap (shown, never hidden)."
)
# Node and Pod changes come in bursts at scale; one evaluation of 5,000 nodes is cheap but not free.
PACE_SECONDS = 2.0
# Judge again this long after an acknowledgement's expiry (a timer that fires a little early finds it active).
ACK_EXPIRY_MARGIN = 0.2


def _data(configmap: dict[str, Any]) -> dict[str, object]:
    """A ConfigMap's ``data`` (every key: logic.judge_acks reads them), whatever shape it arrived in."""
    data = configmap.get("data")
    return {str(key): value for key, value in data.items()} if isinstance(data, dict) else {}


def _config_map(name: str, parse: Callable[[dict[str, Any]], Any]) -> watch.Store[Any]:
    """One of kubeadm's ConfigMaps in kube-system, watched by name (RBAC: that name only)."""
    stream = watch.Stream(
        resources.CONFIGMAPS, namespace=component_settings.NAMESPACE, field_selector=f"metadata.name={name}"
    )
    return watch.Store(stream, parse)


def _camel(state: str) -> str:
    return "".join(part.capitalize() for part in state.split("-"))


def _target_problem(text: str) -> str | None:
    return None if not text or logic.parse_target(text) else "is not a minor such as v1.37"


@dataclasses.dataclass(frozen=True)
class UpgradeReadinessConfig(config.BaseConfig):
    target_version: str = config.option(
        "", "Judge against this minor (v1.37) instead of the masters' minor + 1.", check=_target_problem
    )
    checks: tuple[str, ...] = config.option(
        list(checks.TABLE.names), "The checks to run.", check=checks.TABLE.problem
    )
    strict: bool = config.option(False, "Count a check that cannot be evaluated (unknown) as a blocker.")
    deprecated_api_window_seconds: float = config.option(
        86400.0,
        "A removed API counts as in use while its request counter went up within this window.",
        check=config.positive,
    )
    evaluate_interval_seconds: float = config.option(
        60.0, "Read the apiservers' /metrics and evaluate at least this often.", check=config.positive
    )
    acknowledgements_config_map: str = config.option(
        "",
        "ConfigMap in --namespace of the acknowledgements, one key per target minor and check, e.g. "
        'ack-1.38-drain-blockers: \'{"until": "2026-12-01T00:00:00Z", "reason": "why"}\' '
        "(docs/upgrade-readiness.md); empty: <release>-upgrade-readiness-acks.",
    )
    bundle_source: Literal["none", "directory", "configmap"] = config.option(
        "none",
        "addon-updater's bundle source, for the addon-bundle check; none: addon-updater is not used (the "
        "check is skipped).",
    )
    bundle_dir: str = config.option("/bundles", "Root of the bundle tree (directory source).")
    bundle_namespace: str = config.option(
        "",
        "addon-updater's bundle namespace: of the bundle ConfigMaps (configmap source) and the variables "
        "ConfigMap; required with either, never --namespace.",
    )
    bundle_selection: Literal["exact", "nearestLower"] = config.option(
        "exact", "Which bundle fits a minor, as addon-updater's selection: exact or nearestLower."
    )
    variables: tuple[str, ...] = config.option(
        [], "addon-updater's variables NAME=VALUE for the bundle.", check=model.variable_problem
    )
    variables_config_map: str = config.option(
        "", "addon-updater's variables ConfigMap in --bundle-namespace; empty: none."
    )

    def __post_init__(self) -> None:
        source.check_namespace(self)

    @property
    def enabled_checks(self) -> tuple[str, ...]:
        """The checks to run, in the table's order (addon-bundle only where addon-updater is used)."""
        skipped = {"addon-bundle"} if self.bundle_source == "none" else set()
        return tuple(c.name for c in checks.TABLE.enabled(self.checks) if c.name not in skipped)

    @property
    def override(self) -> version.Version | None:
        return logic.parse_target(self.target_version) if self.target_version else None

    @property
    def acknowledgements_name(self) -> str:
        return self.acknowledgements_config_map or f"{self.release}-{NAME}-acks"

    @property
    def verdict_name(self) -> str:
        """The ConfigMap of the verdict that admission policies read (docs/upgrade-gate.md)."""
        return f"{self.release}-{NAME}-verdict"

    def acknowledge_command(self, target: str) -> str:
        """The command that acknowledges a blocker for ``target`` in this release."""
        return (
            f"kube-upgrade-controllers readiness ack --target v{target} --until <RFC 3339> "
            f"[--checks a,b] --reason <why> -n {self.namespace} --release {self.release}"
        )


class UpgradeReadiness(reconciler.Reconciler[UpgradeReadinessConfig]):
    name = NAME
    description = DESCRIPTION
    config_type = UpgradeReadinessConfig
    event_action = "Evaluate"

    def __init__(
        self, ctx: context.Context[UpgradeReadinessConfig], *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(ctx)
        self.wall_clock = wall_clock  # acknowledgements expire at a wall-clock time (RFC 3339)
        cfg = ctx.config
        self.cfg = cfg
        self.metrics = metrics_module.Metrics(ctx.exporter)
        masters = cfg.master_selector_list
        self.nodes = watch.Store(
            watch.Stream(resources.NODES), lambda obj: interface.node_view(obj, selectors=masters)
        )
        self.crds = watch.Store(watch.Stream(resources.CRDS), interface.crd_view)
        self.pdbs = watch.Store(watch.Stream(resources.POD_DISRUPTION_BUDGETS), interface.pdb_view)
        self.pods = watch.Store(watch.Stream(resources.PODS), interface.pod_view)
        cs = component_settings
        self.static_pods = watch.Store(
            watch.Stream(resources.PODS, namespace=cs.NAMESPACE), interface.static_pod_view
        )
        self.config_maps = {
            "kubeadm-config": _config_map(
                cs.KUBEADM_CONFIG_MAP,
                lambda obj: cs.cluster_configuration(cs.config_map_text(obj, cs.KUBEADM_CONFIG_KEY)),
            ),
            "kubelet-config": _config_map(
                cs.KUBELET_CONFIG_MAP,
                lambda obj: cs.kubelet_settings(cs.config_map_text(obj, cs.KUBELET_CONFIG_KEY)),
            ),
            "kube-proxy-config": _config_map(
                cs.KUBE_PROXY_CONFIG_MAP,
                lambda obj: cs.kube_proxy_settings(cs.config_map_text(obj, cs.KUBE_PROXY_CONFIG_KEY)),
            ),
        }
        # Where the Prometheus Operator's CRD is served (optional: none is not an error).
        self.prometheus_rules = watch.Store(
            watch.Stream(resources.PROMETHEUS_RULES, optional=True), interface.prometheus_rules
        )
        # The one acknowledgements ConfigMap, watched by name (RBAC: list/watch on that name only).
        by_name = f"metadata.name={cfg.acknowledgements_name}"
        self.ack_source = watch.Store(
            watch.Stream(resources.CONFIGMAPS, namespace=cfg.namespace, field_selector=by_name), _data
        )
        self.bundles = source.Source(
            kube=ctx.kube,
            kind=cfg.bundle_source,
            directory=cfg.bundle_dir,
            namespace=cfg.bundle_namespace,
        )
        self.needs = checks.TABLE.needs(cfg.enabled_checks)
        self.samples: list[interface.ApiserverMetrics] = []
        self.usage: dict[tuple[str, interface.Gvr], interface.Usage] = {}
        self.scraped_at: float | None = None
        self.report: logic.Report | None = None
        self.delta_used: logic.DeltaUsed | None = None
        self.acks: tuple[logic.Ack, ...] = ()
        self.published = status.Status(detail={"synced": False})
        self._verdict: dict[str, str] = {}

    def wakes(self) -> reconciler.Wakes:
        """Nodes (the target comes from the masters) and the acknowledgements always; the rest as the enabled
        checks need."""
        stores: list[watch.Store[Any]] = [self.nodes, self.ack_source]
        stores += [store for key, store in self._stores().items() if key in self.needs and key != "nodes"]
        return reconciler.Wakes(
            stores=tuple(stores), agreement=True, every=self.cfg.evaluate_interval_seconds, pace=PACE_SECONDS
        )

    async def sync(self) -> reconciler.Synced:
        now = asyncio.get_running_loop().time()
        before = self.acks
        report = await self.evaluate(now=now)
        self.report = report
        self.metrics.observe_report(report)
        self.metrics.observe_acks(self.acks)
        await self._report_acks(before)
        await self._report(report)
        await self._publish_verdict(report)
        again = self.cfg.evaluate_interval_seconds - (now - (self.scraped_at or now))
        # An acknowledgement that expires changes the verdict by itself: judge again right after.
        expiry = logic.next_ack_expiry(self.acks, now=self.wall_clock())
        if expiry is not None:
            again = min(again, expiry + ACK_EXPIRY_MARGIN)
        return reconciler.Synced(ok=report.upgradeable, again_in=max(again, 0.0))

    async def evaluate(self, *, now: float) -> logic.Report:
        """One judgement: every enabled check's verdict against the target, acknowledgements applied."""
        cfg = self.cfg
        observation = self.ctx.agreements.observation
        statuses = observation.masters if observation else ()
        target = logic.choose_target(statuses, override=cfg.override)
        names = cfg.enabled_checks
        data = next(iter(self.ack_source.items.values()), {})
        self.acks = logic.judge_acks(data, target=target.version, now=self.wall_clock())
        if target.version is None:
            verdicts = logic.unknown_all(names, f"no target version: {target.reason}")
            self.delta_used = None
        else:
            observed = await self._observe(target=target.version, now=now)
            verdicts = [check.judge(observed) for check in checks.TABLE.enabled(names)]
        return logic.evaluate(
            target,
            verdicts,
            acknowledged=logic.waived_checks(self.acks),
            strict=cfg.strict,
            delta=self.delta_used,
        )

    def _stores(self) -> dict[str, watch.Store[Any]]:
        return {
            "nodes": self.nodes,
            "crds": self.crds,
            "pdbs": self.pdbs,
            "pods": self.pods,
            "static-pods": self.static_pods,
            "prometheus-rules": self.prometheus_rules,
            **self.config_maps,
        }

    def _delta(self, *, target: version.Version) -> delta_model.Delta | str:
        """The shipped release delta from the masters' (oldest) minor to the target, or why there is none."""
        observation = self.ctx.agreements.observation
        span = logic.delta_span(observation.masters if observation else (), target=target)
        if isinstance(span, str):
            return span
        try:
            return catalog.delta(*span)
        except delta_model.DeltaError as error:
            return f"no release delta from {span[0]} to {span[1]}: {error}"

    async def _observe(self, *, target: version.Version, now: float) -> interface.Evidence:
        """What the enabled checks need: their stores, each apiserver's /metrics (read again every evaluation
        interval), the next bundle."""
        cfg, kube, needs = self.cfg, self.ctx.kube, self.needs
        if "metrics" in needs and (
            self.scraped_at is None or now - self.scraped_at >= cfg.evaluate_interval_seconds
        ):
            self.samples = await effects.scrape_all(kube)
            self.usage = removed_apis.update_usage(self.usage, self.samples, now=now)
            self.scraped_at = now
            self.metrics.observe_scrapes(self.samples)
        bundle: interface.BundleProbe | str = ""
        if "bundle" in needs:
            bundle = await effects.probe_bundle(
                kube,
                self.bundles,
                target=target,
                selection=cfg.bundle_selection,
                variables=model.parse_variables(cfg.variables),
                variables_config_map=cfg.variables_config_map,
                namespace=cfg.bundle_namespace,
            )
        delta = self._delta(target=target) if "delta" in needs else ""
        self.delta_used = (
            logic.DeltaUsed(delta.source.version, delta.target.version, delta.prerelease)
            if isinstance(delta, delta_model.Delta)
            else None
        )
        held = {key: list(store.items.values()) for key, store in self._stores().items() if key in needs}

        def one(key: str) -> Any:
            return next(iter(held.get(key, ())), None)

        return interface.Evidence(
            target=target,
            now=now,
            nodes=held.get("nodes", []),
            crds=held.get("crds", []),
            pdbs=held.get("pdbs", []),
            pods=held.get("pods", []),
            samples=self.samples,
            usage=self.usage,
            deprecated_api_window_seconds=cfg.deprecated_api_window_seconds,
            bundle=bundle,
            delta=delta,
            static_pods=held.get("static-pods", []),
            kubeadm_config=one("kubeadm-config"),
            kubelet_config=one("kubelet-config"),
            kube_proxy_config=one("kube-proxy-config"),
            rules=[rule for rules in held.get("prometheus-rules", []) for rule in rules],
        )

    async def _report_acks(self, before: tuple[logic.Ack, ...]) -> None:
        """Each acknowledgement that is new or changed state: logged, and an Event (a Warning when it waives
        nothing: expired, for another minor, an unknown check, malformed or the unscoped old key)."""
        for gone in sorted({ack.key for ack in before} - {ack.key for ack in self.acks}):
            log.info("acknowledgement %s removed", gone)
            await self.ctx.event(
                "AcknowledgementRemoved", f"acknowledgement {gone} removed", action="Evaluate"
            )
        for ack in self.acks:
            if ack in before:
                continue
            active = ack.state == logic.ACK_WAIVES
            log.log(
                logging.INFO if active or ack.state == "other-target" else logging.WARNING, "%s", ack.note
            )
            await self.ctx.event(
                "AcknowledgementActive" if active else f"Acknowledgement{_camel(ack.state)}",
                ack.note[:1024],
                action="Evaluate",
                warning=not active and ack.state != "other-target",
            )

    async def _report(self, report: logic.Report) -> None:
        """The status (its state ConfigMap, and an Event for each check whose status changed and for a new
        phase: the skeleton's), and a log line for each of those changes."""
        for news in await self.publish(logic.to_status(report, self.acks)):
            log.info("%s", news.note)

    async def _publish_verdict(self, report: logic.Report) -> None:
        """The verdict ConfigMap, written when it changed (admission policies read it as their parameters)."""
        target = report.target.version
        acknowledge = self.cfg.acknowledge_command(target.minor_text) if target else ""
        data = logic.gate_verdict(report, self.acks, acknowledge=acknowledge).data()
        if data == self._verdict or self.cfg.dry_run:
            return
        await state.replace_data(
            self.ctx.kube,
            namespace=self.cfg.namespace,
            name=self.cfg.verdict_name,
            data=data,
            controller=NAME,
        )
        self._verdict = data


async def evaluate_once(kube: Kube, cfg: UpgradeReadinessConfig) -> tuple[logic.Report, dict[str, Any]]:
    """The ``readiness`` command: list what the controller watches, evaluate once (no state, no Events:
    ``cfg`` is a dry run), and return the report with its status document."""
    controller = UpgradeReadiness(context.build(name=NAME, config=cfg, kube=kube))
    for store in controller.wakes().stores:
        await watch.list_into(kube, store)
    await controller.ctx.agreements.now()
    await controller.sync()
    assert controller.report is not None
    return controller.report, controller.status()

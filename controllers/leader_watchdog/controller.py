"""The watchdog's sync: evaluate the watched Leases, Nodes and ``default/kubernetes``; report.

It observes only. The one thing it writes is Events (Warning when a finding appears, Normal when it
clears or a leader changes). It syncs after every burst of watch events and on a timer, because
staleness is time passing, not an event.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from controllers.agreement import masters as agreement_masters
from controllers.kube import resources, retry, watch
from controllers.leader_watchdog import checks, effects, logic
from controllers.leader_watchdog import metrics as metrics_module
from controllers.leader_watchdog.checks import blind_rules, interface
from controllers.runtime import config, context, reconciler
from controllers.structs import refs, status

log = logging.getLogger(__name__)

DEFAULT_LEADER_LEASES = ("kube-system/kube-controller-manager", "kube-system/kube-scheduler")
APISERVER_IDENTITY_SELECTOR = "apiserver.kubernetes.io/identity=kube-apiserver"
# Watch events come in floods (every heartbeat): evaluate at most this often, on everything so far.
MIN_GAP = 0.2
# When a finding cannot be confirmed by a fresh read (the API does not answer), try again this soon.
CONFIRM_RETRY = 2.0


def _prometheus_url(value: str) -> str | None:
    """Empty (the check is off), or an http(s) URL with a host and no credentials, query or fragment (a token
    goes in --prometheus-bearer-token-file, where /status and the logs never show it)."""
    if not value:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if parts.username or parts.password or parts.query or parts.fragment:
        return (
            "must carry no user, password, query or fragment (a token goes in --prometheus-bearer-token-file)"
        )
    return None


def _file(value: str) -> str | None:
    return None if not value or pathlib.Path(value).is_file() else "is not a file"


def _lease_keys(values: tuple[str, ...]) -> str | None:
    for value in values:
        namespace, slash, name = value.partition("/")
        if not (slash and namespace and name) or "/" in name:
            return f"{value!r} is not NAMESPACE/NAME"
    return None


@dataclasses.dataclass(frozen=True)
class LeaderWatchdogConfig(config.BaseConfig):
    leader_leases: tuple[str, ...] = config.option(
        list(DEFAULT_LEADER_LEASES), "Leader Leases to watch, as NAMESPACE/NAME.", check=_lease_keys
    )
    checks: tuple[str, ...] = config.option(
        list(checks.TABLE.names),
        f"Checks to run: any of {', '.join(checks.TABLE.names)} (turn off apiservers and endpoints where "
        "masters are not Nodes, e.g. managed control planes).",
        check=checks.TABLE.problem,
    )
    apiserver_namespace: str = config.option(
        "kube-system", "Namespace of the kube-apiserver identity Leases."
    )
    apiserver_selector: str = config.option(
        APISERVER_IDENTITY_SELECTOR,
        "Label selector of the kube-apiserver identity Leases.",
        check=config.label_selector,
    )
    node_lease_namespace: str = config.option("kube-node-lease", "Namespace of the node heartbeat Leases.")
    leader_failover_seconds: float = config.option(
        15.0,
        "A leader Lease may be expired, or held by nobody, this long before it is a stale leader: a failover "
        "(a restarted or upgraded control plane; the next candidate takes the Lease within its retry period, "
        "2 s by default) is not one.",
        check=config.non_negative,
    )
    heartbeat_stale_seconds: float = config.option(
        40.0, "A node whose heartbeat Lease is older than this counts as NotReady.", check=config.positive
    )
    outage_window_seconds: float = config.option(
        300.0,
        "A jump of NotReady workers within this long after the master set changed is the outage pattern.",
        check=config.positive,
    )
    notready_jump_min: int = config.option(
        3, "Smallest rise of NotReady workers that counts as a jump.", check=config.positive
    )
    notready_jump_fraction: float = config.option(
        0.1,
        "Rise of NotReady workers, as a fraction of all workers, that counts as a jump (the larger wins).",
        check=config.fraction,
    )
    evaluate_interval_seconds: float = config.option(
        5.0, "Re-evaluate at least this often, even without watch events.", check=config.positive
    )
    prometheus_url: str = config.option(
        "",
        "Prometheus (or a compatible query API with its path prefix: Thanos Querier, Mimir) whose alerting "
        "rules the blind-alert-rules check reads after an upgrade; empty: that check is off.",
        check=_prometheus_url,
    )
    prometheus_ca_file: str = config.option(
        "", "CA certificates that verify an https Prometheus (empty: the system's).", check=_file
    )
    prometheus_bearer_token_file: str = config.option(
        "", "File holding a bearer token for Prometheus (read at each round; empty: none).", check=_file
    )
    prometheus_timeout_seconds: float = config.option(
        10.0, "Timeout of one request to Prometheus.", check=config.positive
    )
    blind_rules_interval_seconds: float = config.option(
        300.0,
        "After an upgrade, ask Prometheus about its alerting rules this often (one query per selector).",
        check=config.positive,
    )
    blind_rules_window_seconds: float = config.option(
        3600.0,
        "A selector 'had series before the upgrade' when it had some within this long before it began.",
        check=config.positive,
    )

    @property
    def rules(self) -> interface.Thresholds:
        """The rules are the options of the same names."""
        return interface.Thresholds(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(interface.Thresholds)}
        )


class LeaderWatchdog(reconciler.Reconciler[LeaderWatchdogConfig]):
    """The stores of what it watches, the history, the last evaluation and its ``/status``."""

    name = "leader-watchdog"
    description = (
        "Watches leader Leases, kube-apiserver identity Leases, the default/kubernetes endpoints and node "
        "heartbeats; reports stale leaders, stale masters and nodes going NotReady after a master change. "
        "It observes only: it writes nothing but Events."
    )
    config_type = LeaderWatchdogConfig
    writes_state = False  # it observes only: Events are all it writes
    event_action = "Observe"

    def __init__(
        self, ctx: context.Context[LeaderWatchdogConfig], *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(ctx)
        self.cfg = ctx.config
        self.clock = clock
        self.metrics = metrics_module.Metrics(
            ctx.exporter,
            leader_leases=self.cfg.leader_leases if "leaders" in checks.TABLE.needs(self.cfg.checks) else (),
        )
        self.stores = stores(self.cfg)
        self.history = logic.History()
        self.findings: dict[tuple[str, str], interface.Finding] = {}
        self.published = status.Status(
            reason="starting", detail={"time": None, "critical": False, "findings": []}
        )
        self.rules_probe: interface.RulesProbe | None = None  # the last round that read the rules
        self.rules_error = ""
        self.rules_round: reconciler.Work[interface.RulesProbe] | None = None
        self.rules_asked: tuple[float, float] | None = None  # (upgrade began, asked at) of the last round

    def wakes(self) -> reconciler.Wakes:
        every = self.cfg.evaluate_interval_seconds
        return reconciler.Wakes(stores=tuple(self.stores.values()), every=every, pace=MIN_GAP)

    async def sync(self) -> reconciler.Synced:
        """Run every check now; update metrics, ``/status``, logs and (through the skeleton, unless ``--once``)
        Events."""
        self._collect_rules_round()
        shot, evaluation = self._evaluate()
        if not self.cfg.once and logic.needs_confirmation(evaluation.findings, known=self.findings):
            # A watch served by an apiserver whose etcd is restarting (every control plane's, in a kubeadm
            # upgrade) can lag tens of seconds: then Leases look unrenewed. Re-read before raising.
            if not await self._reread():
                return reconciler.Synced(ok=not self.published.detail["critical"], again_in=CONFIRM_RETRY)
            shot, evaluation = self._evaluate()
        holders, self.history = self.history.holders, evaluation.history
        current = {finding.key: finding for finding in evaluation.findings}
        raised = [finding for key, finding in current.items() if key not in self.findings]
        self.findings = current
        now = self.clock()
        self.metrics.observe_evaluation(evaluation, shot, raised=raised, now=now)
        if evaluation.master_set_changed:
            log.info("master set changed to %s", sorted(m.name for m in shot.masters))
        for f in raised:
            log.warning("%s: %s: %s", f.check, f.object, f.evidence, extra={"finding": f.to_json()})
        news = await self.publish(logic.to_status(evaluation, shot, holders=holders, now=now))
        for each in news:
            if not each.warning:
                log.info("%s on %s: %s", each.reason, each.ref, each.note)
        self._start_rules_round(evaluation.history, now=now)
        return reconciler.Synced(ok=not evaluation.critical)

    def _start_rules_round(self, history: logic.History, *, now: float) -> None:
        """blind-alert-rules: ask Prometheus beside the loop (hundreds of queries must not hold the watchdog's
        other checks) when :func:`blind_rules.due` says so."""
        if not self.cfg.prometheus_url or blind_rules.CHECK.name not in self.cfg.checks:
            return
        if self.rules_round is not None or history.began is None:
            return
        phase = history.upgrade.phase if history.upgrade else None
        interval = self.cfg.blind_rules_interval_seconds
        if not blind_rules.due(
            began=history.began, phase=phase, last=self.rules_asked, interval_seconds=interval, now=now
        ):
            return
        self.rules_asked = (history.began, now)
        self.rules_round = self.beside(self._ask_prometheus(began=history.began, now=now))

    async def _ask_prometheus(self, *, began: float, now: float) -> interface.RulesProbe:
        cfg = self.cfg
        client = effects.Client(
            url=cfg.prometheus_url,
            ca_file=cfg.prometheus_ca_file,
            bearer_token_file=cfg.prometheus_bearer_token_file,
            timeout_seconds=cfg.prometheus_timeout_seconds,
        )
        async with client:
            return await effects.probe(
                client,
                began=began,
                window_seconds=cfg.blind_rules_window_seconds,
                now=now,
                ref=refs.ObjectRef(kind="Namespace", name=cfg.namespace),
            )

    def _collect_rules_round(self) -> None:
        """The finished round becomes the one the check judges; one that could not read the rules leaves the
        last one in place (a Prometheus restarting is no reason to forget blind rules) and says why."""
        work = self.rules_round
        if work is None or work.running:
            return
        self.rules_round = None
        if work.abandoned:
            return
        try:
            self.rules_probe, self.rules_error = work.result(), ""
        except effects.UNANSWERED as error:
            self.rules_error = f"cannot read the alerting rules from Prometheus: {effects.describe(error)}"
            log.warning("%s", self.rules_error)
            self.metrics.observe_rules_round(None)
            return
        self.metrics.observe_rules_round(self.rules_probe)

    def _evaluate(self) -> tuple[interface.Snapshot, logic.Evaluation]:
        agreement = self.ctx.agreements.current
        shot = dataclasses.replace(
            snapshot(
                self.cfg,
                self.stores,
                observation=self.ctx.agreements.observation,
                agreed_version=agreement.version.raw if agreement else None,
            ),
            rules_probe=self.rules_probe,
            rules_error=self.rules_error,
        )
        return shot, logic.evaluate(shot, now=self.clock(), rules=self.cfg.rules, history=self.history)

    async def _reread(self) -> bool:
        """Every store from a fresh (consistent) list; False when the API cannot answer now."""
        try:
            for store in self.stores.values():
                await watch.list_into(self.ctx.kube, store)
        except Exception as error:
            if retry.classify(error) is None:
                raise
            log.warning("cannot confirm a finding with a fresh read now: %s", retry.describe(error))
            return False
        return True


def stores(cfg: LeaderWatchdogConfig) -> dict[str, watch.Store[Any]]:
    """What to watch, by key, each parsed into its record: what the enabled checks need (Nodes always: masters
    come from them)."""
    needs = checks.TABLE.needs(cfg.checks)
    selectors = cfg.master_selector_list
    found: dict[str, watch.Store[Any]] = {
        "nodes": watch.Store(
            watch.Stream(resources.NODES), lambda raw: interface.node_record(raw, selectors=selectors)
        )
    }
    if "leaders" in needs:
        for key in cfg.leader_leases:
            namespace, _, name = key.partition("/")
            stream = watch.Stream(resources.LEASES, namespace, field_selector=f"metadata.name={name}")
            found[f"leader:{key}"] = watch.Store(stream, interface.lease_record)
    if "apiservers" in needs:
        stream = watch.Stream(
            resources.LEASES, cfg.apiserver_namespace, label_selector=cfg.apiserver_selector
        )
        found["apiservers"] = watch.Store(stream, interface.lease_record)
    if "endpoints" in needs:
        service = interface.KUBERNETES_SERVICE
        stream = watch.Stream(
            resources.ENDPOINT_SLICES, service.namespace, label_selector=interface.KUBERNETES_SLICES
        )
        found["endpoints"] = watch.Store(stream, interface.endpoint_slice_ips)
    if "heartbeats" in needs:
        found["heartbeats"] = watch.Store(
            watch.Stream(resources.LEASES, cfg.node_lease_namespace), interface.lease_record
        )
    return found


def snapshot(
    cfg: LeaderWatchdogConfig,
    found: dict[str, watch.Store[Any]],
    *,
    observation: agreement_masters.Observation | None,
    agreed_version: str | None,
) -> interface.Snapshot:
    """What the stores show now, as the checks take it."""
    nodes: list[interface.NodeRecord] = sorted(found["nodes"].items.values(), key=lambda node: node.name)
    if cfg.version_source == "apiserver":
        reported = {m.name: m.reported for m in observation.masters} if observation else {}
        nodes = [
            dataclasses.replace(node, version=reported.get(node.name, "")) if node.master else node
            for node in nodes
        ]

    leaders = {k: found[f"leader:{k}"].items.get(k) for k in cfg.leader_leases if f"leader:{k}" in found}

    def stored(key: str) -> list[Any]:  # what the store of an enabled check holds (nothing when it is off)
        return list(found[key].items.values()) if key in found else []

    return interface.Snapshot(
        leaders=leaders,
        apiservers=tuple(stored("apiservers")),
        heartbeats={lease.name: lease for lease in stored("heartbeats")},
        nodes=tuple(nodes),
        endpoint_ips=interface.service_endpoint_ips(stored("endpoints")),
        agreed_version=agreed_version,
        checks=frozenset(check.name for check in checks.TABLE.enabled(cfg.checks)),
    )

"""A real rolling control-plane upgrade (kubeadm, old release → new release) and the controllers reacting.

Stages, in order (each builds on the ones before; ``make e2e`` stops at the first failure):
1. the suite runs and agrees on the old release (every pod Ready, ``helm test``, metrics, ``status``);
2. before the upgrade: a CRD's objects stored at v1, then its storage switched to v2; a Deployment over the
   workers; an add-on look-alike without the bundle label;
2a. the release checks: the old cluster sets a feature gate the new minor removes (KIND_REMOVED_GATE, on the
   kube-apiservers and the kubelets): upgrade-readiness's feature-gates check blocks, naming each place; a
   PrometheusRule on a metric the new minor hides (KIND_HIDDEN_METRIC) is an alert-metrics warning; the gate
   removed as an operator does (kubeadm-config, static pod manifests, kubelet-config, each kubelet), each
   finding gone with its edit, Upgradeable;
2b. the upgrade-readiness gate: Upgradeable; then a PodDisruptionBudget allowing no disruption over a pod on a
   worker and a client of an API the new release removes, each reported (``/status``, ``/metrics``, state
   ConfigMap, Events); the drain blocker acknowledged by an admin for the target minor (acks ConfigMap):
   acknowledged, no longer blocking, the gate still not upgradeable; both removed: Upgradeable again once the removed-API window passed;
3. the control planes upgraded one by one: while they are mixed, no controller agrees and nothing changes;
4. the last one upgraded: every controller acts — storage migrated (its leader pod deleted mid-migration),
   bundle switched and pruned, old workers tainted — and how long each took is recorded;
5. the workers upgraded one by one: each loses the taint; a new pod prefers the upgraded worker;
5a. the new kube-apiservers no longer export the metric the rule of 2a selects (Prometheus: no series);
6. no critical watchdog finding during all that; leader Leases on current masters;
7. a master removed for good: the watchdog reports it, the others hold still;
8. no controller container restarted during all that (a pod the test deleted is a deletion, not a restart);
   the Lease transitions of each controller are printed;
9. no controller logged a traceback or the test Secret's data.

With the Prometheus stack (``KUC_E2E_MONITORING=1``, what ``make e2e`` sets unless ``MONITORING=0``; the
stack of ``e2e/kind/monitoring.py``) these run too, each after the stage whose effect it reads in the real
Prometheus and Alertmanagers:
1m. Prometheus scrapes the chart's watchdogs, the apiservers, kubelets and kube-state-metrics and loaded the
    chart's and kubernetes-mixin's alerts;
3m. while the control planes are mixed: KubeVersionMismatch fires in Prometheus and is suppressed
    (inhibited) in Alertmanager, 0 notifications of it, while the control Alertmanager (no inhibit rule)
    notifies it;
4m. the second worker held back until KubeUpgradeNodesOutdated is delivered, not inhibited although the
    upgrade signal says workers;
5m. after the workers: ``leader_watchdog_upgrade_in_progress`` went none → control-plane → workers → none
    as Prometheus scraped it (each watchdog); 0 notifications of KubeVersionMismatch and of the chart's
    alerts during the upgrade but that held-back worker's (kubernetes-mixin's that were notified, and the
    control Alertmanager's, are printed);
7m. the removed master: KubeUpgradeStaleApiserver delivered, its latency measured;
10m. every query of the chart's dashboard (its variables filled from the real Prometheus as Grafana would)
    returns data since Prometheus started.
The summary gets, per alert, how long it fired in Prometheus, the notifications delivered with and without
the inhibit rule and each one's latency, and the stack's memory (also when a stage failed).
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import yaml
from kubernetes import client

from controllers.release_delta import catalog
from e2e.kind import deploy, gates, k8s, monitoring, readiness, upgrade
from e2e.monitoring import stack
from e2e.suite.conftest import Timeline

GROUP, PLURAL, KIND = "e2e.kuc.io", "widgets", "Widget"
CRD_NAME = f"{PLURAL}.{GROUP}"
WIDGETS = 500
NAMESPACE = "kuc-e2e"
ADDONS = "kuc-e2e-addons"
TAINT_KEY = "upgrade.kube-upgrade-controllers.io/outdated"
# The pause image every node has from its node image (never pulled): the e2e workloads run it.
CRITICAL_REASONS = {
    "StaleLeader",
    "LeaderOnUnknownMaster",
    "StaleApiserver",
    "StaleEndpoint",
    "NotReadyAfterMasterChange",
}
OLD = k8s.versions()["KIND_OLD_RELEASE"]
NEW = k8s.versions()["KIND_NEW_RELEASE"]
# The add-on bundles of the two releases' minors (e2e/kind/bundles/<minor>/), "1.36" and "1.37" by default.
OLD_MINOR, NEW_MINOR = (".".join(release.lstrip("v").split(".")[:2]) for release in (OLD, NEW))
GATE_TARGET = k8s.gate_target()  # the minor upgrade-readiness judges against: NEW_MINOR by default
ONLY_IN_OLD, ONLY_IN_NEW = (f"only-in-{minor.replace('.', '-')}" for minor in (OLD_MINOR, NEW_MINOR))
MONITORING = monitoring.enabled()
needs_monitoring = pytest.mark.skipif(not MONITORING, reason="without the Prometheus stack (MONITORING=0)")
MISMATCH = "KubeVersionMismatch"
IN_PROGRESS = "KubeUpgradeInProgress"  # the chart's inhibit rule's source
OUTDATED = "KubeUpgradeNodesOutdated"
OUTDATED_FOR = monitoring.values()["prometheusRule"]["thresholds"]["nodesOutdated"]
MIXIN_ALERTS = {alert for _, alert, _, _ in stack.MIXIN_ALERTS}


@dataclasses.dataclass
class Scenario:
    """What one stage leaves for the next."""

    widget_specs: dict[str, Any] = dataclasses.field(default_factory=dict)
    hashes_before: dict[str, str] = dataclasses.field(default_factory=dict)
    logs: dict[str, str] = dataclasses.field(default_factory=dict)
    transitions_before: dict[str, int] = dataclasses.field(default_factory=dict)
    # MONITORING: when the first control plane's upgrade began (unix time, monotonic), the chart's alerts.
    upgrade_started: float = 0.0
    upgrade_started_monotonic: float = 0.0
    chart_alerts: set[str] = dataclasses.field(default_factory=set)
    agreed_at: float = 0.0  # unix time every control plane ran the new release
    rule_subject: str = ""  # the PrometheusRule on KIND_HIDDEN_METRIC, as alert-metrics names it ("": none)
    left_behind_since: float = 0.0  # unix time the last worker was kept behind on purpose


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario()


@pytest.fixture(scope="module", autouse=True)
def alerting_summary(timeline: Timeline) -> Iterator[None]:
    """MONITORING: the alerts and notifications of the whole scenario into the summary, also when a stage
    failed (``-x`` still tears the module down)."""
    yield
    if MONITORING:
        try:
            summarize_alerting(timeline)
        except (OSError, KeyError, ValueError) as error:
            timeline.facts["alerting summary"] = f"could not be read: {error}"


def summarize_alerting(timeline: Timeline) -> None:
    """Per alert: how long it fired in Prometheus, the notifications delivered (firing, resolved) and each
    one's latency after its startsAt."""
    started = time.time() - (time.monotonic() - timeline.started)
    end = time.time()
    firing = monitoring.query_range(
        'count by (alertname) (ALERTS{alertstate="firing"})', start=started, end=end, step=15
    )
    for series in sorted(firing, key=lambda s: str(s["metric"].get("alertname"))):
        timeline.facts[f"firing in Prometheus: {series['metric'].get('alertname')}"] = (
            f"about {len(series['values']) * 15} s"
        )
    deliveries = [d for d in monitoring.deliveries() if d.received >= started]
    control = [d for d in monitoring.deliveries(receiver=stack.UNINHIBITED) if d.received >= started]

    def counted(among: list[monitoring.Delivery], alert: str) -> str:
        notified = [d for d in among if d.alert == alert and d.status == "firing"]
        resolved = [d for d in among if d.alert == alert and d.status == "resolved"]
        latencies = ", ".join(f"{d.latency:.1f}" for d in notified) or "-"
        return f"{len(notified)} firing, {len(resolved)} resolved; latency after startsAt (s): {latencies}"

    for alert in sorted({d.alert for d in deliveries + control}):
        timeline.facts[f"notified {alert}"] = (
            f"{counted(deliveries, alert)} | without the inhibit rule: {counted(control, alert)}"
        )
    timeline.facts["notifications delivered during the scenario"] = (
        f"{len(deliveries)} (without the inhibit rule: {len(control)})"
    )
    minutes = max(1, int((end - started) / 60))
    peak = monitoring.query(f"max_over_time(({monitoring.STACK_MEMORY})[{minutes}m:30s])")
    now = monitoring.query(
        f"sum by (pod) (container_memory_working_set_bytes{{{monitoring.STACK_CONTAINERS}}})"
    )
    timeline.facts["the Prometheus stack's memory at its peak (cAdvisor working set, every container)"] = (
        f"{float(peak[0]['value'][1]) / 2**20:.0f} MiB" if peak else "no cAdvisor series"
    )
    timeline.facts["the Prometheus stack's memory at the end, by pod"] = ", ".join(
        f"{r['metric'].get('pod')} {float(r['value'][1]) / 2**20:.0f} MiB"
        for r in sorted(now, key=lambda r: r["metric"].get("pod", ""))
    )


# ------------------------------------------------------------------------------------------------ helpers


def api() -> k8s.Api:
    return k8s.api()


def all_agreed_on() -> dict[str, str | None]:
    return {
        f"{release} {controller}": k8s.agreed_on(release, controller)
        for release, controller in deploy.INSTALLED
    }


def uso_state() -> dict[str, str]:
    name = f"{k8s.RELEASE}-kube-upgrade-controllers-uso-runner-state"
    return dict(api().core.read_namespaced_config_map(name, k8s.RELEASE_NAMESPACE).data or {})


def our_taints() -> dict[str, list[str]]:
    """Our taint's values per node (nodes without it are left out)."""
    found: dict[str, list[str]] = {}
    for node in api().core.list_node().items:
        values = [t.value for t in node.spec.taints or [] if t.key == TAINT_KEY]
        if values:
            found[node.metadata.name] = values
    return found


def addon_state() -> tuple[str | None, set[str]]:
    """(the bundle the settings ConfigMap says, the names of the ConfigMaps in the add-on namespace)."""
    maps = api().core.list_namespaced_config_map(ADDONS).items
    settings = next((m for m in maps if m.metadata.name == "addon-settings"), None)
    return (settings.data or {}).get("bundle") if settings else None, {m.metadata.name for m in maps}


def etcd_api_versions() -> Counter[str]:
    """The apiVersion each stored widget has in etcd, read with etcdctl in a control plane's etcd pod."""
    node = next(n for n in k8s.node_names(control_planes=True) if k8s.ready(api().core.read_node(n)))
    pki = "/etc/kubernetes/pki/etcd"
    etcdctl = (
        f"etcdctl --endpoints=https://127.0.0.1:2379 --cacert={pki}/ca.crt --cert={pki}/healthcheck-client.crt "
        f"--key={pki}/healthcheck-client.key get /registry/{GROUP}/{PLURAL}/ --prefix -w json"
    )
    output = k8s.run(["kubectl", "exec", "-n", "kube-system", f"etcd-{node}", "--", *etcdctl.split()])
    kvs = json.loads(output).get("kvs") or []
    return Counter(json.loads(base64.b64decode(kv["value"]))["apiVersion"] for kv in kvs)


def storage_hashes() -> dict[str, str]:
    """``{group_resource: storageVersionHash}`` of what the apiserver stores, as uso-runner selects it: the
    preferred version of each group, listable and updatable, no subresources, no aggregated APIs, no events."""
    aggregated = {
        s["spec"]["group"]
        for s in json.loads(k8s.run(["kubectl", "get", "apiservices", "-o", "json"]))["items"]
        if s["spec"].get("service")
    }
    versions = ["/api/v1"] + [
        f"/apis/{g['preferredVersion']['groupVersion']}"
        for g in json.loads(k8s.run(["kubectl", "get", "--raw", "/apis"]))["groups"]
        if g["name"] not in aggregated
    ]
    hashes: dict[str, str] = {}
    for path in versions:
        group = path.split("/")[2] if path.startswith("/apis/") else ""
        for resource in json.loads(k8s.run(["kubectl", "get", "--raw", path]))["resources"]:
            name = resource["name"]
            if (
                "/" in name
                or not {"list", "update"} <= set(resource["verbs"])
                or "storageVersionHash" not in resource
            ):
                continue
            key = f"{name}.{group}" if group else name
            if key not in ("events", "events.events.k8s.io"):
                hashes[key] = resource["storageVersionHash"]
    return hashes


def snapshot_logs(scenario: Scenario) -> None:
    """Every controller container's log so far (pods about to be deleted or drained lose theirs)."""
    for pod in api().core.list_namespaced_pod(k8s.RELEASE_NAMESPACE).items:
        if pod.status.phase in ("Running", "Succeeded", "Failed"):
            for container in pod.spec.containers:
                key = f"{pod.metadata.name}/{container.name}"
                with contextlib.suppress(client.ApiException):  # a pod going away
                    scenario.logs[key] = api().core.read_namespaced_pod_log(
                        pod.metadata.name, k8s.RELEASE_NAMESPACE, container=container.name
                    )


def controller_pods_now() -> list[Any]:
    pods = api().core.list_namespaced_pod(k8s.RELEASE_NAMESPACE).items
    return [
        p for p in pods if (p.metadata.labels or {}).get("app.kubernetes.io/component") in k8s.CONTROLLERS
    ]


def container_restarts() -> dict[str, int]:
    """Container restarts of every controller pod there is now. A pod the test deleted is gone, replaced by a
    new one: a deletion, not a restart."""
    return {
        pod.metadata.name: sum(c.restart_count for c in pod.status.container_statuses or [])
        for pod in controller_pods_now()
    }


def lease_transitions() -> dict[str, int]:
    """``leaseTransitions`` of each controller's leader Lease (named ``<release>-<controller>``). Only a
    controller with more than one replica elects a leader (the chart's ``leaderElect``): in the scenario's
    values that is uso-runner, so its Lease is the only one."""
    leases = api().coordination.list_namespaced_lease(k8s.RELEASE_NAMESPACE).items
    return {
        lease.metadata.name: lease.spec.lease_transitions or 0
        for lease in leases
        if lease.metadata.name.endswith(tuple(k8s.CONTROLLERS))
    }


def watchdog_critical_events(since: float) -> list[str]:
    """Critical-finding Events the watchdogs wrote after ``since`` (epoch seconds), in every namespace."""
    found = []
    for _, event in k8s.events(since=since):
        if event.get("reason") in CRITICAL_REASONS:
            regarding = event.get("regarding") or {}
            found.append(
                f"{event['reason']} on {regarding.get('kind')}/{regarding.get('name')}: {event.get('note')}"
            )
    return found


def agrees_on(release: str, controller: str, version: str) -> bool:
    return k8s.agreed_on(release, controller) == version


def reports(release: str, check: str) -> bool:
    """The release's leading watchdog has at least one finding of ``check`` now."""
    samples = k8s.leader_metrics(release, "leader-watchdog") or {}
    return (k8s.sample(samples, "leader_watchdog_findings", check=check) or 0) >= 1


# What an API call or a read through the apiserver's proxy raises while a kube-apiserver restarts.
RESTARTING = (client.ApiException, OSError, RuntimeError)


def watch_reactions(
    timeline: Timeline,
    *,
    trigger: float,
    checks: Mapping[str, Callable[[], bool]],
    timeout: float,
    each_round: Callable[[], None] = lambda: None,
) -> None:
    """Polls every check once a second until all hold; records when each first held, after ``trigger``.
    ``each_round`` runs after every round; like a check, one that meets an apiserver restarting (the last control
    plane's, right after ``trigger``) is tried again in the next round."""
    pending = dict(checks)
    deadline = time.monotonic() + timeout
    while pending:
        for what, check in list(pending.items()):
            try:
                held = check()
            except RESTARTING:
                held = False  # an apiserver restarting; try again
            if held:
                timeline.reactions[what] = timeline.mark(what) - trigger
                del pending[what]
        with contextlib.suppress(*RESTARTING):
            each_round()
        assert time.monotonic() < deadline, f"still waiting after {timeout:.0f} s for: {', '.join(pending)}"
        time.sleep(1)


# ------------------------------------------------------------------------------------------------- stages


def test_the_suite_runs_and_agrees_on_the_old_release(timeline: Timeline, scenario: Scenario) -> None:
    assert set(k8s.kubelet_versions().values()) == {OLD}
    pods = api().core.list_namespaced_pod(k8s.RELEASE_NAMESPACE).items
    controllers = [
        p for p in pods if (p.metadata.labels or {}).get("app.kubernetes.io/component") in k8s.CONTROLLERS
    ]
    # Two releases: every controller (uso-runner with two replicas), and a second watchdog.
    assert len(controllers) == len(k8s.CONTROLLERS) + 2
    for pod in controllers:
        assert pod.status.phase == "Running", pod.metadata.name
        assert all(c.ready for c in pod.status.container_statuses), pod.metadata.name
    k8s.eventually(lambda: set(all_agreed_on().values()) == {OLD}, timeout=120, what=f"agreement on {OLD}")
    timeline.mark(
        f"{len(controllers)} controller pods Ready; every controller agrees on {OLD} (kubelet and apiserver sources)"
    )
    for release in (k8s.RELEASE, deploy.APISERVER_RELEASE):
        deploy.helm("test", release, "--namespace", k8s.RELEASE_NAMESPACE, "--timeout", "3m")
    # uso-runner's first run (at the old release) rewrites every stored resource once; it records a hash per
    # resource, by which the upgrade's run is judged later.
    k8s.eventually(
        lambda: uso_state().get("phase") == "Succeeded", timeout=300, what="uso-runner's first run"
    )
    table = deploy.status()
    header, *lines = table.splitlines()
    version = header.split().index("VERSION")  # (the columns before it: CONTROLLER, NAMESPACE)
    rows = {line.split()[0]: line.split() for line in lines}
    # One row each (the verdict relay, a management cluster's, has none here): no config ConfigMap taken for a state.
    assert list(rows) == list(k8s.CONTROLLERS)
    for controller in ("addon-updater", "uso-runner", "node-tainter"):  # the watchdog keeps no state
        assert rows[controller][version] == OLD, rows[controller]
    timeline.mark(f"helm test passed for both releases; `status`: every controller's state at {OLD}")
    print(table, flush=True)
    scenario.transitions_before = lease_transitions()
    assert sum(container_restarts().values()) == 0, container_restarts()


@needs_monitoring
@pytest.mark.timeout(600)
def test_prometheus_scrapes_the_suite_and_loaded_every_alert(timeline: Timeline, scenario: Scenario) -> None:
    up = {r["metric"].get("job") for r in monitoring.query("up == 1")}
    assert set(monitoring.JOBS) <= up, up
    watchdogs = monitoring.query("count by (job) (leader_watchdog_masters_agreed == 1)")
    assert len(watchdogs) == 2, watchdogs  # both releases' watchdogs, agreed
    rules = api().custom.list_namespaced_custom_object(
        "monitoring.coreos.com", "v1", k8s.RELEASE_NAMESPACE, "prometheusrules"
    )["items"]
    scenario.chart_alerts = {
        rule["alert"]
        for item in rules
        for group in item["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    mixin = MIXIN_ALERTS
    assert "KubeUpgradeStaleApiserver" in scenario.chart_alerts
    expected = scenario.chart_alerts | mixin
    k8s.eventually(
        lambda: expected <= monitoring.alerting_rules(), timeout=300, what="every alert loaded in Prometheus"
    )
    timeline.mark(
        f"Prometheus scrapes {', '.join(sorted(j for j in up if j))}; it loaded the chart's "
        f"{len(scenario.chart_alerts)} alerts and kubernetes-mixin's {len(mixin)}"
    )


def test_before_the_upgrade_objects_stored_at_v1_and_a_workload_on_the_workers(
    timeline: Timeline, scenario: Scenario
) -> None:
    core, apps = api().core, api().apps
    deploy.ensure_namespace(NAMESPACE)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "widget", "kind": KIND},
            "versions": [widget_version("v1", storage=True), widget_version("v2", storage=False)],
        },
    }
    api().extensions.create_custom_resource_definition(crd)
    k8s.eventually(lambda: established(), timeout=60, what=f"CRD {CRD_NAME} Established")

    def create(index: int) -> None:
        name = f"widget-{index:04d}"
        spec = {
            "size": index,
            "colour": ["red", "green", "blue"][index % 3],
            "note": f"stored at v1 #{index}",
        }
        body = {"apiVersion": f"{GROUP}/v1", "kind": KIND, "metadata": {"name": name}, "spec": spec}
        api().custom.create_namespaced_custom_object(GROUP, "v1", NAMESPACE, PLURAL, body)
        scenario.widget_specs[name] = spec

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(WIDGETS)))
    api().extensions.patch_custom_resource_definition(
        CRD_NAME,
        {"spec": {"versions": [widget_version("v1", storage=False), widget_version("v2", storage=True)]}},
    )
    stored = etcd_api_versions()
    assert stored == {f"{GROUP}/v1": WIDGETS}, stored
    timeline.mark(
        f"CRD {CRD_NAME}: {WIDGETS} objects at v1, storage switched to v2 (etcd still holds {dict(stored)})"
    )

    # A Deployment spread over the workers, and an add-on look-alike the updater must never prune.
    spread = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "spread", "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "spread"}},
            "template": {
                "metadata": {"labels": {"app": "spread"}},
                "spec": {
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "DoNotSchedule",
                            "labelSelector": {"matchLabels": {"app": "spread"}},
                        },
                    ],
                    "containers": [{"name": "pause", "image": k8s.pause_image(), "imagePullPolicy": "Never"}],
                },
            },
        },
    }
    apps.create_namespaced_deployment(NAMESPACE, spread)
    core.create_namespaced_config_map(ADDONS, {"metadata": {"name": "lookalike"}, "data": {"mine": "yes"}})
    core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": ONLY_IN_OLD}, "data": {"mine": "yes"}})

    def spread_over_workers() -> bool:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector="app=spread").items
        nodes = {p.spec.node_name for p in pods if p.status.phase == "Running"}
        return nodes == set(k8s.node_names(control_planes=False))

    k8s.eventually(spread_over_workers, timeout=120, what="the spread Deployment on both workers")
    bundle, names = addon_state()
    assert bundle == OLD_MINOR and ONLY_IN_OLD in names
    assert our_taints() == {}
    scenario.hashes_before = json.loads(uso_state()["storageHashes"])
    timeline.mark(f"a Deployment on both workers; add-on bundle {OLD_MINOR} active; no taint")


def widget_version(name: str, *, storage: bool) -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {"name": name, "served": True, "storage": storage, "schema": {"openAPIV3Schema": schema}}


def established() -> bool:
    crd = api().extensions.read_custom_resource_definition(CRD_NAME)
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


def watch_gate(
    timeline: Timeline,
    *,
    checks: Mapping[str, tuple[float, Callable[[readiness.View], bool]]],
    since: float,
    timeout: float,
) -> readiness.View:
    """Reads the gate (``/status``, ``/metrics``, state ConfigMap, Events since ``since``) once a second until
    every check holds; records when each first held, after its own trigger (monotonic)."""
    pending = dict(checks)
    deadline = time.monotonic() + timeout
    last: readiness.View | None = None
    while True:
        try:
            last = readiness.view(since=since)
        except RESTARTING:
            pass  # the gate's pod or an apiserver not answering this once: read again
        else:
            for what, (trigger, check) in list(pending.items()):
                if check(last):
                    timeline.reactions[what] = timeline.mark(what) - trigger
                    del pending[what]
        if not pending:
            assert last is not None
            return last
        assert time.monotonic() < deadline, (
            f"still waiting after {timeout:.0f} s for: {', '.join(pending)}; the gate: "
            f"{last.summary() if last else 'never answered'}"
        )
        time.sleep(1)


def upgradeable_for_target(view: readiness.View) -> bool:
    """The gate judges against the scenario's target minor and says Upgradeable everywhere."""
    return view.document.get("target") == GATE_TARGET and view.upgradeable


def reported(
    where: Callable[[readiness.View, str, str], bool], *, check: str, subject: str
) -> Callable[[readiness.View], bool]:
    return lambda view: where(view, check, subject)


@pytest.mark.timeout(1800)
def test_before_the_upgrade_the_release_checks_block_on_a_removed_gate_until_it_is_removed(
    timeline: Timeline, scenario: Scenario
) -> None:
    """The old cluster was made with KIND_REMOVED_GATE on the kube-apiservers and the kubelets (cluster.sh):
    feature-gates blocks, naming component, node and gate, where the gate shows (every kube-apiserver's mirror
    pod, kubeadm's ClusterConfiguration, the kubelet-config ConfigMap); alert-metrics warns of a PrometheusRule
    on a metric the target hides. The operator then removes the gate (kubeadm-config, each static pod
    manifest, the kubelet-config ConfigMap, each node's kubelet file and a kubelet restart): each finding goes
    with its own edit, timed, and the gate passes; the warning stays and blocks nothing."""
    gate, metric = gates.removed_gate(), readiness.hidden_metric()
    delta = catalog.delta(OLD_MINOR, GATE_TARGET)
    removed = delta.removed_gate(gate)
    assert removed is not None and {"kube-apiserver", "kubelet"} <= set(removed.components), removed
    (hidden,) = [m for m in delta.metrics_removed if m.name == metric]
    timeline.facts[f"the release delta {OLD_MINOR} -> {GATE_TARGET}"] = (
        f"removes {gate} ({', '.join(removed.components)}); {hidden.change} {metric} "
        f"({', '.join(hidden.components)}; instead: {hidden.replacement or '-'})"
    )
    control_planes = k8s.node_names(control_planes=True)
    nodes = control_planes + k8s.node_names(control_planes=False)
    # What the cluster runs with: the gate on every kube-apiserver's command line and in every kubelet's
    # loaded configuration (its /configz: per node, which upgrade-readiness cannot read).
    assert all(gates.apiserver_sets(node, gate) for node in control_planes)
    assert all(gates.kubelet_gates(node).get(gate) is True for node in nodes)
    exported = {node: metric in readiness.metric_names(node) for node in control_planes}
    assert all(exported.values()), exported
    timeline.mark(
        f"the cluster sets {gate}=true on its {len(control_planes)} kube-apiservers and {len(nodes)} kubelets; "
        f"every {OLD} kube-apiserver exports {metric}"
    )
    static_pod = {
        node: f"kube-apiserver on {node} (static pod kube-system/kube-apiserver-{node}): {gate}"
        for node in control_planes
    }
    kubeadm_config = f"kube-apiserver (ConfigMap kube-system/kubeadm-config ClusterConfiguration apiServer.extraArgs): {gate}"
    kubelet_config = f"kubelet (ConfigMap kube-system/kubelet-config kubelet): {gate}"
    expected = {*static_pod.values(), kubeadm_config, kubelet_config}
    since = time.time() - 3600  # the gate blocks since the chart was installed: its Events are older
    started = time.monotonic()
    checks: dict[str, tuple[float, Callable[[readiness.View], bool]]] = {
        f"upgrade-readiness: feature-gates blocked by the {len(expected)} places {gate} is set (/status, /metrics)": (
            started,
            lambda v: v.blocked_by_exactly("feature-gates", expected),
        ),
        "upgrade-readiness: feature-gates named in the state ConfigMap": (
            started,
            lambda v: v.state_blocked_by("feature-gates", f": {gate}: "),
        ),
        "upgrade-readiness: a CheckBlocked Event of feature-gates": (
            started,
            lambda v: any(
                r == "CheckBlocked" and n.startswith("feature-gates is blocked: ") and f": {gate}: " in n
                for r, n in v.events
            ),
        ),
    }
    if readiness.rules_served():
        scenario.rule_subject = readiness.create_rule(metric)
        created = timeline.mark(f"{scenario.rule_subject} created: its alert selects {metric}")
        checks[f"upgrade-readiness: alert-metrics warns of the rule on {metric} (/status, /metrics)"] = (
            created,
            lambda v: v.warns("alert-metrics", scenario.rule_subject),
        )
        if MONITORING:  # what the rule selects today: the old kube-apiservers' series
            series = k8s.eventually(
                lambda: monitoring.query(f"count({metric})") or None,
                timeout=120,
                what=f"{metric} in Prometheus",
            )
            timeline.facts[f"{metric} series in Prometheus before the upgrade"] = str(series[0]["value"][1])
    else:
        timeline.facts["alert-metrics in the kind cluster"] = (
            "not exercised: no PrometheusRule CRD (MONITORING=0)"
        )
    blocked = watch_gate(timeline, checks=checks, since=since, timeout=300)
    assert not blocked.upgradeable
    # What each release check found in this cluster, for the summary.
    for check in (
        "feature-gates",
        "component-flags",
        "kubeadm-config",
        "alert-metrics",
        "component-versions",
    ):
        result = next(r for r in blocked.document["checks"] if r["check"] == check)
        timeline.facts[f"upgrade-readiness {check} before the upgrade"] = (
            f"{result['status']}: {result['reason'] or 'nothing found'}"
        )
        for index, finding in enumerate(result["findings"]):
            timeline.facts[f"  {check} finding #{index + 1} ({finding['severity']})"] = (
                f"{finding['subject']}: {finding['message']}"
            )
    timeline.facts["upgrade-readiness while the gate was set"] = blocked.summary()

    # The operator's removal, one place at a time; each finding goes with its own edit.
    assert gates.edit_config_map(gates.KUBEADM_CONFIG, gates.KUBEADM_KEY, gate)
    edited = timeline.mark(f"{gate} removed from kubeadm's ClusterConfiguration (ConfigMap kubeadm-config)")
    watch_gate(
        timeline,
        checks={
            "upgrade-readiness: the kubeadm-config finding gone": (
                edited,
                lambda v: v.not_named("feature-gates", kubeadm_config),
            )
        },
        since=since,
        timeout=120,
    )

    def restarted_without(node: str) -> Callable[[readiness.View], bool]:
        return lambda _: gates.mirror_pod_without(node, gate)

    def finding_gone(node: str) -> Callable[[readiness.View], bool]:
        """Gone from the gate while the node's mirror pod is there (it is absent while the kubelet restarts
        the static pod, and so is its finding)."""
        return lambda v: (
            v.not_named("feature-gates", static_pod[node]) and gates.mirror_pod_without(node, gate)
        )

    for node in control_planes:
        assert gates.edit_manifests(node, gate) == ["kube-apiserver.yaml"]
        edited = timeline.mark(f"{node}: {gate} removed from its static pod manifest kube-apiserver.yaml")
        watch_gate(
            timeline,
            checks={
                f"{node}: kube-apiserver mirror pod without {gate}": (edited, restarted_without(node)),
                f"upgrade-readiness: the finding of {node}'s kube-apiserver gone": (
                    edited,
                    finding_gone(node),
                ),
            },
            since=since,
            timeout=300,
        )
        waited = upgrade.wait_serving(node)
        timeline.mark(f"{node}: its kube-apiserver serves steadily again ({waited:.0f} s)")
    assert gates.edit_config_map(gates.KUBELET_CONFIG, gates.KUBELET_KEY, gate)
    edited = timeline.mark(f"{gate} removed from the KubeletConfiguration (ConfigMap kubelet-config)")
    passed = watch_gate(
        timeline,
        checks={
            "upgrade-readiness: feature-gates pass": (edited, lambda v: v.passes("feature-gates")),
            "upgrade-readiness: Upgradeable without the gate (/status, state ConfigMap, metric)": (
                edited,
                upgradeable_for_target,
            ),
            "upgrade-readiness: Upgradeable Event without the gate": (
                edited,
                readiness.View.upgradeable_again,
            ),
        },
        since=since,
        timeout=180,
    )
    timeline.facts["upgrade-readiness once the gate was removed"] = passed.summary()
    # The kubelets: each node's own file, which the check cannot see (it reads the ConfigMap only).
    for node in nodes:
        assert gates.edit_kubelet(node, gate)
        restarted = time.monotonic()
        k8s.eventually(
            functools.partial(gates.kubelet_ready_without, node, gate),
            timeout=300,
            what=f"{node}'s kubelet Ready without {gate}",
        )
        timeline.reactions[f"{node}: kubelet restarted, Ready, its /configz without {gate}"] = (
            timeline.mark(f"{node}: kubelet restarted without {gate}, Ready") - restarted
        )
    for node in control_planes:
        upgrade.wait_serving(node, steady=4.0)
    after = readiness.view(since=since)
    assert after.passes("feature-gates") and after.upgradeable, after.summary()
    if scenario.rule_subject:
        assert after.warns("alert-metrics", scenario.rule_subject), after.summary()
    timeline.mark(
        f"{gate} gone from kubeadm-config, {len(control_planes)} static pods, kubelet-config and {len(nodes)} "
        "kubelets; upgrade-readiness: feature-gates pass, Upgradeable"
        + (
            f" (alert-metrics still warns of {readiness.RULE_ALERT}: not a blocker)"
            if scenario.rule_subject
            else ""
        )
    )


@pytest.mark.timeout(900)
def test_before_the_upgrade_the_gate_reports_a_drain_blocker_and_a_removed_api_then_upgradeable(
    timeline: Timeline, scenario: Scenario
) -> None:
    removed, pdb = readiness.removed_api(), f"PodDisruptionBudget {NAMESPACE}/{readiness.BLOCKED_APP}"
    since = time.time()
    # The gate's own permissions, in the real cluster: every apiserver's /metrics and what it judges, read
    # only; no write, no eviction, no Secret (the fixture's tests prove the same on every rule).
    assert readiness.service_account_can("get", path="/metrics")
    for verb, resource, group in (("list", "poddisruptionbudgets", "policy"), ("watch", "pods", "")):
        assert readiness.service_account_can(verb, resource=resource, group=group)
    for verb, resource, group, namespace in (
        ("delete", "poddisruptionbudgets", "policy", NAMESPACE),
        ("create", "pods", "", NAMESPACE),
        ("update", "nodes", "", ""),
        ("get", "secrets", "", "kube-system"),
        ("list", "secrets", "", ""),
    ):
        assert not readiness.service_account_can(verb, resource=resource, group=group, namespace=namespace)
    assert not readiness.service_account_can("create", resource="pods/eviction", namespace=NAMESPACE)

    before = watch_gate(
        timeline,
        checks={
            f"upgrade-readiness: Upgradeable for {GATE_TARGET} before the stage": (
                time.monotonic(),
                upgradeable_for_target,
            )
        },
        since=since,
        timeout=180,
    )
    timeline.facts["upgrade-readiness before the stage"] = before.summary()
    control_planes = k8s.node_names(control_planes=True)
    served = {node: readiness.deprecated_series(node) for node in control_planes}
    timeline.facts["apiserver_requested_deprecated_apis before the client"] = (
        "; ".join(sorted({s for series in served.values() for s in series})) or "none"
    )
    timeline.mark(
        f"the gate's ServiceAccount may read /metrics, list PDBs and watch pods, and write nothing; "
        f"deprecated APIs requested so far: {sum(len(s) for s in served.values())} series on the apiservers"
    )

    # A client of the removed API, then a PodDisruptionBudget allowing no disruption over a pod on a worker.
    worker = k8s.node_names(control_planes=False)[0]
    readiness.create_drain_blocker(worker=worker)
    readiness.create_client(removed)
    k8s.eventually(
        lambda: readiness.pod_running_on(readiness.BLOCKED_APP) == worker,
        timeout=120,
        what="the pod on the worker",
    )
    k8s.eventually(
        lambda: readiness.pod_running_on(readiness.CLIENT_APP), timeout=120, what="the removed API's client"
    )
    client_started = timeline.mark(f"a client lists {removed.path} every {readiness.CLIENT_PERIOD_SECONDS} s")
    readiness.create_pdb()
    pdb_created = timeline.mark(f"{pdb} created (maxUnavailable 0) over the pod on {worker}")
    checks: dict[str, tuple[float, Callable[[readiness.View], bool]]] = {}
    for check, subject, trigger in (
        ("drain-blockers", pdb, pdb_created),
        ("removed-apis", removed.subject, client_started),
    ):
        for where, found in (
            ("/metrics", readiness.View.in_metrics),
            ("/status", readiness.View.in_status),
            ("state ConfigMap", readiness.View.in_state),
            ("Event", readiness.View.in_events),
        ):
            checks[f"upgrade-readiness: {check} names {subject} ({where})"] = (
                trigger,
                reported(found, check=check, subject=subject),
            )
    blocked = watch_gate(timeline, checks=checks, since=since, timeout=300)
    assert not blocked.upgradeable
    assert readiness.pdb_disruptions_allowed() == 0
    assert any(reason == "NotUpgradeable" for reason, _ in blocked.events), blocked.events
    assert " 200 " in readiness.client_log(), readiness.client_log()[-2000:]
    for check in ("drain-blockers", "removed-apis"):
        for line in readiness.findings(blocked.document, check):
            timeline.facts[f"upgrade-readiness finding ({check})"] = line
    timeline.facts["upgrade-readiness while blocked"] = blocked.summary()
    served = {node: readiness.deprecated_series(node) for node in control_planes}
    marked = sorted(
        {s for series in served.values() for s in series if f'resource="{removed.resource}"' in s}
    )
    assert marked, served
    timeline.facts["apiserver_requested_deprecated_apis of the client"] = "; ".join(marked)

    # An admin accepts the drain blocker for the target minor, for an hour (the acknowledgements ConfigMap):
    # shown as acknowledged, no longer a blocker; the removed API still blocks. Held for longer than a scrape,
    # so Prometheus saw it too.
    target = blocked.document["target"]
    readiness.acknowledge("drain-blockers", target=target)
    acked = timeline.mark(
        f"drain-blockers acknowledged for {target} until an hour later (the acks ConfigMap)"
    )
    watch_gate(
        timeline,
        checks={
            "upgrade-readiness: drain-blockers acknowledged": (
                acked,
                lambda v: v.acknowledged("drain-blockers"),
            )
        },
        since=since,
        timeout=120,
    )
    time.sleep(20)
    assert not readiness.view(since=since).upgradeable
    readiness.acknowledge()
    timeline.mark(
        "drain-blockers acknowledged, still not upgradeable (removed-apis); acknowledgement removed"
    )

    # Both removed: the PDB deleted, the client stopped. The removed API stays requested for the window.
    readiness.delete_pdb()
    pdb_deleted = timeline.mark(f"{pdb} deleted")
    client_stopped = timeline.mark("stopping the removed API's client")
    readiness.stop_client()
    k8s.eventually(readiness.client_gone, timeout=120, what="the client's pod gone")
    timeline.mark("the removed API's client is gone (its pod deleted)")
    cleared = watch_gate(
        timeline,
        checks={
            "upgrade-readiness: drain-blockers pass": (pdb_deleted, lambda v: v.passes("drain-blockers")),
            "upgrade-readiness: removed-apis pass (the window passed)": (
                client_stopped,
                lambda v: v.passes("removed-apis"),
            ),
            "upgrade-readiness: Upgradeable (/status, state ConfigMap, metric)": (
                client_stopped,
                upgradeable_for_target,
            ),
            "upgrade-readiness: Upgradeable Event": (client_stopped, readiness.View.upgradeable_again),
        },
        since=since,
        timeout=300,
    )
    window = 60.0  # deprecatedApiWindowSeconds in e2e/kind/values.yaml
    waited = timeline.reactions["upgrade-readiness: removed-apis pass (the window passed)"]
    # Its last request ended at most one client period before it was stopped: the finding stayed a window.
    assert waited >= window - 2 * readiness.CLIENT_PERIOD_SECONDS, waited
    still = sorted(
        {
            s
            for n in control_planes
            for s in readiness.deprecated_series(n)
            if f'resource="{removed.resource}"' in s
        }
    )
    assert still, "the apiservers' gauge dropped the removed API: the window was not what cleared it"
    timeline.facts["upgrade-readiness after both were removed"] = cleared.summary()
    api().apps.delete_namespaced_deployment(readiness.BLOCKED_APP, NAMESPACE)
    timeline.mark(
        f"upgrade-readiness: Upgradeable for {GATE_TARGET} again, although every apiserver's gauge still marks "
        f"{removed.subject} requested; the upgrade may run"
    )


@pytest.mark.timeout(3600)
def test_while_the_control_planes_are_mixed_no_controller_acts(
    timeline: Timeline, scenario: Scenario
) -> None:
    upgrade.stage(NEW)
    timeline.mark(f"{NEW} staged on every node (images imported, binaries in place)")
    control_planes = k8s.node_names(control_planes=True)
    scenario.upgrade_started, scenario.upgrade_started_monotonic = time.time(), time.monotonic()
    for index, node in enumerate(control_planes[:-1]):
        upgrade.upgrade_control_plane(node, NEW, first=index == 0)
        timeline.mark(f"{node} upgraded to {NEW}: control planes now {mixed_versions()}")
        k8s.eventually(
            lambda: set(all_agreed_on().values()) == {None},
            timeout=120,
            what="every controller to see disagreement",
        )
        time.sleep(15)  # longer than the settle window: a controller that acted would have by now
        assert set(all_agreed_on().values()) == {None}
        assert our_taints() == {}
        assert uso_state()["version"] == OLD and not uso_state().get("runTarget")
        assert etcd_api_versions() == {f"{GROUP}/v1": WIDGETS}
        assert addon_state()[0] == OLD_MINOR
        timeline.mark(
            f"mixed masters: every *_masters_agreed is 0; no taint, no migration, bundle still {OLD_MINOR}"
        )
        if MONITORING and index == 0:
            mismatch_fires_and_is_inhibited(timeline, scenario)


def mismatch_fires_and_is_inhibited(timeline: Timeline, scenario: Scenario) -> None:
    """KubeVersionMismatch firing in Prometheus while the masters are mixed, suppressed in Alertmanager by the
    chart's inhibit rule (KubeUpgradeInProgress), and never delivered."""
    k8s.eventually(lambda: monitoring.firing_in_prometheus(MISMATCH), timeout=300, what=f"{MISMATCH} firing")
    firing = time.monotonic() - scenario.upgrade_started_monotonic
    timeline.reactions[f"Prometheus: {MISMATCH} firing (for {monitoring.MIXIN_FOR})"] = firing

    def suppressed() -> list[dict[str, Any]] | None:
        found = monitoring.alertmanager_alerts(MISMATCH)
        held = [a for a in found if a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]]
        return held if found and held == found else None

    held = k8s.eventually(suppressed, timeout=120, what=f"{MISMATCH} suppressed in Alertmanager")
    timeline.reactions[f"Alertmanager: {MISMATCH} suppressed (inhibited)"] = (
        time.monotonic() - scenario.upgrade_started_monotonic
    )
    delivered = [d for d in monitoring.deliveries() if d.alert == MISMATCH]
    assert delivered == [], delivered

    def uninhibited() -> monitoring.Delivery | None:
        found = [d for d in monitoring.deliveries(receiver=stack.UNINHIBITED) if d.alert == MISMATCH]
        return found[0] if found else None

    control = k8s.eventually(
        uninhibited, timeout=120, what=f"{MISMATCH} notified by the control Alertmanager"
    )
    timeline.reactions[f"control Alertmanager (no inhibit rule): {MISMATCH} delivered"] = (
        control.received - scenario.upgrade_started
    )
    assert [d for d in monitoring.deliveries() if d.alert == MISMATCH] == []
    timeline.mark(
        f"{MISMATCH} firing in Prometheus {firing:.0f} s after the first master's upgrade began; in "
        f"Alertmanager suppressed ({len(held)} alert(s), inhibited by {IN_PROGRESS}); 0 delivered; the "
        "control Alertmanager, without the rule, delivered it"
    )


def mixed_versions() -> str:
    kubelets, apiservers = k8s.kubelet_versions(), k8s.apiserver_versions()
    return ", ".join(
        f"{n} kubelet {kubelets[n]} apiserver {apiservers.get(n)}"
        for n in k8s.node_names(control_planes=True)
    )


@pytest.mark.timeout(3600)
def test_once_all_control_planes_agree_every_controller_acts(timeline: Timeline, scenario: Scenario) -> None:
    last = k8s.node_names(control_planes=True)[-1]
    # Reactions are timed from the moment every control plane runs the new release, so this does not wait for
    # the last kube-apiserver to settle; the worker stage does before it drains.
    upgrade.upgrade_control_plane(last, NEW, first=False, settle=False)
    trigger = timeline.mark(f"{last} upgraded: every control plane runs {NEW} (kubelets and kube-apiservers)")
    scenario.agreed_at = time.time()
    workers = k8s.node_names(control_planes=False)
    killed: list[str] = []

    def kill_uso_leader_mid_migration() -> None:
        """Once the leader has rewritten some widgets but not all, or (--method=auto on a release that serves
        StorageVersionMigrations) while it follows kube-controller-manager's migrations, delete its pod."""
        if killed:
            return
        samples = k8s.leader_metrics(k8s.RELEASE, "uso-runner")
        migrated = samples and k8s.sample(
            samples, "uso_runner_objects_total", resource=CRD_NAME, outcome="migrated"
        )
        delegated = samples and k8s.sample(samples, "uso_runner_builtin_migrations_running")
        if (migrated and 0 < migrated < WIDGETS) or delegated:
            leader = next(
                p.metadata.name
                for p in k8s.controller_pods(k8s.RELEASE, "uso-runner")
                if k8s.sample(k8s.pod_metrics(p.metadata.name), "uso_runner_leader") == 1
            )
            snapshot_logs(scenario)
            api().core.delete_namespaced_pod(leader, k8s.RELEASE_NAMESPACE)
            killed.append(leader)
            timeline.mark(
                f"uso-runner: leader pod {leader} deleted while it followed {delegated:.0f} StorageVersionMigration(s)"
                if delegated
                else f"uso-runner: leader pod {leader} deleted after {migrated:.0f}/{WIDGETS} widgets"
            )

    checks: dict[str, Callable[[], bool]] = {
        f"{release} {controller} agrees on {NEW}": functools.partial(agrees_on, release, controller, NEW)
        for release, controller in deploy.INSTALLED
    }
    checks["node-tainter: both workers tainted"] = lambda: our_taints() == {w: [OLD] for w in workers}
    checks[f"addon-updater: bundle {NEW_MINOR} applied, {ONLY_IN_OLD} pruned"] = lambda: (
        addon_state() == (NEW_MINOR, {"addon-settings", ONLY_IN_NEW, "lookalike", "kube-root-ca.crt"})
    )
    checks["uso-runner: storage migration succeeded"] = lambda: (
        (uso_state().get("version"), uso_state().get("phase")) == (NEW, "Succeeded")
    )
    watch_reactions(
        timeline, trigger=trigger, checks=checks, timeout=900, each_round=kill_uso_leader_mid_migration
    )

    assert killed, "the migration ended before the test could delete the uso-runner leader mid-way"
    stored = etcd_api_versions()
    assert stored == {f"{GROUP}/v2": WIDGETS}, stored
    crd = api().extensions.read_custom_resource_definition(CRD_NAME)
    assert crd.status.stored_versions == ["v2"]
    items = api().custom.list_namespaced_custom_object(GROUP, "v2", NAMESPACE, PLURAL)["items"]
    assert {
        w["metadata"]["name"]: w["spec"] for w in items
    } == scenario.widget_specs  # nothing lost or altered
    timeline.mark(f"etcd holds {WIDGETS}/{WIDGETS} widgets at v2, storedVersions [v2], every spec unchanged")

    # Only what changed was migrated: the resources whose discovery hash differs from the one recorded at the
    # old release (or that had none: the widgets, and resources new in this release).
    after = json.loads(uso_state()["storageHashes"])
    migrated = {r for r, h in after.items() if scenario.hashes_before.get(r) != h}
    expected = {r for r, h in storage_hashes().items() if scenario.hashes_before.get(r) != h}
    assert CRD_NAME in migrated
    assert migrated == expected
    builtins = sorted(migrated - {CRD_NAME})
    timeline.facts[f"built-in resources migrated ({OLD} -> {NEW} hash changes)"] = (
        ", ".join(builtins) or "none"
    )
    timeline.mark(
        f"uso-runner migrated {sorted(migrated)}; the other {len(after) - len(migrated)} resources untouched"
    )

    assert k8s.api().core.read_namespaced_config_map("lookalike", ADDONS).data == {"mine": "yes"}
    assert k8s.api().core.read_namespaced_config_map(ONLY_IN_OLD, NAMESPACE).data == {"mine": "yes"}
    timeline.mark("addon-updater: unlabelled look-alikes untouched")


@pytest.mark.timeout(3600)
def test_workers_upgraded_one_by_one_lose_the_taint(timeline: Timeline, scenario: Scenario) -> None:
    first, second = k8s.node_names(control_planes=False)

    def upgrade_worker(node: str, *, tainted_after: dict[str, list[str]]) -> None:
        snapshot_logs(scenario)  # a drain deletes the controller pods on the node, and their logs
        upgrade.upgrade_worker(node, NEW)
        trigger = timeline.mark(f"{node} upgraded to {NEW}")
        removed = {f"node-tainter: taint removed from {node}": lambda: our_taints() == tainted_after}
        watch_reactions(timeline, trigger=trigger, timeout=120, checks=removed)

    upgrade_worker(first, tainted_after={second: [OLD]})
    pod = {
        "metadata": {"name": "prefers-upgraded", "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "pause", "image": k8s.pause_image(), "imagePullPolicy": "Never"}]},
    }
    api().core.create_namespaced_pod(NAMESPACE, pod)
    node = k8s.eventually(
        lambda: api().core.read_namespaced_pod("prefers-upgraded", NAMESPACE).spec.node_name,
        timeout=60,
        what="the new pod to be scheduled",
    )
    assert node == first, f"scheduled on {node}, which still carries {TAINT_KEY}"
    timeline.mark(f"a new pod went to the upgraded {first}, not to the tainted {second}")
    if MONITORING:
        left_behind_worker_is_notified(timeline, scenario, node=second)
    upgrade_worker(second, tainted_after={})

    def spread_available() -> bool:
        return bool(api().apps.read_namespaced_deployment("spread", NAMESPACE).status.available_replicas == 2)

    k8s.eventually(spread_available, timeout=180, what="the spread Deployment available again")
    timeline.mark("every node runs the new release; no taint left; the workload is available")


@pytest.mark.timeout(600)
def test_after_the_upgrade_the_new_apiservers_no_longer_export_the_rules_metric(
    timeline: Timeline, scenario: Scenario
) -> None:
    """What alert-metrics warned of before the upgrade, seen after it: the new kube-apiservers' /metrics
    lack KIND_HIDDEN_METRIC and have the metric the delta names instead; in Prometheus the rule's metric has no
    series any more (the rule went blind) while the replacement has."""
    metric = readiness.hidden_metric()
    hidden = [m for m in catalog.delta(OLD_MINOR, NEW_MINOR).metrics_removed if m.name == metric]
    if not hidden:
        pytest.skip(f"{NEW} still exports {metric} (the delta hides it only later, in {GATE_TARGET})")
    replacement = hidden[0].replacement
    control_planes = k8s.node_names(control_planes=True)
    names = {node: readiness.metric_names(node) for node in control_planes}
    assert all(metric not in found for found in names.values()), f"{metric} still exported"
    if replacement:
        assert all(replacement in found for found in names.values()), f"{replacement} not exported"
    timeline.mark(
        f"the {NEW} kube-apiservers export no {metric}"
        + (f" but {replacement}, as the delta says" if replacement else "")
    )
    if MONITORING and scenario.rule_subject:
        k8s.eventually(
            lambda: monitoring.query(f"count({metric})") == [], timeout=180, what=f"no {metric} in Prometheus"
        )
        if replacement:
            assert monitoring.query(f"count({replacement})"), f"no {replacement} in Prometheus"
        timeline.facts[f"{scenario.rule_subject} after the upgrade"] = (
            f"blind: Prometheus has no {metric} series any more"
            + (
                f" ({replacement} has {monitoring.query(f'count({replacement})')[0]['value'][1]})"
                if replacement
                else ""
            )
        )
        timeline.mark(
            f"Prometheus: no {metric} series any more: {readiness.RULE_ALERT} went blind, as warned"
        )


def left_behind_worker_is_notified(timeline: Timeline, scenario: Scenario, *, node: str) -> None:
    """``node`` is kept on the old release until KubeUpgradeNodesOutdated (its threshold shortened in
    monitoring-values.yaml) is delivered: while the upgrade signal says phase workers, so the chart's inhibit
    rule was there and did not hold it back."""
    held = time.time()
    scenario.left_behind_since = held
    timeline.mark(f"{node} left behind on {OLD} until {OUTDATED} is delivered")

    def delivered() -> monitoring.Delivery | None:
        found = [d for d in monitoring.deliveries() if d.alert == OUTDATED and d.status == "firing"]
        return found[0] if found else None

    first = k8s.eventually(delivered, timeout=900, interval=5, what=f"{OUTDATED} delivered")
    since_agreement = first.received - scenario.agreed_at
    timeline.reactions[
        f"Alertmanager: {OUTDATED} delivered (for {OUTDATED_FOR}; since the masters agreed)"
    ] = since_agreement
    at = monitoring.query(
        'max by (job) (leader_watchdog_upgrade_in_progress{phase="workers"})', at=first.received
    )
    assert at and all(float(r["value"][1]) == 1 for r in at), f"upgrade signal at delivery: {at}"
    suppressed = [a for a in monitoring.alertmanager_alerts(OUTDATED) if a["status"]["inhibitedBy"]]
    assert suppressed == [], suppressed
    timeline.mark(
        f"{OUTDATED} delivered {since_agreement:.0f} s after the masters agreed ({first.latency:.1f} s after its "
        f"startsAt), {first.received - held:.0f} s into the hold, while the signal said phase workers: not inhibited"
    )


@needs_monitoring
@pytest.mark.timeout(900)
def test_prometheus_saw_the_signal_and_the_healthy_upgrade_notified_nothing_of_the_chart(
    timeline: Timeline, scenario: Scenario
) -> None:
    k8s.eventually(
        lambda: monitoring.query("leader_watchdog_upgrade_in_progress == 1") == [],
        timeout=180,
        what="no upgrade signal at 1 in Prometheus",
    )
    cleared = time.time()
    k8s.eventually(
        lambda: not monitoring.firing_in_prometheus(MISMATCH), timeout=180, what=f"{MISMATCH} resolved"
    )
    timeline.mark(f"Prometheus: no upgrade signal at 1, {MISMATCH} resolved")
    # The range's last steps must come after the instant query that saw the signal gone (its steps are
    # `step` apart from `start`: one may fall just before it, still at "workers").
    step = 5
    time.sleep(max(0.0, cleared + 2 * step - time.time()))
    start, end = scenario.upgrade_started - 60, time.time()
    signal = monitoring.query_range(monitoring.SIGNAL, start=start, end=end, step=step)
    viewed = monitoring.query_range(monitoring.VIEW, start=start, end=end, step=step)
    scraped = monitoring.query_range(monitoring.SCRAPED, start=start, end=end, step=step)
    raw = monitoring.phase_sequences(signal=signal, scraped=scraped)
    sequences = monitoring.phase_sequences(signal=signal, scraped=viewed)
    for job, sequence in sorted(sequences.items()):
        timeline.facts[f"upgrade signal as Prometheus scraped it ({job})"] = " -> ".join(sequence)
        if raw.get(job) != sequence:
            timeline.facts[f"... every scraped step, also before a fresh pod's agreement ({job})"] = (
                " -> ".join(raw.get(job, []))
            )
    labels = sorted(
        {(s["metric"].get("phase"), s["metric"].get("from"), s["metric"].get("to")) for s in signal}
    )
    timeline.facts["upgrade signal labels (phase, from, to)"] = str(labels)
    assert len(sequences) == 2, sequences
    for job, sequence in sequences.items():
        assert sequence == ["none", "control-plane", "workers", "none"], (job, sequence)

    mismatch = monitoring.query_range(
        f'ALERTS{{alertname="{MISMATCH}",alertstate="firing"}}', start=start, end=end, step=5
    )
    steps = sum(len(series["values"]) for series in mismatch)
    timeline.facts[f"{MISMATCH} firing in Prometheus during the upgrade"] = f"about {steps * 5} s"
    assert steps > 0
    # The inhibit rule's source: one alert through both phases (two with the same cluster let the target
    # through in Alertmanager before v0.34.1), firing at every step the mismatch fired.
    source = monitoring.query_range(
        f'ALERTS{{alertname="{IN_PROGRESS}",alertstate="firing"}}', start=start, end=end, step=5
    )
    covered = {t for series in source for t, _ in series["values"]}
    timeline.facts[f"{IN_PROGRESS} firing in Prometheus during the upgrade"] = (
        f"{len(source)} alert(s), about {len(covered) * 5} s"
    )
    assert len(source) == 1, [series["metric"] for series in source]
    uncovered = [t for series in mismatch for t, _ in series["values"] if t not in covered]
    assert uncovered == [], f"{MISMATCH} fired without {IN_PROGRESS} at {uncovered}"

    # The stack's pods stay on a control plane, upgraded in place; a restarted container keeps what counts here
    # (the recorder's journal and Prometheus' TSDB are on emptyDirs), so restarts are only reported.
    restarted = {pod: n for pod, n in monitoring.restarts().items() if n}
    timeline.facts["Prometheus stack container restarts during the upgrade"] = str(restarted or "none")
    during = [d for d in monitoring.deliveries() if d.received >= scenario.upgrade_started]
    notified = Counter(d.alert for d in during if d.status == "firing")
    mixin = MIXIN_ALERTS
    timeline.facts[
        f"kubernetes-mixin alerts notified during the healthy upgrade (for {monitoring.MIXIN_FOR})"
    ] = ", ".join(f"{a} x{n}" for a, n in sorted(notified.items()) if a in mixin) or "none"
    others = {a: n for a, n in notified.items() if a not in mixin and a not in scenario.chart_alerts}
    timeline.facts["other alerts notified during the healthy upgrade"] = str(others or "none")
    control = Counter(
        d.alert
        for d in monitoring.deliveries(receiver=stack.UNINHIBITED)
        if d.received >= scenario.upgrade_started and d.status == "firing"
    )
    timeline.facts["notified during the upgrade without the inhibit rule (control Alertmanager)"] = (
        ", ".join(f"{a} x{n}" for a, n in sorted(control.items())) or "none"
    )
    assert control[MISMATCH] >= 1, control
    assert notified[MISMATCH] == 0, during
    # The one worker kept behind on purpose (left_behind_worker_is_notified) is no healthy upgrade: its alert
    # counts only if it came during that hold.
    early = [d for d in during if d.alert == OUTDATED and d.received < scenario.left_behind_since]
    assert early == [], f"{OUTDATED} notified before any worker was kept behind: {early}"
    chart = {a: n for a, n in notified.items() if a in scenario.chart_alerts and a != OUTDATED}
    assert chart == {}, f"the chart's alerts notified during a healthy upgrade: {chart}"
    timeline.mark(
        "Prometheus saw the signal go control-plane -> workers -> done for both watchdogs; during the "
        f"upgrade 0 {MISMATCH} and 0 chart notifications besides the held-back worker's {OUTDATED} "
        f"(x{notified[OUTDATED]}), {sum(n for a, n in notified.items() if a != OUTDATED)} other(s)"
    )


def test_the_watchdogs_raised_no_critical_finding_and_leaders_run_on_current_masters(
    timeline: Timeline, scenario: Scenario
) -> None:
    started = time.time() - (time.monotonic() - timeline.started)
    assert watchdog_critical_events(started) == []
    masters = set(k8s.node_names(control_planes=True))
    for lease in ("kube-controller-manager", "kube-scheduler"):
        holder = api().coordination.read_namespaced_lease(lease, "kube-system").spec.holder_identity
        assert holder.split("_")[0] in masters, f"{lease} held by {holder}"
    timeline.mark(
        "no critical watchdog Event during the whole upgrade; leader Leases held by current masters"
    )


@pytest.mark.timeout(1500)
def test_a_master_removed_for_good_is_reported_and_nothing_else_acts(
    timeline: Timeline, scenario: Scenario
) -> None:
    """A master lost abruptly (its machine gone: SIGKILL, nothing shuts down) and its Node deleted by the
    operator: its kube-apiserver's identity Lease stays unexpired (leaseDurationSeconds 3600). A clean stop is no
    such case: kube-apiserver deletes its identity Lease on exit (its pre-shutdown hook, "Cleaning up lease
    on exit") when its local etcd still answers, so after `docker stop` the finding depended on which of the
    two shut down first (one run, on a busy machine, saw no stale-apiserver in 300 s: that Lease deleted, by
    all signs; the cluster was gone before it could be looked at)."""
    victim = k8s.node_names(control_planes=True)[-1]
    taints, uso, addons = our_taints(), uso_state(), addon_state()
    lost = time.time()
    k8s.run(["docker", "kill", victim])
    api().core.delete_node(victim)
    trigger = timeline.mark(f"master {victim} lost (killed) and its Node deleted, as an operator removes it")
    checks = {
        f"{release} leader-watchdog: stale-apiserver reported": functools.partial(
            reports, release, "stale-apiserver"
        )
        for release in (k8s.RELEASE, deploy.APISERVER_RELEASE)
    }
    watch_reactions(timeline, trigger=trigger, checks=checks, timeout=300)
    # The Event is written by the watchdog's sender in the background (retried if it went to the removed
    # apiserver): wait for it rather than read once.
    k8s.eventually(
        lambda: any(e.startswith("StaleApiserver") for e in watchdog_critical_events(time.time() - 600)),
        timeout=120,
        what="a critical StaleApiserver Event",
    )
    timeline.reactions["leader-watchdog: critical StaleApiserver Event found"] = time.monotonic() - trigger
    if MONITORING:
        alert = "KubeUpgradeStaleApiserver"

        def delivered() -> monitoring.Delivery | None:
            return next(
                (
                    d
                    for d in monitoring.deliveries()
                    if d.alert == alert and d.status == "firing" and d.received >= lost
                ),
                None,
            )

        first = k8s.eventually(delivered, timeout=420, interval=2, what=f"{alert} delivered")
        timeline.reactions[f"Alertmanager: {alert} delivered (for 1m; since the master was lost)"] = (
            first.received - lost
        )
        timeline.mark(
            f"{alert} delivered to the recorder {first.received - lost:.0f} s after the master was lost "
            f"({first.latency:.1f} s after its startsAt)"
        )

    others = [(r, c) for r, c in deploy.INSTALLED if c != "leader-watchdog"]
    k8s.eventually(
        lambda: {k8s.agreed_on(r, c) for r, c in others} == {None}, timeout=120, what="disagreement"
    )
    time.sleep(15)
    assert (our_taints(), uso_state(), addon_state()) == (taints, uso, addons)
    timeline.mark("2 masters left (minMasters 3): no agreement; no taint, migration or bundle change")


def test_no_controller_container_restarted_and_leases_mostly_kept(
    timeline: Timeline, scenario: Scenario
) -> None:
    restarts = container_restarts()
    after = lease_transitions()
    for lease, count in sorted(after.items()):
        timeline.facts[f"Lease {lease}: transitions during the scenario"] = str(
            count - scenario.transitions_before.get(lease, 0)
        )
    assert after, "no controller Lease found: is any controller running with 2 replicas?"
    timeline.facts["controller container restarts (all pods)"] = str(sum(restarts.values()))
    assert sum(restarts.values()) == 0, f"controller containers restarted: {restarts}"
    timeline.mark(f"{len(restarts)} controller pods: no container restarted during the whole scenario")


def test_no_controller_logged_a_traceback_or_the_secret(timeline: Timeline, scenario: Scenario) -> None:
    snapshot_logs(scenario)
    marker = deploy.secret_marker()
    encoded = base64.b64encode(marker.encode()).decode()
    for pod, text in scenario.logs.items():
        assert "Traceback" not in text, f"{pod} logged a traceback"
        assert marker not in text and encoded not in text, f"{pod} logged the Secret's data"
    timeline.mark(f"{len(scenario.logs)} controller logs read: no traceback, no Secret data")


@needs_monitoring
@pytest.mark.timeout(600)
def test_every_dashboard_query_returns_data(timeline: Timeline, scenario: Scenario) -> None:
    # Since Prometheus started: the scenario and its deploy (a range before that has no data, harmlessly).
    started = time.time() - (time.monotonic() - timeline.started) - 1800
    dashboard = rendered_dashboard()
    end = time.time()
    # The variables as Grafana fills them: each query variable's label_values from this Prometheus (a
    # multi-value variable with All: every value, as a regex); $__rate_interval 4 x the 15 s scrape interval.
    values = {"__rate_interval": "1m"}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        definition = variable["definition"].removeprefix("label_values(").removesuffix(")")
        selector, _, label = definition.rpartition(",")
        found = monitoring.get(
            monitoring.PROMETHEUS,
            f"api/v1/label/{label.strip()}/values",
            **{
                "match[]": monitoring.fill_variables(selector, values),
                "start": f"{started:.0f}",
                "end": f"{end:.0f}",
            },
        )["data"]
        values[variable["name"]] = "|".join(found) if variable.get("includeAll") else (found[:1] or [""])[0]
    timeline.facts["dashboard variables (from the real Prometheus)"] = str(values)
    empty = []
    queries = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries += 1
            expr = monitoring.fill_variables(target["expr"], values)
            if not monitoring.query_range(expr, start=started, end=end, step=30):
                empty.append(f"{panel['title']}: {expr}")
    timeline.facts["dashboard queries with data over the scenario"] = f"{queries - len(empty)}/{queries}"
    for index, line in enumerate(empty):
        timeline.facts[f"dashboard query without data #{index + 1}"] = line
    assert empty == [], empty
    timeline.mark(f"all {queries} dashboard queries returned data from the real Prometheus")


def rendered_dashboard() -> dict[str, Any]:
    """The chart's dashboard JSON as the chart renders it with release kuc's values."""
    template = deploy.helm(
        "template", k8s.RELEASE, str(k8s.CHART), "--set", "grafanaDashboard.enabled=true",
        "-f", str(monitoring.VALUES), "--show-only", "templates/dashboard-configmap.yaml",
    )  # fmt: skip
    (config_map,) = [doc for doc in yaml.safe_load_all(template) if doc]
    (text,) = config_map["data"].values()
    loaded: dict[str, Any] = json.loads(text)
    return loaded

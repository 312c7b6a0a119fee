"""The Prometheus stack in the kind scenario (``make e2e``; ``MONITORING=0`` leaves it out; docs/e2e.md).

Installed by ``e2e/kind/deploy.py`` before the chart: the images of ``e2e/monitoring/images.sh`` loaded into
the node the stack runs on (``kind load docker-image``; nothing is pulled), the Operator's CRDs, then
``e2e/monitoring/stack.py``'s objects. Every pod of the stack is pinned to the first control plane: control
planes are upgraded in place (never drained), so Prometheus' TSDB, Alertmanager's state and the notification
recorder's memory last through the whole scenario, while the workers are drained one by one.

The suite reads Prometheus, Alertmanager and the recorder through the API server's service proxy
(``kubectl get --raw /api/v1/namespaces/monitoring/services/<svc>:<port>/proxy/...``).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import pathlib
import subprocess
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

import yaml

from e2e.kind import k8s as cluster
from e2e.monitoring import stack

TAG = "kind-monitoring"
SWITCH = "KUC_E2E_MONITORING"  # set by make (MONITORING, 1 by default)
VALUES = pathlib.Path(__file__).resolve().parent / "monitoring-values.yaml"
IMAGES_SCRIPT = cluster.REPO / "e2e" / "monitoring" / "images.sh"
# kubernetes-mixin's alerts wait 15m upstream; the scenario's upgrade is shorter (stack.mixin_rules).
MIXIN_FOR = "1m"
PROMETHEUS = "prometheus-operated:9090"
ALERTMANAGER = f"alertmanager-{stack.ALERTMANAGER_MAIN}:9093"  # the one with the chart's inhibit rule
RECORDER = f"{stack.RECORDER}:{stack.RECORDER_PORT}"
CONTROL_PLANE_TOLERATION = {"key": cluster.CONTROL_PLANE_LABEL, "operator": "Exists", "effect": "NoSchedule"}
# The jobs Prometheus must scrape before the scenario starts (the chart's are checked by their metrics).
JOBS = ("apiserver", "kubelet", "kube-state-metrics")
ATTEMPTS = 3  # reads through the load balancer may land on an apiserver that is restarting or gone


def enabled() -> bool:
    return os.environ.get(SWITCH, "0") == "1"


def stack_node() -> str:
    """The first control plane: never drained, never the master the scenario removes (the last)."""
    return cluster.node_names(control_planes=True)[0]


def pinned(objects: Iterable[dict[str, Any]], *, node: str) -> list[dict[str, Any]]:
    """``objects`` with every pod they make (Deployments, the Operator's Prometheus and Alertmanager) on ``node``,
    tolerating the control-plane taint."""
    placement = {"nodeSelector": {"kubernetes.io/hostname": node}, "tolerations": [CONTROL_PLANE_TOLERATION]}
    out = []
    for obj in copy.deepcopy(list(objects)):
        if obj["kind"] == "Deployment":
            obj["spec"]["template"]["spec"].update(copy.deepcopy(placement))
        elif obj["kind"] in ("Prometheus", "Alertmanager"):
            obj["spec"].update(copy.deepcopy(placement))
        out.append(obj)
    return out


def build_images(*, controller_image: str) -> stack.Images:
    listing = subprocess.run(
        [str(IMAGES_SCRIPT)], stdout=subprocess.PIPE, text=True, check=True, timeout=3600
    ).stdout
    return stack.Images.from_listing(listing, controller=controller_image)


def apply(objects: list[dict[str, Any]]) -> None:
    cluster.run(
        ["kubectl", "apply", "--server-side", "--force-conflicts", "--field-manager=kuc-e2e", "-f", "-"],
        input=yaml.safe_dump_all(objects).encode(),
    )


def install(*, controller_image: str) -> None:
    """Images, CRDs, the stack (the chart's ServiceMonitor, PrometheusRule and AlertmanagerConfig come with it)."""
    started = time.monotonic()
    images = build_images(controller_image=controller_image)
    node = stack_node()
    built = [
        images.prometheus,
        images.alertmanager,
        images.operator,
        images.reloader,
        images.kube_state_metrics,
    ]
    cluster.log(TAG, f"images built in {time.monotonic() - started:.0f} s; loading them into {node}")
    cluster.run(["kind", "load", "docker-image", "--name", cluster.CLUSTER, "--nodes", node, *built])
    cluster.log(TAG, "the Prometheus Operator's CRDs")
    apply(stack.crds())
    for plural in stack.PLURALS:
        cluster.run(["kubectl", "wait", "--for=condition=Established", "--timeout=120s",
                     f"crd/{plural}.monitoring.coreos.com"])  # fmt: skip
    cluster.log(TAG, f"the Operator, Prometheus, Alertmanager, kube-state-metrics, the recorder (on {node}), "
                     f"kubernetes-mixin's alerts with for {MIXIN_FOR}")  # fmt: skip
    apply(pinned(stack.manifests(images, alert_for=MIXIN_FOR), node=node))
    cluster.log(TAG, f"stack applied {time.monotonic() - started:.0f} s after the start")


# ---------------------------------------------------------------------------------------- reading it


def get(service: str, path: str, **params: str) -> Any:
    """JSON from a service of the monitoring namespace, through the API server's service proxy (a failed read
    is tried again twice; then ConnectionError, which ``k8s.eventually`` takes for "not yet")."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    url = f"/api/v1/namespaces/{stack.NAMESPACE}/services/{service}/proxy/{path}{query}"
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return json.loads(cluster.run(["kubectl", "get", "--raw", url], timeout=60))
        except (RuntimeError, subprocess.TimeoutExpired) as error:  # an apiserver restarting, a pod not ready
            if attempt == ATTEMPTS:
                raise ConnectionError(str(error)) from error
            time.sleep(2)
    raise AssertionError("unreachable")


def query(promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query, now or evaluated at unix time ``at``."""
    when = {} if at is None else {"time": f"{at:.3f}"}
    found: list[dict[str, Any]] = get(PROMETHEUS, "api/v1/query", query=promql, **when)["data"]["result"]
    return found


def values() -> dict[str, Any]:
    """The scenario's monitoring values of the chart (:data:`VALUES`)."""
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return loaded


def query_range(promql: str, *, start: float, end: float, step: float) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get(
        PROMETHEUS,
        "api/v1/query_range",
        query=promql,
        start=f"{start:.3f}",
        end=f"{end:.3f}",
        step=f"{step:g}",
    )["data"]["result"]
    return found


def alerting_rules() -> set[str]:
    """The names of the alerting rules Prometheus loaded."""
    groups = get(PROMETHEUS, "api/v1/rules")["data"]["groups"]
    return {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}


def prometheus_alerts() -> list[dict[str, Any]]:
    """Prometheus' alerts now (pending and firing): ``[{labels, state, activeAt, ...}]``."""
    alerts: list[dict[str, Any]] = get(PROMETHEUS, "api/v1/alerts")["data"]["alerts"]
    return alerts


def firing_in_prometheus(alert: str) -> bool:
    return any(a["labels"]["alertname"] == alert and a["state"] == "firing" for a in prometheus_alerts())


def alertmanager_alerts(alert: str) -> list[dict[str, Any]]:
    """Alertmanager's alerts of that name, with their ``status`` (``state``, ``inhibitedBy``)."""
    found: list[dict[str, Any]] = [
        a for a in get(ALERTMANAGER, "api/v2/alerts") if a["labels"].get("alertname") == alert
    ]
    return found


def alertmanager_config() -> str:
    original: str = get(ALERTMANAGER, "api/v2/status")["config"]["original"]
    return original


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One alert in one notification the recorder received."""

    alert: str
    status: str  # firing | resolved
    receiver: str  # stack.RECEIVER (with the chart's inhibit rule) or stack.UNINHIBITED (the control)
    received: float  # unix time (the recorder's clock: the nodes share the host's)
    starts_at: float  # the alert's startsAt as Prometheus sent it

    @property
    def latency(self) -> float:
        return self.received - self.starts_at


def parse_time(stamp: str) -> float:
    """An RFC 3339 time of Alertmanager (nanoseconds are cut to microseconds) as unix time."""
    return datetime.datetime.fromisoformat(stamp).timestamp()


def deliveries_of(records: list[dict[str, Any]]) -> list[Delivery]:
    """The recorder's notifications, one entry per alert they carry."""
    return [
        Delivery(
            alert=alert["labels"].get("alertname", ""),
            status=alert["status"],
            receiver=record["payload"].get("receiver", ""),
            received=record["received"],
            starts_at=parse_time(alert["startsAt"]),
        )
        for record in records
        for alert in record["payload"].get("alerts", [])
    ]


def deliveries(*, receiver: str = stack.RECEIVER) -> list[Delivery]:
    """What Alertmanager main notified (with the chart's inhibit rule); ``stack.UNINHIBITED``: the control's."""
    return [d for d in deliveries_of(get(RECORDER, "notifications")) if d.receiver == receiver]


def wait_scraped(*, watchdogs: int, timeout: float = 600.0) -> None:
    """Prometheus scrapes the apiservers, the kubelets, kube-state-metrics and ``watchdogs`` leader-watchdogs
    of the chart and loaded the chart's and the mixin's rules; Alertmanager holds the chart's inhibit rule;
    the recorder answers."""

    def scraped() -> bool:
        try:
            up = {r["metric"].get("job") for r in query("up == 1")}
            watchdog = query("count(leader_watchdog_masters_agreed)")
            config = alertmanager_config()
            get(RECORDER, "notifications")
            loaded = alerting_rules()
        except (OSError, KeyError, ValueError):
            return False
        return (
            set(JOBS) <= up
            and bool(watchdog)
            and int(float(watchdog[0]["value"][1])) >= watchdogs
            and "KubeUpgradeInProgress" in config
            and {"KubeUpgradeInProgress", "KubeVersionMismatch"} <= loaded
        )

    started = time.monotonic()
    cluster.eventually(
        scraped, timeout=timeout, interval=5, what="Prometheus scraping, Alertmanager configured"
    )
    jobs = sorted({r["metric"].get("job", "") for r in query("up == 1")})
    cluster.log(TAG, f"Prometheus scrapes {', '.join(jobs)} (ready after {time.monotonic() - started:.0f} s); "
                     "Alertmanager holds the chart's inhibit rule")  # fmt: skip


# ------------------------------------------------------------------------------------ what it saw


STACK_CONTAINERS = (
    f'namespace="{stack.NAMESPACE}", container!="", container!="POD", metrics_path="/metrics/cadvisor"'
)
STACK_MEMORY = f"sum(container_memory_working_set_bytes{{{STACK_CONTAINERS}}})"
SIGNAL = "max by (job, phase, from, to) (leader_watchdog_upgrade_in_progress == 1)"
# The steps at which a watchdog had a view: its masters agreed (settled), or it signalled an upgrade. Left out:
# steps it was not scraped (its pod drained and rescheduled), and a fresh pod's first seconds, before the
# masters' agreement settled (logic.upgrade_progress: a watchdog started mid-upgrade knows nothing yet).
VIEW = "count by (job) ((leader_watchdog_masters_agreed == 1) or (leader_watchdog_upgrade_in_progress == 1))"
SCRAPED = "count by (job) (leader_watchdog_masters_agreed)"  # every step it was scraped at all


def phase_sequences(*, signal: list[dict[str, Any]], scraped: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per job, the phases of the upgrade signal over a range query, consecutive repeats merged.

    ``signal``: ``max by (job, phase) (leader_watchdog_upgrade_in_progress == 1)``; ``scraped``: a series per
    job that exists at the steps that count (:data:`VIEW`: the watchdog was scraped and had a view). A step
    that counts without a phase at 1 is "none"; a step that does not count says nothing and is left out.
    Two phases at one step read "a+b".
    """
    phases: dict[str, dict[float, set[str]]] = {}
    for series in signal:
        job, phase = series["metric"].get("job", ""), series["metric"].get("phase", "")
        for stamp, _ in series["values"]:
            phases.setdefault(job, {}).setdefault(float(stamp), set()).add(phase)
    sequences: dict[str, list[str]] = {}
    for series in scraped:
        job = series["metric"].get("job", "")
        sequence: list[str] = []
        for stamp, _ in series["values"]:
            now = "+".join(sorted(phases.get(job, {}).get(float(stamp), set()))) or "none"
            if not sequence or sequence[-1] != now:
                sequence.append(now)
        sequences[job] = sequence
    return sequences


def fill_variables(expr: str, values: dict[str, str]) -> str:
    """A dashboard expression with its variables (``$name``) replaced, longest names first."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${name}", values[name])
    return expr


def restarts() -> dict[str, int]:
    """Container restarts of every pod of the stack (a restarted recorder or Alertmanager forgets what it saw)."""
    pods = cluster.api().core.list_namespaced_pod(stack.NAMESPACE).items
    return {
        pod.metadata.name: sum(c.restart_count for c in pod.status.container_statuses or []) for pod in pods
    }

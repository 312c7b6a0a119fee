"""The README's "What it looks like", made for real on a fresh local control plane:

- a cluster one minor behind its next upgrade (3 masters at v1.36.3; workers at v1.36, v1.35 and one at
  v1.33, four minors below the next minor; a PodDisruptionBudget that allows no disruption over a pod on a
  worker to drain), the chart installed by ``helm install upgrades ... -n kube-upgrade``, its
  acknowledgements ConfigMap waiving drain-blockers for 1.37; then ``kube-upgrade-controllers readiness
  --release upgrades -n kube-upgrade`` as the chart's NOTES print it;
- the Alertmanager notification of the chart's KubeUpgradeNodesOutdated: node-tainter (its console script)
  serves its metrics, a real Prometheus scrapes it and evaluates the chart's rules (``nodesOutdated`` cut to
  10 s), a real Alertmanager sends the notification to the kind scenario's webhook recorder;
- docs/images/dashboard.png: the chart's Grafana dashboard without Grafana (AGPL, not used here): every
  panel's queries, as the chart renders them, run over ``make demo``'s story (the five controllers as
  processes, a rolling master upgrade, the workers replaced, a stale leader) in a real Prometheus that
  scraped the controllers every second, and drawn with matplotlib on the dashboard's own grid.

    python -m tests.readme_figures        (after make fixture tools; prints the first two, writes the PNG)
"""

from __future__ import annotations

import asyncio
import datetime
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp

from controllers.kube import client, resources
from controllers.upgrade_readiness import logic
from e2e import cluster, controlplane, demo
from tests import alerting, chart_tools, harness

BIN = pathlib.Path(sys.executable).parent
DASHBOARD_PNG = controlplane.REPO / "docs" / "images" / "dashboard.png"
CLUSTER = "eu-1"
RELEASE, NAMESPACE = "upgrades", "kube-upgrade"
PREFIX = f"{RELEASE}-kube-upgrade-controllers"
WORKERS = {"pool-a-1": "v1.36.3", "pool-a-2": "v1.36.3", "pool-b-1": "v1.33.9", "pool-b-2": "v1.35.6"}


async def one_minor_behind(kube: client.Kube) -> None:
    nodes = cluster.Nodes(kube)
    for i in range(1, 4):
        await nodes.create(f"master-{i}", version="v1.36.3", master=True)
    for name, version in WORKERS.items():
        await nodes.create(name, version=version)
    await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": "payments"}})
    pod = {"metadata": {"name": "ledger-0", "labels": {"app": "ledger"}},
           "spec": {"nodeName": "pool-b-2", "containers": [{"name": "ledger", "image": "ledger:1"}]}}  # fmt: skip
    await kube.create(resources.PODS.path(namespace="payments"), pod)
    pdbs = resources.POD_DISRUPTION_BUDGETS
    pdb = {
        "metadata": {"name": "ledger"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "ledger"}}},
    }
    await kube.create(pdbs.path(namespace="payments"), pdb)
    status = {
        "disruptionsAllowed": 0,
        "currentHealthy": 1,
        "desiredHealthy": 1,
        "expectedPods": 1,
        "observedGeneration": 1,
    }  # what the disruption controller would write (none runs here)
    await kube.patch(pdbs.path(namespace="payments", name="ledger", subresource="status"), {"status": status})


async def acknowledge(kube: client.Kube) -> None:
    target = logic.parse_target("v1.37")
    assert target is not None
    key = logic.ack_key(target=target, check="drain-blockers")
    until = datetime.datetime(2026, 12, 20, tzinfo=datetime.UTC)
    value = logic.ack_value(until=until, reason="ledger leaves pool-b in CHG-4711")
    body = {"metadata": {"name": f"{PREFIX}-upgrade-readiness-acks"}, "data": {key: value}}
    await kube.create(resources.CONFIGMAPS.path(namespace=NAMESPACE), body)


def prometheus_config(*, tainter: int, alertmanager: str) -> dict[str, Any]:
    target = {"labels": {"cluster": "eu-1", "namespace": NAMESPACE}, "targets": [f"127.0.0.1:{tainter}"]}
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}]
        },
        "scrape_configs": [{"job_name": "node-tainter", "static_configs": [target]}],
    }


async def notification(kubeconfig: str, directory: pathlib.Path) -> dict[str, Any]:
    rules = chart_tools.rules_file(
        directory / "chart-rules.yml", "--set", "prometheusRule.thresholds.nodesOutdated=10s"
    )
    tainter = [sys.executable, "-m", "controllers.node_tainter", "--kubeconfig", kubeconfig, "--min-masters=3",
               "--settle-seconds=0", f"--namespace={NAMESPACE}", f"--release={PREFIX}", "--dry-run"]  # fmt: skip
    async with alerting.recording() as (url, received):
        route = {"receiver": "webhook", "group_by": ["alertname", "cluster"], "group_wait": "1s"}
        config = {"route": route, "receivers": [{"name": "webhook", "webhook_configs": [{"url": url}]}]}
        with (
            harness.serve(*tainter) as served,
            alerting.alertmanager(config, directory) as am,
            alerting.prometheus(
                prometheus_config(tainter=served.port, alertmanager=am), rules["groups"], directory
            ),
        ):
            await harness.eventually(
                lambda: ("KubeUpgradeNodesOutdated", "eu-1") in {key for _, key in received()},
                timeout=120, interval=0.5, what="KubeUpgradeNodesOutdated notified",
            )  # fmt: skip
            async with (
                aiohttp.ClientSession() as session,
                session.get(url.replace("/notify", "/notifications")) as got,
            ):
                return dict((await got.json())[0]["payload"])


async def dashboard(directory: pathlib.Path, png: pathlib.Path) -> None:
    targets = directory / "targets.json"
    targets.write_text("[]")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "controllers",
                            "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}]}],
    }  # fmt: skip

    def started(procs: dict[str, demo.Process]) -> None:
        labels = {"cluster": CLUSTER, "namespace": "kube-system"}
        groups = [
            {"targets": [f"127.0.0.1:{p.port}"], "labels": {**labels, "job": name}}
            for name, p in procs.items()
        ]
        targets.write_text(json.dumps(groups))

    with alerting.prometheus(config, [], directory) as prom:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await harness.eventually(
                lambda: alerting.ready(session, prom), timeout=60, what="Prometheus ready"
            )
            with controlplane.running() as plane:
                timeline = demo.Timeline()
                begin = time.time()
                await demo.run_scenario(plane, timeline, logs=directory, started=started)
                end = time.time() + 2
            await asyncio.sleep(3)  # the last scrapes
            panels = await panel_series(session, prom, begin=begin, end=end)
    draw(panels, png, duration=end - begin)


Series = list[tuple[str, list[float], list[float]]]  # (legend, seconds into the story, values)


async def panel_series(
    session: aiohttp.ClientSession, prom: str, *, begin: float, end: float
) -> list[tuple[dict[str, Any], Series]]:
    """Each panel of the dashboard as the chart renders it, with its queries' series over the story."""
    (cm,) = chart_tools.template("--set", "grafanaDashboard.enabled=true",
                                 "--show-only", "templates/dashboard-configmap.yaml")  # fmt: skip
    dashboard = json.loads(cm["data"]["kube-upgrade-controllers.json"])
    filled = {
        "$cluster": CLUSTER,
        "$namespace": "kube-system",
        "$__rate_interval": "4s",
    }  # 4 scrapes, as Grafana
    panels = []
    for panel in dashboard["panels"]:
        series: Series = []
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in filled.items():
                expr = expr.replace(variable, value)
            query = {"query": expr, "start": f"{begin:.3f}", "end": f"{end:.3f}", "step": "1"}
            async with session.get(f"{prom}/api/v1/query_range", params=query) as response:
                response.raise_for_status()
                found = (await response.json())["data"]["result"]
            for each in found:
                legend = legend_of(target["legendFormat"], each["metric"])
                times = [float(t) - begin for t, _ in each["values"]]
                series.append((legend, times, [float(v) for _, v in each["values"]]))
        panels.append((panel, series))
    return panels


def legend_of(template: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend format filled in."""
    return re.sub(r"\{\{ *(\w+) *\}\}", lambda m: labels.get(m.group(1), ""), template)


def draw(panels: list[tuple[dict[str, Any], Series]], png: pathlib.Path, *, duration: float) -> None:
    """The panels on the dashboard's own 24-column grid."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p, _ in panels)
    figure = pyplot.figure(figsize=(14, rows * 0.3), dpi=100, layout="constrained")
    grid = figure.add_gridspec(rows, 24)
    for panel, series in panels:
        at = panel["gridPos"]
        axes = figure.add_subplot(grid[at["y"] : at["y"] + at["h"], at["x"] : at["x"] + at["w"]])
        top = 1.0
        for legend, times, values in series:
            axes.step(times, values, where="post", linewidth=1.3, label=legend)
            top = max(top, *values)
        axes.set_title(panel["title"], fontsize=10, loc="left")
        axes.set_xlim(0, duration)
        axes.set_ylim(0, top * 1.25)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        if series:
            axes.legend(fontsize=6, loc="upper right", ncols=2, framealpha=0.85)
        else:
            axes.text(0.5, 0.5, "no data", transform=axes.transAxes, ha="center", color="grey")
    figure.suptitle(
        "The chart's dashboard: its queries over make demo in a real Prometheus (x: seconds into the story)",
        fontsize=11,
    )
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, bbox_inches="tight")
    pyplot.close(figure)


async def main() -> None:
    with controlplane.running() as plane, tempfile.TemporaryDirectory(prefix="readme-figures-") as directory:
        kubeconfig = str(plane.kubeconfig)
        async with await client.connect(kubeconfig=kubeconfig) as kube:
            await one_minor_behind(kube)
            install: list[str | pathlib.Path] = ["install", RELEASE, chart_tools.CHART, "-n", NAMESPACE, "--create-namespace",
                       "--set", "config.minMasters=3", "--kubeconfig", kubeconfig]  # fmt: skip
            await asyncio.to_thread(chart_tools.helm, *install)
            await acknowledge(kube)
        argv = [str(BIN / "kube-upgrade-controllers"), "readiness", "--release", RELEASE, "-n", NAMESPACE]
        shown = await asyncio.to_thread(
            subprocess.run, [*argv, "--kubeconfig", kubeconfig], capture_output=True, text=True, check=False
        )
        print(
            f"$ kube-upgrade-controllers readiness --release {RELEASE} -n {NAMESPACE}\n{shown.stdout}{shown.stderr}"
        )
        print(f"exit {shown.returncode}\n")
        print(json.dumps(await notification(kubeconfig, pathlib.Path(directory)), indent=2))
    with tempfile.TemporaryDirectory(prefix="readme-dashboard-") as directory:
        await dashboard(pathlib.Path(directory), DASHBOARD_PNG)
    print(f"wrote {DASHBOARD_PNG.relative_to(controlplane.REPO)}")


if __name__ == "__main__":
    asyncio.run(main())

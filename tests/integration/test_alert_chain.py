"""The upgrade signal through a real Prometheus and Alertmanager, with the real leader-watchdog on the local
control plane: what the kind scenario proves, at the scale of one machine.

The watchdog (its console script, serving /metrics as it does by default: HTTPS, a bearer token reviewed by
the apiserver) watches Nodes whose versions the test moves as an upgrade does; a real Prometheus scrapes it
every second with a ServiceAccount token allowed to get /metrics and evaluates the chart's rules (clusterLabel
cluster, KubeUpgradeInProgress keeping firing 10 s) and kubernetes-mixin's KubeVersionMismatch (the
expression quoted in e2e/monitoring/stack.py, its `for` cut to 5 s); a real Alertmanager with
docs/alerting.md's rules notifies the kind scenario's recorder. KubeVersionMismatch needs
kubernetes_build_info of components on different versions: the fixture has one apiserver and no kubelet,
so a stand-in endpoint serves one series per component (two apiservers, a kubelet), moved with the Nodes.

Asserted: KubeVersionMismatch fires in Prometheus while the versions are mixed and is never notified during
the upgrade; the signal goes control-plane → workers → done as Prometheus scraped it; every query of the
chart's dashboard runs in this Prometheus with its variables filled in (the panels of what it scrapes
return data); then the same mismatch with no upgrade under way is notified (the control), and its delivery
time is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import sys
import time

import aiohttp

from controllers.kube import client
from e2e import cluster
from e2e.monitoring import stack
from tests import alerting, chart_tools, harness
from tests.integration import test_alertmanager
from tests.integration import test_metrics_secure as secure

OLD, NEW = "v1.36.1", "v1.37.2"
CLUSTER = "eu-1"
MISMATCH = ("KubeVersionMismatch", CLUSTER)
UPGRADE = ("KubeUpgradeInProgress", CLUSTER)


def build_info(versions: dict[str, str]) -> contextlib.AbstractAsyncContextManager[int]:
    """A target exporting kubernetes_build_info{component, git_version} per entry of ``versions`` (read at each
    scrape); its port."""
    return alerting.exporter(
        lambda: (f'kubernetes_build_info{{component="{c}",git_version="{v}"}} 1' for c, v in versions.items())
    )


def prometheus_config(
    *, watchdog: int, components: int, alertmanager: str, token_file: pathlib.Path
) -> dict[str, object]:
    target = {"labels": {"cluster": CLUSTER, "namespace": "upgrades"}}
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}]
        },
        "scrape_configs": [
            {  # what the chart's ServiceMonitor asks of the Prometheus Operator (metrics.secure)
                "job_name": "leader-watchdog",
                "scheme": "https",
                "tls_config": {"insecure_skip_verify": True},  # the self-signed certificate made at start
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                "static_configs": [{**target, "targets": [f"127.0.0.1:{watchdog}"]}],
            },
            {
                "job_name": "components",
                "static_configs": [{**target, "targets": [f"127.0.0.1:{components}"]}],
            },
        ],
    }


async def test_a_healthy_upgrade_notifies_nothing_and_the_same_mismatch_without_it_is_notified(
    kubeconfig: str, kube: client.Kube, namespace: str, nodes: cluster.Nodes, tmp_path: pathlib.Path
) -> None:
    masters, worker = ["chain-m1", "chain-m2"], "chain-w1"
    for name in masters:
        await nodes.create(name, version=OLD, master=True)
    await nodes.create(worker, version=OLD)
    versions = {"apiserver-m1": OLD, "apiserver-m2": OLD, "kubelet-w1": OLD}
    rules = chart_tools.rules_file(tmp_path / "chart-rules.yml",
                                   "--set", "prometheusRule.thresholds.upgradeInProgressKeepFiring=10s")["groups"]  # fmt: skip
    rules += stack.mixin_rules(alert_for="5s")["spec"]["groups"]
    token_file = tmp_path / "prometheus-token"
    token_file.write_text(await secure.service_account_token(kube, namespace=namespace, name="prometheus"))
    await secure.grant_metrics_reader(kube, namespace=namespace, account="prometheus")
    watchdog = [sys.executable, "-m", "controllers.leader_watchdog", "--kubeconfig", kubeconfig,
                "--checks", "heartbeats", "--node-lease-namespace", namespace, "--settle-seconds", "0",
                "--evaluate-interval-seconds", "0.5"]  # fmt: skip
    async with (
        alerting.recording() as (url, received),
        build_info(versions) as components,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        with (
            harness.serve(*watchdog) as served,
            alerting.alertmanager(test_alertmanager.documented_config(url), tmp_path) as am,
            alerting.prometheus(
                prometheus_config(
                    watchdog=served.port, components=components, alertmanager=am, token_file=token_file
                ),
                rules,
                tmp_path,
            ) as prom,  # fmt: skip
        ):

            async def phases() -> list[tuple[str, str, str]]:
                found = await alerting.query(session, prom, "leader_watchdog_upgrade_in_progress == 1")
                return [(r["metric"]["phase"], r["metric"]["from"], r["metric"]["to"]) for r in found]

            async def scraped(expected: list[tuple[str, str, str]]) -> bool:
                return await phases() == expected

            async def firing(*alerts: alerting.Key) -> bool:
                return set(alerts) <= await alerting.firing_in_prometheus(session, prom)

            async def up() -> bool:
                ready = [await alerting.ready(session, am), await alerting.ready(session, prom)]
                query = 'leader_watchdog_masters_agreed{cluster="eu-1"} == 1'
                return all(ready) and bool(await alerting.query(session, prom, query))

            await harness.eventually(
                up, timeout=60, interval=0.5, what="Alertmanager, Prometheus, agreement scraped"
            )
            assert await phases() == []

            # The first master moves: its kubelet and its apiserver.
            moved = time.monotonic()
            await nodes.set_status(masters[0], version=NEW)
            versions["apiserver-m1"] = NEW
            signal = await harness.eventually(lambda: scraped([("control-plane", OLD, NEW)]), timeout=30,
                                              interval=0.2, what="control-plane phase scraped")  # fmt: skip
            await harness.eventually(lambda: firing(UPGRADE, MISMATCH), timeout=60, interval=0.2,
                                     what="KubeUpgradeInProgress and KubeVersionMismatch firing")  # fmt: skip
            mixed = time.monotonic() - moved
            states = await alerting.alertmanager_alerts(session, am)
            assert states[MISMATCH]["state"] == "suppressed" and states[MISMATCH]["inhibitedBy"], states

            await nodes.set_status(masters[1], version=NEW)
            versions["apiserver-m2"] = NEW
            await harness.eventually(lambda: scraped([("workers", OLD, NEW)]), timeout=30, interval=0.2,
                                     what="workers phase scraped")  # fmt: skip
            assert await firing(MISMATCH)  # the worker's kubelet is still old
            await dashboard_queries_run(session, prom)

            await nodes.set_status(worker, version=NEW)
            versions["kubelet-w1"] = NEW
            await harness.eventually(lambda: scraped([]), timeout=30, interval=0.2, what="no upgrade scraped")
            await harness.eventually(lambda: firing_none(session, prom), timeout=60, interval=0.5,
                                     what="every alert resolved (KubeUpgradeInProgress keeps firing 10 s)")  # fmt: skip
            await asyncio.sleep(2)
            assert test_alertmanager.notified(received) == set(), received()

            # The control: the same mismatch with no upgrade under way is delivered.
            versions["kubelet-w1"] = OLD
            flipped = time.time()
            await harness.eventually(lambda: MISMATCH in test_alertmanager.notified(received), timeout=60,
                                     interval=0.2, what="KubeVersionMismatch notified without an upgrade")  # fmt: skip
            delivered = min(at for at, alert in received() if alert == MISMATCH) - flipped
            print(
                f"\ncontrol-plane phase scraped {signal:.1f} s after the first master moved; KubeVersionMismatch "
                f"firing (for 5 s) and inhibited {mixed:.1f} s after; without an upgrade it was delivered "
                f"{delivered:.1f} s after the versions diverged (scrape and evaluation every 1 s, for 5 s)"
            )
            assert UPGRADE not in test_alertmanager.notified(received)


async def firing_none(session: aiohttp.ClientSession, url: str) -> bool:
    return not await alerting.firing_in_prometheus(session, url)


async def dashboard_queries_run(session: aiohttp.ClientSession, url: str) -> None:
    """Every query of the chart's dashboard (as the chart renders it) runs in the real Prometheus with the
    variables filled in; the panels this Prometheus has the metrics of (the watchdog's agreement and upgrade
    signal) return data."""
    (cm,) = chart_tools.template("--set", "grafanaDashboard.enabled=true",
                                 "--show-only", "templates/dashboard-configmap.yaml")  # fmt: skip
    dashboard = json.loads(cm["data"]["kube-upgrade-controllers.json"])
    filled = {"$cluster": CLUSTER, "$namespace": "upgrades", "$__rate_interval": "1m"}
    with_data = {"Master agreement": 0, "Upgrade in progress": 0}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in filled.items():
                expr = expr.replace(variable, value)
            result = await alerting.query(session, url, expr)  # a query Prometheus rejects fails here
            if panel["title"] in with_data:
                with_data[panel["title"]] += bool(result)
    assert with_data == {"Master agreement": 3, "Upgrade in progress": 1}, with_data

"""docs/alerting.md's inhibit rules in a real Alertmanager (the project's build, e2e/build-tool.sh): alerts
posted to its API, notifications received by a webhook served here.

While KubeUpgradeInProgress fires in cluster eu-1, eu-1's KubeVersionMismatch is not notified; us-2's is,
and so is eu-1's KubeUpgradeNodesOutdated. Once the upgrade alert resolves, eu-1's mismatch is notified:
the inhibit rule, not the configuration around it, held it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import pathlib
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from e2e import controlplane
from e2e.monitoring import recorder
from tests import chart_tools, harness
from tests.integration import test_chart_alerting


def alert(
    name: str, cluster: str, labels: dict[str, str] | None = None, *, resolved: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {"labels": {"alertname": name, "cluster": cluster, **(labels or {})}}
    if resolved:
        ended = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
        body["endsAt"] = ended.isoformat()
    return body


def key(labels: dict[str, str]) -> tuple[str, str]:
    return (labels["alertname"], labels["cluster"])


@contextlib.asynccontextmanager
async def webhook() -> AsyncIterator[tuple[str, Callable[[], list[tuple[str, str]]]]]:
    """The kind scenario's webhook receiver (e2e/monitoring/recorder.py) on loopback: its URL, and what it
    recorded as the firing alerts notified so far, as (alertname, cluster)."""
    application = recorder.app()

    def firing() -> list[tuple[str, str]]:
        return [key(a["labels"]) for n in application[recorder.NOTIFICATIONS]
                for a in n["payload"]["alerts"] if a["status"] == "firing"]  # fmt: skip

    runner = web.AppRunner(application)
    await runner.setup()
    port = controlplane.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/notify", firing
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def alertmanager(config: dict[str, Any], directory: pathlib.Path) -> Iterator[str]:
    """A real Alertmanager with ``config``, no clustering; yields its URL."""
    binary = chart_tools.tool("alertmanager")
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = controlplane.free_port()
    log = (directory / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={directory / 'alertmanager.yml'}", f"--storage.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@dataclasses.dataclass
class Api:
    """Alertmanager's HTTP API v2."""

    url: str
    session: aiohttp.ClientSession

    async def ready(self) -> bool:
        try:
            async with self.session.get(f"{self.url}/-/ready") as response:
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    async def post(self, *alerts: dict[str, Any]) -> None:
        async with self.session.post(f"{self.url}/api/v2/alerts", json=list(alerts)) as response:
            response.raise_for_status()

    async def alerts(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Each alert's status (state, inhibitedBy) by (alertname, cluster)."""
        async with self.session.get(f"{self.url}/api/v2/alerts") as response:
            response.raise_for_status()
            return {key(a["labels"]): a["status"] for a in await response.json()}


async def test_inhibit_rules_hold_back_the_upgrade_alerts_of_the_upgrading_cluster_only(
    tmp_path: pathlib.Path,
) -> None:
    documented = test_chart_alerting.documented_alertmanager_yaml()
    async with webhook() as (url, received):
        config = {
            # Every alert its own notification, sent at once: what matters is which ones are sent.
            "route": {
                "receiver": "webhook",
                "group_by": ["..."],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
                "routes": documented["route"]["routes"],
            },
            "receivers": [{"name": "webhook", "webhook_configs": [{"url": url}]}, *documented["receivers"]],
            "inhibit_rules": documented["inhibit_rules"],
        }
        with alertmanager(config, tmp_path) as url_am:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                am = Api(url_am, session)
                await harness.eventually(am.ready, timeout=30, interval=0.2, what="Alertmanager ready")
                upgrade = {"severity": "none", "phase": "workers"}
                await am.post(alert("KubeUpgradeInProgress", "eu-1", upgrade))
                await am.post(
                    alert("KubeVersionMismatch", "eu-1", {"severity": "warning"}),
                    alert("KubeVersionMismatch", "us-2", {"severity": "warning"}),
                    alert(
                        "KubeUpgradeNodesOutdated", "eu-1", {"severity": "warning", "namespace": "upgrades"}
                    ),
                )
                expected = {("KubeVersionMismatch", "us-2"), ("KubeUpgradeNodesOutdated", "eu-1")}
                await harness.eventually(
                    lambda: expected <= set(received()), timeout=30, interval=0.1, what=f"{expected} notified"
                )
                await asyncio.sleep(3)  # three more group intervals: nothing else may come
                assert set(received()) == expected

                states = await am.alerts()
                held = states[("KubeVersionMismatch", "eu-1")]
                assert held["state"] == "suppressed" and held["inhibitedBy"], held
                assert states[("KubeVersionMismatch", "us-2")]["state"] == "active"

                # The upgrade is over: the mismatch, still firing, is notified now.
                await am.post(alert("KubeUpgradeInProgress", "eu-1", upgrade, resolved=True))
                await harness.eventually(
                    lambda: ("KubeVersionMismatch", "eu-1") in received(),
                    timeout=30,
                    interval=0.1,
                    what="eu-1's mismatch notified once the upgrade alert resolved",
                )
                assert ("KubeUpgradeInProgress", "eu-1") not in received()  # routed to the null receiver

"""Real Prometheus and Alertmanager processes for the alerting tests (the project's builds of both, from
e2e/build-tool.sh), and the kind scenario's notification recorder (e2e/monitoring/recorder.py) on loopback.
"""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from e2e import controlplane
from e2e.monitoring import recorder
from tests import chart_tools

Key = tuple[str, str]  # (alertname, cluster)


def key(labels: Mapping[str, str]) -> Key:
    return (labels["alertname"], labels.get("cluster", ""))


@contextlib.asynccontextmanager
async def recording() -> AsyncIterator[tuple[str, Callable[[], list[tuple[float, Key]]]]]:
    """recorder.py on loopback: its webhook URL, and the firing alerts it was notified of, as
    (received, (alertname, cluster)) in order."""
    application = recorder.app()

    def firing() -> list[tuple[float, Key]]:
        return [(n["received"], key(a["labels"])) for n in application[recorder.NOTIFICATIONS]
                for a in n["payload"]["alerts"] if a["status"] == "firing"]  # fmt: skip

    runner = web.AppRunner(application)
    await runner.setup()
    port = controlplane.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/notify", firing
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def exporter(lines: Callable[[], Iterable[str]]) -> AsyncIterator[int]:
    """A scrape target on loopback serving ``lines()`` (``series value``, called at each scrape: a test adds
    and removes series while it runs); yields its port."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text="".join(f"{line}\n" for line in lines()))

    application = web.Application()
    application.router.add_get("/metrics", metrics)
    runner = web.AppRunner(application)
    await runner.setup()
    port = controlplane.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def process(name: str, argv: list[str], directory: pathlib.Path) -> Iterator[None]:
    """``argv``, its output in ``directory/<name>.log``; terminated at the end."""
    with (directory / f"{name}.log").open("w") as log:
        started = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            started.terminate()
            started.wait(timeout=30)


@contextlib.contextmanager
def alertmanager(
    config: Mapping[str, Any], directory: pathlib.Path, *, version: str | None = None
) -> Iterator[str]:
    """A real Alertmanager (the pinned release unless ``version``) with ``config``, no clustering; yields
    its URL."""
    binary = chart_tools.tool("alertmanager", version=version)
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(dict(config)))
    port = controlplane.free_port()
    argv = [str(binary), f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'alertmanager-data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address="]  # fmt: skip
    with process("alertmanager", argv, directory):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def prometheus(
    config: Mapping[str, Any], rule_groups: list[dict[str, Any]], directory: pathlib.Path
) -> Iterator[str]:
    """A real Prometheus with ``config`` and one rules file of ``rule_groups``, sending alerts at once and
    again every second; yields its URL."""
    binary = chart_tools.tool("prometheus")
    (directory / "rules.yml").write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
    (directory / "prometheus.yml").write_text(yaml.safe_dump({**config, "rule_files": ["rules.yml"]}))
    port = controlplane.free_port()
    argv = [str(binary), f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'prometheus-data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s"]  # fmt: skip
    with process("prometheus", argv, directory):
        yield f"http://127.0.0.1:{port}"


async def ready(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(f"{url}/-/ready") as response:
            return response.status == 200
    except aiohttp.ClientConnectionError:
        return False


async def post_alerts(session: aiohttp.ClientSession, url: str, *alerts: dict[str, Any]) -> None:
    async with session.post(f"{url}/api/v2/alerts", json=list(alerts)) as response:
        response.raise_for_status()


async def alertmanager_alerts(session: aiohttp.ClientSession, url: str) -> dict[Key, dict[str, Any]]:
    """Each alert's status in Alertmanager (state, inhibitedBy) by (alertname, cluster)."""
    async with session.get(f"{url}/api/v2/alerts") as response:
        response.raise_for_status()
        return {key(a["labels"]): a["status"] for a in await response.json()}


async def firing_in_prometheus(session: aiohttp.ClientSession, url: str) -> set[Key]:
    async with session.get(f"{url}/api/v1/alerts") as response:
        response.raise_for_status()
        alerts = (await response.json())["data"]["alerts"]
    return {key(a["labels"]) for a in alerts if a["state"] == "firing"}


async def query(session: aiohttp.ClientSession, url: str, promql: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/v1/query", params={"query": promql}) as response:
        response.raise_for_status()
        result: list[dict[str, Any]] = (await response.json())["data"]["result"]
        return result

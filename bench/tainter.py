"""Benchmark: node-tainter taints 1,000 outdated workers, side by side with a ``kubectl taint`` loop.

Everything runs in one go on a fresh local control plane (etcd + kube-apiserver), on the same nodes:

1. the daemon (``node-tainter`` as a real process, settled on v1.35.2): the masters move to v1.36.1; timed from
   the masters' change until its state ConfigMap says Done (then every worker is checked to carry the taint);
2. ``node-tainter --once`` as a new process (interpreter start and imports included);
3. the anchor: ``kubectl taint nodes <node> <key>=<value>:PreferNoSchedule``, one process per node, in a loop.

The taints are removed between runs. Prints the seconds and the ratios; writes ``bench/results/tainter.json``.

    python -m bench.tainter [--nodes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from bench import report
from controllers.kube import client, resources, state
from controllers.node_tainter import logic
from e2e import cluster, controlplane

NODES = resources.NODES
KEY = logic.DEFAULT_TAINT_KEY
OLD, NEW = "v1.35.2", "v1.36.1"
NAMESPACE = "kube-system"
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "tainter.json"


def worker_names(count: int) -> list[str]:
    return [f"bench-worker-{i:04d}" for i in range(count)]


async def count_tainted(kube: client.Kube) -> int:
    tainted = 0
    async for page in kube.list_pages(NODES.path()):
        tainted += sum(
            1 for n in page["items"] if any(t["key"] == KEY for t in n["spec"].get("taints") or [])
        )
    return tainted


async def clear_taints(kube: client.Kube, names: list[str]) -> None:
    semaphore = asyncio.Semaphore(32)

    async def one(name: str) -> None:
        async with semaphore:
            node = await kube.get(NODES.path(name=name))
            kept = [t for t in node["spec"].get("taints") or [] if t["key"] != KEY]
            await kube.patch(
                NODES.path(name=name),
                {
                    "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                    "spec": {"taints": kept},
                },
            )

    await asyncio.gather(*(one(name) for name in names))
    assert await count_tainted(kube) == 0


def tainter_command(kubeconfig: str, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "controllers.node_tainter",
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        NAMESPACE,
        "--min-masters",
        "3",
        "--settle-seconds",
        "0",
        "--metrics-bind-address",
        "0",
        "--health-probe-bind-address",
        "0",
        *flags,
    ]


@contextlib.asynccontextmanager
async def daemon(kubeconfig: str, log: pathlib.Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *tainter_command(kubeconfig), stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def execute(*argv: str, env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    stdout, stderr = await process.communicate()
    return process.returncode or 0, stdout, stderr


async def wait_settled(kube: client.Kube, version: str) -> None:
    """Until node-tainter's state ConfigMap says it is done with ``version`` (polled every 0.1 s)."""
    name = state.state_name(release="kube-upgrade-controllers", controller="node-tainter")
    while True:
        current = await state.read(kube, namespace=NAMESPACE, name=name)
        if current.get("version") == version and current.get("phase") == "Done":
            return
        await asyncio.sleep(0.1)


async def run(count: int, workdir: pathlib.Path) -> dict[str, Any]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl is not on PATH: the anchor cannot run")
    with controlplane.running() as plane:
        kubeconfig = str(plane.kubeconfig)
        async with await client.connect(kubeconfig=kubeconfig) as kube:
            nodes = cluster.Nodes(kube)
            masters, workers = [f"bench-master-{i}" for i in range(3)], worker_names(count)
            started = time.monotonic()
            await nodes.create_many(masters, version=OLD, master=True)
            await nodes.create_many(workers, version=OLD)
            print(f"created 3 masters + {count} workers in {time.monotonic() - started:.1f} s", flush=True)

            # 1. The daemon, settled on the old version; then the masters move.
            async with daemon(kubeconfig, workdir / "daemon.log") as process:
                async with asyncio.timeout(300):
                    await wait_settled(kube, OLD)
                began = time.monotonic()
                await asyncio.gather(*(nodes.set_status(m, version=NEW) for m in masters))
                async with asyncio.timeout(900):
                    await wait_settled(kube, NEW)
                daemon_seconds = time.monotonic() - began
                assert process.returncode is None, "node-tainter exited"
            assert await count_tainted(kube) == count
            print(f"node-tainter daemon:  {daemon_seconds:8.2f} s from the masters' change", flush=True)
            await clear_taints(kube, workers)

            # 2. One --once process, start-up included.
            began = time.monotonic()
            returncode, _, stderr = await execute(*tainter_command(kubeconfig, "--once"))
            once_seconds = time.monotonic() - began
            (workdir / "once.log").write_bytes(stderr)
            assert returncode == 0, stderr.decode()[-2000:]
            assert await count_tainted(kube) == count
            print(f"node-tainter --once:  {once_seconds:8.2f} s (one process, start-up included)", flush=True)
            began = time.monotonic()
            returncode, _, stderr = await execute(
                sys.executable, "-c", "import controllers.node_tainter.controller"
            )
            startup_seconds = time.monotonic() - began
            assert returncode == 0, stderr.decode()
            print(
                f"  of which start-up:  {startup_seconds:8.2f} s (python + imports, measured alone)",
                flush=True,
            )
            await clear_taints(kube, workers)

            # 3. The anchor: a kubectl taint loop over the same nodes.
            env = {**os.environ, "KUBECONFIG": kubeconfig}
            began = time.monotonic()
            for worker in workers:
                returncode, _, stderr = await execute(
                    kubectl, "taint", "nodes", worker, f"{KEY}={OLD}:PreferNoSchedule", env=env
                )
                assert returncode == 0, stderr.decode()
            kubectl_seconds = time.monotonic() - began
            assert await count_tainted(kube) == count
            print(f"kubectl taint loop:   {kubectl_seconds:8.2f} s", flush=True)
            version = (await kube.get("/version"))["gitVersion"]
            _, kubectl_version, _ = await execute(kubectl, "version", "--client", "-o", "json")
    client_version = json.loads(kubectl_version or b"{}").get("clientVersion", {}).get("gitVersion", "")
    return {
        "benchmark": "node-tainter: taint outdated workers",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nodes": count,
        "kubeApiserver": version,
        "kubectl": client_version,
        "cpus": os.cpu_count(),
        "loadAverage1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "seconds": {
            "nodeTainterDaemon": round(daemon_seconds, 3),
            "nodeTainterOnce": round(once_seconds, 3),
            "kubectlTaintLoop": round(kubectl_seconds, 3),
            "pythonStartupAndImports": round(startup_seconds, 3),
        },
        "speedup": {
            "daemonVsKubectlLoop": round(kubectl_seconds / daemon_seconds, 2),
            "onceVsKubectlLoop": round(kubectl_seconds / once_seconds, 2),
        },
        "goal": "daemonVsKubectlLoop >= 20",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="outdated workers to taint (default 1000)")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS, help="where to write the JSON result")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    workdir = args.output.parent / "tainter-logs.tmp"
    workdir.mkdir(exist_ok=True)
    result = asyncio.run(run(args.nodes, workdir))
    report.save(result, path=args.output)
    seconds, speedup = result["seconds"], result["speedup"]
    print()
    print(f"{'':28}{'seconds':>10}{'speed-up':>16}")
    print(f"{'kubectl taint loop':28}{seconds['kubectlTaintLoop']:>10.2f}{1:>16.1f}")
    print(
        f"{'node-tainter (daemon)':28}{seconds['nodeTainterDaemon']:>10.2f}{speedup['daemonVsKubectlLoop']:>16.1f}"
    )
    print(
        f"{'node-tainter --once':28}{seconds['nodeTainterOnce']:>10.2f}{speedup['onceVsKubectlLoop']:>16.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

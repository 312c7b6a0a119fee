"""Benchmark: idle memory of every controller of the registry (five) as separate processes, side by side with one
combined process.

On a fresh local control plane with 3 agreeing masters and 20 workers, the controllers run first as separate
processes (their console scripts), then as one ``kube-upgrade-controllers run`` process, with the same
configuration: the same flags, and each controller's own options in its environment variables. Each setup
is measured once every controller is ready and has finished its first round (the addon bundle switched,
the storage migration done, the nodes planned) and has then been idle for ``--idle-seconds``: resident
memory (VmRSS) and peak (VmHWM) of each process, from /proc.

Besides, what the client saves by not loading kubernetes_asyncio's generated models: the RSS of an
interpreter that imports every controller and connects, with and without ``kubernetes_asyncio.client``
imported first (as it was before the client stopped loading the models).
Writes ``bench/results/combined.json``.

    python -m bench.combined [--idle-seconds 10]
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
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from bench import report
from controllers import registry
from controllers.kube import client, resources
from e2e import cluster, controlplane

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "combined.json"
GOAL_MIB = 100.0
VERSION = "v1.36.1"
# What each controller's first round leaves in its state ConfigMap (the watchdog keeps none).
DONE_PHASES = {
    "addon-updater": {"Done"},
    "uso-runner": {"Succeeded"},
    "node-tainter": {"Done"},
    "upgrade-readiness": {"Upgradeable", "NotUpgradeable"},
}


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a live process, in MiB."""
    fields = dict(
        line.split(":", 1)
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return {
        key: round(int(fields[field].split()[0]) / 1024, 1)
        for key, field in (("rss", "VmRSS"), ("peak", "VmHWM"))
    }


def environment(workdir: pathlib.Path) -> dict[str, str]:
    """Each controller's own options, as its environment variables (read alike by both setups)."""
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(tuple(e.env_prefix for e in registry.CONTROLLERS))
        },
        "ADDON_UPDATER_BUNDLE_DIR": str(REPO / "examples" / "bundles"),
        "ADDON_UPDATER_TARGET": "directory",
        "ADDON_UPDATER_TARGET_DIR": str(workdir / "addons"),
        "ADDON_UPDATER_VARIABLES": "CLUSTER_DOMAIN=cluster.local,DNS_SERVICE_IP=10.0.0.10",
    }


@contextlib.contextmanager
def started(
    argv: list[str], *, env: dict[str, str], log: pathlib.Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = controlplane.free_port()
    bind = f"127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            # Plain HTTP on one address (its /readyz is read here), as the figures were taken.
            [
                *argv,
                f"--metrics-bind-address={bind}",
                f"--health-probe-bind-address={bind}",
                "--no-metrics-secure",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield process, port
    finally:
        process.terminate()
        process.wait(15)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def first_rounds_done(kube: client.Kube, *, namespace: str, release: str) -> bool:
    for name, phases in DONE_PHASES.items():
        try:
            state = await kube.get(
                resources.CONFIGMAPS.path(namespace=namespace, name=f"{release}-{name}-state")
            )
        except client.ApiError as error:
            if error.not_found:
                return False
            raise
        if state.get("data", {}).get("phase") not in phases:
            return False
    return True


async def measure(
    kube: client.Kube,
    processes: list[tuple[str, subprocess.Popen[bytes], int]],
    *,
    namespace: str,
    release: str,
    idle_seconds: float,
) -> dict[str, dict[str, float]]:
    """Wait until every process is ready and the first rounds are done, stay idle, read the memory."""
    async with asyncio.timeout(600):
        while not (
            all(ready(port) for _, _, port in processes)
            and await first_rounds_done(kube, namespace=namespace, release=release)
        ):
            for name, process, _ in processes:
                assert process.poll() is None, f"{name} exited with {process.returncode}"
            await asyncio.sleep(0.5)
    await asyncio.sleep(idle_seconds)
    return {name: memory_mib(process.pid) for name, process, _ in processes}


def connected_mib(kubeconfig: str, *, models: bool) -> float:
    """RSS of a fresh interpreter that imports every controller and connects (``models``: after importing
    kubernetes_asyncio.client as a whole)."""
    code = "; ".join([
        "import asyncio, resource, controllers.registry",
        *(["import kubernetes_asyncio.client"] if models else []),
        "from controllers.kube import client",
        f"asyncio.run(client.connect(kubeconfig={kubeconfig!r}))",
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
    ])  # fmt: skip
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return round(int(output) / 1024, 1)


async def run(idle_seconds: float, workdir: pathlib.Path) -> dict[str, Any]:
    bin_dir = pathlib.Path(sys.executable).parent
    env = environment(workdir)
    with controlplane.running() as plane:
        kubeconfig = str(plane.kubeconfig)
        async with await client.connect(kubeconfig=kubeconfig) as kube:
            nodes = cluster.Nodes(kube)
            await nodes.create_many([f"bench-master-{i}" for i in range(3)], version=VERSION, master=True)
            await nodes.create_many([f"bench-worker-{i:02d}" for i in range(20)], version=VERSION)
            namespace = "bench-combined"
            await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": namespace}})

            def common(release: str) -> list[str]:
                return [f"--kubeconfig={kubeconfig}", f"--namespace={namespace}", f"--release={release}",
                        "--min-masters=3", "--settle-seconds=1", "--log-format=json"]  # fmt: skip

            with contextlib.ExitStack() as stack:
                processes = [
                    (name, *stack.enter_context(
                        started([str(bin_dir / name), *common("apart")], env=env, log=workdir / f"{name}.log")
                    ))
                    for name in registry.EVERY_CLUSTER  # what `run` without names combines
                ]  # fmt: skip
                separate = await measure(
                    kube, processes, namespace=namespace, release="apart", idle_seconds=idle_seconds
                )
            print(f"{len(separate)} processes:", json.dumps(separate), flush=True)
            argv = [str(bin_dir / "kube-upgrade-controllers"), "run", *common("one")]
            with started(argv, env=env, log=workdir / "combined.log") as (process, port):
                combined = await measure(
                    kube,
                    [("combined", process, port)],
                    namespace=namespace,
                    release="one",
                    idle_seconds=idle_seconds,
                )
            print("one process:   ", json.dumps(combined), flush=True)
            apiserver = (await kube.get("/version"))["gitVersion"]
        imports = {
            "with the generated models": connected_mib(kubeconfig, models=True),
            "without (the client as it is)": connected_mib(kubeconfig, models=False),
        }
    separate_total = round(sum(m["rss"] for m in separate.values()), 1)
    one = combined["combined"]
    return {
        "benchmark": "idle memory: one process per controller vs one combined process",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kubeApiserver": apiserver,
        "cpus": os.cpu_count(),
        "loadAverage1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "idleSeconds": idle_seconds,
        "controllers": len(separate),
        "separateProcessesMiB": separate,
        "separateProcessesTotalRssMiB": separate_total,
        "combinedMiB": one,
        "importAndConnectRssMiB": imports,
        "goalCombinedRssMiB": GOAL_MIB,
        "met": one["rss"] <= GOAL_MIB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="idle time before reading (default 10)"
    )
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS, help="where to write the JSON result")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-combined-") as workdir:
        started_at = time.monotonic()
        result = asyncio.run(run(args.idle_seconds, pathlib.Path(workdir)))
    report.save(result, path=args.output)
    print()
    for name, memory in result["separateProcessesMiB"].items():
        print(f"{name:28}{memory['rss']:>8.1f} MiB RSS{memory['peak']:>10.1f} MiB peak")
    total = f"{result['controllers']} processes, total"
    print(f"{total:28}{result['separateProcessesTotalRssMiB']:>8.1f} MiB RSS")
    one = result["combinedMiB"]
    print(f"{'one combined process':28}{one['rss']:>8.1f} MiB RSS{one['peak']:>10.1f} MiB peak")
    print(
        f"goal ≤ {GOAL_MIB:g} MiB: {'met' if result['met'] else 'NOT met'}; {time.monotonic() - started_at:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

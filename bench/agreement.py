"""Benchmark: how fast the controllers react to a master upgrade in a 5,000-node cluster, and their memory.

In one run on one real control plane: 3 masters + 4,997 workers. Two real controller processes run with
``--dry-run --settle-seconds 0``: uso-runner (watches only the masters, by label selector) and node-tainter
(also watches every Node). The masters move to a new version; the reaction is the time from the last master
patch to the controller's ``<prefix>_agreement_changes_total`` going up. Peak RSS is read from /proc.
Anchor, measured in the same run: one poll of the naive way, ``kubectl get nodes -o json`` parsed for the
masters' versions (a polling loop pays this every interval, and reacts half an interval late on average).

    python -m bench.agreement [--nodes 5000]      (make bench-agreement)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.request

from bench import report
from controllers.kube import client, resources
from e2e import controlplane

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
OLD, NEW = "v1.35.4", "v1.36.1"
REACTION_GOAL_SECONDS = 1.0
RSS_GOAL_MIB = 150.0


def peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def changes_total(port: int, prefix: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    match = re.search(rf"^{prefix}_agreement_changes_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else -1.0


async def create_nodes(kube: client.Kube, count: int) -> list[str]:
    semaphore = asyncio.Semaphore(48)
    masters = [f"bench-master-{i}" for i in range(3)]

    async def one(name: str, master: bool) -> None:
        labels = {"node-role.kubernetes.io/control-plane": ""} if master else {}
        async with semaphore:
            await kube.create(resources.NODES.path(), {"metadata": {"name": name, "labels": labels}})
            await kube.patch(resources.NODES.path(name=name, subresource="status"), status(OLD))

    jobs = [one(name, True) for name in masters] + [
        one(f"bench-worker-{i:05d}", False) for i in range(count - 3)
    ]
    await asyncio.gather(*jobs)
    return masters


def status(version: str) -> client.JSON:
    return {
        "status": {
            "nodeInfo": {"kubeletVersion": version},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Bench"}],
        }
    }


def start(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kubectl_poll_seconds(kubeconfig: pathlib.Path) -> float:
    started = time.perf_counter()
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "json"],
        check=True,
        capture_output=True,
    ).stdout
    nodes = json.loads(out)["items"]
    versions = {
        n["status"]["nodeInfo"]["kubeletVersion"]
        for n in nodes
        if "node-role.kubernetes.io/control-plane" in n["metadata"].get("labels", {})
    }
    assert versions
    return time.perf_counter() - started


async def run(node_count: int) -> dict[str, object]:
    with controlplane.running() as plane:
        async with await client.connect(kubeconfig=str(plane.kubeconfig)) as kube:
            started = time.perf_counter()
            masters = await create_nodes(kube, node_count)
            print(f"created {node_count} nodes in {time.perf_counter() - started:.1f} s", flush=True)
            procs = {}
            bin_dir = pathlib.Path(sys.executable).parent
            for name in ("uso-runner", "node-tainter"):
                port = controlplane.free_port()
                argv = [
                    str(bin_dir / name), f"--kubeconfig={plane.kubeconfig}", "--dry-run", "--settle-seconds=0",
                    "--min-masters=3", f"--metrics-bind-address=127.0.0.1:{port}",
                    f"--health-probe-bind-address=127.0.0.1:{port}", "--no-metrics-secure",  # read plainly here
                ]  # fmt: skip
                procs[name] = (start(argv), port)
            try:
                prefixes = {"uso-runner": "uso_runner", "node-tainter": "node_tainter"}
                deadline = time.monotonic() + 120
                while any(changes_total(port, prefixes[n]) < 1 for n, (_, port) in procs.items()):
                    if time.monotonic() > deadline:
                        raise TimeoutError("controllers did not report the first agreement")
                    await asyncio.sleep(0.2)
                for name in masters:
                    await kube.patch(resources.NODES.path(name=name, subresource="status"), status(NEW))
                patched = time.perf_counter()
                reactions: dict[str, float] = {}
                while len(reactions) < len(procs):
                    for name, (_, port) in procs.items():
                        if name not in reactions and changes_total(port, prefixes[name]) >= 2:
                            reactions[name] = time.perf_counter() - patched
                    if time.perf_counter() - patched > 60:
                        raise TimeoutError(f"no reaction from {set(procs) - set(reactions)}")
                    await asyncio.sleep(0.01)
                rss = {name: peak_rss_mib(proc.pid) for name, (proc, _) in procs.items()}
            finally:
                for proc, _ in procs.values():
                    proc.terminate()
                    proc.wait(10)
            poll = kubectl_poll_seconds(plane.kubeconfig)
    rows = []
    for name in procs:
        rows.append({
            "benchmark": "agreement", "subject": f"{name} reaction at {node_count} nodes", "value": round(reactions[name], 3),
            "unit": "s", "anchor": "one kubectl get nodes -o json poll", "anchor_value": round(poll, 3),
            "ratio": round(poll / reactions[name], 1) if reactions[name] else None, "goal": f"≤ {REACTION_GOAL_SECONDS} s",
            "met": reactions[name] <= REACTION_GOAL_SECONDS,
        })  # fmt: skip
        rows.append({
            "benchmark": "agreement", "subject": f"{name} peak RSS at {node_count} nodes", "value": round(rss[name], 1),
            "unit": "MiB", "anchor": None, "anchor_value": None, "ratio": None, "goal": f"≤ {RSS_GOAL_MIB:.0f} MiB",
            "met": rss[name] <= RSS_GOAL_MIB,
        })  # fmt: skip
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {
        "when": when,
        "nodes": node_count,
        "cpus": os.cpu_count(),
        "load1": os.getloadavg()[0],
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=5000)
    args = parser.parse_args()
    result = asyncio.run(run(args.nodes))
    report.save(result, path=RESULTS / "agreement.json")
    for row in result["rows"]:  # type: ignore[attr-defined]
        anchor = f"  anchor {row['anchor']}: {row['anchor_value']} s" if row["anchor"] else ""
        print(
            f"{row['subject']:<40} {row['value']:>8} {row['unit']:<4} goal {row['goal']:<10} met={row['met']}{anchor}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

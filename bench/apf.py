"""Benchmark: what a migration costs everyone else, and what the chart's APF FlowSchema changes.

On a fresh local control plane, a steady other client (a ServiceAccount of its own, open loop: a GET and a
PUT of its own ConfigMaps at a fixed rate) runs throughout; its request latency is recorded

1. idle (nothing else running);
2. while ``uso-runner --once`` rewrites ``--objects`` ConfigMaps as a ServiceAccount without a FlowSchema
   of its own (its requests share the built-in ``workload-low`` level with the other client's);
3. the same with the chart's FlowSchema + PriorityLevelConfiguration (``usoRunner.flowControl``, rendered by
   ``helm template``) applied, once per size in ``--shares`` and at the chart's default size: each size gives
   the level a number of seats (read back from the apiserver's ``apiserver_flowcontrol_nominal_limit_seats``),
   against uso-runner's ``--workers`` writes in flight.

Each phase runs ``--repeats`` whole migrations and pools the other client's samples. Per phase it also
records the CPU: the machine's busy share and the cores kube-apiserver + etcd used (``/proc``), which shows
whether the apiserver's CPU, not its seats, is what the two clients compete for.

Both clients authenticate with ServiceAccount tokens: the fixture's admin is in ``system:masters``, whose
requests APF exempts. Besides the latencies (p50/p99) it prints each migration's throughput and the bare
PUT ceiling (``bench.uso ceiling``, as the same ServiceAccount, without the other client), and writes
``bench/results/apf.json``.

    python -m bench.apf [--objects 20000] [--rate 20] [--idle-seconds 30] [--workers 16]
                          [--shares 1,2,4,10] [--repeats 2] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench import report, uso
from controllers.kube import client, resources
from e2e import cluster, controlplane

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "apf.json"
PINNED = RESULTS.with_name("apf-pinned.json")
CHART = controlplane.REPO / "charts" / "kube-upgrade-controllers"
RELEASE = "bench"
HOME = "bench-apf"  # the ServiceAccounts and the other client's ConfigMaps
USO_SA = f"{RELEASE}-kube-upgrade-controllers-uso-runner"  # the name the chart's FlowSchema names
OTHER_SA = "other-client"
BINDINGS = resources.Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)
FLOWCONTROL = "flowcontrol.apiserver.k8s.io/v1"
OTHER_OBJECTS = 20


async def service_account_kubeconfig(
    kube: client.Kube, plane: controlplane.ControlPlane, name: str
) -> pathlib.Path:
    """A ServiceAccount bound to cluster-admin (not exempt from APF, unlike system:masters): its kubeconfig."""
    await kube.create(cluster.SERVICEACCOUNTS.path(namespace=HOME), {"metadata": {"name": name}})
    await kube.create(
        BINDINGS.path(),
        {
            "metadata": {"name": f"bench-apf-{name}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": HOME}],
        },
    )
    return await cluster.service_account_kubeconfig(
        kube, server=plane.server, ca=plane.pki / "ca.crt", namespace=HOME, name=name,
        path=plane.root / f"{name}.kubeconfig", seconds=7200,
    )  # fmt: skip


class OtherClient:
    """Open loop: every 1/rate s, alternately a GET and a PUT of one of its ConfigMaps; each latency kept with
    the phase it started in."""

    def __init__(self, kube: client.Kube, *, rate: float) -> None:
        self.kube, self.rate = kube, rate
        self.phase = "warmup"
        self.latencies: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}

    async def one(self, n: int, phase: str) -> None:
        path = resources.CONFIGMAPS.path(namespace=HOME, name=f"other-{n % OTHER_OBJECTS:02d}")
        started = time.monotonic()
        try:
            if n % 2:
                await self.kube.request(
                    "PUT",
                    path,
                    body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": path.rsplit("/", 1)[1]},
                          "data": {"n": str(n)}},
                )  # fmt: skip
            else:
                await self.kube.get(path)
        except client.ApiError:
            self.errors[phase] = self.errors.get(phase, 0) + 1
            return
        self.latencies.setdefault(phase, []).append(time.monotonic() - started)

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        started, n = time.monotonic(), 0
        while True:
            n += 1
            task = asyncio.create_task(self.one(n, self.phase))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))

    def summary(self, phase: str) -> dict[str, Any]:
        values = sorted(self.latencies.get(phase, []))
        if len(values) < 20:
            return {"requests": len(values), "errors": self.errors.get(phase, 0)}
        cuts = statistics.quantiles(values, n=100)
        return {
            "requests": len(values),
            "errors": self.errors.get(phase, 0),
            "p50Ms": round(cuts[49] * 1000, 1),
            "p99Ms": round(cuts[98] * 1000, 1),
        }


def run_uso_as(
    kubeconfig: pathlib.Path,
    *,
    release: str,
    workers: int,
    resources: str = "configmaps",
    extra: Sequence[str] = ("--latency-budget=0",),
) -> dict[str, Any]:
    """``uso-runner --once`` over ``resources`` as ``kubeconfig``'s ServiceAccount (unpaced unless ``extra``
    says otherwise): its objects, wall seconds (process start included), run seconds (its own), pacing."""
    result = uso.measured(
        [sys.executable, "-m", "controllers.uso_runner", f"--kubeconfig={kubeconfig}", "--once",
         f"--namespace={HOME}", f"--release={release}", f"--resources={resources}", "--qps=0",
         f"--workers={workers}", "--log-format=text", *extra]
    )  # fmt: skip
    report = json.loads(result["stdout"].strip().splitlines()[-1]) if result["stdout"].strip() else {}
    objects, seconds = report.get("objectsMigrated", 0), report.get("durationSeconds")
    return {
        "exit": result["exit"],
        "objects": objects,
        "seconds": result["seconds"],
        "runSeconds": seconds,
        "objectsPerSecond": round(objects / seconds, 1) if objects and seconds else None,
        **({"pacing": report["pacing"]} if report.get("pacing") else {}),
        **({"stderr": result["stderr"][-800:]} if result["exit"] else {}),
    }


def chart_flow_objects(namespace: str, *, shares: int) -> list[dict[str, Any]]:
    """The chart's FlowSchema and PriorityLevelConfiguration, sized ``shares``."""
    helm = controlplane.tool_path("helm")
    out = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", namespace,
         "--set", "usoRunner.flowControl.enabled=true",
         "--set", f"usoRunner.flowControl.nominalConcurrencyShares={shares}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d and d["apiVersion"] == FLOWCONTROL]


def classified_level(plane: controlplane.ControlPlane, kubeconfig: pathlib.Path) -> str:
    """The priority level UID the apiserver put one of the ServiceAccount's requests in (a response header)."""
    token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    request = urllib.request.Request(f"{plane.server}/api/v1/namespaces/{HOME}/configmaps?limit=1",
                                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    tls = ssl.create_default_context(cafile=str(plane.pki / "ca.crt"))
    with urllib.request.urlopen(request, context=tls, timeout=30) as answer:
        return str(answer.headers.get("X-Kubernetes-PF-PriorityLevel-UID") or "")


def nominal_seats(plane: controlplane.ControlPlane, *, level: str) -> int | None:
    """The seats the apiserver gives ``level`` now (its ``apiserver_flowcontrol_nominal_limit_seats``)."""
    with urllib.request.urlopen(f"{plane.server}/metrics", context=plane.admin_tls(), timeout=60) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "apiserver_flowcontrol_nominal_limit_seats"
                and sample.labels.get("priority_level") == level
            ):
                return int(sample.value)
    return None


class CpuMeter:
    """CPU over one phase: the whole machine's busy share (``/proc/stat``) and the cores kube-apiserver and
    etcd used (their ``/proc/PID/stat``): what shows whether the apiserver's CPU is what clients wait for."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.machine, self.processes, self.at = self._machine(), self._processes(), time.monotonic()

    @staticmethod
    def _machine() -> tuple[int, int]:
        fields = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def _processes(self) -> float:
        ticks = 0
        for pid in self.pids:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def read(self) -> dict[str, float]:
        busy, total = self._machine()
        seconds = time.monotonic() - self.at
        return {
            "machineBusyPercent": round(100 * (busy - self.machine[0]) / max(1, total - self.machine[1]), 1),
            "apiserverEtcdCores": round((self._processes() - self.processes) / seconds, 2),
        }


def migrations(kubeconfig: pathlib.Path, *, phase: str, repeats: int, workers: int) -> list[dict[str, Any]]:
    """``repeats`` whole migrations of the same objects (each a new release: nothing is skipped as done)."""
    runs = [run_uso_as(kubeconfig, release=f"{phase.lower()}-{n}", workers=workers) for n in range(repeats)]
    if failed := [run for run in runs if run["exit"] or not run["objects"]]:
        raise RuntimeError(f"a migration of phase {phase} failed: {failed[0]}")
    return runs


def throughput(runs: list[dict[str, Any]]) -> float | None:
    """Objects per second over the runs' own durations (as uso-runner reports them: process start excluded)."""
    seconds = sum(r["runSeconds"] or 0 for r in runs)
    return round(sum(r["objects"] for r in runs) / seconds, 1) if seconds else None


def pin(*, server_pids: list[int], server_cpu: int, client_cpu: int) -> None:
    """kube-apiserver and etcd (every thread) on ``server_cpu``; this process, and so every client it starts
    later (uso-runner, the ceiling), on ``client_cpu``."""
    for pid in server_pids:
        for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), {server_cpu})
    for task in pathlib.Path("/proc/self/task").iterdir():
        os.sched_setaffinity(int(task.name), {client_cpu})


@dataclasses.dataclass(frozen=True)
class Level:
    """The chart's priority level as the apiserver holds it now."""

    uid: str
    name: str
    seats: int
    limited: dict[str, Any]  # its spec.limited


async def size_level(
    admin: client.Kube, plane: controlplane.ControlPlane, kubeconfig: pathlib.Path, *, shares: int,
    current: Level | None,
) -> Level:  # fmt: skip
    """The chart's FlowSchema and level at ``shares`` (created, or the ``current`` level resized), once the
    apiserver classifies ``kubeconfig``'s requests there and gives the level its new seats."""
    objects = {o["kind"]: o for o in chart_flow_objects(HOME, shares=shares)}
    plc = objects["PriorityLevelConfiguration"]
    name = plc["metadata"]["name"]
    if current is None:
        await admin.create(f"/apis/{FLOWCONTROL}/flowschemas", objects["FlowSchema"])
        uid = (await admin.create(f"/apis/{FLOWCONTROL}/prioritylevelconfigurations", plc))["metadata"]["uid"]
    else:
        path = f"/apis/{FLOWCONTROL}/prioritylevelconfigurations/{name}"
        existing = await admin.get(path)
        await admin.request("PUT", path, body={**existing, "spec": plc["spec"]})
        uid = current.uid
    for _ in range(120):
        classified = await asyncio.to_thread(classified_level, plane, kubeconfig)
        seats = await asyncio.to_thread(nominal_seats, plane, level=name)
        if classified == uid and seats is not None and (current is None or seats != current.seats):
            return Level(uid=uid, name=name, seats=seats, limited=plc["spec"]["limited"])
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the apiserver never put the ServiceAccount in the level of {shares} shares")


async def prepare(
    admin: client.Kube, plane: controlplane.ControlPlane, *, objects: int
) -> tuple[pathlib.Path, pathlib.Path]:
    """Namespaces, a master Node, both ServiceAccounts, the other client's ConfigMaps and ``objects`` to
    migrate; the kubeconfigs of uso-runner's ServiceAccount and of the other client's."""
    for namespace in (HOME, uso.NAMESPACE):
        await admin.create(resources.NAMESPACES.path(), {"metadata": {"name": namespace}})
    await cluster.Nodes(admin).create("bench-master", version=plane.kube_version, master=True)
    uso_kubeconfig = await service_account_kubeconfig(admin, plane, USO_SA)
    other_kubeconfig = await service_account_kubeconfig(admin, plane, OTHER_SA)
    for i in range(OTHER_OBJECTS):
        await admin.create(
            resources.CONFIGMAPS.path(namespace=HOME), {"metadata": {"name": f"other-{i:02d}"}}
        )
    started = time.monotonic()
    await uso.create_configmaps(admin, start=0, stop=objects)
    print(f"created {objects} ConfigMaps in {time.monotonic() - started:.0f} s", flush=True)
    return uso_kubeconfig, other_kubeconfig


def measure_ceiling(kubeconfig: pathlib.Path, *, workers: int) -> float | None:
    """The bare concurrent PUT loop's objects per second, as ``kubeconfig``'s ServiceAccount."""
    ceiling = uso.measured(
        [sys.executable, "-m", "bench.uso", "ceiling", f"--kubeconfig={kubeconfig}", f"--workers={workers}"]
    )
    written = json.loads(ceiling["stdout"].strip().splitlines()[-1])["written"] if ceiling["exit"] == 0 else 0
    print(f"bare PUT ceiling (as the ServiceAccount): {written} in {ceiling['seconds']:.1f} s", flush=True)
    return round(written / ceiling["seconds"], 1) if written else None


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sorted({int(s) for s in args.shares.split(",")} | {report.chart_default_shares()})
    phases: list[dict[str, Any]] = []
    with controlplane.running() as plane:
        assert plane.apiserver is not None and plane.etcd is not None
        pids = [plane.apiserver.pid, plane.etcd.pid]
        if args.pin:
            if (os.cpu_count() or 1) < 2:
                raise SystemExit("--pin needs 2 CPUs: one for kube-apiserver and etcd, one for the clients")
            pin(server_pids=pids, server_cpu=1, client_cpu=0)
        admin = await client.connect(kubeconfig=str(plane.kubeconfig))
        try:
            uso_kubeconfig, other_kubeconfig = await prepare(admin, plane, objects=args.objects)
            ceiling_rate = await asyncio.to_thread(measure_ceiling, uso_kubeconfig, workers=args.workers)
            other = await client.connect(kubeconfig=str(other_kubeconfig))
            other_client = OtherClient(other, rate=args.rate)
            loop_task = asyncio.create_task(other_client.run())
            try:
                await asyncio.sleep(5)
                other_client.phase, meter = "idle", CpuMeter(pids)
                await asyncio.sleep(args.idle_seconds)
                idle = {"latency": other_client.summary("idle"), "cpu": meter.read()}
                print("idle:", idle, flush=True)

                async def measure(name: str, **size: Any) -> None:
                    other_client.phase, meter = name, CpuMeter(pids)
                    runs = await asyncio.to_thread(
                        migrations, uso_kubeconfig, phase=name, repeats=args.repeats, workers=args.workers
                    )
                    other_client.phase = "between"
                    phases.append({"name": name, **size, "latency": other_client.summary(name),
                                   "cpu": meter.read(), "runs": runs, "objectsPerSecond": throughput(runs)})  # fmt: skip
                    print(f"{name}:", {k: v for k, v in phases[-1].items() if k != "runs"}, flush=True)

                await measure("withoutFlowSchema", flowSchema=False)
                level: Level | None = None
                for shares in sizes:
                    level = await size_level(admin, plane, uso_kubeconfig, shares=shares, current=level)
                    await asyncio.sleep(3)
                    await measure(f"shares-{shares}", flowSchema=True, shares=shares, seats=level.seats)
                assert level is not None
            finally:
                loop_task.cancel()
                await asyncio.gather(loop_task, return_exceptions=True)
                await other.close()
        finally:
            await admin.close()
    idle_p99 = idle["latency"].get("p99Ms")
    for phase in phases:
        p99, rate = phase["latency"].get("p99Ms"), phase["objectsPerSecond"]
        phase["p99RatioToIdle"] = round(p99 / idle_p99, 2) if p99 and idle_p99 else None
        phase["ratioToCeiling"] = round(rate / ceiling_rate, 2) if rate and ceiling_rate else None
    return {
        "benchmark": "APF: the other client's latency during a migration, without and with the chart's FlowSchema at several sizes",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load1": os.getloadavg()[0]},
        "kubeVersion": plane.kube_version,
        "pinned": args.pin,
        "objects": args.objects,
        "workers": args.workers,
        "repeats": args.repeats,
        "otherClient": {
            "ratePerSecond": args.rate,
            "requests": "alternately GET and PUT of its own ConfigMaps",
        },
        "flowControl": {k: v for k, v in level.limited.items() if k != "nominalConcurrencyShares"},
        "ceilingObjectsPerSecond": ceiling_rate,
        "idle": idle,
        "phases": phases,
        "goals": {"p99RatioToIdle": 1.5, "migrationRatioToCeiling": 0.8},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apf", description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=20_000, help="ConfigMaps uso-runner rewrites")
    parser.add_argument("--rate", type=float, default=20.0, help="the other client's requests per second")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="the idle phase's length")
    parser.add_argument("--workers", type=int, default=16, help="uso-runner workers = ceiling concurrency")
    parser.add_argument(
        "--shares",
        default="1,2,4,10",
        help="usoRunner.flowControl.nominalConcurrencyShares sizes to measure, comma-separated (the chart's default "
        "size is always measured too)",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="migrations per phase (the other client's samples are pooled)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="kube-apiserver and etcd on CPU 1, every client on CPU 0: the apiserver's CPU is its own, as on a "
        f"control-plane node (written to {PINNED.name})",
    )
    parser.add_argument("--output", type=pathlib.Path, default=None, help=f"default {RESULTS.name}")
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args))
    print(
        json.dumps(
            {
                "idle": results["idle"],
                "phases": [{k: v for k, v in phase.items() if k != "runs"} for phase in results["phases"]],
            },
            indent=2,
        )
    )
    report.save(results, path=args.output or (PINNED if args.pin else RESULTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (the Pareto run): how fast each way of migrating goes, and what it costs another client.

One fresh local control plane (etcd + kube-apiserver v1.37.2, kube-controller-manager beside it throughout as
in every cluster), ``--objects`` Widgets of a CRD served at v1 and v2 (``e2e.widgets``). Before each migration
the CRD's storage version is switched to the one the objects are *not* stored at, so that every method
really rewrites every object in etcd (the apiserver does not store a PUT of an unchanged object); after it,
etcd is read to count the objects stored at the new version. The methods, on the same objects, in one run:

- ``intree``: kube-controller-manager's in-tree migrator (one ``storagemigration.k8s.io/v1``
  StorageVersionMigration; what ``--method=builtin|auto`` hands resources to), client QPS raised;
- ``ksvm``: kube-storage-version-migrator v0.0.5 (one ``migration.k8s.io/v1alpha1`` migration), QPS raised;
- ``unpaced``: ``uso-runner --once --latency-budget=0`` (``--workers`` writes in flight);
- ``paced-B``: ``uso-runner --once --latency-budget=B`` for each B of ``--budgets``;
- ``apf``: unpaced with the chart's FlowSchema and priority level (its default size) applied;
- ``paced-B+apf``: the default budget and the FlowSchema;
- ``qps-N`` for each N of ``--rates`` (none by default): ``uso-runner --once --latency-budget=0 --qps=N``, a
  fixed write rate: the other client's p99 against the rate alone, whoever writes (the rate sweep).

uso-runner runs as a ServiceAccount (the admin is in system:masters, which APF exempts). A steady other client
(its own ServiceAccount; an open loop of GETs and PUTs of its own ConfigMaps at ``--rate``) runs throughout;
its latency is kept per phase: an idle window of ``--idle-seconds`` before every migration (after a pause of
``--settle-seconds`` once the storage was switched: the CRD update makes the apiserver and the controllers
relist), then the migration. Each point is measured ``--repeats`` times, in a rotated order, with the 1-min load average before
and after. Each point's rate is objects / wall seconds (process start included for uso-runner; from the
StorageVersionMigration's creation to its end for the others); its cost is the other client's p99 during it
over the idle p99 (all idle windows pooled). Prints the table, writes ``bench/results/pace.json`` and the plot
``bench/pace.png``.

    python -m bench.pace [--objects 20000] [--repeats 3] [--rate 20] [--idle-seconds 15] [--settle-seconds 10]
                         [--workers 16]
                         [--budgets 1.25,1.5,2] [--rates 50,100,200] [--points intree,ksvm,...] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from bench import apf, report, uso
from controllers.kube import client, resources
from controllers.uso_runner import controller
from e2e import cluster, controlplane, widgets

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "pace.json"
PLOT = pathlib.Path(__file__).resolve().parent / "pace.png"
NAMESPACE = "bench-pace"  # the Widgets
DEFAULT_BUDGET = float(controller.UsoRunnerConfig.__dataclass_fields__["latency_budget"].default)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Point:
    """One way to migrate: a Go migrator, or uso-runner at a budget (0: unpaced) or a fixed rate (``qps``), with
    or without APF."""

    name: str
    method: str  # intree, ksvm, uso-runner
    budget: float = 0.0
    apf: bool = False
    qps: float = 0.0

    @property
    def label(self) -> str:
        if self.method == "intree":
            return "in-tree migrator (kube-controller-manager)"
        if self.method == "ksvm":
            return "kube-storage-version-migrator"
        if self.qps:
            return f"uso-runner at --qps {self.qps:g} (unpaced)"
        paced = f"paced {self.budget:g}" if self.budget else "unpaced"
        return f"uso-runner {paced}" + (" + APF" if self.apf else "")


def points(budgets: Sequence[float], rates: Sequence[float] = ()) -> list[Point]:
    listed = [Point("intree", "intree"), Point("ksvm", "ksvm"), Point("unpaced", "uso-runner")]
    listed += [Point(f"paced-{b:g}", "uso-runner", budget=b) for b in budgets]
    listed += [Point(f"qps-{r:g}", "uso-runner", qps=r) for r in rates]
    listed += [
        Point("apf", "uso-runner", apf=True),
        Point(f"paced-{DEFAULT_BUDGET:g}+apf", "uso-runner", budget=DEFAULT_BUDGET, apf=True),
    ]
    return listed


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def quantiles(values: list[float]) -> dict[str, Any]:
    """p50/p99 (ms) of latencies in seconds."""
    if len(values) < 20:
        return {"requests": len(values)}
    cuts = statistics.quantiles(sorted(values), n=100)
    return {"requests": len(values), "p50Ms": round(cuts[49] * 1000, 1), "p99Ms": round(cuts[98] * 1000, 1)}


@dataclasses.dataclass
class Bench:
    """The control plane, the clients and the Widgets of one run."""

    plane: controlplane.ControlPlane
    admin: client.Kube
    widgets: resources.Resource
    uso_kubeconfig: pathlib.Path
    other: apf.OtherClient
    workers: int
    stored_at: str = "v1"
    level: apf.Level | None = None

    @property
    def group(self) -> str:
        return self.widgets.group

    async def switch(self) -> str:
        """Store the Widgets' CRD at the version they are not stored at (every object is then old)."""
        target = "v2" if self.stored_at == "v1" else "v1"
        await widgets.switch_storage(self.admin, self.plane, self.widgets, namespace=NAMESPACE, to=target)
        self.stored_at = target
        return target

    def stored(self, target: str) -> dict[str, int]:
        """How many Widgets etcd holds at ``target``, and at the other version."""
        objects = widgets.stored_objects(self.plane, f"/registry/{self.group}/widgets/{NAMESPACE}/")
        at = sum(1 for o in objects.values() if o.get("apiVersion") == f"{self.group}/{target}")
        return {"atTarget": at, "other": len(objects) - at}

    async def migrate(self, point: Point, *, target: str, release: str) -> dict[str, Any]:
        if point.method == "intree":
            before = await asyncio.to_thread(
                uso.apiserver_writes, self.plane, verb="PATCH", resource="widgets", group=self.group
            )
            seconds, outcome = await uso.migrate_by_svm(
                self.admin, uso.INTREE, {"group": self.group, "resource": "widgets"}
            )
            after = await asyncio.to_thread(
                uso.apiserver_writes, self.plane, verb="PATCH", resource="widgets", group=self.group
            )
            return {"seconds": seconds, "outcome": outcome, "objects": after - before}
        if point.method == "ksvm":
            before = await asyncio.to_thread(
                uso.apiserver_writes, self.plane, verb="PUT", resource="widgets", group=self.group
            )
            seconds, outcome = await uso.migrate_by_svm(
                self.admin, uso.SVM, {"group": self.group, "version": target, "resource": "widgets"}
            )
            after = await asyncio.to_thread(
                uso.apiserver_writes, self.plane, verb="PUT", resource="widgets", group=self.group
            )
            return {"seconds": seconds, "outcome": outcome, "objects": after - before}
        run = await asyncio.to_thread(
            apf.run_uso_as, self.uso_kubeconfig, release=release, workers=self.workers,
            resources=f"widgets.{self.group}",
            extra=[f"--latency-budget={point.budget:g}", *([f"--qps={point.qps:g}"] if point.qps else [])],
        )  # fmt: skip
        return {**run, "outcome": "Succeeded" if run["exit"] == 0 else "Failed"}

    async def flow_schema(self, on: bool) -> None:
        """The chart's FlowSchema + priority level (its default size) applied, or deleted; returns once the
        apiserver classifies uso-runner's requests accordingly."""
        if on and self.level is None:
            self.level = await apf.size_level(
                self.admin,
                self.plane,
                self.uso_kubeconfig,
                shares=report.chart_default_shares(),
                current=None,
            )
        elif not on and self.level is not None:
            uid = self.level.uid
            for kind, name in (
                ("flowschemas", self.level.name),
                ("prioritylevelconfigurations", self.level.name),
            ):
                await self.admin.delete(f"/apis/{apf.FLOWCONTROL}/{kind}/{name}")
            for _ in range(120):
                if await asyncio.to_thread(apf.classified_level, self.plane, self.uso_kubeconfig) != uid:
                    break
                await asyncio.sleep(0.5)
            self.level = None


async def measure(
    bench: Bench, point: Point, *, repeat: int, idle_seconds: float, settle_seconds: float, release: str
) -> dict[str, Any]:
    """One point: the storage switched, a pause while the apiserver settles (a CRD update rebuilds its
    handler, the watch caches and the controllers' informers relist), an idle window, the migration; the
    other client's latency in the idle window and in the migration."""
    await bench.flow_schema(point.apf)
    target = await bench.switch()
    tag = f"{point.name}#{repeat}"
    bench.other.phase = "between"
    await asyncio.sleep(settle_seconds)
    load_before = load1()
    bench.other.phase = f"idle:{tag}"
    await asyncio.sleep(idle_seconds)
    assert bench.plane.apiserver is not None and bench.plane.etcd is not None
    meter = apf.CpuMeter([bench.plane.apiserver.pid, bench.plane.etcd.pid])
    bench.other.phase = tag
    run = await bench.migrate(point, target=target, release=release)
    bench.other.phase = "between"
    cpu = meter.read()
    load_after = load1()
    stored = await asyncio.to_thread(bench.stored, target)
    seconds, objects = run.get("seconds") or 0, run.get("objects") or 0
    result = {
        "point": point.name,
        "repeat": repeat,
        "target": target,
        "outcome": run.get("outcome"),
        "objects": objects,
        "seconds": round(seconds, 2),
        "objectsPerSecond": round(objects / seconds, 1) if seconds and objects else None,
        "latency": quantiles(bench.other.latencies.get(tag, [])),
        "idleBefore": quantiles(bench.other.latencies.get(f"idle:{tag}", [])),
        "errors": bench.other.errors.get(tag, 0),
        "load1": [load_before, load_after],
        "cpu": cpu,
        "stored": stored,
        **({"pacing": run["pacing"]} if run.get("pacing") else {}),
        **({"stderr": run["stderr"]} if run.get("stderr") else {}),
    }
    print(
        f"{tag}: {objects} objects in {seconds:.1f} s = {result['objectsPerSecond']} obj/s; other client "
        f"{result['latency']} (idle before {result['idleBefore']}); load {load_before} -> {load_after}; "
        f"stored {stored}" + (f"; pacing {run['pacing']}" if run.get("pacing") else ""),
        flush=True,
    )
    return result


def summarize(
    runs: list[dict[str, Any]], listed: list[Point], latencies: dict[str, list[float]]
) -> dict[str, Any]:
    """Per point: the rates (median and range over repeats), the other client's latency pooled over the
    repeats and over each run, against the idle windows pooled; the goal's verdict."""
    idle = quantiles([v for phase, values in latencies.items() if phase.startswith("idle:") for v in values])
    idle_p99 = idle.get("p99Ms")
    summary: dict[str, Any] = {}
    for point in listed:
        mine = [r for r in runs if r["point"] == point.name]
        rates = [r["objectsPerSecond"] for r in mine if r["objectsPerSecond"]]
        pooled = quantiles([v for r in mine for v in latencies.get(f"{point.name}#{r['repeat']}", [])])
        ratios = [
            round(r["latency"]["p99Ms"] / idle_p99, 2) for r in mine if r["latency"].get("p99Ms") and idle_p99
        ]
        if not mine:
            continue
        summary[point.name] = {
            "label": point.label,
            "objectsPerSecond": round(statistics.median(rates), 1) if rates else None,
            "objectsPerSecondRange": [min(rates), max(rates)] if rates else None,
            "latency": pooled,
            "p99RatioToIdle": round(pooled["p99Ms"] / idle_p99, 2)
            if pooled.get("p99Ms") and idle_p99
            else None,
            "p99RatioPerRun": ratios,
            "load1": [x for r in mine for x in r["load1"]],
            "allRewritten": all(r["stored"]["other"] == 0 and r["outcome"] == "Succeeded" for r in mine),
        }
    return {"idle": idle, "points": summary, "goal": verdict(summary)}


def verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """The goal: with its default budget uso-runner keeps the other client's p99 ≤ 1.5x idle, and migrates ≥ 2x
    faster than each Go migrator at that migrator's own latency cost or less."""
    default = summary.get(f"paced-{DEFAULT_BUDGET:g}")
    if not default or default["p99RatioToIdle"] is None or not default["objectsPerSecond"]:
        return {"met": None, "why": "the default point was not measured"}
    checks: dict[str, Any] = {"p99RatioToIdle": {"value": default["p99RatioToIdle"], "goal": "≤ 1.5",
                                                 "met": default["p99RatioToIdle"] <= 1.5}}  # fmt: skip
    for anchor in ("intree", "ksvm"):
        other = summary.get(anchor)
        if not other or not other["objectsPerSecond"] or other["p99RatioToIdle"] is None:
            checks[anchor] = {"met": None, "why": "not measured"}
            continue
        speedup = round(default["objectsPerSecond"] / other["objectsPerSecond"], 2)
        gentler = default["p99RatioToIdle"] <= other["p99RatioToIdle"]
        checks[anchor] = {
            "speedup": speedup,
            "p99Ratio": [default["p99RatioToIdle"], other["p99RatioToIdle"]],
            "met": speedup >= 2 and gentler,
        }
    met = [c["met"] for c in checks.values()]
    return {"met": None if None in met else all(met), "checks": checks}


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
    """Rate against the other client's p99 / idle p99: each run a small dot, each point's pooled figure a
    large marker, the goal's latency bound a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 5.5), dpi=100)
    summary = results["summary"]
    idle_p99 = summary["idle"].get("p99Ms")
    colours = pyplot.get_cmap("tab10")
    for index, (name, point) in enumerate(summary["points"].items()):
        colour = colours(index % 10)
        runs = [r for r in results["runs"] if r["point"] == name and r["objectsPerSecond"]]
        xs = [r["objectsPerSecond"] for r in runs]
        ys = [r["latency"]["p99Ms"] / idle_p99 for r in runs if idle_p99 and r["latency"].get("p99Ms")]
        axes.scatter(xs[: len(ys)], ys, s=18, color=colour, alpha=0.5)
        if point["objectsPerSecond"] and point["p99RatioToIdle"]:
            axes.scatter([point["objectsPerSecond"]], [point["p99RatioToIdle"]], s=90, color=colour,
                         edgecolors="black", label=point["label"])  # fmt: skip
    axes.axhline(1.5, color="grey", linestyle="--", linewidth=1)
    axes.text(axes.get_xlim()[1], 1.5, " goal ≤ 1.5x idle", va="bottom", ha="right", color="grey", fontsize=8)
    loads = [x for r in results["runs"] for x in r["load1"]]
    axes.set_title(
        f"{results['objects']:,} real rewrites, other client at {results['otherClient']['ratePerSecond']:g} req/s "
        f"(1-min load {min(loads):.1f}-{max(loads):.1f} on {results['machine']['cpus']} cores)",
        fontsize=9,
    )
    axes.set_xlabel("migration rate (objects/s; higher is better)")
    axes.set_ylabel("other client's p99 / idle p99 (lower is better)")
    axes.set_ylim(bottom=0)
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    budgets = [float(b) for b in args.budgets.split(",")]
    listed = points(budgets, [float(r) for r in args.rates.split(",") if r])
    if args.points:
        wanted = set(args.points.split(","))
        listed = [p for p in listed if p.name in wanted]
    runs: list[dict[str, Any]] = []
    uptime_before = await asyncio.to_thread(uptime)
    with controlplane.running() as plane, tempfile.TemporaryFile() as ksvm_log:
        assert plane.apiserver is not None and plane.etcd is not None
        if args.pin:
            apf.pin(server_pids=[plane.apiserver.pid, plane.etcd.pid], server_cpu=1, client_cpu=0)
        admin = await client.connect(kubeconfig=str(plane.kubeconfig))
        ksvm: subprocess.Popen[bytes] | None = None
        try:
            for namespace in (apf.HOME, NAMESPACE):
                await admin.create(resources.NAMESPACES.path(), {"metadata": {"name": namespace}})
            await cluster.Nodes(admin).create("bench-master", version=plane.kube_version, master=True)
            uso_kubeconfig = await apf.service_account_kubeconfig(admin, plane, apf.USO_SA)
            other_kubeconfig = await apf.service_account_kubeconfig(admin, plane, apf.OTHER_SA)
            for i in range(apf.OTHER_OBJECTS):
                await admin.create(
                    resources.CONFIGMAPS.path(namespace=apf.HOME), {"metadata": {"name": f"other-{i:02d}"}}
                )
            group = widgets.unique_group()
            crd = await widgets.create_crd(admin, group=group, storage="v1")
            started = time.monotonic()
            bodies = (widgets.widget(f"w{i:06d}", i, api_version=f"{group}/v1") for i in range(args.objects))
            await widgets.create_many(admin, crd, bodies, namespace=NAMESPACE)
            print(f"created {args.objects} Widgets in {time.monotonic() - started:.0f} s", flush=True)
            # Both Go migrators run throughout, as kube-controller-manager does in every cluster.
            await uso.install_ksvm_crd(admin)
            ksvm = uso.start_ksvm(plane, stderr=ksvm_log)
            await asyncio.to_thread(plane.start_controller_manager, flags=uso.INTREE_FLAGS)
            other = await client.connect(kubeconfig=str(other_kubeconfig))
            other_client = apf.OtherClient(other, rate=args.rate)
            loop_task = asyncio.create_task(other_client.run())
            state = Bench(plane=plane, admin=admin, widgets=crd, uso_kubeconfig=uso_kubeconfig,
                          other=other_client, workers=args.workers)  # fmt: skip
            try:
                await asyncio.sleep(5)  # the other client's warm-up
                plain = [p for p in listed if not p.apf]
                with_apf = [p for p in listed if p.apf]
                for repeat in range(args.repeats):
                    shift = repeat % max(1, len(plain))
                    for point in [*plain[shift:], *plain[:shift], *with_apf]:  # rotated; APF last
                        release = f"pace-{len(runs)}"
                        runs.append(await measure(state, point, repeat=repeat, idle_seconds=args.idle_seconds,
                                                  settle_seconds=args.settle_seconds, release=release))  # fmt: skip
                    await state.flow_schema(False)
            finally:
                loop_task.cancel()
                await asyncio.gather(loop_task, return_exceptions=True)
                await other.close()
            latencies = other_client.latencies
        finally:
            if ksvm is not None:
                ksvm.terminate()
            plane.stop_controller_manager()
            await admin.close()
    return {
        "benchmark": "Pareto: each method's migration rate and the other client's p99 during it, on real rewrites",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load1": load1(),
                    "uptimeBefore": uptime_before,
                    "uptimeAfter": await asyncio.to_thread(uptime)},
        "kubeVersion": plane.kube_version,
        "pinned": args.pin,
        "objects": args.objects,
        "workers": args.workers,
        "repeats": args.repeats,
        "defaultBudget": DEFAULT_BUDGET,
        "otherClient": {"ratePerSecond": args.rate, "requests": "alternately GET and PUT of its own ConfigMaps"},
        "flags": {"intree": " ".join(uso.INTREE_FLAGS), "ksvm": " ".join(uso.KSVM_FLAGS)},
        "runs": runs,
        "summary": summarize(runs, listed, latencies),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pace", description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=20_000, help="Widgets every method rewrites")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each point (rotated order)")
    parser.add_argument("--rate", type=float, default=20.0, help="the other client's requests per second")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="the idle window before each run")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=10.0,
        help="the pause after each storage switch, before the idle window",
    )
    parser.add_argument("--workers", type=int, default=16, help="uso-runner's --workers")
    parser.add_argument("--budgets", default="1.25,1.5,2", help="uso-runner --latency-budget values")
    parser.add_argument(
        "--rates", default="", help="uso-runner unpaced at these fixed --qps values too (the rate sweep)"
    )
    parser.add_argument(
        "--points", default="", help="only these points (names as in the table), comma-separated"
    )
    parser.add_argument(
        "--pin", action="store_true", help="kube-apiserver and etcd on CPU 1, every client on CPU 0"
    )
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--plot", type=pathlib.Path, default=PLOT)
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args))
    report.save(results, path=args.output)
    plot(results, args.plot)
    print(f"wrote {args.plot}")
    print(report.pace_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

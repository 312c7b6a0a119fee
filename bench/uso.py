"""Benchmark: uso-runner rewrites 20,000 ConfigMaps, side by side with the other ways to do it.

Everything runs in one go on a fresh local control plane (etcd + kube-apiserver), over the same objects:

1. ``uso-runner --once`` as a real process (interpreter start, discovery and checkpoints included);
2. the ``update-storage-objects.sh`` method: ``kubectl get configmaps -A -o json | kubectl replace -f -``;
3. kube-storage-version-migrator's migrator (built from the Go module proxy by ``e2e/build-tool.sh``), run
   with its client-side QPS raised out of the way, timed from creating its StorageVersionMigration until
   the migration reports Succeeded;
3b. kube-controller-manager's in-tree migrator (``storagemigration.k8s.io/v1``, GA in 1.37; what
   ``uso-runner --method=builtin|auto`` hands resources to), its client QPS raised the same way;
4. the write ceiling: a bare concurrent PUT loop (list, then PUT every object back, the next page listed
   while a page's objects are written; no checkpoint, no retries, no metrics, no pacing), as a process of
   its own with the same client and the same concurrency.

Each method runs as its own process; its peak RSS comes from the kernel (wait4). Then uso-runner runs again
over ``--rss-objects`` ConfigMaps (default 100,000) for its peak RSS. Prints objects/s, ratios and RSS;
writes ``bench/results/uso.json``.

    python -m bench.uso [--objects 20000] [--rss-objects 100000] [--workers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench import report
from controllers.kube import client, resources
from controllers.uso_runner.effects import migrate
from e2e import cluster, controlplane

CM = resources.CONFIGMAPS
NAMESPACE = "bench-uso"
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "uso.json"
SVM = resources.Resource("migration.k8s.io", "v1alpha1", "storageversionmigrations", namespaced=False)


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a live process (MiB). Its own high-water mark: exec starts a new one, unlike the rusage of a
    child, which starts from the forking parent's RSS."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        return None
    return None


def wait_watching_rss(process: subprocess.Popen[bytes]) -> float | None:
    """Wait for ``process``; return its last VmHWM seen (read every 50 ms: the mark only grows)."""
    peak: float | None = None
    while process.poll() is None:
        peak = peak_rss_mib(process.pid) or peak
        time.sleep(0.05)
    return peak


def measured(argv: list[str]) -> dict[str, Any]:
    """Run ``argv`` to completion: wall seconds, exit code, peak RSS (MiB) of the process itself."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(argv, stdout=out, stderr=err)
        peak = wait_watching_rss(process)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return {
            "seconds": seconds,
            "exit": process.returncode,
            "peakRssMiB": peak,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace")[-2000:],
        }


async def create_configmaps(kube: client.Kube, *, start: int, stop: int) -> None:
    semaphore = asyncio.Semaphore(48)
    path = CM.path(namespace=NAMESPACE)

    async def one(i: int) -> None:
        async with semaphore:
            body = {"metadata": {"name": f"cm-{i:06d}", "labels": {"bench": "uso"}}, "data": {"k": f"v{i}"}}
            try:
                await kube.create(path, body)
            except client.ApiError as error:
                if not error.already_exists:
                    raise

    for chunk in range(start, stop, 5000):
        await asyncio.gather(*(one(i) for i in range(chunk, min(stop, chunk + 5000))))


# --- the ceiling: python -m bench.uso ceiling --kubeconfig K --workers N ------------------------------------


async def ceiling(kubeconfig: str, workers: int) -> None:
    kube = await client.connect(kubeconfig=kubeconfig)
    semaphore = asyncio.Semaphore(workers)
    written = 0

    async def put(item: client.JSON) -> None:
        nonlocal written
        try:
            meta = item["metadata"]
            await kube.request("PUT", CM.path(namespace=meta["namespace"], name=meta["name"]), body=item)
            written += 1
        finally:
            semaphore.release()

    tasks: set[asyncio.Task[None]] = set()
    async for page in migrate.listed_ahead(kube.list_pages(CM.path(namespace=NAMESPACE), limit=500)):
        for item in page["items"]:
            item["apiVersion"], item["kind"] = "v1", "ConfigMap"
            await semaphore.acquire()
            task = asyncio.create_task(put(item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    await kube.close()
    print(json.dumps({"written": written}))


# --- the four methods ---------------------------------------------------------------------------------------


def run_uso(plane: controlplane.ControlPlane, *, workers: int) -> dict[str, Any]:
    release = f"bench{uuid.uuid4().hex[:6]}"
    result = measured(
        [
            sys.executable,
            "-m",
            "controllers.uso_runner",
            f"--kubeconfig={plane.kubeconfig}",
            "--once",
            f"--namespace={NAMESPACE}",
            f"--release={release}",
            "--resources=configmaps",
            "--qps=0",
            "--latency-budget=0",  # the fixed-rate figures: --workers writes in flight, unpaced
            f"--workers={workers}",
            "--log-format=text",
        ]
    )
    report = json.loads(result["stdout"].strip().splitlines()[-1]) if result["stdout"].strip() else {}
    result["objects"] = report.get("objectsMigrated", 0)
    result["runSeconds"] = report.get("durationSeconds")
    return result


def run_script(plane: controlplane.ControlPlane) -> dict[str, Any]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return {"skipped": "kubectl is not on PATH"}
    with tempfile.TemporaryDirectory() as tmp:
        # What update-storage-objects.sh did for each resource: get it as JSON, replace it all.
        script = pathlib.Path(tmp) / "update-storage-objects.sh"
        script.write_text(
            "set -euo pipefail\n"
            f'kubectl --kubeconfig "$1" get configmaps --namespace {NAMESPACE} -o json'
            ' | kubectl --kubeconfig "$1" replace -f - | wc -l\n'
        )
        result = measured(["bash", str(script), str(plane.kubeconfig)])
    result["objects"] = int(result["stdout"].strip() or 0)
    result["peakRssMiB"] = None  # a pipeline of processes: bash's own mark would say nothing
    return result


def ksvm_binary() -> pathlib.Path:
    """kube-storage-version-migrator's migrator (built from the Go module proxy and cached)."""
    return controlplane.tool_path("storage-version-migrator")


async def install_ksvm_crd(kube: client.Kube) -> None:
    """kube-storage-version-migrator's own StorageVersionMigration CRD (migration.k8s.io/v1alpha1), served."""
    version = controlplane.read_versions()["SVM_VERSION"]
    gomodcache = await asyncio.to_thread(subprocess.check_output, ["go", "env", "GOMODCACHE"], text=True)
    manifest = (
        pathlib.Path(gomodcache.strip())
        / f"sigs.k8s.io/kube-storage-version-migrator@{version}/manifests/storage_migration_crd.yaml"
    )
    crd = yaml.safe_load(manifest.read_text())
    try:
        await kube.create(resources.CRDS.path(), crd)
    except client.ApiError as error:
        if not error.already_exists:
            raise
    for _ in range(300):
        try:
            await kube.get(SVM.path())
            return
        except client.ApiError:
            await asyncio.sleep(0.2)


def start_ksvm(plane: controlplane.ControlPlane, *, stderr: Any) -> subprocess.Popen[bytes]:
    """The migrator, its client QPS raised out of the way (defaults 5/10 would throttle it), so that its
    design (one object at a time) is what is measured."""
    return subprocess.Popen(
        [str(ksvm_binary()), f"--kubeconfig={plane.kubeconfig}", *KSVM_FLAGS],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


KSVM_FLAGS = ("--kube-api-qps=100000", "--kube-api-burst=100000")
INTREE_FLAGS = ("--kube-api-qps=100000", "--kube-api-burst=100000")
INTREE = resources.Resource("storagemigration.k8s.io", "v1", "storageversionmigrations", namespaced=False)


def svm_verdict(svm: client.JSON) -> str | None:
    """``Succeeded`` or ``Failed`` once a StorageVersionMigration (either API) ended, None before. The in-tree
    one turns Running off only after it set a CRD's storedVersions; kube-storage-version-migrator replaces
    Running with its verdict."""
    conditions = {c.get("type"): c.get("status") for c in (svm.get("status") or {}).get("conditions") or []}
    if conditions.get("Running") == "True":
        return None
    return next((v for v in ("Succeeded", "Failed") if conditions.get(v) == "True"), None)


async def migrate_by_svm(
    kube: client.Kube,
    svms: resources.Resource,
    target: client.JSON,
    *,
    alive: Callable[[], bool] = lambda: True,
    limit_seconds: float = 3600,
) -> tuple[float, str]:
    """Create a StorageVersionMigration of ``target`` (its spec.resource) and follow it to its end: the
    seconds from its creation, and ``Succeeded``, ``Failed`` or ``timeout`` (after ``limit_seconds``, or when
    ``alive`` fails)."""
    started = time.monotonic()
    name = f"bench-{uuid.uuid4().hex[:6]}"
    await kube.create(
        svms.path(),
        {"apiVersion": svms.api_version, "kind": "StorageVersionMigration", "metadata": {"name": name},
         "spec": {"resource": target}},
    )  # fmt: skip
    while time.monotonic() - started < limit_seconds and alive():
        if verdict := svm_verdict(await kube.get(svms.path(name=name))):
            return time.monotonic() - started, verdict
        await asyncio.sleep(0.2)
    return time.monotonic() - started, "timeout"


async def run_migrator(plane: controlplane.ControlPlane, kube: client.Kube) -> dict[str, Any]:
    try:
        ksvm_binary()
    except subprocess.CalledProcessError as error:
        return {"skipped": f"could not build kube-storage-version-migrator: exit {error.returncode}"}
    await install_ksvm_crd(kube)
    with tempfile.TemporaryFile() as stderr_file:
        process = start_ksvm(plane, stderr=stderr_file)
        watcher = asyncio.create_task(asyncio.to_thread(wait_watching_rss, process))
        try:
            await asyncio.sleep(2)  # let it start its informers before the clock starts
            puts_before = await asyncio.to_thread(configmap_puts, plane)
            target = {"group": "", "version": "v1", "resource": "configmaps"}
            seconds, outcome = await migrate_by_svm(kube, SVM, target, alive=lambda: process.poll() is None)
        finally:
            peak = peak_rss_mib(process.pid)
            process.terminate()
            peak = await watcher or peak
        stderr_file.seek(0)
        stderr = stderr_file.read().decode(errors="replace")[-1500:]
    # It reports no count: the apiserver's. (It migrates every ConfigMap of the cluster, a handful besides
    # the benchmark's.)
    objects = await asyncio.to_thread(configmap_puts, plane) - puts_before
    return {
        "seconds": seconds,
        "outcome": outcome,
        "objects": objects,
        "peakRssMiB": peak,
        "flags": " ".join(KSVM_FLAGS) + " (defaults 5/10 would throttle it)",
        "stderr": stderr if outcome != "Succeeded" else "",
    }


async def run_intree(plane: controlplane.ControlPlane, kube: client.Kube) -> dict[str, Any]:
    """kube-controller-manager's own migrator (storagemigration.k8s.io/v1, GA in 1.37): one
    StorageVersionMigration of ConfigMaps, timed from its creation until it Succeeded and stopped Running.
    Its client QPS is raised from the default 20 (as the migrator's above), so that what is measured is its
    design: one merge PATCH per object, in sequence."""
    try:
        plane.start_controller_manager(flags=INTREE_FLAGS)
    except subprocess.CalledProcessError as error:
        return {"skipped": f"could not build kube-controller-manager: exit {error.returncode}"}
    try:
        patches_before = await asyncio.to_thread(configmap_writes, plane, verb="PATCH")
        seconds, outcome = await migrate_by_svm(kube, INTREE, {"group": "", "resource": "configmaps"})
        peak = peak_rss_mib(plane.controller_manager.pid) if plane.controller_manager else None
    finally:
        plane.stop_controller_manager()
    objects = await asyncio.to_thread(configmap_writes, plane, verb="PATCH") - patches_before
    return {
        "seconds": seconds,
        "outcome": outcome,
        "objects": objects,
        "peakRssMiB": peak,  # kube-controller-manager's, with its garbage collector's informers
        "flags": " ".join(INTREE_FLAGS) + " (default 20/30 would throttle it)",
    }


def configmap_puts(plane: controlplane.ControlPlane) -> int:
    """ConfigMap PUTs the apiserver answered with 200, by its own count (``apiserver_request_total``)."""
    return configmap_writes(plane, verb="PUT")


def configmap_writes(plane: controlplane.ControlPlane, *, verb: str) -> int:
    """ConfigMap requests of ``verb`` the apiserver answered with 200, by its own count."""
    return apiserver_writes(plane, verb=verb, resource="configmaps")


def apiserver_writes(plane: controlplane.ControlPlane, *, verb: str, resource: str, group: str = "") -> int:
    """Requests of ``verb`` on ``resource`` (of ``group``) the apiserver answered with 200, by its own count
    (``apiserver_request_total``)."""
    with urllib.request.urlopen(f"{plane.server}/metrics", context=plane.admin_tls(), timeout=60) as response:
        text = response.read().decode()
    wanted = {"verb": verb, "group": group, "resource": resource, "code": "200", "subresource": ""}
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "apiserver_request_total"
            and all(sample.labels.get(key, "") == value for key, value in wanted.items())
        )
    )


def run_ceiling(plane: controlplane.ControlPlane, *, workers: int) -> dict[str, Any]:
    result = measured(
        [
            sys.executable,
            "-m",
            "bench.uso",
            "ceiling",
            f"--kubeconfig={plane.kubeconfig}",
            f"--workers={workers}",
        ]
    )
    result["objects"] = (
        json.loads(result["stdout"].strip().splitlines()[-1])["written"] if result["exit"] == 0 else 0
    )
    return result


def rate(result: dict[str, Any]) -> float | None:
    """Objects per second of a run that succeeded; None for a skipped, failed or timed-out one."""
    failed = result.get("exit", 0) != 0 or result.get("outcome", "Succeeded") != "Succeeded"
    if failed or not result.get("seconds") or not result.get("objects"):
        return None
    return float(result["objects"]) / float(result["seconds"])


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with controlplane.running() as plane:
        kube = await client.connect(kubeconfig=str(plane.kubeconfig))
        try:
            await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": NAMESPACE}})
            nodes = cluster.Nodes(kube)
            await nodes.create("bench-master", version=plane.kube_version, master=True)
            started = time.monotonic()
            await create_configmaps(kube, start=0, stop=args.objects)
            print(f"created {args.objects} ConfigMaps in {time.monotonic() - started:.0f} s", flush=True)
            methods: dict[str, dict[str, Any]] = {}
            methods["uso-runner"] = run_uso(plane, workers=args.workers)
            print("uso-runner:", _line(methods["uso-runner"]), flush=True)
            methods["ceiling"] = run_ceiling(plane, workers=args.workers)
            print("ceiling (bare PUT loop):", _line(methods["ceiling"]), flush=True)
            methods["migrator"] = await run_migrator(plane, kube)
            print("kube-storage-version-migrator:", _line(methods["migrator"]), flush=True)
            methods["intree"] = await run_intree(plane, kube)
            print("kube-controller-manager's in-tree migrator:", _line(methods["intree"]), flush=True)
            methods["script"] = run_script(plane)
            print("update-storage-objects.sh method:", _line(methods["script"]), flush=True)
            rss: dict[str, Any] = {}
            if args.rss_objects > args.objects:
                started = time.monotonic()
                await create_configmaps(kube, start=args.objects, stop=args.rss_objects)
                print(
                    f"created up to {args.rss_objects} ConfigMaps in {time.monotonic() - started:.0f} s",
                    flush=True,
                )
                rss = run_uso(plane, workers=args.workers)
                print(f"uso-runner at {args.rss_objects}:", _line(rss), flush=True)
        finally:
            await kube.close()
    uso = rate(methods["uso-runner"])
    ratios = {
        name: (round(uso / other, 2) if uso and (other := rate(methods[name])) else None)
        for name in ("ceiling", "migrator", "intree", "script")
    }
    for result in [*methods.values(), rss]:
        result.pop("stdout", None)
        if result.get("exit") == 0:
            result.pop("stderr", None)
    return {
        "benchmark": "uso-runner: rewrite ConfigMaps in place (storage migration)",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load1": os.getloadavg()[0]},
        "objects": args.objects,
        "workers": args.workers,
        "objectsPerSecond": {name: (round(r, 1) if (r := rate(m)) else None) for name, m in methods.items()},
        "usoRunnerRatioTo": ratios,
        "goals": {"ceiling": 0.8, "migrator": 3.0, "script": 10.0, "peakRssMiBAt100k": 150},
        "methods": methods,
        "rssRun": {"objects": args.rss_objects, **rss} if rss else None,
    }


def _line(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    r = rate(result)
    text = f"{result.get('objects')} objects in {result.get('seconds', 0):.1f} s"
    text += f" = {r:.0f} objects/s" if r else ""
    if result.get("peakRssMiB"):
        text += f", peak RSS {result['peakRssMiB']} MiB"
    if result.get("exit") not in (None, 0) or result.get("outcome") not in (None, "Succeeded"):
        text += f" (FAILED: {result.get('stderr', '')[-300:]})"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.uso", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    inner = sub.add_parser("ceiling", help="(internal) the bare PUT loop, as its own process")
    inner.add_argument("--kubeconfig", required=True)
    inner.add_argument("--workers", type=int, default=16)
    parser.add_argument("--objects", type=int, default=20_000, help="ConfigMaps for the side-by-side run")
    parser.add_argument(
        "--rss-objects", type=int, default=100_000, help="ConfigMaps for the RSS run (0: skip)"
    )
    parser.add_argument("--workers", type=int, default=16, help="uso-runner workers = ceiling concurrency")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "ceiling":
        asyncio.run(ceiling(args.kubeconfig, args.workers))
        return 0
    results = asyncio.run(bench(args))
    print(json.dumps({k: results[k] for k in ("objectsPerSecond", "usoRunnerRatioTo", "goals")}, indent=2))
    print(
        "peak RSS MiB:",
        {name: m.get("peakRssMiB") for name, m in results["methods"].items()},
        "| uso-runner at", results["rssRun"]["objects"] if results["rssRun"] else "-",
        ":", results["rssRun"].get("peakRssMiB") if results["rssRun"] else "-",
    )  # fmt: skip
    report.save(results, path=args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

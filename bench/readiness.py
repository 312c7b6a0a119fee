"""Benchmark: one upgrade-readiness evaluation at 5,000 nodes, 1,000 PodDisruptionBudgets and 3 apiservers'
/metrics: its time and the memory it needs.

Pure: the objects are built as the watch stores hold them (``interface.node_view`` & co. over API-shaped dicts),
the three /metrics documents are synthetic but the size of a busy apiserver's (histogram and counter
series of 300 resources, 30 deprecated APIs among them). One evaluation = parse the three documents, update
the request history, run every check but the add-on bundle (file I/O), judge. Time: the median of
``--rounds`` evaluations; memory: the peak of Python allocations (tracemalloc) while the views are built and
one evaluation runs, and the process's peak RSS.

    python -m bench.readiness [--nodes 5000] [--pdbs 1000] [--apiservers 3]      (make bench-readiness)
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import resource
import statistics
import time
import tracemalloc
from typing import Any

from bench import report
from controllers.agreement import selector, version
from controllers.upgrade_readiness import logic
from controllers.upgrade_readiness.checks import (
    crd_stored_versions,
    drain_blockers,
    interface,
    kubelet_skew,
    removed_apis,
)

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
PODS_PER_NODE = 6
RESOURCES = 300
DEPRECATED = 30
TIME_GOAL_SECONDS = 1.0  # well within the default 60 s evaluation interval
MASTERS = selector.parse_selector("node-role.kubernetes.io/control-plane")


def node(index: int, *, masters: int) -> dict[str, Any]:
    master = index < masters
    kubelet = "v1.37.2" if master or index % 4 else "v1.36.5"
    labels = {"node-role.kubernetes.io/control-plane": ""} if master else {"zone": f"z{index % 3}"}
    return {"metadata": {"name": f"node-{index:05d}", "labels": labels},
            "status": {"nodeInfo": {"kubeletVersion": kubelet}}}  # fmt: skip


def pod(index: int, *, nodes: int, namespaces: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"pod-{index}", "namespace": f"ns-{index % namespaces}",
                     "labels": {"app": f"app-{index % 2000}", "tier": "web"}},
        "spec": {"nodeName": f"node-{index % nodes:05d}"},
        "status": {"phase": "Running"},
    }  # fmt: skip


def pdb(index: int, *, namespaces: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"pdb-{index}", "namespace": f"ns-{index * 2 % namespaces}", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": f"app-{index * 2 % 2000}"},
                              "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}},
        "status": {"observedGeneration": 1, "disruptionsAllowed": index % 2},
    }  # fmt: skip


def crd(index: int) -> dict[str, Any]:
    unserved = index % 50 == 0
    return {
        "metadata": {"name": f"things{index}.example.com"},
        "spec": {"versions": [{"name": "v1", "served": not unserved}, {"name": "v2", "served": True}]},
        "status": {"storedVersions": ["v1", "v2"]},
    }


def metrics_text(apiserver: int, *, requests: int) -> str:
    """A /metrics document of a busy apiserver: latency histograms and request counters per resource."""
    lines = []
    for r in range(RESOURCES):
        group, version = ("", "v1") if r % 3 else (f"g{r}.example.com", "v1beta1")
        labels = f'group="{group}",resource="res{r}",scope="cluster",subresource="",version="{version}"'
        if r < DEPRECATED:
            lines.append(
                f'apiserver_requested_deprecated_apis{{{labels},removed_release="1.{36 + r % 4}"}} 1'
            )
        for verb in ("GET", "LIST", "WATCH", "CREATE", "UPDATE", "PATCH", "DELETE"):
            for code in ("200", "201", "404", "409"):
                count = requests + r + apiserver
                lines.append(f'apiserver_request_total{{code="{code}",component="apiserver",dry_run="",{labels},'
                             f'verb="{verb}"}} {count}')  # fmt: skip
            for le in ("0.005", "0.025", "0.1", "0.25", "0.5", "1", "2", "5", "10", "30", "60", "+Inf"):
                lines.append(f'apiserver_request_duration_seconds_bucket{{component="apiserver",dry_run="",'
                             f'{labels},verb="{verb}",le="{le}"}} {requests}')  # fmt: skip
    return "\n".join(lines) + "\n"


def evaluate(
    texts: list[str], usage: dict[Any, interface.Usage], views: dict[str, Any], *, now: float
) -> tuple[logic.Report, dict[Any, interface.Usage]]:
    masters = version.parse_version("v1.37.2")
    assert masters is not None
    target = logic.next_minor(masters)
    samples = [
        interface.parse_apiserver_metrics(text, address=f"https://10.0.0.{i}:6443")
        for i, text in enumerate(texts)
    ]
    usage = removed_apis.update_usage(usage, samples, now=now)
    nodes = views["nodes"]
    verdicts = [
        removed_apis.removed_apis(samples, usage, target=target, window_seconds=86400, now=now),
        kubelet_skew.kubelet_skew(nodes, target=target),
        crd_stored_versions.crd_stored_versions(views["crds"]),
        drain_blockers.drain_blockers(
            views["pdbs"], views["pods"], draining=drain_blockers.nodes_to_drain(nodes, target=target)
        ),
    ]
    evaluated = logic.evaluate(
        logic.TargetMinor(target, "bench"), verdicts, acknowledged=frozenset(), strict=False
    )
    return evaluated, usage


def build_views(*, nodes: int, pdbs: int, namespaces: int) -> dict[str, Any]:
    pod_views = (
        interface.pod_view(pod(i, nodes=nodes, namespaces=namespaces)) for i in range(nodes * PODS_PER_NODE)
    )
    return {
        "nodes": [interface.node_view(node(i, masters=3), selectors=[MASTERS]) for i in range(nodes)],
        "pods": [view for view in pod_views if view is not None],
        "pdbs": [interface.pdb_view(pdb(i, namespaces=namespaces)) for i in range(pdbs)],
        "crds": [interface.crd_view(crd(i)) for i in range(200)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pdbs", type=int, default=1000)
    parser.add_argument("--apiservers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    namespaces = 200
    texts = [metrics_text(i, requests=1000) for i in range(args.apiservers)]
    metrics_mib = sum(len(t) for t in texts) / 2**20

    tracemalloc.start()
    views = build_views(nodes=args.nodes, pdbs=args.pdbs, namespaces=namespaces)
    views_mib = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    evaluated, usage = evaluate(texts, {}, views, now=0.0)
    evaluation_peak_mib = (tracemalloc.get_traced_memory()[1] - before) / 2**20
    tracemalloc.stop()

    times = []
    for round_ in range(args.rounds):
        texts = [metrics_text(i, requests=1000 + round_) for i in range(args.apiservers)]
        started = time.perf_counter()
        evaluated, usage = evaluate(texts, usage, views, now=60.0 * (round_ + 1))
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    findings = {r.check: len(r.findings) for r in evaluated.results}
    result = {
        "measured": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nodes": args.nodes,
        "pods": len(views["pods"]),
        "pdbs": args.pdbs,
        "apiservers": args.apiservers,
        "metrics_mib_per_apiserver": round(metrics_mib / args.apiservers, 1),
        "evaluation_seconds_median": round(seconds, 3),
        "evaluation_seconds_all": [round(t, 3) for t in times],
        "views_mib": round(views_mib, 1),
        "evaluation_peak_mib": round(evaluation_peak_mib, 1),
        "process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "findings": findings,
        "goal_seconds": TIME_GOAL_SECONDS,
        "goal_met": seconds <= TIME_GOAL_SECONDS,
    }
    report.save(result, path=RESULTS / "readiness.json")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

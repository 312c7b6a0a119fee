"""uso-runner's self-pacing on the real fixture: a paced run learns the idle latency, stays within --workers,
finishes every object; an apiserver that stops answering for a moment makes it back off hard, loudly."""

from __future__ import annotations

import asyncio
import time
import uuid

from controllers.kube import client, resources
from e2e import cluster, controlplane
from tests.integration import uso_helpers as h

OBJECTS = 3000
WORKERS = 8


async def test_a_paced_run_backs_off_hard_when_the_apiserver_stalls_and_finishes_within_bounds(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    widgets = await h.crd_with_widgets(kube, namespace=namespace, objects=OBJECTS)
    await h.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v2")
    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version=control_plane.kube_version, master=True)
    crd = f"widgets.{widgets.group}"
    uso = h.runner(
        kube, namespace=namespace, release=release,
        argv=[f"--resources={crd}", "--latency-budget=1.5", f"--workers={WORKERS}"],
    )  # fmt: skip
    registry = uso.ctx.exporter.registry

    def gauge(name: str) -> float:
        return registry.get_sample_value(f"uso_runner_pacing_{name}") or 0.0

    started = time.monotonic()
    run = asyncio.create_task(h.reconcile_now(uso))
    limits: list[float] = []
    frozen_at_limit = 0.0
    while not run.done():
        if gauge("concurrency"):  # 0 until the run's migrator exists
            limits.append(gauge("concurrency"))
        # Once paced (idle latency learned, more than one write in flight), the apiserver stops answering for
        # 2 s: every write in flight then takes far longer than 3x (hard factor x budget) its idle latency.
        if not frozen_at_limit and gauge("idle_latency_seconds") > 0 and gauge("concurrency") >= 4:
            frozen_at_limit = gauge("concurrency")
            control_plane.freeze_apiserver(True)
            try:
                await asyncio.sleep(2)
            finally:
                control_plane.freeze_apiserver(False)
        await asyncio.sleep(0.02)
    report = await run
    seconds = time.monotonic() - started

    assert report["ok"] and report["objectsMigrated"] == OBJECTS, report
    assert seconds < 240, seconds  # generous: unpaced it takes ~10 s here
    prefix = f"/registry/{widgets.group}/widgets/{namespace}/"
    stored = h.stored_objects(control_plane, prefix)
    assert {o["apiVersion"] for o in stored.values()} == {f"{widgets.group}/v2"} and len(stored) == OBJECTS
    pacing = report["pacing"]
    assert pacing["latencyBudget"] == 1.5 and pacing["idleLatencySeconds"] > 0, pacing
    assert min(limits) >= 1 and max(limits) <= WORKERS, limits  # never more than --workers
    assert frozen_at_limit >= 4, "the pacer never reached 4 writes in flight before the end"
    assert pacing["hardBackoffs"] >= 1, pacing
    hard = registry.get_sample_value("uso_runner_pacing_backoffs_total", {"reason": "hard"})
    assert hard is not None and hard >= 1
    events = await kube.get(resources.EVENTS.path(namespace=namespace))
    backed_off = [
        e["note"]
        for e in events["items"]
        if e["reason"] == "MigrationBackedOff" and e["regarding"]["name"] == f"{release}-uso-runner-state"
    ]
    assert 1 <= len(backed_off) <= 1 + seconds // 60, backed_off  # announced at most once a minute
    assert "backing off hard: write latency" in backed_off[0] and "budget 1.5x" in backed_off[0]

"""node-tainter against the real control plane: the acceptance list of its issue.

The daemon runs in process (``tests.harness``: its agreement feed and the shared skeleton, as the console
script runs them) so that the tests can read its metrics; ``--once`` runs as a real process.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import uuid
from typing import Any

from controllers.kube import client, resources, state
from controllers.node_tainter import controller, logic
from e2e import cluster
from tests import harness

NODES = resources.NODES
KEY = logic.DEFAULT_TAINT_KEY


def config(namespace: str, **overrides: Any) -> controller.NodeTainterConfig:
    values: dict[str, Any] = {
        "namespace": namespace,
        "min_masters": 3,
        "settle_seconds": 0.3,
        "metrics_bind_address": "0",
        "health_probe_bind_address": "0",
        **overrides,
    }
    return controller.NodeTainterConfig(**values)


def metric(tainter: controller.NodeTainter, name: str, **labels: str) -> float:
    return harness.metric(tainter, name, **labels) or 0.0


async def all_nodes(kube: client.Kube) -> dict[str, client.JSON]:
    found: dict[str, client.JSON] = {}
    async for page in kube.list_pages(NODES.path()):
        found.update({item["metadata"]["name"]: item for item in page["items"]})
    return found


def taints(node: client.JSON) -> list[dict[str, str]]:
    return list(node.get("spec", {}).get("taints") or [])


def our_taints(node: client.JSON) -> list[dict[str, str]]:
    return [t for t in taints(node) if t["key"] == KEY]


async def set_versions(nodes: cluster.Nodes, names: list[str], version: str) -> None:
    await asyncio.gather(*(nodes.set_status(name, version=version) for name in names))


async def settled(tainter: controller.NodeTainter, version: str) -> bool:
    """The daemon has acted on ``version`` and has nothing left to do."""
    current = await tainter.ctx.read_state()
    return current.get("version") == version and current.get("phase") in ("Done", "Waiting")


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:02d}" for i in range(count)]


async def fleet(nodes: cluster.Nodes, prefix: str) -> tuple[list[str], list[str]]:
    """3 masters and 50 workers, all on v1.35.2."""
    masters, workers = names(f"{prefix}-master", 3), names(f"{prefix}-worker", 50)
    await nodes.create_many(masters, version="v1.35.2", master=True)
    await nodes.create_many(workers, version="v1.35.2")
    return masters, workers


async def resource_versions(kube: client.Kube) -> dict[str, str]:
    return {name: n["metadata"]["resourceVersion"] for name, n in (await all_nodes(kube)).items()}


async def test_masters_move_up_then_workers_are_tainted_until_replaced_or_upgraded(
    kube: client.Kube, nodes: cluster.Nodes, namespace: str
) -> None:
    masters, workers = await fleet(nodes, "up")
    async with harness.running(controller.NodeTainter, kube, config(namespace)) as tainter:
        await harness.eventually(lambda: settled(tainter, "v1.35.2"), what="agreement on v1.35.2")
        assert not any(our_taints(n) for n in (await all_nodes(kube)).values())

        await set_versions(nodes, masters, "v1.36.1")

        async def all_workers_tainted() -> bool:
            found = await all_nodes(kube)
            return all(our_taints(found[w]) for w in workers)

        await harness.eventually(all_workers_tainted, what="50 tainted workers")
        found = await all_nodes(kube)
        for worker in workers:
            assert our_taints(found[worker]) == [
                {"key": KEY, "value": "v1.35.2", "effect": "PreferNoSchedule"}
            ]
        assert not any(our_taints(found[m]) for m in masters)
        await harness.eventually(lambda: settled(tainter, "v1.36.1"), what="state Done")
        assert metric(tainter, "node_tainter_outdated_nodes") == 50
        assert metric(tainter, "node_tainter_tainted_nodes") == 50
        assert metric(tainter, "node_tainter_operations_total", operation="taint", outcome="applied") == 50

        # A surge upgrade: 10 workers replaced by new v1.36 Nodes, the other 40 upgraded in place.
        replaced, upgraded = workers[:10], workers[10:]
        await asyncio.gather(*(nodes.delete(name) for name in replaced))
        await nodes.create_many(names("up-new", 10), version="v1.36.1")
        await set_versions(nodes, upgraded, "v1.36.1")

        async def none_tainted() -> bool:
            return not any(our_taints(n) for n in (await all_nodes(kube)).values())

        await harness.eventually(none_tainted, what="every taint removed")
        await harness.eventually(lambda: settled(tainter, "v1.36.1"), what="state Done")
        assert metric(tainter, "node_tainter_operations_total", operation="untaint", outcome="applied") == 40
        assert metric(tainter, "node_tainter_outdated_nodes") == 0
        assert metric(tainter, "node_tainter_tainted_nodes") == 0
        current = await tainter.ctx.read_state()
        assert current.get("progress") == "0/0 outdated workers tainted"
        assert current.get("lastError") == ""

        async def all_events_recorded() -> bool:  # Events are recorded in the background
            return sum(map(len, (await events_by_node(kube)).values())) >= 90

        await harness.eventually(all_events_recorded, what="90 Events")
    recorded = await events_by_node(kube)
    assert all(recorded[w] == ["Tainted"] for w in replaced)
    assert all(recorded[w] == ["Tainted", "Untainted"] for w in upgraded)
    assert not any(m in recorded for m in masters)


async def events_by_node(kube: client.Kube) -> dict[str, list[str]]:
    found: list[client.JSON] = []
    async for page in kube.list_pages(resources.EVENTS.path(namespace="default")):
        found.extend(page["items"])
    found = [e for e in found if e.get("reportingController") == "kube-upgrade-controllers.io/node-tainter"]
    found.sort(key=lambda e: e["eventTime"])
    by_node: dict[str, list[str]] = {}
    for event in found:
        by_node.setdefault(event["regarding"]["name"], []).append(event["reason"])
    return by_node


class Writer:
    """Another controller: adds and removes its own taints on the nodes, read-modify-write with the
    resourceVersion and retry on 409, as every well-behaved writer does. Remembers what it expects."""

    def __init__(self, kube: client.Kube, workers: list[str]) -> None:
        self.kube = kube
        self.workers = workers
        self.expected: dict[str, set[str]] = {w: set() for w in workers}
        self.writes = 0
        self.stop = asyncio.Event()

    async def run(self, lanes: int = 8) -> None:
        await asyncio.gather(*(self._lane(self.workers[i::lanes]) for i in range(lanes)))

    async def _lane(self, workers: list[str]) -> None:
        rng = random.Random(len(workers))
        while not self.stop.is_set():
            for worker in workers:
                mine = self.expected[worker]
                if mine and rng.random() < 0.4:
                    key = rng.choice(sorted(mine))
                    await self._edit(worker, drop=key)
                    mine.discard(key)
                else:
                    key = f"writer.example.com/t{uuid.uuid4().hex[:6]}"
                    taint = {"key": key, "value": "x", "effect": "NoSchedule"}
                    await self._edit(worker, add=taint)
                    mine.add(key)

    async def _edit(self, worker: str, *, drop: str = "", add: client.JSON | None = None) -> None:
        path = NODES.path(name=worker)
        while True:
            node = await self.kube.get(path)
            kept = [t for t in taints(node) if t["key"] != drop]
            node.setdefault("spec", {})["taints"] = [*kept, add] if add else kept
            try:
                await self.kube.replace(path, node)
            except client.ApiError as error:
                if not error.conflict:
                    raise
                continue
            self.writes += 1
            return


async def test_a_concurrent_writer_keeps_every_change_and_conflicts_are_counted(
    kube: client.Kube, nodes: cluster.Nodes, namespace: str
) -> None:
    masters, workers = await fleet(nodes, "cw")
    writer = Writer(kube, workers)
    found = await all_nodes(kube)
    initial = {w: {t["key"] for t in taints(found[w])} for w in workers}  # the apiserver's not-ready taint
    assert all(initial.values())
    async with harness.running(controller.NodeTainter, kube, config(namespace, concurrency=4)) as tainter:
        await harness.eventually(lambda: settled(tainter, "v1.35.2"), what="agreement on v1.35.2")
        writing = asyncio.create_task(writer.run())
        try:
            await asyncio.sleep(0.5)
            await set_versions(nodes, masters, "v1.36.1")
            await harness.eventually(lambda: settled(tainter, "v1.36.1"), what="all tainted")
            await set_versions(nodes, workers[:25], "v1.36.1")  # and untaint half of them while it writes
            await harness.eventually(
                lambda: metric(tainter, "node_tainter_tainted_nodes") == 25, what="25 untainted"
            )
        finally:
            writer.stop.set()
            await writing
        await harness.eventually(lambda: settled(tainter, "v1.36.1"), what="settled after the writer stopped")
        conflicts = metric(tainter, "node_tainter_conflicts_total")

    found = await all_nodes(kube)
    for i, worker in enumerate(workers):
        theirs = {t["key"] for t in taints(found[worker]) if t["key"] != KEY}
        assert theirs == initial[worker] | writer.expected[worker], worker
        assert bool(our_taints(found[worker])) == (i >= 25), worker
    assert writer.writes > 200
    assert conflicts > 0, "no 409 happened: the test did not race the writer"
    print(f"writer made {writer.writes} writes; node-tainter retried {conflicts:.0f} conflicts")


async def test_disagreeing_masters_change_nothing(
    kube: client.Kube, nodes: cluster.Nodes, namespace: str
) -> None:
    await nodes.create("dis-master-0", version="v1.35.2", master=True)
    await nodes.create_many(names("dis-master-x", 2), version="v1.36.1", master=True)
    await nodes.create_many(names("dis-worker", 5), version="v1.35.2")
    stale = {"key": KEY, "value": "v1.34.0", "effect": "PreferNoSchedule"}
    await kube.patch(NODES.path(name="dis-worker-00"), {"spec": {"taints": [stale]}})
    before = await resource_versions(kube)
    async with harness.running(controller.NodeTainter, kube, config(namespace)) as tainter:
        await harness.eventually(
            lambda: metric(tainter, "node_tainter_tainted_nodes") == 1, what="a first plan"
        )
        await asyncio.sleep(3 * tainter.ctx.config.settle_seconds + 0.5)
        assert tainter.ctx.agreements.current is None
        assert metric(tainter, "node_tainter_pending_changes") == 0
        after = await resource_versions(kube)
        assert after == before
        assert (await tainter.ctx.read_state()).resource_version is None


async def test_exclude_selector_and_the_no_schedule_cap(
    kube: client.Kube, nodes: cluster.Nodes, namespace: str
) -> None:
    await nodes.create_many(names("cap-master", 3), version="v1.36.1", master=True)
    await nodes.create_many(names("cap-worker", 8), version="v1.35.2")
    await nodes.create("cap-worker-old", version="v1.34.0")
    for name in ("cap-gpu-0", "cap-gpu-1"):
        await nodes.create(name, version="v1.35.2", labels={"pool": "gpu"})
    stale = {"key": KEY, "value": "v1.35.2", "effect": "NoSchedule"}
    await kube.patch(NODES.path(name="cap-gpu-0"), {"spec": {"taints": [stale]}})
    cfg = config(
        namespace, taint_effect="NoSchedule", exclude_selector="pool=gpu", max_unschedulable_fraction=0.3
    )
    async with harness.running(controller.NodeTainter, kube, cfg) as tainter:
        # 11 schedulable workers: floor(0.3 * 11) = 3 may be made unschedulable, the oldest kubelet first.
        await harness.eventually(lambda: settled(tainter, "v1.36.1"), what="a settled plan")
        found = await all_nodes(kube)
        tainted = sorted(name for name, node in found.items() if our_taints(node))
        assert tainted == ["cap-worker-00", "cap-worker-01", "cap-worker-old"]
        assert our_taints(found["cap-worker-old"])[0] == {
            "key": KEY,
            "value": "v1.34.0",
            "effect": "NoSchedule",
        }
        assert metric(tainter, "node_tainter_waiting_nodes") == 6
        state_now = await tainter.ctx.read_state()
        assert state_now.get("phase") == "Waiting"
        assert state_now.get("progress") == "3/3 outdated workers tainted, 6 waiting for the NoSchedule cap"

        # Upgrading a tainted worker frees its slot for the next one waiting.
        await nodes.set_status("cap-worker-old", version="v1.36.1")

        async def slot_moved() -> bool:
            found = await all_nodes(kube)
            now = sorted(name for name, node in found.items() if our_taints(node))
            return now == ["cap-worker-00", "cap-worker-01", "cap-worker-02"]

        await harness.eventually(slot_moved, what="the freed slot to be used")
        await harness.eventually(lambda: metric(tainter, "node_tainter_waiting_nodes") == 5, what="5 waiting")


async def test_dry_run_changes_nothing(
    kube: client.Kube, nodes: cluster.Nodes, namespace: str, kubeconfig: str
) -> None:
    await nodes.create_many(names("dry-master", 3), version="v1.36.1", master=True)
    await nodes.create_many(names("dry-worker", 4), version="v1.35.2")
    await nodes.create("dry-upgraded", version="v1.36.1")
    stale = {"key": KEY, "value": "v1.35.2", "effect": "PreferNoSchedule"}
    await kube.patch(NODES.path(name="dry-upgraded"), {"spec": {"taints": [stale]}})
    before = await resource_versions(kube)
    async with harness.running(controller.NodeTainter, kube, config(namespace, dry_run=True)) as tainter:
        await harness.eventually(lambda: metric(tainter, "node_tainter_pending_changes") == 5, what="a plan")
        await asyncio.sleep(0.5)
        assert metric(tainter, "node_tainter_pending_changes") == 5
    after = await resource_versions(kube)
    assert after == before
    state_name = state.state_name(release=tainter.ctx.config.release, controller=controller.NAME)
    assert (await state.read(kube, namespace=namespace, name=state_name)).resource_version is None
    assert not any(n.startswith("dry-") for n in await events_by_node(kube))

    report = run_once(kubeconfig, namespace, "--dry-run")
    assert report["dryRun"] and report["agreed"] and report["version"] == "v1.36.1"
    assert sorted((c["node"], c["action"]) for c in report["changes"]) == [
        ("dry-upgraded", "untaint"),
        *((f"dry-worker-{i:02d}", "taint") for i in range(4)),
    ]
    after = await resource_versions(kube)
    assert after == before

    report = run_once(kubeconfig, namespace)  # and for real
    assert len(report["changes"]) == 5 and report["failed"] == []
    found = await all_nodes(kube)
    assert all(our_taints(found[f"dry-worker-{i:02d}"]) for i in range(4))
    assert not our_taints(found["dry-upgraded"])
    recorded = (await state.read(kube, namespace=namespace, name=state_name)).data
    assert (recorded["version"], recorded["phase"]) == ("v1.36.1", "Done")


def run_once(kubeconfig: str, namespace: str, *flags: str) -> dict[str, Any]:
    """``node-tainter --once`` as a real process; returns its JSON report."""
    result = subprocess.run(
        [sys.executable, "-m", "controllers.node_tainter", "--once", "--kubeconfig", kubeconfig, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODE_TAINTER_NAMESPACE": namespace, "NODE_TAINTER_MIN_MASTERS": "3"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report

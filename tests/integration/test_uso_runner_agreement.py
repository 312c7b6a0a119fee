"""uso-runner's daemon writes only while the masters agree on its run's version (real process, real fixture).

A write through an apiserver of another version would store the old encoding again: when a master leaves the
agreement mid-run, writes pause; when it comes back the run resumes; when the masters settle on another
minor, the run stops and a run for that minor starts.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable

from controllers.kube import client, resources, state
from e2e import cluster, controlplane
from tests import harness
from tests.integration import uso_helpers as h

OBJECTS = 400


async def test_masters_leaving_the_agreement_pause_the_run_and_a_new_minor_supersedes_it(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    widgets = await h.crd_with_widgets(kube, namespace=namespace, objects=OBJECTS)
    group = widgets.group
    await h.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v2")
    prefix = f"/registry/{group}/widgets/{namespace}/"

    def stored_as(version: str) -> int:
        objects = h.stored_objects(control_plane, prefix).values()
        return sum(o["apiVersion"] == f"{group}/{version}" for o in objects)

    release = f"r{uuid.uuid4().hex[:6]}"
    state_name = f"{release}-uso-runner-state"
    one, two = f"m1-{release}", f"m2-{release}"
    for master in (one, two):
        await nodes.create(master, version="v1.36.0", master=True)

    async def until(what: str, check: Callable[[state.State], bool]) -> None:
        async def holds() -> bool:
            assert process.returncode is None, "the daemon exited"
            return check(await state.read(kube, namespace=namespace, name=state_name))

        await harness.eventually(holds, timeout=60, interval=0.1, what=what)

    async def until_stored(version: str, at_least: int) -> None:
        what = f"{at_least} objects stored as {version}"
        await harness.eventually(lambda: stored_as(version) >= at_least, timeout=60, interval=0.1, what=what)

    async def no_writes_while_paused(version: str) -> None:
        await until("paused", lambda s: s.get("phase") == "Paused")
        await asyncio.sleep(1)  # the writes already in flight land
        paused_at = stored_as(version)
        await asyncio.sleep(2)
        assert stored_as(version) == paused_at < OBJECTS

    argv = h.runner_argv(
        str(control_plane.kubeconfig),
        namespace=namespace,
        release=release,
        extra=[f"--resources=widgets.{group}", "--qps=40", "--workers=4", "--page-size=50"],
    )
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=h.clean_env()
    )
    try:
        # A master leaves the agreement mid-run (e.g. rolled back): no more writes until it is back.
        await until_stored("v2", 40)
        await nodes.set_status(two, version="v1.35.9")
        await no_writes_while_paused("v2")
        await nodes.set_status(two, version="v1.36.0")
        await until("resumed and finished", lambda s: s.get("phase") == "Succeeded")
        assert stored_as("v2") == OBJECTS

        # Storage back to v1, masters to v1.37: a run starts; mid-run the masters settle on v1.38 instead.
        await h.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v1")
        for master in (one, two):
            await nodes.set_status(master, version="v1.37.0")
        await until_stored("v1", 40)
        await nodes.set_status(one, version="v1.38.0")
        await no_writes_while_paused("v1")
        await nodes.set_status(two, version="v1.38.0")
        await until(
            "the v1.38 run", lambda s: s.get("version") == "v1.38.0" and s.get("phase") == "Succeeded"
        )
        assert stored_as("v1") == OBJECTS

        # The state is written before the run's last Event: wait for that Event before stopping the daemon.
        async def succeeded_for_v138() -> bool:
            listed = await kube.get(resources.EVENTS.path(namespace=namespace))
            return any(
                e["reason"] == "MigrationSucceeded" and e.get("note", "").endswith("rewritten for v1.38.0")
                for e in listed["items"]
                if e["regarding"]["name"] == state_name
            )

        await harness.eventually(
            succeeded_for_v138, timeout=30, what="the v1.38 run's MigrationSucceeded Event"
        )
    finally:
        process.terminate()
        await process.wait()
    assert process.returncode == 0

    listed = await kube.get(resources.EVENTS.path(namespace=namespace))
    events = sorted(
        (e for e in listed["items"] if e["regarding"]["name"] == state_name),
        key=lambda e: e["metadata"]["creationTimestamp"] + e["metadata"]["name"],
    )
    reasons = [e["reason"] for e in events]
    assert reasons.count("MigrationPaused") == 2 and reasons.count("MigrationResumed") == 1, reasons
    paused = next(e for e in events if e["reason"] == "MigrationPaused")
    assert paused["type"] == "Warning" and "v1.36.0" in paused["note"]
    failed = [e["note"] for e in events if e["reason"] == "MigrationFailed"]
    assert len(failed) == 1 and "stopped: masters now agree on v1.38.0" in failed[0], failed
    succeeded = [e["note"] for e in events if e["reason"] == "MigrationSucceeded"]
    assert any(note.endswith("rewritten for v1.38.0") for note in succeeded), succeeded

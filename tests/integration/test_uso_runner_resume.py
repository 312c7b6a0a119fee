"""kill -9 of a real uso-runner process mid-run; the restart completes without redoing finished resources."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid

from controllers.kube import client, resources, state
from e2e import cluster, controlplane
from tests import harness
from tests.integration import uso_helpers as h

# 3 CRDs x 500 objects in `make test`; USO_RESUME_PER_RESOURCE=6667 runs the 20,000-object variant.
PER_RESOURCE = int(os.environ.get("USO_RESUME_PER_RESOURCE", "500"))


async def test_kill_9_mid_run_then_restart_resumes(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    groups = sorted(h.unique_group() for _ in range(3))
    names = [f"widgets.{group}" for group in groups]
    for group in groups:
        widgets = await h.create_crd(kube, group=group)
        await h.create_many(
            kube,
            widgets,
            (h.widget(f"w{i:04d}", i, api_version=f"{group}/v1") for i in range(PER_RESOURCE)),
            namespace=namespace,
        )
    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version="v1.35.0", master=True)
    state_name = f"{release}-uso-runner-state"
    argv = h.runner_argv(
        str(control_plane.kubeconfig),
        namespace=namespace,
        release=release,
        extra=[f"--resources={','.join(names)}", "--resource-workers=1", "--workers=4"],
    )

    # One resource at a time, throttled, so that the kill lands after the first resource and before the last.
    process = await asyncio.create_subprocess_exec(
        *argv, "--once", "--qps=100", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=h.clean_env()
    )
    try:
        done_at_kill: list[str] = []

        async def some_done() -> bool:
            saved = await state.read(kube, namespace=namespace, name=state_name)
            done_at_kill[:] = json.loads(saved.get("runDone") or "[]")
            return bool(done_at_kill) or process.returncode is not None

        await harness.eventually(some_done, timeout=120, interval=0.1, what="a first resource done")
    finally:
        if process.returncode is None:
            process.kill()  # SIGKILL: no cleanup, no final state write
        await process.wait()
    assert process.returncode == -9
    assert 1 <= len(done_at_kill) < len(names), done_at_kill
    saved = await state.read(kube, namespace=namespace, name=state_name)
    assert saved.get("phase") == "Running" and saved.get("runTarget") == "v1.35.0"
    done_at_kill = json.loads(saved.get("runDone"))

    code, report, logs = await h.run_once_async(
        str(control_plane.kubeconfig),
        namespace=namespace,
        release=release,
        extra=[f"--resources={','.join(names)}", "--qps=0"],
    )
    assert code == 0, logs
    assert report["action"] == "resume"
    assert sorted(report["alreadyDone"]) == sorted(done_at_kill)
    assert sorted(report["resources"]) == sorted(set(names) - set(done_at_kill))
    for name in report["resources"]:
        assert report["resources"][name]["migrated"] == PER_RESOURCE
    saved = await state.read(kube, namespace=namespace, name=state_name)
    assert saved.get("phase") == "Succeeded" and saved.get("version") == "v1.35.0"
    assert saved.get("runTarget") == "" and json.loads(saved.get("runDone")) == []
    assert sorted(json.loads(saved.get("storageHashes"))) == sorted(names)


async def test_daemon_runs_on_start_and_again_on_a_new_minor_all_resources(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    group = h.unique_group()
    widgets = await h.create_crd(kube, group=group)
    await h.create_many(
        kube,
        widgets,
        (h.widget(f"w{i}", i, api_version=f"{group}/v1") for i in range(20)),
        namespace=namespace,
    )
    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version="v1.35.0", master=True)
    state_name = f"{release}-uso-runner-state"
    argv = h.runner_argv(
        str(control_plane.kubeconfig),
        namespace=namespace,
        release=release,
        extra=[f"--resources=widgets.{group}", "--all-resources"],
    )

    async def wait_for(version: str) -> state.State:
        async def finished() -> bool:
            assert process.returncode is None, "the daemon exited"
            saved = await state.read(kube, namespace=namespace, name=state_name)
            return saved.get("version") == version and saved.get("phase") == "Succeeded"

        await harness.eventually(finished, timeout=90, interval=0.1, what=f"a finished run for {version}")
        return await state.read(kube, namespace=namespace, name=state_name)

    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=h.clean_env()
    )
    try:
        first = await wait_for("v1.35.0")
        await nodes.set_status(f"m-{release}", version="v1.36.1")
        second = await wait_for("v1.36.1")
        assert second.resource_version != first.resource_version
        listed = await kube.get(resources.EVENTS.path(namespace=namespace))
        events = [e for e in listed["items"] if e["regarding"]["name"] == state_name]
        assert [e["reason"] for e in events].count("MigrationStarted") == 2
        # The hash did not change, yet --all-resources rewrote every object again.
        notes = sorted(e["note"] for e in events if e["reason"] == "MigrationSucceeded")
        assert notes == [f"20 object(s) of 1 resource(s) rewritten for {v}" for v in ("v1.35.0", "v1.36.1")]
    finally:
        process.terminate()
        await process.wait()
    assert process.returncode == 0  # SIGTERM is a clean stop

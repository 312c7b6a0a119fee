"""Chaos on a real local control plane (issue #20): what a control-plane upgrade does to the API, done for
real to the kube-apiserver and etcd, while one ``kube-upgrade-controllers run`` process (uso-runner in the
middle of a 5,000-object migration, node-tainter and leader-watchdog, each leader-elected) works on:

(a) the kube-apiserver frozen (SIGSTOP) for 45 s;  (b) the kube-apiserver killed and started again on the same
etcd;  (c) etcd stopped for 30 s;  (d) a flood of 429s (an APF priority level with a tiny share, bound to the
controllers' user, for 30 s).

In each: the process stays up, ``/healthz`` is 200 afterwards, the migration finishes with every object
rewritten, node-tainter taints a worker that appeared as the API came back (while its watch was still broken),
and the Events stay few. The scenarios run on a control plane of their own (they would disturb the session's);
each prints what happened and how long recovery took.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

import pytest

from controllers.kube import client, resources, retry
from e2e import cluster, controlplane
from tests import harness
from tests.integration import uso_helpers

pytestmark = pytest.mark.timeout(420)

COMMAND = str(pathlib.Path(sys.executable).parent / "kube-upgrade-controllers")
OBJECTS = 5000
USER = "kuc-chaos"
TAINT_KEY = "upgrade.kube-upgrade-controllers.io/outdated"
PRIORITY = resources.Resource(
    "flowcontrol.apiserver.k8s.io", "v1", "prioritylevelconfigurations", namespaced=False
)
FLOWS = resources.Resource("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", namespaced=False)
BINDINGS = resources.Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)
FLOODERS = 12  # requests the flood keeps in flight: more than the tiny priority level's seats
REJECTED = "apiserver_flowcontrol_rejected_requests_total"
EVENT_BOUND = 60  # Events the controllers may write in one scenario: a storm would be hundreds


@dataclasses.dataclass
class Chaos:
    plane: controlplane.ControlPlane
    user_kubeconfig: pathlib.Path


@pytest.fixture(scope="module")
def chaos() -> Iterator[Chaos]:
    """A control plane of its own and a user that API priority and fairness does not exempt (the admin is in
    system:masters), bound to cluster-admin."""
    with controlplane.running() as plane:

        async def prepare() -> None:
            async with await client.connect(kubeconfig=str(plane.kubeconfig)) as kube:
                binding = {
                    "metadata": {"name": USER},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
                }
                await kube.create(BINDINGS.path(), binding)

        asyncio.run(prepare())
        yield Chaos(plane=plane, user_kubeconfig=plane.user_kubeconfig(USER))


def scrape(port: int) -> str:
    return harness.scrape(port)[1]


def total(text: str, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    found = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
            found += float(value)
    return found


async def api_answers(kube: client.Kube) -> bool:
    try:
        await kube.get("/version")
    except Exception:
        return False
    return True


async def run_scenario(
    chaos: Chaos,
    *,
    name: str,
    fault: Callable[[client.Kube, str], Awaitable[None]],  # given the path that lists the migrated objects
    tmp_path: pathlib.Path,
    worker_when_back: bool = True,
    throttled: bool = False,
) -> None:
    plane = chaos.plane
    async with await client.connect(kubeconfig=str(plane.kubeconfig)) as kube:
        namespace = f"chaos-{name}-{uuid.uuid4().hex[:6]}"
        await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": namespace}})
        label = f"chaos-{uuid.uuid4().hex[:8]}"
        nodes = cluster.Nodes(kube)
        for index in range(3):
            await nodes.create(f"{label}-m{index}", version="v1.40.0", master=True, labels={label: ""})
        # 5,000 widgets stored at v1, then the CRD's storage switched to v2: each rewrite changes etcd.
        group = uso_helpers.unique_group()
        widgets = await uso_helpers.create_crd(kube, group=group)
        bodies = (uso_helpers.widget(f"w{i:05d}", i, api_version=f"{group}/v1") for i in range(OBJECTS))
        await uso_helpers.create_many(kube, widgets, bodies, namespace=namespace)
        await uso_helpers.switch_storage(kube, plane, widgets, namespace=namespace, to="v2")
        group_resource = f"widgets.{group}"
        common = [
            f"--kubeconfig={chaos.user_kubeconfig}", f"--namespace={namespace}", f"--release={name}",
            f"--master-selectors={cluster.CONTROL_PLANE},{label}", "--min-masters=3", "--settle-seconds=0",
            "--leader-elect",
        ]  # fmt: skip
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("USO_RUNNER_", "NODE_TAINTER_", "LEADER_"))
            },
            "USO_RUNNER_RESOURCES": group_resource,
            "USO_RUNNER_QPS": "100",
            "USO_RUNNER_RETRY_SECONDS": "5",
            "LEADER_WATCHDOG_CHECKS": "heartbeats",
        }
        started = time.monotonic()
        with harness.serve(
            COMMAND,
            "run",
            "uso-runner",
            "node-tainter",
            "leader-watchdog",
            *common,
            "--no-metrics-secure",
            env=env,
        ) as (process, port):
            await harness.eventually(
                lambda: total(scrape(port), "uso_runner_objects_total", outcome="migrated") >= OBJECTS / 5,
                timeout=120,
                interval=0.2,
                what="a fifth of the migration",
            )
            fault_started = time.monotonic()
            print(f"\n[{name}] fault at {fault_started - started:.1f} s into the run")
            await fault(kube, widgets.path(namespace=namespace))
            back = time.monotonic()
            print(f"[{name}] API back after {back - fault_started:.1f} s")
            worker = f"{label}-w-late"
            if worker_when_back:  # the controllers' watches are still broken or backing off now
                await harness.eventually(lambda: api_answers(kube), timeout=60, what="the API")
                await nodes.create(worker, version="v1.39.0")

            async def migrated() -> bool:
                state = await kube.get(
                    resources.CONFIGMAPS.path(namespace=namespace, name=f"{name}-uso-runner-state")
                )
                return bool(state.get("data", {}).get("phase") == "Succeeded")

            async def tainted() -> bool:
                node = await kube.get(resources.NODES.path(name=worker))
                return any(t.get("key") == TAINT_KEY for t in node.get("spec", {}).get("taints") or [])

            waited = time.monotonic() - back
            migrated_in, tainted_in = await asyncio.gather(
                harness.eventually(migrated, timeout=240, interval=0.5, what="the migration to succeed"),
                harness.eventually(tainted, timeout=120, interval=0.2, what="the late worker tainted"),
            )
            migrated_at, tainted_at = waited + migrated_in, waited + tainted_in
            await harness.eventually(lambda: harness.scrape(port, "/healthz")[0] == 200, what="/healthz 200")
            assert process.poll() is None, "the controller process ended"
            text = scrape(port)
            stored = uso_helpers.stored_objects(plane, f"/registry/{group}/widgets/{namespace}/")
            versions = Counter(obj["apiVersion"] for obj in stored.values())
            assert versions == {f"{group}/v2": OBJECTS}, versions
            counts = {
                outcome: total(text, "uso_runner_objects_total", resource=group_resource, outcome=outcome)
                for outcome in ("migrated", "conflict", "not_found")
            }
            errors = {
                reason: total(text, f"{prefix}_sync_errors_total", reason=reason)
                for prefix in ("uso_runner", "node_tainter", "leader_watchdog")
                for reason in ("connection", "server_error", "throttled", "unexpected")
            }
            refused = total(text, "uso_runner_errors_total", reason="throttled")
            restarts = {
                p: total(text, f"{p}_restarts_total")
                for p in ("uso_runner", "node_tainter", "leader_watchdog")
            }
            lost = {
                p: total(text, f"{p}_leadership_lost_total")
                for p in ("uso_runner", "node_tainter", "leader_watchdog")
            }
            ours = [
                event
                for event in await kube.list_items(resources.EVENTS.path())
                if str(event.get("reportingController", "")).startswith("kube-upgrade-controllers.io/")
                and event["metadata"]["namespace"] in (namespace, "default")
                and (
                    event.get("regarding", {}).get("name", "").startswith(label)
                    or event["metadata"]["namespace"] == namespace
                )
            ]
            print(
                f"[{name}] migration succeeded {migrated_at:.1f} s and the late worker was tainted "
                f"{tainted_at:.1f} s after the API came back; objects {counts} of {OBJECTS}; sync errors "
                f"{ {k: v for k, v in errors.items() if v} }; 429s met by uso-runner's writes {refused:.0f}; "
                f"restarts {restarts}; leadership lost {lost}; "
                f"{len(ours)} Events"
            )
            assert sum(restarts.values()) == 0, "a controller was restarted: a transient failure was fatal"
            assert errors.get("unexpected", 0) == 0
            assert counts["migrated"] + counts["conflict"] + counts["not_found"] >= OBJECTS
            # No object rewritten twice: a new term goes on from the run's bookmark (a write that landed but
            # whose answer was lost is tried again and meets 409: a conflict, not a second rewrite).
            assert counts["migrated"] <= OBJECTS, f"{counts['migrated']:.0f} rewrites of {OBJECTS} objects"
            assert len(ours) <= EVENT_BOUND, f"{len(ours)} Events: a storm"
            if throttled:  # the flood was proven by the apiserver's count; uso-runner's writes met it too
                assert refused > 0, "uso-runner met no 429 during the flood"
        await nodes.delete_all()


async def test_a_apiserver_frozen_for_45_s(chaos: Chaos, tmp_path: pathlib.Path) -> None:
    async def freeze(_: client.Kube, __: str) -> None:
        chaos.plane.freeze_apiserver(True)
        try:
            await asyncio.sleep(45)
        finally:
            chaos.plane.freeze_apiserver(False)

    await run_scenario(chaos, name="frozen", fault=freeze, tmp_path=tmp_path)


async def test_b_apiserver_killed_and_started_again(chaos: Chaos, tmp_path: pathlib.Path) -> None:
    async def kill(_: client.Kube, __: str) -> None:
        plane = chaos.plane
        assert plane.apiserver is not None
        os.killpg(plane.apiserver.pid, signal.SIGKILL)
        plane.apiserver.wait()
        plane.apiserver = None
        await asyncio.sleep(5)
        # From this thread: the fixture ties its processes to the thread that starts them.
        plane.start_apiserver()

    await run_scenario(chaos, name="killed", fault=kill, tmp_path=tmp_path)


async def test_c_etcd_stopped_for_30_s(chaos: Chaos, tmp_path: pathlib.Path) -> None:
    async def stop_etcd(_: client.Kube, __: str) -> None:
        chaos.plane.stop_etcd()
        try:
            await asyncio.sleep(30)
        finally:
            chaos.plane.start_etcd()  # from this thread: the fixture ties its processes to the starting thread

    await run_scenario(chaos, name="etcd", fault=stop_etcd, tmp_path=tmp_path)


async def test_d_a_flood_of_429s(chaos: Chaos, tmp_path: pathlib.Path) -> None:
    """For 30 s the controllers' user gets the fewest seats of the apiserver and no queue, and a flood takes
    them: most requests are 429."""

    async def throttle(kube: client.Kube, widgets: str) -> None:
        level = {
            "metadata": {"name": USER},
            "spec": {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 1,
                    "lendablePercent": 0,
                    # Borrowing from idle levels is unlimited by default: the level then grows with the flood
                    # (6 rejections in 30 s in two CI runs). None: its nominal seats only.
                    "borrowingLimitPercent": 0,
                    "limitResponse": {"type": "Reject"},
                },
            },
        }
        flow = {
            "metadata": {"name": USER},
            "spec": {
                "priorityLevelConfiguration": {"name": USER},
                "matchingPrecedence": 100,
                "rules": [
                    {
                        "subjects": [{"kind": "User", "user": {"name": USER}}],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "clusterScope": True,
                                "namespaces": ["*"],
                            }
                        ],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }
                ],
            },
        }
        await kube.create(PRIORITY.path(), level)
        await kube.create(FLOWS.path(), flow)
        try:
            # The flood: other clients of the same user list the 5,000 migrated objects. APF counts a list by
            # the objects it may return, so one list takes every seat of the level while it runs and the
            # controllers' requests meet 429s however fast or slow this machine is today.
            async with await client.connect(kubeconfig=str(chaos.user_kubeconfig)) as flooder:

                async def hammer() -> None:
                    while True:
                        try:
                            await flooder.request("GET", widgets, policy=retry.ONCE)
                        except client.ApiError:
                            await asyncio.sleep(
                                0.05
                            )  # refused: a flood, not a busy loop on this machine's cores

                hammers = [asyncio.create_task(hammer()) for _ in range(FLOODERS)]
                try:
                    await asyncio.sleep(30)
                finally:
                    for task in hammers:
                        task.cancel()
                    await asyncio.gather(*hammers, return_exceptions=True)
            rejected = total(await kube.get_text("/metrics"), REJECTED, priority_level=USER)
            print(f"[throttled] the apiserver rejected {rejected:.0f} requests of the level {USER!r}")
            assert rejected > 0, "the priority level refused nothing: the flood did not happen"
        finally:
            with contextlib.suppress(Exception):
                await kube.delete(FLOWS.path(name=USER))
            with contextlib.suppress(Exception):
                await kube.delete(PRIORITY.path(name=USER))

    await run_scenario(chaos, name="throttled", fault=throttle, tmp_path=tmp_path, throttled=True)

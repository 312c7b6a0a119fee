"""The leader-health watchdog on the real control plane: leaders, live apiservers, endpoints, heartbeats.

Leases are renewed by a test helper (there is no kube-scheduler, no kubelet); time thresholds are small so
that every scenario takes seconds. Each test reports the latency it measured on stdout (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from controllers.kube import client, resources, watch
from controllers.leader_watchdog import controller
from controllers.leader_watchdog.checks import interface
from controllers.structs import times
from e2e import cluster
from tests import harness

LEASES = resources.LEASES
VERSION = "v1.31.4"
IDENTITY_LABEL = "apiserver.kubernetes.io/identity"


# --- helpers ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Renewer:
    """Renews Leases (``namespace/name`` → holder) every ``interval`` until told to stop some or all."""

    kube: client.Kube
    interval: float
    holders: dict[str, str] = dataclasses.field(default_factory=dict)
    duration: int = 15
    last_renewed: dict[str, float] = dataclasses.field(default_factory=dict)
    concurrency: int = 25

    async def create(self, key: str, holder: str, *, labels: dict[str, str] | None = None) -> None:
        namespace, _, name = key.partition("/")
        body: client.JSON = {
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": self.duration,
                "renewTime": times.micro_time(),
            },
        }
        await self.kube.create(LEASES.path(namespace=namespace), body)
        self.holders[key] = holder
        self.last_renewed[key] = time.time()

    async def create_many(self, keys: Iterable[str], holder: str = "") -> None:
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(key: str) -> None:
            async with semaphore:
                await self.create(key, holder or key.partition("/")[2])

        await asyncio.gather(*(one(key) for key in keys))

    def stop(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.holders.pop(key, None)

    async def renew_once(self) -> None:
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(key: str, holder: str) -> None:
            namespace, _, name = key.partition("/")
            async with semaphore:
                stamp = time.time()
                patch = {"spec": {"holderIdentity": holder, "renewTime": times.micro_time()}}
                await self.kube.patch(LEASES.path(namespace=namespace, name=name), patch)
                self.last_renewed[key] = stamp

        await asyncio.gather(*(one(key, holder) for key, holder in list(self.holders.items())))

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await self.renew_once()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))


@contextlib.asynccontextmanager
async def renewing(renewer: Renewer) -> AsyncIterator[Renewer]:
    task = asyncio.create_task(renewer.run())
    try:
        yield renewer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_config(**overrides: Any) -> controller.LeaderWatchdogConfig:
    defaults: dict[str, Any] = {
        "settle_seconds": 0.0,
        "evaluate_interval_seconds": 0.2,
        "master_selectors": ("node-role.kubernetes.io/control-plane",),
    }
    return controller.LeaderWatchdogConfig(**{**defaults, **overrides})


def running(
    kube: client.Kube, cfg: controller.LeaderWatchdogConfig
) -> contextlib.AbstractAsyncContextManager[controller.LeaderWatchdog]:
    return harness.running(controller.LeaderWatchdog, kube, cfg)


def findings(dog: controller.LeaderWatchdog) -> list[dict[str, Any]]:
    return list(dog.status()["findings"])


def matching(dog: controller.LeaderWatchdog, check: str, obj: str = "") -> list[dict[str, Any]]:
    return [f for f in findings(dog) if f["check"] == check and obj in f["object"]]


async def wait_for(dog: controller.LeaderWatchdog, check: str, obj: str = "", *, timeout: float) -> float:
    """Seconds until a finding ``check`` on an object containing ``obj`` appears (fails after timeout)."""
    what = f"{check} on {obj!r} (findings: {findings(dog)})"
    return await harness.eventually(
        lambda: bool(matching(dog, check, obj)), timeout=timeout, interval=0.02, what=what
    )


async def wait_until_gone(
    dog: controller.LeaderWatchdog, check: str, obj: str = "", *, timeout: float
) -> float:
    what = f"{check} on {obj!r} to clear"
    return await harness.eventually(
        lambda: not matching(dog, check, obj), timeout=timeout, interval=0.02, what=what
    )


def sample(dog: controller.LeaderWatchdog, name: str, **labels: str) -> float | None:
    return harness.metric(dog, name, **labels)


async def event_reasons(kube: client.Kube, *, namespace: str, name: str) -> list[str]:
    listed = await kube.get(
        resources.EVENTS.path(namespace=namespace), query={"fieldSelector": f"regarding.name={name}"}
    )
    return [str(item.get("reason")) for item in listed.get("items", [])]


async def wait_for_events(kube: client.Kube, reasons: set[str], *, namespace: str, name: str) -> None:
    async def recorded() -> bool:
        return reasons <= set(await event_reasons(kube, namespace=namespace, name=name))

    await harness.eventually(
        recorded, timeout=5, interval=0.1, what=f"Events {reasons} on {namespace}/{name}"
    )


def suffix() -> str:
    return uuid.uuid4().hex[:6]


# --- (1) leader Leases -------------------------------------------------------------------------------------


async def test_renewed_leader_is_healthy_and_stale_once_renewals_stop(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    master = f"lw-master-{suffix()}"
    other = f"lw-master-{suffix()}"
    await nodes.create(master, version=VERSION, master=True)
    await nodes.create(other, version=VERSION, master=True)
    key = f"{namespace}/kube-scheduler"
    renewer = Renewer(kube, interval=0.5, duration=2)
    await renewer.create(key, f"{master}_{uuid.uuid4()}")
    cfg = make_config(leader_leases=(key,), checks=("leaders",), leader_failover_seconds=0.5)
    async with renewing(renewer), running(kube, cfg) as dog:
        await asyncio.sleep(3.0)  # longer than leaseDurationSeconds: renewals keep it healthy
        assert findings(dog) == []
        assert sample(dog, "leader_watchdog_findings", check="stale-leader", severity="critical") == 0
        leader = dog.status()["leaders"][0]
        assert leader["lease"] == key and leader["holder"].startswith(master)

        # A new holder is a transition: counted and recorded as an Event.
        renewer.holders[key] = f"{other}_{uuid.uuid4()}"
        await harness.eventually(
            lambda: sample(dog, "leader_watchdog_leader_transitions_total", lease=key) == 1,
            timeout=5,
            what="the transition counted",
        )

        renewer.stop([key])
        await asyncio.sleep(0)
        last = renewer.last_renewed[key]
        await wait_for(dog, "stale-leader", key, timeout=2 + 0.5 + 2 + 2)
        after_last = time.time() - last
        print(
            f"\nstale leader reported {after_last:.2f} s after the last renewal (lease 2 s, failover 0.5 s)"
        )
        assert 2 + 0.5 <= after_last <= 2 + 0.5 + 2
        (finding,) = matching(dog, "stale-leader", key)
        assert finding["severity"] == "critical" and other in finding["evidence"]
        assert finding["since"] is not None
        assert sample(dog, "leader_watchdog_findings", check="stale-leader", severity="critical") == 1
        await wait_for_events(
            kube, {"LeaderChanged", "StaleLeader"}, namespace=namespace, name="kube-scheduler"
        )


async def test_a_lagging_watch_is_not_taken_for_a_stale_leader(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    """Seen on a real kind cluster during a kubeadm upgrade: a watch served by an apiserver whose etcd was
    restarting delivered nothing for 30-50 s, so renewed Leases looked stale. A fresh read confirms first."""
    master = f"lw-master-{suffix()}"
    await nodes.create(master, version=VERSION, master=True)
    key = f"{namespace}/kube-scheduler"
    renewer = Renewer(kube, interval=0.5, duration=2)
    await renewer.create(key, f"{master}_{uuid.uuid4()}")
    cfg = make_config(leader_leases=(key,), checks=("leaders",), leader_failover_seconds=0.5)
    async with renewing(renewer), running(kube, cfg) as dog:
        # The watch goes silent (its changes are dropped before the store) for twice the Lease's duration
        # and failover; the Lease is renewed all along, so only fresh lists can show it.
        store = dog.stores[f"leader:{key}"]
        listings: list[watch.WatchEvent] = []
        apply = store.apply

        def silent(event: watch.WatchEvent) -> None:
            if event.type == "SYNC":
                listings.append(event)
                apply(event)

        store.apply = silent  # type: ignore[method-assign]
        deadline = time.time() + 2 * (2 + 0.5)
        while time.time() < deadline:
            assert matching(dog, "stale-leader", key) == []
            await asyncio.sleep(0.1)
        assert listings, "the watchdog never re-read the Lease it saw go stale"
        renewed = store.items[key].renew_time
        assert renewed is not None and time.time() - renewed < 2 + 0.5 + 1, (
            "the re-read did not reach the store"
        )
        store.apply = apply  # type: ignore[method-assign]
        await asyncio.sleep(1.0)  # a few more evaluations (every 0.2 s)
        assert matching(dog, "stale-leader", key) == []
        assert (
            sample(dog, "leader_watchdog_findings_raised_total", check="stale-leader", severity="critical")
            == 0
        )


async def test_leader_on_a_deleted_master_is_reported_within_two_seconds(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    master = f"lw-master-{suffix()}"
    await nodes.create(master, version=VERSION, master=True)
    await nodes.create(f"lw-master-{suffix()}", version=VERSION, master=True)
    key = f"{namespace}/kube-controller-manager"
    renewer = Renewer(kube, interval=1.0, duration=15)
    await renewer.create(key, f"{master}_{uuid.uuid4()}")
    cfg = make_config(leader_leases=(key,), checks=("leaders",))
    async with renewing(renewer), running(kube, cfg) as dog:
        assert findings(dog) == []
        await nodes.delete(master)
        elapsed = await wait_for(dog, "leader-on-unknown-master", key, timeout=2.0)
        print(f"\nleader on unknown master reported {elapsed:.3f} s after the master Node was deleted")
        (finding,) = findings(dog)
        assert finding["severity"] == "critical" and master in finding["evidence"]


async def test_missing_lease_and_leader_on_a_notready_master_are_warnings(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    master = f"lw-master-{suffix()}"
    await nodes.create(master, version=VERSION, master=True)
    key = f"{namespace}/kube-scheduler"
    renewer = Renewer(kube, interval=1.0, duration=15)
    await renewer.create(key, f"{master}_{uuid.uuid4()}")
    cfg = make_config(leader_leases=(key, f"{namespace}/absent"), checks=("leaders",))
    async with renewing(renewer), running(kube, cfg) as dog:
        assert [(f["check"], f["severity"], f["object"]) for f in findings(dog)] == [
            ("leader-missing", "warning", f"Lease {namespace}/absent")
        ]
        await nodes.set_status(master, version=VERSION, ready=False)
        await wait_for(dog, "leader-on-notready-master", key, timeout=5)
        assert dog.status()["critical"] is False
        await nodes.set_status(master, version=VERSION, ready=True)
        await wait_until_gone(dog, "leader-on-notready-master", key, timeout=5)


# --- (2) live apiservers and default/kubernetes --------------------------------------------------------


async def test_apiserver_identity_leases_and_kubernetes_endpoints(
    kube: client.Kube, nodes: cluster.Nodes
) -> None:
    hostname = socket.gethostname().lower()
    extra = f"apiserver-lw-{suffix()}"
    cfg = make_config(checks=("apiservers", "endpoints"))
    slice_path = resources.ENDPOINT_SLICES.path(namespace="default", name="kubernetes")
    try:
        async with running(kube, cfg) as dog:
            # No master Node has the fixture apiserver's hostname yet: it is a stale master.
            real = [a for a in dog.status()["apiservers"] if a["hostname"].lower() == hostname]
            assert real and real[0]["live"], dog.status()["apiservers"]
            assert matching(dog, "stale-apiserver", real[0]["lease"])

            await nodes.create(hostname, version=VERSION, master=True, address="10.98.0.1")
            elapsed = await wait_until_gone(dog, "stale-apiserver", timeout=2)
            print(f"\nreal apiserver recognised {elapsed:.3f} s after its master Node appeared")
            (recognised,) = [a for a in dog.status()["apiservers"] if a["hostname"].lower() == hostname]
            assert recognised["master"] == hostname

            renewer = Renewer(kube, interval=5, duration=3600)
            labels = {IDENTITY_LABEL: "kube-apiserver", interface.HOSTNAME_LABEL: "removed-master-1"}
            await renewer.create(f"kube-system/{extra}", f"{extra}_{uuid.uuid4()}", labels=labels)
            elapsed = await wait_for(dog, "stale-apiserver", extra, timeout=2)
            print(f"stale apiserver reported {elapsed:.3f} s after its identity Lease appeared")
            assert [f["object"] for f in matching(dog, "stale-apiserver")] == [f"Lease kube-system/{extra}"]

            # What the apiserver's endpoint reconciler writes (the fixture's is off): a slice of the Service.
            body: client.JSON = {
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "kubernetes"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.98.0.1"]}, {"addresses": ["10.99.0.7"]}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            }
            await kube.create(resources.ENDPOINT_SLICES.path(namespace="default"), body)
            elapsed = await wait_for(dog, "stale-endpoint", "10.99.0.7", timeout=2)
            print(f"stale endpoint reported {elapsed:.3f} s after it was written")
            assert [f["object"] for f in matching(dog, "stale-endpoint")] == [
                "Service default/kubernetes endpoint 10.99.0.7"
            ]
            assert dog.status()["endpoints"] == ["10.98.0.1", "10.99.0.7"]

            await kube.patch(slice_path, {"endpoints": [{"addresses": ["10.98.0.1"]}]})
            await wait_until_gone(dog, "stale-endpoint", timeout=2)
            assert sample(dog, "leader_watchdog_apiservers") == 2
            await wait_for_events(kube, {"StaleApiserver"}, namespace="kube-system", name=extra)
    finally:
        for path in (slice_path, LEASES.path(namespace="kube-system", name=extra)):
            with contextlib.suppress(client.ApiError):
                await kube.delete(path)


# --- (3) node heartbeats -----------------------------------------------------------------------------------

WORKERS = 100
STOPPED = 40
HEARTBEAT_STALE = 6.0


@contextlib.asynccontextmanager
async def fleet(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> AsyncIterator[tuple[Renewer, list[str]]]:
    """100 worker Nodes whose heartbeat Leases (in ``namespace``) a helper renews every second."""
    group = suffix()
    names = [f"lw-w-{group}-{i:03d}" for i in range(WORKERS)]
    await nodes.create_many(names, version=VERSION)
    renewer = Renewer(kube, interval=1.0, duration=40)
    await renewer.create_many(f"{namespace}/{name}" for name in names)
    async with renewing(renewer):
        yield renewer, names


async def wait_for_not_ready(dog: controller.LeaderWatchdog, count: int) -> None:
    await harness.eventually(
        lambda: dog.status()["nodes"]["notReady"] >= count, timeout=60, interval=0.1, what=f"{count} NotReady"
    )


def heartbeat_config(namespace: str) -> controller.LeaderWatchdogConfig:
    return make_config(
        checks=("heartbeats",),
        node_lease_namespace=namespace,
        heartbeat_stale_seconds=HEARTBEAT_STALE,
        outage_window_seconds=60.0,
        evaluate_interval_seconds=0.5,
    )


async def test_notready_jump_right_after_a_master_replacement_is_the_outage_pattern(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    old, new = f"lw-master-old-{suffix()}", f"lw-master-new-{suffix()}"
    await nodes.create(old, version=VERSION, master=True)
    async with (
        fleet(kube, namespace, nodes) as (renewer, names),
        running(kube, heartbeat_config(namespace)) as dog,
    ):
        assert findings(dog) == []
        assert dog.status()["nodes"]["workers"] == WORKERS
        await nodes.create(new, version=VERSION, master=True)
        await nodes.delete(old)
        replaced = time.monotonic()
        renewer.stop(f"{namespace}/{name}" for name in names[:STOPPED])
        elapsed = await wait_for(dog, "outage-pattern", timeout=60)
        print(
            f"\noutage pattern reported {elapsed:.2f} s after the master was replaced (heartbeat threshold {HEARTBEAT_STALE} s)"
        )
        assert time.monotonic() - replaced < 60
        await wait_for_not_ready(dog, STOPPED)
        (pattern,) = matching(dog, "outage-pattern")
        assert pattern["severity"] == "critical" and f"from 0 to {STOPPED}" in pattern["evidence"]
        assert dog.status()["nodes"]["notReady"] == STOPPED
        assert sample(dog, "leader_watchdog_findings", check="outage-pattern", severity="critical") == 1
        # One added, one removed: two changes, or one when both fell into the same evaluation.
        assert sample(dog, "leader_watchdog_master_set_changes_total") in (1, 2)
        assert sample(dog, "leader_watchdog_node_heartbeats_stale") == STOPPED
        assert dog.status()["critical"] is True


async def test_same_notready_jump_without_master_change_is_plain_notready(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    await nodes.create(f"lw-master-{suffix()}", version=VERSION, master=True)
    async with (
        fleet(kube, namespace, nodes) as (renewer, names),
        running(kube, heartbeat_config(namespace)) as dog,
    ):
        assert findings(dog) == []
        renewer.stop(f"{namespace}/{name}" for name in names[:STOPPED])
        await wait_for_not_ready(dog, STOPPED)
        await asyncio.sleep(1.5)  # a few more evaluations: the pattern must not appear
        assert [(f["check"], f["severity"]) for f in findings(dog)] == [("nodes-not-ready", "warning")]
        assert f"{STOPPED} of {WORKERS} worker(s) NotReady" in findings(dog)[0]["evidence"]
        assert dog.status()["critical"] is False


# --- (4) the upgrade signal -----------------------------------------------------------------------------


def upgrade_series(dog: controller.LeaderWatchdog) -> list[tuple[str, str, str]]:
    """The ``leader_watchdog_upgrade_in_progress`` series at 1, as (phase, from, to)."""
    return [
        (sample.labels["phase"], sample.labels["from"], sample.labels["to"])
        for family in dog.ctx.registry.collect()
        for sample in family.samples
        if sample.name == "leader_watchdog_upgrade_in_progress" and sample.value == 1
    ]


async def test_upgrade_signal_follows_a_rolling_upgrade(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    """control-plane from the first master on the new version, workers once all masters agree, none once
    the workers caught up; the same in ``/status``."""
    old, new = "v1.36.1", "v1.37.2-eks-1a2b3c"
    group = suffix()
    masters = [f"lw-up-m{i}-{group}" for i in range(2)]
    workers = [f"lw-up-w{i}-{group}" for i in range(2)]
    for name in masters:
        await nodes.create(name, version=old, master=True)
    for name in workers:
        await nodes.create(name, version=old)
    cfg = make_config(checks=("heartbeats",), node_lease_namespace=namespace)

    async def phase_is(dog: controller.LeaderWatchdog, expected: list[tuple[str, str, str]]) -> float:
        return await harness.eventually(
            lambda: upgrade_series(dog) == expected,
            timeout=10,
            what=f"upgrade series {expected} (now {upgrade_series(dog)}, /status {dog.status().get('upgrade')})",
        )

    async with running(kube, cfg) as dog:
        await harness.eventually(
            lambda: dog.status().get("agreedVersion") == old, timeout=10, what="agreement"
        )
        assert upgrade_series(dog) == [] and dog.status()["upgrade"] is None

        await nodes.set_status(masters[0], version=new)
        took = await phase_is(dog, [("control-plane", "v1.36.1", "v1.37.2")])
        started = sample(dog, "leader_watchdog_upgrade_started_timestamp_seconds", phase="control-plane")
        assert started is not None and abs(time.time() - started) < 30
        assert dog.status()["upgrade"]["phase"] == "control-plane"
        print(f"\ncontrol-plane phase exported {took:.2f} s after the first master reported {new}")

        await nodes.set_status(masters[1], version=new)
        await phase_is(dog, [("workers", "v1.36.1", "v1.37.2")])
        assert sample(dog, "leader_watchdog_upgrade_started_timestamp_seconds", phase="control-plane") is None
        assert dog.status()["upgrade"]["to"] == "v1.37.2"

        await nodes.set_status(workers[0], version=new)
        await asyncio.sleep(0.5)  # a few evaluations: one worker still behind
        assert upgrade_series(dog) == [("workers", "v1.36.1", "v1.37.2")]
        await nodes.set_status(workers[1], version=new)
        await phase_is(dog, [])
        assert dog.status()["upgrade"] is None
        assert sample(dog, "leader_watchdog_upgrade_started_timestamp_seconds", phase="workers") is None


# --- the process: --once and the daemon's HTTP routes ---------------------------------------------------


def run_once(kubeconfig: str, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "controllers.leader_watchdog", "--kubeconfig", kubeconfig, "--once", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


async def test_once_prints_the_status_json_and_exits_1_on_a_critical_finding(
    kube: client.Kube, kubeconfig: str, namespace: str, nodes: cluster.Nodes
) -> None:
    master = f"lw-master-{suffix()}"
    await nodes.create(master, version=VERSION, master=True)
    renewer = Renewer(kube, interval=1, duration=30)
    await renewer.create(f"{namespace}/healthy", f"{master}_1")
    await renewer.create(f"{namespace}/elsewhere", "gone-master_1")
    args = ("--checks", "leaders", "--master-selectors", "node-role.kubernetes.io/control-plane")
    code, status = await asyncio.to_thread(
        run_once, kubeconfig, *args, "--leader-leases", f"{namespace}/healthy"
    )
    assert (code, status["findings"], status["critical"]) == (0, [], False)
    assert status["leaders"][0]["holder"] == f"{master}_1"

    code, status = await asyncio.to_thread(
        run_once, kubeconfig, *args, "--leader-leases", f"{namespace}/healthy,{namespace}/missing"
    )
    assert code == 0  # a missing Lease is a warning
    assert [f["check"] for f in status["findings"]] == ["leader-missing"]

    code, status = await asyncio.to_thread(
        run_once, kubeconfig, *args, "--leader-leases", f"{namespace}/elsewhere"
    )
    assert code == 1 and status["critical"] is True
    (finding,) = status["findings"]
    assert set(finding) == {"check", "severity", "object", "evidence", "since"}
    assert (finding["check"], finding["object"]) == (
        "leader-on-unknown-master",
        f"Lease {namespace}/elsewhere",
    )


async def test_daemon_serves_status_and_metrics(kubeconfig: str, namespace: str) -> None:
    argv = [sys.executable, "-m", "controllers.leader_watchdog", "--kubeconfig", kubeconfig, "--checks", "leaders",
            "--leader-leases", f"{namespace}/kube-scheduler", "--evaluate-interval-seconds", "0.5",
            "--no-metrics-secure"]  # fmt: skip
    with harness.serve(*argv) as (process, port):

        def found() -> bool:
            code, body = harness.scrape(port, "/status")
            return code == 200 and bool(json.loads(body).get("findings"))

        await harness.eventually(found, timeout=30, interval=0.2, what="a finding on /status")
        status = json.loads(harness.scrape(port, "/status")[1])
        text = harness.scrape(port)[1]
        assert [f["check"] for f in status["findings"]] == ["leader-missing"]
        assert 'leader_watchdog_findings{check="leader-missing",severity="warning"} 1.0' in text
        assert 'leader_watchdog_findings{check="stale-leader",severity="critical"} 0.0' in text
        process.terminate()
        assert process.wait(10) == 0

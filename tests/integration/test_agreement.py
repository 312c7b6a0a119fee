"""The master agreement on the real control plane: settle window, withdrawal, 410 re-list, apiserver restart."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import pathlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import prometheus_client
import pytest

from controllers.agreement import masters
from controllers.kube import client, resources, watch
from controllers.runtime import agreement_feed, config, metrics
from e2e import cluster, controlplane
from tests import harness

SETTLE = 1.5


@dataclasses.dataclass
class Feed:
    """An AgreementFeed running in the background, with every change it reported and when."""

    feed: agreement_feed.AgreementFeed
    registry: prometheus_client.CollectorRegistry
    changes: list[tuple[float, masters.Agreement]]

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})

    async def wait_for_changes(self, count: int, *, timeout: float = 20) -> None:
        await harness.eventually(lambda: len(self.changes) >= count, timeout=timeout, interval=0.02)


@contextlib.asynccontextmanager
async def running_feed(kube: client.Kube, cfg: config.BaseConfig) -> AsyncIterator[Feed]:
    registry = prometheus_client.CollectorRegistry()
    feed = agreement_feed.AgreementFeed(
        kube=kube,
        config=cfg,
        metrics=agreement_feed.AgreementMetrics(metrics.Exporter(prefix="test", registry=registry)),
    )
    result = Feed(feed=feed, registry=registry, changes=[])
    loop = asyncio.get_running_loop()

    def collect(change: masters.Agreement | None) -> None:
        if change is not None:
            result.changes.append((loop.time(), change))

    feed.listen(collect)
    task = asyncio.create_task(feed.run())
    try:
        yield result
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def run_label() -> str:
    """A label only this test's masters carry, so other Nodes in the session never count."""
    return f"agreement-test-{uuid.uuid4().hex[:8]}"


def feed_config(run_label: str, **overrides: Any) -> config.BaseConfig:
    selectors = (f"{cluster.CONTROL_PLANE},{run_label}",)
    defaults: dict[str, Any] = {"master_selectors": selectors, "min_masters": 3, "settle_seconds": SETTLE}
    return config.BaseConfig(**{**defaults, **overrides})


async def test_rolling_kubelet_upgrade_reports_one_change_after_the_settle_window(
    kube: client.Kube, nodes: cluster.Nodes, run_label: str
) -> None:
    names = [f"{run_label}-m{i}" for i in range(3)]
    for name in names:
        await nodes.create(name, version="v1.35.4", master=True, labels={run_label: ""})
    await nodes.create(f"{run_label}-w0", version="v1.34.0", labels={run_label: ""})  # a worker: never counts

    async with running_feed(kube, feed_config(run_label)) as feed:
        await feed.wait_for_changes(1)
        assert feed.changes[0][1].version.raw == "v1.35.4"
        assert feed.metric("test_masters") == 3
        assert feed.metric("test_masters_agreed") == 1
        assert feed.metric("test_agreed_version_info", {"version": "v1.35.4"}) == 1

        loop = asyncio.get_running_loop()
        for name in names:
            sent = loop.time()  # the settle window starts when the feed sees the patch: after this,
            await nodes.set_status(name, version="v1.36.1-eks-abc")
            answered = loop.time()  # and (the watch may deliver it before the patch's answer) around this
            await asyncio.sleep(0.3)
            if name != names[-1]:
                assert feed.metric("test_masters_agreed") == 0
        await feed.wait_for_changes(2)
        await asyncio.sleep(SETTLE)  # nothing more may come
        changed_at, change = feed.changes[1]

    assert len(feed.changes) == 2
    assert change.version.raw == "v1.36.1-eks-abc"
    assert change.masters == tuple(names)
    assert changed_at - sent >= SETTLE and changed_at - answered <= SETTLE + 1.0, (changed_at, sent, answered)
    assert feed.metric("test_agreed_version_info", {"version": "v1.36.1-eks-abc"}) == 1
    assert feed.metric("test_agreed_version_info", {"version": "v1.35.4"}) is None
    assert feed.metric("test_agreement_changes_total") == 2


async def test_apiserver_source_follows_the_mirror_pods_image_tags(
    kube: client.Kube, nodes: cluster.Nodes, run_label: str
) -> None:
    names = [f"{run_label}-m{i}" for i in range(3)]
    pods = resources.PODS

    def mirror_pod(node: str, tag: str) -> client.JSON:
        return {
            "metadata": {
                "name": f"kube-apiserver-{node}",
                "labels": {"component": "kube-apiserver", "tier": "control-plane"},
            },
            "spec": {
                "nodeName": node,
                "containers": [{"name": "kube-apiserver", "image": f"registry.example/kube-apiserver:{tag}"}],
            },
        }

    for name in names:
        await nodes.create(name, version="v1.35.4", master=True, labels={run_label: ""})
        await kube.create(pods.path(namespace="kube-system"), mirror_pod(name, "v1.35.4"))
    try:
        async with running_feed(kube, feed_config(run_label, version_source="apiserver")) as feed:
            await feed.wait_for_changes(1)
            assert feed.changes[0][1].version.raw == "v1.35.4"
            loop = asyncio.get_running_loop()
            for name in names:  # kubeadm upgrades the apiserver first; the kubelets stay at 1.35
                sent = loop.time()
                await kube.patch(
                    pods.path(namespace="kube-system", name=f"kube-apiserver-{name}"),
                    {
                        "spec": {
                            "containers": [
                                {"name": "kube-apiserver", "image": "registry.example/kube-apiserver:v1.36.0"}
                            ]
                        }
                    },
                    patch_type="strategic",
                )
                answered = loop.time()
                await asyncio.sleep(0.3)
            await feed.wait_for_changes(2)
            await asyncio.sleep(SETTLE)
            changed_at, change = feed.changes[1]
        assert len(feed.changes) == 2
        assert change.version.raw == "v1.36.0"
        assert changed_at - sent >= SETTLE and changed_at - answered <= SETTLE + 1.0
    finally:
        for name in names:
            await kube.delete(
                pods.path(namespace="kube-system", name=f"kube-apiserver-{name}"),
                query={"gracePeriodSeconds": 0},
            )


@pytest.mark.parametrize("how", ["not-ready", "deleted", "unparseable"])
async def test_a_broken_master_withdraws_agreement(
    kube: client.Kube, nodes: cluster.Nodes, run_label: str, how: str
) -> None:
    names = [f"{run_label}-m{i}" for i in range(3)]
    for name in names:
        await nodes.create(name, version="v1.36.0", master=True, labels={run_label: ""})
    async with running_feed(kube, feed_config(run_label)) as feed:
        await feed.wait_for_changes(1)
        assert feed.feed.current is not None
        if how == "not-ready":
            await nodes.set_status(names[1], version="v1.36.0", ready=False)
        elif how == "deleted":
            await nodes.delete(names[1])
        else:
            await nodes.set_status(names[1], version="v1.36.banana")
        await harness.eventually(
            lambda: feed.feed.current is None, timeout=10, interval=0.02, what="withdrawn"
        )
        assert feed.metric("test_masters_agreed") == 0
        assert feed.feed.observation is not None
        assert not feed.feed.observation.agreed
        if how == "unparseable":
            assert feed.metric("test_masters_unknown_version") == 1
            assert "v1.36.banana" in feed.feed.observation.reason


async def test_expired_resource_version_relists_without_losing_events(
    kube: client.Kube, namespace: str, control_plane: controlplane.ControlPlane
) -> None:
    # The fixture serves PodTemplate watches straight from etcd (no watch cache), so compaction bites.
    templates = resources.Resource("", "v1", "podtemplates", namespaced=True)

    def template(name: str) -> client.JSON:
        return {
            "metadata": {"name": name},
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
        }

    before = await kube.create(templates.path(namespace=namespace), template("before"))
    for i in range(5):  # changes the watcher will have missed
        await kube.create(templates.path(namespace=namespace), template(f"missed-{i}"))
    await kube.delete(templates.path(namespace=namespace, name="before"))
    status = json.loads(control_plane.etcdctl("endpoint", "status", "-w", "json"))
    control_plane.etcdctl("compact", str(status[0]["Status"]["header"]["revision"]))

    # A watcher that last saw "before" at its resourceVersion, now compacted away: 410 Gone.
    events: list[watch.WatchEvent] = []
    store = watch.Store(watch.Stream(templates, namespace), watch.as_is)
    store.remember(before)
    old_version = before["metadata"]["resourceVersion"]
    stream = watch.watch(kube, store.stream, resource_version=old_version)
    async with asyncio.timeout(20), contextlib.aclosing(stream):
        async for event in stream:
            events.append(event)
            store.apply(event)
            if event.type == "SYNC":
                await kube.create(templates.path(namespace=namespace), template("after"))
            if event.type == "ADDED":
                break
    assert [e.type for e in events] == ["SYNC", "ADDED"]  # the 410 led to a fresh list, not to silence
    # The deletion it missed is not lost (the SYNC replaced its store); nothing else is either.
    assert sorted(store.items) == sorted(
        [f"{namespace}/missed-{i}" for i in range(5)] + [f"{namespace}/after"]
    )


async def test_apiserver_restart_mid_watch_reports_the_same_agreement_once(
    kube: client.Kube, nodes: cluster.Nodes, run_label: str, control_plane: controlplane.ControlPlane
) -> None:
    names = [f"{run_label}-m{i}" for i in range(3)]
    for name in names:
        await nodes.create(name, version="v1.36.0", master=True, labels={run_label: ""})
    async with running_feed(kube, feed_config(run_label, settle_seconds=0.5)) as feed:
        await feed.wait_for_changes(1)
        control_plane.stop_apiserver()
        await asyncio.sleep(1)
        # From this (the main) thread: the fixture's processes die with the thread that started them.
        control_plane.start_apiserver()
        # Events flow again after the restart: a master's withdrawal is seen...
        await nodes.set_status(names[0], version="v1.36.0", ready=False)
        await harness.eventually(lambda: feed.feed.current is None, timeout=45, what="the withdrawal")
        await nodes.set_status(names[0], version="v1.36.0", ready=True)
        await harness.eventually(
            lambda: feed.feed.current is not None, timeout=45, what="the agreement again"
        )
        await asyncio.sleep(1)
    # ...and the same agreement, in force again, is not reported as a change a second time.
    assert [change.version.raw for _, change in feed.changes] == ["v1.36.0"]


async def test_agreement_command_prints_json_and_exits_by_agreement(
    kubeconfig: str, nodes: cluster.Nodes, run_label: str
) -> None:
    for i in range(2):
        await nodes.create(f"{run_label}-m{i}", version="v1.36.0", master=True, labels={run_label: ""})

    def agreement(*extra: str) -> subprocess.CompletedProcess[str]:
        command = str(pathlib.Path(sys.executable).parent / "kube-upgrade-controllers")
        argv = [command, "agreement", "--kubeconfig", kubeconfig, "-o", "json"]
        argv += ["--master-selectors", f"{cluster.CONTROL_PLANE},{run_label}", *extra]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    agreed = await asyncio.to_thread(agreement, "--min-masters", "2")
    assert agreed.returncode == 0, agreed.stderr
    body = json.loads(agreed.stdout)
    assert body["agreed"] is True
    assert body["version"] == "v1.36.0"
    assert [m["name"] for m in body["masters"]] == [f"{run_label}-m0", f"{run_label}-m1"]
    assert "reason" not in body

    short = await asyncio.to_thread(agreement, "--min-masters", "3")
    assert short.returncode == 1
    assert "at least 3 required" in json.loads(short.stdout)["reason"]

    bad = await asyncio.to_thread(agreement, "--master-selectors", "a in (b")
    assert bad.returncode == 2

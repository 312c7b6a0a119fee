"""The skeleton owns failure (issue #20): a sync that raises is requeued with backoff and never ends the
controller; a bug is shown once with its traceback; a wedged loop fails liveness; a controller that keeps
failing is restarted in its process without touching the others; Events survive a reset connection."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import uuid
from typing import Any, ClassVar

import aiohttp
import pytest

from controllers.kube import client, events, resources, retry, watch
from controllers.kube import state as kstate
from controllers.runtime import app, config, context, failure, reconciler
from controllers.structs import refs, status
from e2e import cluster, controlplane
from tests import harness, proxy


def make_config(namespace: str, label: str) -> config.BaseConfig:
    return config.BaseConfig(
        namespace=namespace, settle_seconds=0.0, master_selectors=(f"{cluster.CONTROL_PLANE},{label}",)
    )


class Scripted(reconciler.Reconciler[config.BaseConfig]):
    """Each sync takes the next step of ``script``: an exception to raise, or None to succeed; the last
    step repeats. ``every`` makes it sync on its own."""

    name = "scripted"
    description = "test controller"
    config_type = config.BaseConfig
    script: ClassVar[list[BaseException | None]] = [None]
    every: ClassVar[float | None] = 0.05
    sync_seconds: ClassVar[float | None] = 300.0

    def __init__(self, ctx: context.Context[config.BaseConfig]) -> None:
        super().__init__(ctx)
        self.syncs = 0
        self.hang = asyncio.Event()

    def wakes(self) -> reconciler.Wakes:
        return reconciler.Wakes(agreement=False, every=self.every, sync_seconds=self.sync_seconds)

    async def sync(self) -> reconciler.Synced:
        step = self.script[min(self.syncs, len(self.script) - 1)]
        self.syncs += 1
        if isinstance(step, BaseException):
            raise step
        return reconciler.Synced()


def errors(controller: reconciler.Reconciler[Any], reason: str) -> float:
    return harness.metric(controller, "scripted_sync_errors_total", reason=reason) or 0.0


async def test_transient_failures_are_requeued_and_retry_after_is_honoured(
    kube: client.Kube, namespace: str
) -> None:
    class Flaky(Scripted):
        script: ClassVar[list[BaseException | None]] = [
            ConnectionResetError("reset by peer"),
            aiohttp.ServerDisconnectedError(),
            retry.ApiError(status=429, body={"reason": "TooManyRequests"}, retry_after=0.2),
            retry.ApiError(status=503, body={"reason": "ServiceUnavailable"}),
            None,
        ]

    async with harness.running(Flaky, kube, make_config(namespace, "flaky")) as flaky:
        await harness.eventually(lambda: flaky.syncs >= 8, timeout=30, what="syncs after the failures")
    assert errors(flaky, "connection") == 2
    assert errors(flaky, "throttled") == 1
    assert errors(flaky, "server_error") == 1
    assert errors(flaky, "unexpected") == 0


async def test_a_bug_is_logged_once_with_its_traceback_and_throttled(
    kube: client.Kube, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Buggy(Scripted):
        script: ClassVar[list[BaseException | None]] = [ValueError("no such field")] * 3 + [None]

    caplog.set_level(logging.WARNING, logger="controllers.runtime.reconciler")
    loop = asyncio.get_running_loop()
    async with harness.running(Buggy, kube, make_config(namespace, "buggy")) as buggy:
        started = loop.time()
        await harness.eventually(lambda: buggy.syncs >= 5, timeout=30, what="syncs after the bug")
        took = loop.time() - started
    records = [r for r in caplog.records if r.name == "controllers.runtime.reconciler"]
    assert [r.exc_info is not None for r in records] == [True, False, False]
    assert "failed again (3 times): ValueError: no such field" in records[-1].getMessage()
    assert errors(buggy, "unexpected") == 3
    print(f"\nthree failing syncs then a good one took {took:.2f} s (backoff 0.5 s doubling, full jitter)")


async def test_a_wedged_sync_fails_liveness_and_an_idle_loop_does_not(
    kube: client.Kube, namespace: str
) -> None:
    class Idle(Scripted):
        every: ClassVar[float | None] = None  # waits for a change that never comes: idle, not wedged

    async with harness.running(Idle, kube, make_config(namespace, "idle")) as idle:
        idle.ctx.health.grace = 0.1
        await harness.eventually(lambda: idle.syncs >= 1, what="the first sync")
        await asyncio.sleep(0.5)
        assert idle.ctx.health.wedged() == ""

    class Stuck(Scripted):
        sync_seconds: ClassVar[float | None] = 0.3

        async def sync(self) -> reconciler.Synced:
            self.syncs += 1
            if self.syncs >= 3:
                await asyncio.Event().wait()  # never set: the loop is stuck here
            return reconciler.Synced()

    async with harness.running(Stuck, kube, make_config(namespace, "stuck")) as stuck:
        stuck.ctx.health.grace = 0.1
        await harness.eventually(lambda: stuck.syncs >= 3, what="the stuck sync")
        assert stuck.ctx.health.wedged() == ""  # within its 0.3 s + 0.1 s
        await harness.eventually(lambda: bool(stuck.ctx.health.wedged()), timeout=5, what="liveness to fail")
        assert "overdue" in stuck.ctx.health.wedged()


async def test_a_failing_controller_is_restarted_in_process_and_the_others_go_on(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    """A bug in what a controller watches (its parse raises) ends its skeleton; its process starts it again
    with backoff, reports it down after DOWN_AFTER failures in a row, and the other controller keeps working."""
    label = f"restart-{uuid.uuid4().hex[:8]}"
    await nodes.create(f"{label}-m0", version="v1.37.0", master=True, labels={label: ""})

    def broken_parse(obj: dict[str, Any]) -> None:
        raise KeyError("spec")

    class Broken(Scripted):
        name = "broken"

        def wakes(self) -> reconciler.Wakes:
            store: watch.Store[None] = watch.Store(watch.Stream(resources.NODES), broken_parse)
            return reconciler.Wakes(stores=(store,), agreement=False)

    class Healthy(Scripted):
        name = "healthy"
        every: ClassVar[float | None] = 0.05

    cfg = make_config(namespace, label)
    broken = harness.build(Broken, kube, cfg)
    healthy = harness.build(Healthy, kube, cfg)
    fast = retry.RetryPolicy(base=0.05, cap=0.1)
    lives = [asyncio.create_task(app.life(each, lease_kube=None, restart=fast)) for each in (broken, healthy)]
    try:
        await harness.eventually(
            lambda: bool(broken.ctx.health.down), timeout=30, what="the broken one to be reported down"
        )
        restarts = harness.metric(broken, "broken_restarts_total") or 0
        assert restarts >= app.DOWN_AFTER
        assert "KeyError" in broken.ctx.health.down
        synced = healthy.syncs
        await harness.eventually(lambda: healthy.syncs > synced + 10, what="the healthy one to go on")
        assert healthy.ctx.health.wedged() == "" and healthy.ctx.health.ready
        assert not any(life.done() for life in lives)
    finally:
        for life in lives:
            life.cancel()
        await asyncio.gather(*lives, return_exceptions=True)


async def test_events_are_retried_over_a_reset_connection_and_never_fail_the_caller(
    control_plane: controlplane.ControlPlane, kube: client.Kube, namespace: str, tmp_path: pathlib.Path
) -> None:
    ref = refs.ObjectRef(kind="ConfigMap", name="target", namespace=namespace)
    async with proxy.Proxy(target_port=control_plane.apiserver_port) as front:
        via_proxy = front.kubeconfig(control_plane.kubeconfig, tmp_path)
        async with await client.connect(kubeconfig=via_proxy) as flaky_kube:
            recorder = events.Recorder(kube=flaky_kube, controller="test")
            front.reset_next = 2
            await recorder.emit(ref, reason="ThroughResets", note="landed after two resets", action="Test")
            assert front.reset == 2
        listed = await kube.list_items(resources.EVENTS.path(namespace=namespace))
        assert [e["reason"] for e in listed] == ["ThroughResets"]

    # Nothing answers at all: the caller still goes on (after the retries), nothing raised.
    dead = tmp_path / "dead"
    dead.mkdir()
    async with proxy.Proxy(target_port=controlplane.free_port()) as nowhere:
        nowhere_config = nowhere.kubeconfig(control_plane.kubeconfig, dead)
        async with await client.connect(kubeconfig=nowhere_config) as dead_kube:
            quick = dataclasses.replace(events.RETRY, base=0.01, cap=0.02)
            recorder = events.Recorder(kube=dead_kube, controller="test", policy=quick)
            await recorder.emit(ref, reason="Lost", note="nobody listens", action="Test")
        assert nowhere.accepted == quick.attempts + 1 if quick.attempts is not None else False


async def test_a_controller_says_what_a_failure_means(kube: client.Kube, namespace: str) -> None:
    """TemporaryError(delay=) is retried after its delay, not the backoff; PermanentError is not retried on a
    timer (only a change wakes the controller again); neither is a bug."""

    class Saying(Scripted):
        every: ClassVar[float | None] = None  # nothing but a retry (or a wake) makes it sync again
        script: ClassVar[list[BaseException | None]] = [
            failure.TemporaryError("the CRD is not established yet", delay=0.05),
            failure.TemporaryError("still not", delay=0.05),
            failure.PermanentError("the bundle is invalid"),
            None,
        ]

    async with harness.running(Saying, kube, make_config(namespace, "saying")) as saying:
        await harness.eventually(lambda: saying.syncs >= 3, timeout=5, what="the two quick retries")
        await asyncio.sleep(1.0)
        assert saying.syncs == 3  # stopped: no timed retry after the permanent failure
        assert saying.status()["lastError"] == "the bundle is invalid"  # failed(): the default report
        saying.ctx.wake()  # a change
        await harness.eventually(lambda: saying.syncs == 4, timeout=5, what="the sync a change brings")
    assert errors(saying, "temporary") == 2
    assert errors(saying, "permanent") == 1
    assert errors(saying, "unexpected") == 0


async def test_items_wait_out_their_own_backoff_and_long_work_reports_to_the_next_sync(
    kube: client.Kube, namespace: str
) -> None:
    """run_item: an item that fails waits its own delay (the skeleton syncs again when it is due), the others go
    on; beside: long work's result, or its failure, reaches the sync that collects it (the failure meets the
    sync backoff and does not stop the controller)."""

    class Items(Scripted):
        item_retry = retry.RetryPolicy(base=0.2, cap=0.2)
        every: ClassVar[float | None] = None

        def __init__(self, ctx: context.Context[config.BaseConfig]) -> None:
            super().__init__(ctx)
            self.tries: dict[str, list[float]] = {"good": [], "flaky": []}
            self.long: reconciler.Work[str] | None = None
            self.results: list[str] = []

        async def attempt(self, key: str) -> None:
            self.tries[key].append(asyncio.get_running_loop().time())
            if key == "flaky" and len(self.tries[key]) < 3:
                raise retry.ApiError(status=503, body={"reason": "ServiceUnavailable"})

        async def run_long(self) -> str:
            if len(self.results) == 0 and self.syncs < 4:
                raise failure.TemporaryError("long work failed", delay=0.05)
            return "done"

        async def sync(self) -> reconciler.Synced:
            self.syncs += 1
            for key in self.tries:
                if len(self.tries[key]) < (1 if key == "good" else 3) and self.ready(key):
                    self.run_item(key, self.attempt(key), what=f"try {key}")
            if self.long is not None and not self.long.running:
                long, self.long = self.long, None
                self.results.append(long.result())  # raises the long work's failure
            if self.long is None and not self.results:
                self.long = self.beside(self.run_long())
            return reconciler.Synced()

    async with harness.running(Items, kube, make_config(namespace, "items")) as items:
        await harness.eventually(
            lambda: len(items.tries["flaky"]) == 3 and items.results == ["done"],
            timeout=10,
            what="the flaky item's third try and the long work's result",
        )
        await harness.eventually(lambda: not items.retries.failing, timeout=5, what="the success forgotten")
    first, second, third = items.tries["flaky"]
    assert second - first >= 0.19 and third - second >= 0.19  # its own 0.2 s each time
    assert len(items.tries["good"]) == 1
    assert errors(items, "temporary") >= 1  # the long work's failure, raised by the sync that collected it
    assert errors(items, "unexpected") == 0


async def test_the_skeleton_writes_a_status_only_when_it_changed_and_records_conditions_that_changed(
    kube: client.Kube, namespace: str
) -> None:
    """publish: /status at once; the state ConfigMap only for a new status (while not settled: a new phase);
    an Event per condition that appeared, changed status or cleared, on the state ConfigMap."""

    class Publishing(Scripted):
        every: ClassVar[float | None] = None

    def judged(value: str) -> status.Condition:
        return status.Condition("check", value, f"Check{value.title()}", f"check is {value}",
                                warning=value == "blocked", quiet=value == "pass")  # fmt: skip

    async with harness.running(Publishing, kube, make_config(namespace, "publishing")) as publishing:
        ctx = publishing.ctx
        writes: list[str] = []
        original = ctx.update_state

        async def counting(current: kstate.State, changes: dict[str, str]) -> kstate.State:
            writes.append(changes["phase"])
            return await original(current, changes)

        ctx.update_state = counting  # type: ignore[method-assign]  # a seam: count the writes
        await publishing.publish(status.Status(reason="no agreement yet"))  # no phase: nothing recorded
        assert writes == [] and publishing.status()["reason"] == "no agreement yet"
        first = status.Status(
            phase="Working", version="v1.37.0", progress="0/2", conditions=(judged("pass"),)
        )
        assert await publishing.publish(first) == []  # a passing check at start is no news
        await publishing.publish(first)
        await publishing.publish(dataclasses.replace(first, progress="1/2"), settled=False)  # mid-burst
        assert writes == ["Working"] and publishing.status()["progress"] == "1/2"
        news = await publishing.publish(
            dataclasses.replace(first, phase="Blocked", progress="1/2", conditions=(judged("blocked"),))
        )
        assert [n.reason for n in news] == ["CheckBlocked"] and writes == ["Working", "Blocked"]
        saved = await ctx.read_state()
        assert (saved.get("phase"), saved.get("progress"), saved.get("version")) == (
            "Blocked",
            "1/2",
            "v1.37.0",
        )

        async def reasons() -> list[str]:
            listed = await kube.list_items(resources.EVENTS.path(namespace=namespace))
            return [e["reason"] for e in listed if e["regarding"]["name"] == ctx.state_name]

        async def recorded() -> bool:
            return bool(await reasons())

        await harness.eventually(recorded, timeout=10, what="the Event of the transition")
        assert await reasons() == ["CheckBlocked"]

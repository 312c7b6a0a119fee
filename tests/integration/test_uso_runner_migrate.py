"""The migrator on the real fixture: an expired continue token mid-list, and a concurrent writer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import prometheus_client

from controllers.kube import client, discovery, resources
from controllers.runtime import metrics as runtime_metrics
from controllers.uso_runner import metrics
from controllers.uso_runner.effects import migrate
from e2e import controlplane
from tests.integration import uso_helpers as h

CM = resources.CONFIGMAPS
# The fixture runs PodTemplates without a watch cache, so their continued lists are read from etcd and meet
# its compaction (other resources' continuations are served from the watch cache's snapshots).
PODTEMPLATES = resources.Resource("", "v1", "podtemplates", namespaced=True)


def discovered(resource: resources.Resource, kind: str) -> discovery.ApiResource:
    return discovery.ApiResource(
        group=resource.group, version=resource.version, name=resource.plural, kind=kind, namespaced=True,
        verbs=frozenset({"list", "update"}), storage_version_hash="",
    )  # fmt: skip


def new_migrator(kube: client.Kube, **kwargs: object) -> migrate.Migrator:
    exporter = runtime_metrics.Exporter(prefix="t", registry=prometheus_client.CollectorRegistry())
    return migrate.Migrator(kube=kube, metrics=metrics.Metrics(exporter), **kwargs)  # type: ignore[arg-type]


def podtemplate(name: str) -> client.JSON:
    return {"metadata": {"name": name}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}


async def test_expired_continue_token_mid_list_skips_no_object(
    kube: client.Kube, namespace: str, control_plane: controlplane.ControlPlane
) -> None:
    names = {f"pt{i:04d}" for i in range(300)}
    await h.create_many(kube, PODTEMPLATES, (podtemplate(n) for n in sorted(names)), namespace=namespace)
    seen: set[str] = set()
    expired: list[int] = []

    async def compact_after_first_page(page: client.JSON) -> None:
        seen.update(i["metadata"]["name"] for i in page["items"] if i["metadata"]["namespace"] == namespace)
        token = page["metadata"].get("continue")
        if expired or not token:
            return
        # A write moves etcd past the list's revision; compacting there expires the continue token.
        await kube.create(CM.path(namespace=namespace), {"metadata": {"generateName": "bump-"}})
        status = json.loads(control_plane.etcdctl("endpoint", "status", "-w", "json"))
        control_plane.etcdctl("compact", str(status[0]["Status"]["header"]["revision"]))
        try:
            await kube.get(PODTEMPLATES.path(), query={"limit": 50, "continue": token})
        except client.ApiError as error:
            expired.append(error.status)

    migrator = new_migrator(kube, page_size=50, on_page=compact_after_first_page)
    result = await migrator.migrate(discovered(PODTEMPLATES, "PodTemplate"), target="v1.36.0")
    assert expired == [410]  # the token the migrator was about to use had expired
    assert seen == names
    assert result.ok and result.migrated + result.conflicts >= len(names)


class DropContinuedListOnce:
    """The client's HTTP session, except that the first continued list request fails the way a connection
    dropped by a restarting apiserver does (the apiserver itself is the real one)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.dropped = 0

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        if method == "GET" and "continue=" in str(url) and not self.dropped:
            self.dropped += 1
            raise aiohttp.ServerDisconnectedError()
        return self.session.request(method, url, **kwargs)


async def test_a_list_failing_part_way_goes_on_where_it_was_and_counts_each_object_once(
    kube: client.Kube, namespace: str
) -> None:
    """Issue #20: a whole list was tried again with the same counters after a failure part-way, so objects of
    the pages before it were rewritten and counted twice."""
    widgets = await h.crd_with_widgets(kube, namespace=namespace, objects=120)
    group = widgets.group
    flaky = DropContinuedListOnce(kube._session)
    kube._session = flaky  # type: ignore[assignment]
    migrator = new_migrator(kube, page_size=50)
    result = await migrator.migrate(discovered(widgets, "Widget"), target="v1.36.0")
    assert flaky.dropped == 1
    assert (result.listed, result.migrated, result.conflicts, result.failed) == (120, 120, 0, 0), result
    migrated = migrator.metrics.object_counters(f"widgets.{group}")["migrated"]
    assert migrated._value.get() == 120  # the Prometheus counter agrees


async def test_a_concurrent_writers_changes_all_survive(kube: client.Kube, namespace: str) -> None:
    names = [f"cm{i:04d}" for i in range(600)]
    await h.create_many(
        kube, CM, ({"metadata": {"name": n}, "data": {"w": "0"}} for n in names), namespace=namespace
    )
    last: dict[str, str] = {}
    migrating = asyncio.Event()
    finished = asyncio.Event()
    writes_during = 0

    async def writer(mine: list[str]) -> None:
        nonlocal writes_during
        round_ = 0
        while not finished.is_set():
            round_ += 1
            for name in mine:
                value = f"{round_}"
                await kube.patch(CM.path(namespace=namespace, name=name), {"data": {"w": value}})
                last[name] = value
                if migrating.is_set() and not finished.is_set():
                    writes_during += 1
                if finished.is_set():
                    return

    async def on_page(page: client.JSON) -> None:
        migrating.set()

    writers = [asyncio.create_task(writer(names[i::4])) for i in range(4)]
    await asyncio.sleep(0.5)  # the writer is busy before the list starts
    migrator = new_migrator(kube, workers=4, qps=100, on_page=on_page)
    result = await migrator.migrate(discovered(CM, "ConfigMap"), target="v1.36.0")
    finished.set()
    await asyncio.gather(*writers)
    assert result.ok and result.conflicts > 0 and writes_during > 0
    async for page in kube.list_pages(CM.path(namespace=namespace)):
        for item in page["items"]:
            if item["metadata"]["name"] in last:
                assert item["data"]["w"] == last[item["metadata"]["name"]], item["metadata"]["name"]


class Book:
    """A run's bookmarks in memory: where each list starts, every token recorded."""

    def __init__(self, start: str = "") -> None:
        self._start = start
        self.recorded: list[str] = []

    def start(self, group_resource: str) -> str:
        return self._start

    async def reached(self, group_resource: str, token: str) -> None:
        self.recorded.append(token)


async def test_a_new_leader_goes_on_from_the_bookmark_and_rewrites_no_object_twice(
    kube: client.Kube, namespace: str, control_plane: controlplane.ControlPlane
) -> None:
    """Issue #20: a leader that lost its Lease mid-resource left the next one to list everything again and
    rewrite (and count) the objects already done. With bookmarks, it lists from the last one at the first
    list's snapshot: what the first leader rewrote after its bookmark answers 409, and is not rewritten."""
    objects = 600
    widgets = await h.crd_with_widgets(kube, namespace=namespace, objects=objects)
    await h.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v2")
    res = discovered(widgets, "Widget")
    writes = 0

    async def lose_the_lease_after_230_writes() -> None:
        nonlocal writes
        writes += 1
        if writes > 230:
            raise migrate.Stop("lost the lease")

    first_book = Book()
    first = await new_migrator(
        kube, page_size=50, workers=8, gate=lose_the_lease_after_230_writes, bookmarks=first_book
    ).migrate(res, target="v1.37.0")
    assert first.error == "stopped: lost the lease" and first.migrated == 230, first
    assert first_book.recorded, "no bookmark recorded in 230 writes of 50-object pages"
    second_book = Book(start=first_book.recorded[-1])
    second = await new_migrator(kube, page_size=50, workers=8, bookmarks=second_book).migrate(
        res, target="v1.37.0"
    )
    assert second.ok and second.listed < objects, second
    overlap = first.migrated + second.listed - objects  # rewritten by the first after its last bookmark
    assert overlap >= 0 and second.conflicts == overlap, (first, second)
    assert first.migrated + second.migrated == objects  # every object rewritten exactly once
    stored = h.stored_objects(control_plane, f"/registry/{widgets.group}/widgets/{namespace}/")
    assert {o["apiVersion"] for o in stored.values()} == {f"{widgets.group}/v2"} and len(stored) == objects


def mod_revision(plane: controlplane.ControlPlane, key: str) -> int:
    """The etcd revision that last wrote ``key``."""
    return int(json.loads(plane.etcdctl("get", key, "-w", "json"))["kvs"][0]["mod_revision"])


async def test_a_conflict_is_read_again_and_rewritten_when_still_stored_at_the_old_version(
    kube: client.Kube, namespace: str, control_plane: controlplane.ControlPlane
) -> None:
    """Issue #29 (7): a 409 counted as done without a read. An object written after the list through an
    apiserver still storing the old version (here: the CRD's storage switched back to v1 for that one write)
    answers 409 and is still at the old encoding: it must be read again and rewritten, its late change kept.
    One written after the list at the new version answers 409 too, and is not written again."""
    widgets = await h.crd_with_widgets(kube, namespace=namespace, objects=40)
    await h.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v2")
    prefix = f"/registry/{widgets.group}/widgets/{namespace}/"
    old, new = "w0001", "w0002"
    late: dict[str, int] = {}

    async def write_two_after_the_list(page: client.JSON) -> None:
        await h.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v1")
        await kube.patch(
            widgets.path(namespace=namespace, name=old), {"metadata": {"labels": {"late": "v1"}}}
        )
        await h.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v2")
        await kube.patch(
            widgets.path(namespace=namespace, name=new), {"metadata": {"labels": {"late": "v2"}}}
        )
        stored = h.stored_objects(control_plane, prefix)
        assert (stored[prefix + old]["apiVersion"], stored[prefix + new]["apiVersion"]) == (
            f"{widgets.group}/v1",
            f"{widgets.group}/v2",
        )
        late.update({name: mod_revision(control_plane, prefix + name) for name in (old, new)})

    migrator = new_migrator(kube, on_page=write_two_after_the_list)
    result = await migrator.migrate(discovered(widgets, "Widget"), target="v1.37.0")
    assert (result.listed, result.migrated, result.conflicts, result.failed) == (40, 39, 1, 0), result
    stored = h.stored_objects(control_plane, prefix)
    assert {o["apiVersion"] for o in stored.values()} == {f"{widgets.group}/v2"} and len(stored) == 40
    assert stored[prefix + old]["metadata"]["labels"]["late"] == "v1"  # rewritten with its late change
    assert mod_revision(control_plane, prefix + old) > late[old]
    assert mod_revision(control_plane, prefix + new) == late[new]  # already new: not written again
    counters = migrator.metrics.object_counters(f"widgets.{widgets.group}")
    assert (counters["migrated"]._value.get(), counters["conflict"]._value.get()) == (39, 1)

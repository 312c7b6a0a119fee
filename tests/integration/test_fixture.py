"""Proof that the fixture is a real control plane: the behaviours the controllers rely on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid

import pytest

from controllers.kube import client, resources, watch
from e2e import controlplane
from tests import harness
from tests.integration import uso_helpers

CM = resources.CONFIGMAPS


def configmap(name: str, **data: str) -> client.JSON:
    return {"metadata": {"name": name}, "data": data}


async def test_version_is_the_pinned_release(
    kube: client.Kube, control_plane: controlplane.ControlPlane
) -> None:
    """The pinned one, or the one in ``KUBEBUILDER_ASSETS`` when that is what the fixture runs."""
    version = await kube.get("/version")
    assert version["gitVersion"] == control_plane.kube_version
    if "KUBEBUILDER_ASSETS" not in os.environ:
        assert control_plane.kube_version == controlplane.read_versions()["KUBE_VERSION"]


async def test_configmap_create_read_update_delete(kube: client.Kube, namespace: str) -> None:
    created = await kube.create(CM.path(namespace=namespace), configmap("crud", a="1"))
    path = CM.path(namespace=namespace, name="crud")
    assert (await kube.get(path))["data"] == {"a": "1"}
    created["data"]["a"] = "2"
    updated = await kube.replace(path, created)
    assert updated["data"] == {"a": "2"}
    assert updated["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    await kube.delete(path)
    with pytest.raises(client.ApiError) as error:
        await kube.get(path)
    assert error.value.not_found


async def test_stale_resource_version_gets_409(kube: client.Kube, namespace: str) -> None:
    stale = await kube.create(CM.path(namespace=namespace), configmap("stale", a="1"))
    path = CM.path(namespace=namespace, name="stale")
    await kube.patch(path, {"data": {"a": "2"}})
    with pytest.raises(client.ApiError) as error:
        await kube.replace(path, stale)
    assert error.value.conflict
    assert (await kube.get(path))["data"] == {"a": "2"}


async def test_watch_receives_events(kube: client.Kube, namespace: str) -> None:
    events: list[watch.WatchEvent] = []
    listed = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(watch.watch(kube, watch.Stream(CM, namespace))) as stream:
            async for event in stream:
                events.append(event)
                listed.set()
                if event.type == "ADDED":
                    return  # aclosing ends the watch request now, not at some later garbage collection

    task = asyncio.create_task(consume())
    await asyncio.wait_for(listed.wait(), 10)
    await kube.create(CM.path(namespace=namespace), configmap("watched"))
    await asyncio.wait_for(task, 10)
    assert [e.type for e in events] == ["SYNC", "ADDED"]
    assert events[1].object is not None and events[1].object["metadata"]["name"] == "watched"


async def test_an_optional_stream_of_a_resource_not_served_holds_nothing_until_it_is(
    kube: client.Kube,
) -> None:
    """A CRD that is not installed (404) is an empty listing for an optional stream (its store is synced), and
    its objects appear once it is; a stream that is not optional never lists it."""
    group = f"g{uuid.uuid4().hex[:8]}.example.io"
    things = resources.Resource(group, "v1", "things", namespaced=True)
    store: watch.Store[client.JSON] = watch.Store(watch.Stream(things, optional=True), watch.as_is)
    await watch.list_into(kube, store)
    assert store.synced and store.items == {}
    with pytest.raises(client.ApiError, match="404"):
        await watch.list_into(kube, watch.Store(watch.Stream(things), watch.as_is))

    async def follow() -> None:
        async with contextlib.aclosing(watch.watch(kube, store.stream, unserved_recheck=0.2)) as events:
            async for event in events:
                store.apply(event)

    follower = asyncio.create_task(follow())
    try:
        crd = {
            "metadata": {"name": f"things.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
        }  # fmt: skip
        await kube.create(resources.CRDS.path(), crd)
        await uso_helpers.established(kube, f"things.{group}")
        namespace = "default"
        await harness.eventually(lambda: _create_thing(kube, things, namespace), timeout=30, what="created")
        await harness.eventually(
            lambda: f"{namespace}/one" in store.items, timeout=30, what="the object seen"
        )
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await kube.delete(resources.CRDS.path(name=f"things.{group}"))


async def _create_thing(kube: client.Kube, things: resources.Resource, namespace: str) -> bool:
    """True once the thing exists (a CRD just Established may answer 404 for a moment)."""
    try:
        await kube.create(things.path(namespace=namespace), {"apiVersion": things.api_version, "kind": "Thing",
                                                              "metadata": {"name": "one"}})  # fmt: skip
    except client.ApiError as error:
        return error.already_exists
    return True


async def test_a_listing_read_before_watched_changes_does_not_undo_them(
    kube: client.Kube, namespace: str
) -> None:
    """A list's resourceVersion and its watch's are comparable revisions: a store followed by a watch keeps
    the change and the deletion it saw after a listing that a slower reader applies only later."""
    store: watch.Store[client.JSON] = watch.Store(watch.Stream(CM, namespace), lambda obj: obj.get("data"))
    follower = asyncio.create_task(watch.follow(kube, store, changed=lambda: None))
    try:
        await kube.create(CM.path(namespace=namespace), configmap("raced", a="1"))
        await harness.eventually(lambda: store.items.get(f"{namespace}/raced") == {"a": "1"}, timeout=10)
        listing = await kube.get(CM.path(namespace=namespace))
        late = watch.WatchEvent(
            "SYNC", objects=tuple(listing["items"]), resource_version=listing["metadata"]["resourceVersion"]
        )
        await kube.patch(CM.path(namespace=namespace, name="raced"), {"data": {"a": "2"}})
        await harness.eventually(lambda: store.items.get(f"{namespace}/raced") == {"a": "2"}, timeout=10)
        store.apply(late)
        assert store.items[f"{namespace}/raced"] == {"a": "2"}
        await kube.delete(CM.path(namespace=namespace, name="raced"))
        await harness.eventually(lambda: f"{namespace}/raced" not in store.items, timeout=10)
        store.apply(late)
        assert f"{namespace}/raced" not in store.items
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


async def test_list_1200_objects_in_pages(kube: client.Kube, namespace: str) -> None:
    semaphore = asyncio.Semaphore(32)

    async def create(i: int) -> None:
        async with semaphore:
            await kube.create(CM.path(namespace=namespace), configmap(f"cm-{i:04d}", i=str(i)))

    await asyncio.gather(*(create(i) for i in range(1200)))
    pages = [page async for page in kube.list_pages(CM.path(namespace=namespace), limit=500)]
    assert [len(p["items"]) for p in pages] == [500, 500, 200]
    names = {item["metadata"]["name"] for page in pages for item in page["items"]}
    assert names == {f"cm-{i:04d}" for i in range(1200)}


async def test_stored_bytes_are_readable_with_etcdctl(
    kube: client.Kube, namespace: str, control_plane: controlplane.ControlPlane
) -> None:
    await kube.create(CM.path(namespace=namespace), configmap("in-etcd", marker="stored-in-etcd"))
    raw = control_plane.etcdctl("get", f"/registry/configmaps/{namespace}/in-etcd", "--print-value-only")
    assert b"stored-in-etcd" in raw  # ConfigMaps are stored as protobuf; the value is there verbatim.
    keys = control_plane.etcdctl("get", "/registry/namespaces/", "--prefix", "--keys-only").decode()
    assert f"/registry/namespaces/{namespace}" in keys.split()
    status = json.loads(control_plane.etcdctl("endpoint", "status", "-w", "json"))
    assert status[0]["Status"]["version"].startswith("3.6.")

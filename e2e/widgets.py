"""A CRD whose storage version can be switched, for uso-runner's tests and the migration benchmarks.

``widgets.<group>`` is served at v1 and v2 with the same schema and conversion None, so switching its storage
version makes every object stored at the other one *old*: a migration then really rewrites each object in etcd
(its stored apiVersion changes), where a PUT of an unchanged object would be a no-op the apiserver does not
write. Switching back and forth gives every run of a benchmark the same real work.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable

from controllers.kube import client, resources
from e2e import controlplane

CRDS = resources.CRDS
SCHEMA = {
    "openAPIV3Schema": {
        "type": "object",
        "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
}


def unique_group() -> str:
    return f"g{uuid.uuid4().hex[:8]}.example.com"


async def poll(check: Callable[[], Awaitable[bool]], *, seconds: float, interval: float, what: str) -> None:
    """Until ``check`` holds; TimeoutError naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(interval)


async def create_crd(kube: client.Kube, *, group: str, storage: str = "v1") -> resources.Resource:
    """``widgets.<group>`` served at v1 and v2 (same schema, conversion None), stored at ``storage``."""
    body: client.JSON = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "conversion": {"strategy": "None"},
            "versions": [
                {"name": name, "served": True, "storage": name == storage, "schema": SCHEMA}
                for name in ("v1", "v2")
            ],
        },
    }
    await kube.create(CRDS.path(), body)
    await established(kube, f"widgets.{group}")
    widgets = resources.Resource(group, "v1", "widgets", namespaced=True)
    await wait_listable(kube, widgets)
    return widgets


async def established(kube: client.Kube, name: str) -> None:
    """Until the CRD ``name`` is Established (a just-created one may report conditions: null)."""

    async def done() -> bool:
        crd = await kube.get(CRDS.path(name=name))
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    await poll(done, seconds=30, interval=0.1, what=f"CRD {name} Established")


async def wait_listable(kube: client.Kube, resource: resources.Resource) -> None:
    async def listable() -> bool:
        try:
            await kube.get(resource.path(), query={"limit": 1})
        except client.ApiError as error:
            if not error.not_found:
                raise
            return False
        return True

    await poll(listable, seconds=30, interval=0.1, what=f"{resource.group_resource} served")


def widget(name: str, index: int, *, api_version: str) -> client.JSON:
    return {
        "apiVersion": api_version,
        "kind": "Widget",
        "metadata": {"name": name, "labels": {"index": str(index)}, "annotations": {"note": f"n{index}"}},
        "spec": {"size": index, "colour": "blue", "nested": {"list": [index, "x"]}},
    }


async def create_many(
    kube: client.Kube, resource: resources.Resource, bodies: Iterable[client.JSON], *, namespace: str
) -> None:
    semaphore = asyncio.Semaphore(32)
    path = resource.path(namespace=namespace)

    async def one(body: client.JSON) -> None:
        async with semaphore:
            await kube.create(path, body)

    await asyncio.gather(*(one(body) for body in bodies))


def stored_objects(plane: controlplane.ControlPlane, prefix: str) -> dict[str, client.JSON]:
    """The objects under an etcd key prefix, decoded (CRs are stored as JSON)."""
    raw = json.loads(plane.etcdctl("get", prefix, "--prefix", "-w", "json"))
    return {
        base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"]))
        for kv in raw.get("kvs") or []
    }


async def storage_hash(kube: client.Kube, *, group: str, version: str, plural: str) -> str:
    document = await kube.get(f"/apis/{group}/{version}" if group else f"/api/{version}")
    for entry in document["resources"]:
        if entry["name"] == plural:
            return str(entry.get("storageVersionHash") or "")
    raise LookupError(plural)


async def wait_hash_change(kube: client.Kube, *, group: str, version: str, before: str) -> str:
    async def changed() -> bool:
        return await storage_hash(kube, group=group, version=version, plural="widgets") != before

    await poll(changed, seconds=30, interval=0.1, what="a new storageVersionHash")
    return await storage_hash(kube, group=group, version=version, plural="widgets")


async def wait_writes_stored_as(
    kube: client.Kube,
    plane: controlplane.ControlPlane,
    widgets: resources.Resource,
    *,
    namespace: str,
    api_version: str,
) -> None:
    """The CRD handler switches storage after the CRD update, like discovery: wait until a write shows it."""
    key = f"/registry/{widgets.group}/widgets/{namespace}/probe"
    at = resources.Resource(widgets.group, api_version.split("/")[-1], widgets.plural, namespaced=True)
    probe = at.path(namespace=namespace, name="probe")

    async def used() -> bool:
        await kube.create(at.path(namespace=namespace), widget("probe", 0, api_version=api_version))
        stored = stored_objects(plane, key)[key]["apiVersion"]
        await kube.delete(probe)
        return bool(stored == api_version)

    await poll(used, seconds=10, interval=0.1, what=f"writes stored as {api_version}")


async def switch_storage(
    kube: client.Kube,
    plane: controlplane.ControlPlane,
    widgets: resources.Resource,
    *,
    namespace: str,
    to: str,
) -> None:
    """Make ``to`` the CRD's storage version; return once discovery and a write show it."""
    crd_path = CRDS.path(name=f"widgets.{widgets.group}")
    old_hash = await storage_hash(kube, group=widgets.group, version=to, plural="widgets")
    crd = await kube.get(crd_path)
    for version in crd["spec"]["versions"]:
        version["storage"] = version["name"] == to
    await kube.replace(crd_path, crd)
    await wait_hash_change(kube, group=widgets.group, version=to, before=old_hash)
    await wait_writes_stored_as(
        kube, plane, widgets, namespace=namespace, api_version=f"{widgets.group}/{to}"
    )

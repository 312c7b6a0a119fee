"""Helpers for uso-runner's integration tests: a two-version CRD, bulk object creation, running the process."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from controllers.kube import client, resources
from controllers.runtime import config
from controllers.uso_runner import controller, logic
from e2e import controlplane
from tests import harness

CRDS = resources.CRDS
# The in-tree migrator's StorageVersionMigrations (GA on the pinned release).
SVMS = resources.Resource(logic.SVM_GROUP, "v1", logic.SVM_RESOURCE, namespaced=False)


async def our_migrations(kube: client.Kube, release: str) -> dict[str, client.JSON]:
    """The StorageVersionMigrations uso-runner of ``release`` created, by name."""
    found = await kube.get(SVMS.path(), query={"labelSelector": f"app.kubernetes.io/instance={release}"})
    return {svm["metadata"]["name"]: svm for svm in found["items"]}


SCHEMA = {
    "openAPIV3Schema": {
        "type": "object",
        "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
}


def unique_group() -> str:
    return f"g{uuid.uuid4().hex[:8]}.example.com"


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


async def crd_with_widgets(kube: client.Kube, *, namespace: str, objects: int) -> resources.Resource:
    """A fresh ``widgets.<unique group>`` CRD stored at v1, with ``objects`` widgets in ``namespace``."""
    group = unique_group()
    widgets = await create_crd(kube, group=group, storage="v1")
    bodies = (widget(f"w{i:04d}", i, api_version=f"{group}/v1") for i in range(objects))
    await create_many(kube, widgets, bodies, namespace=namespace)
    return widgets


async def established(kube: client.Kube, name: str) -> None:
    """Until the CRD ``name`` is Established (a just-created one may report conditions: null)."""

    async def done() -> bool:
        crd = await kube.get(CRDS.path(name=name))
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    await harness.eventually(done, timeout=30, interval=0.1, what=f"CRD {name} Established")


async def wait_listable(kube: client.Kube, resource: resources.Resource) -> None:
    async def listable() -> bool:
        try:
            await kube.get(resource.path(), query={"limit": 1})
        except client.ApiError as error:
            if not error.not_found:
                raise
            return False
        return True

    await harness.eventually(listable, timeout=30, interval=0.1, what=f"{resource.group_resource} served")


async def storage_hash(kube: client.Kube, *, group: str, version: str, plural: str) -> str:
    document = await kube.get(f"/apis/{group}/{version}" if group else f"/api/{version}")
    for entry in document["resources"]:
        if entry["name"] == plural:
            return str(entry.get("storageVersionHash") or "")
    raise LookupError(plural)


async def create_many(
    kube: client.Kube, resource: resources.Resource, bodies: Iterable[client.JSON], *, namespace: str
) -> None:
    semaphore = asyncio.Semaphore(32)
    path = resource.path(namespace=namespace)

    async def one(body: client.JSON) -> None:
        async with semaphore:
            await kube.create(path, body)

    await asyncio.gather(*(one(body) for body in bodies))


def widget(name: str, index: int, *, api_version: str) -> client.JSON:
    return {
        "apiVersion": api_version,
        "kind": "Widget",
        "metadata": {"name": name, "labels": {"index": str(index)}, "annotations": {"note": f"n{index}"}},
        "spec": {"size": index, "colour": "blue", "nested": {"list": [index, "x"]}},
    }


def stored_objects(plane: controlplane.ControlPlane, prefix: str) -> dict[str, client.JSON]:
    """The objects under an etcd key prefix, decoded (CRs are stored as JSON)."""
    raw = json.loads(plane.etcdctl("get", prefix, "--prefix", "-w", "json"))
    return {
        base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"]))
        for kv in raw.get("kvs") or []
    }


def content(obj: client.JSON) -> tuple[object, ...]:
    meta = obj["metadata"]
    return (meta.get("labels"), meta.get("annotations"), obj.get("spec"))


async def wait_hash_change(kube: client.Kube, *, group: str, version: str, before: str) -> str:
    async def changed() -> bool:
        return await storage_hash(kube, group=group, version=version, plural="widgets") != before

    await harness.eventually(changed, timeout=30, interval=0.1, what="a new storageVersionHash")
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

    await harness.eventually(used, timeout=10, interval=0.1, what=f"writes stored as {api_version}")


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


async def list_all(kube: client.Kube, resource: resources.Resource, namespace: str) -> list[client.JSON]:
    items: list[client.JSON] = []
    async for page in kube.list_pages(resource.path(namespace=namespace)):
        items.extend(page["items"])
    return items


def runner_argv(kubeconfig: str, *, namespace: str, release: str, extra: Sequence[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "controllers.uso_runner",
        f"--kubeconfig={kubeconfig}",
        f"--namespace={namespace}",
        f"--release={release}",
        "--settle-seconds=0",
        "--metrics-bind-address=0",
        "--health-probe-bind-address=0",
        *extra,
    ]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("USO_RUNNER_")}


def run_once(
    kubeconfig: str, *, namespace: str, release: str, extra: Sequence[str] = (), timeout: float = 120
) -> tuple[int, dict[str, Any], str]:
    """``uso-runner --once``: exit code, its JSON report (stdout), and its logs (stderr)."""
    done = subprocess.run(
        [*runner_argv(kubeconfig, namespace=namespace, release=release, extra=extra), "--once"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    return done.returncode, report, done.stderr


async def run_once_async(
    kubeconfig: str, *, namespace: str, release: str, extra: Sequence[str] = (), timeout: float = 120
) -> tuple[int, dict[str, Any], str]:
    return await asyncio.to_thread(
        run_once, kubeconfig, namespace=namespace, release=release, extra=extra, timeout=timeout
    )


def runner_config(*, namespace: str, release: str, argv: Sequence[str] = ()) -> controller.UsoRunnerConfig:
    return config.load(
        controller.UsoRunnerConfig,
        [f"--namespace={namespace}", f"--release={release}", "--qps=0", *argv],
        prog=controller.NAME,
        prefix=config.env_prefix(controller.NAME),
        description="",
        environ={},
    )


def runner(
    kube: client.Kube, *, namespace: str, release: str, argv: Sequence[str] = ()
) -> controller.UsoRunner:
    """An in-process uso-runner on the test's client (what ``app.main`` builds for the process)."""
    cfg = runner_config(namespace=namespace, release=release, argv=argv)
    return harness.build(controller.UsoRunner, kube, cfg)


async def reconcile_now(uso: controller.UsoRunner) -> dict[str, Any]:
    """What ``--once`` does, in process: the agreement now, then reconcile; the report as JSON."""
    observation = await uso.ctx.agreements.now()
    assert observation.version is not None, observation.reason
    return (await uso.reconcile(observation.version)).as_json()

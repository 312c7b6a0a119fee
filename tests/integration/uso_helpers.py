"""Helpers for uso-runner's integration tests: a two-version CRD, bulk object creation, running the process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from controllers.kube import client, resources
from controllers.runtime import app, config
from controllers.uso_runner import controller

CRDS = resources.CRDS
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
    for _ in range(300):
        crd = await kube.get(CRDS.path(name=f"widgets.{group}"))
        conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions") or []}
        if conditions.get("Established") == "True":
            break
        await asyncio.sleep(0.1)
    widgets = resources.Resource(group, "v1", "widgets", namespaced=True)
    await wait_listable(kube, widgets)
    return widgets


async def wait_listable(kube: client.Kube, resource: resources.Resource) -> None:
    for _ in range(300):
        try:
            await kube.get(resource.path(), query={"limit": 1})
            return
        except client.ApiError as error:
            if not error.not_found:
                raise
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{resource.group_resource} not served")


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


def context(
    kube: client.Kube, *, namespace: str, release: str, argv: Sequence[str] = ()
) -> app.Context[controller.UsoConfig]:
    """An in-process uso-runner Context on the test's client (what ``app.main`` builds for the process)."""
    cfg = config.load(
        controller.UsoConfig,
        [f"--namespace={namespace}", f"--release={release}", "--qps=0", *argv],
        prog=controller.NAME,
        prefix=config.env_prefix(controller.NAME),
        description="",
        environ={},
    )
    return app.build_context(name=controller.NAME, config=cfg, kube=kube)


async def reconcile_now(ctx: app.Context[controller.UsoConfig]) -> dict[str, Any]:
    """What ``--once`` does, in process: the agreement now, then reconcile; the report as JSON."""
    observation = await ctx.agreements.now()
    assert observation.version is not None, observation.reason
    report = await controller.UsoRunner().reconcile(ctx, observation.version)
    return report.as_json()

"""Helpers for uso-runner's integration tests: a two-version CRD, bulk object creation, running the process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from controllers.kube import client, resources
from controllers.runtime import config
from controllers.uso_runner import controller, logic
from e2e import widgets
from tests import harness

CRDS = resources.CRDS
# The in-tree migrator's StorageVersionMigrations (GA on the pinned release).
SVMS = resources.Resource(logic.SVM_GROUP, "v1", logic.SVM_RESOURCE, namespaced=False)


async def our_migrations(kube: client.Kube, release: str) -> dict[str, client.JSON]:
    """The StorageVersionMigrations uso-runner of ``release`` created, by name."""
    found = await kube.get(SVMS.path(), query={"labelSelector": f"app.kubernetes.io/instance={release}"})
    return {svm["metadata"]["name"]: svm for svm in found["items"]}


# The two-version Widget CRD (shared with the benchmarks).
SCHEMA = widgets.SCHEMA
unique_group = widgets.unique_group
create_crd = widgets.create_crd
established = widgets.established
wait_listable = widgets.wait_listable
storage_hash = widgets.storage_hash
create_many = widgets.create_many
widget = widgets.widget
stored_objects = widgets.stored_objects
wait_hash_change = widgets.wait_hash_change
wait_writes_stored_as = widgets.wait_writes_stored_as
switch_storage = widgets.switch_storage


async def crd_with_widgets(kube: client.Kube, *, namespace: str, objects: int) -> resources.Resource:
    """A fresh ``widgets.<unique group>`` CRD stored at v1, with ``objects`` widgets in ``namespace``."""
    group = unique_group()
    crd = await create_crd(kube, group=group, storage="v1")
    bodies = (widget(f"w{i:04d}", i, api_version=f"{group}/v1") for i in range(objects))
    await create_many(kube, crd, bodies, namespace=namespace)
    return crd


def content(obj: client.JSON) -> tuple[object, ...]:
    meta = obj["metadata"]
    return (meta.get("labels"), meta.get("annotations"), obj.get("spec"))


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

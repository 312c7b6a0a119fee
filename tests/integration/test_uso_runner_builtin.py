"""uso-runner --use-builtin on the real fixture: StorageVersionMigrations for kube-controller-manager's migrator.

The fixture's kube-apiserver (v1.37) serves storagemigration.k8s.io/v1 (GA, on by default); kube-controller-manager
(built from the module proxy like the apiserver) runs only its storage-version-migrator and garbage-collector controllers, and
only inside the test that wants them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import prometheus_client

from controllers.kube import client, discovery, resources, state
from controllers.runtime import metrics as runtime_metrics
from controllers.uso_runner import logic, metrics
from controllers.uso_runner.effects import builtin
from e2e import cluster, controlplane
from tests.integration import uso_helpers as h

OBJECTS = 300


async def test_use_builtin_delegates_each_resource_and_follows_it_to_the_end(
    kube: client.Kube,
    kubeconfig: str,
    namespace: str,
    nodes: cluster.Nodes,
    control_plane: controlplane.ControlPlane,
) -> None:
    widgets = await h.crd_with_widgets(kube, namespace=namespace, objects=OBJECTS)
    group, crd_name = widgets.group, widgets.group_resource
    before = {o["metadata"]["name"]: h.content(o) for o in await h.list_all(kube, widgets, namespace)}
    await h.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v2")
    prefix = f"/registry/{group}/widgets/{namespace}/"
    assert {o["apiVersion"] for o in h.stored_objects(control_plane, prefix).values()} == {f"{group}/v1"}

    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version="v1.36.0", master=True)

    def once(*extra: str) -> tuple[int, dict[str, Any], str]:
        return h.run_once(
            kubeconfig,
            namespace=namespace,
            release=release,
            extra=["--method=builtin", f"--resources={crd_name}", *extra],
        )

    # --dry-run: the StorageVersionMigration is validated by the apiserver (dryRun=All), none is created.
    code, report, _ = once("--dry-run")
    assert (code, report["method"], report["ok"]) == (0, "builtin", True), report
    assert await h.our_migrations(kube, release) == {}
    # The deprecated --use-builtin still means --method=builtin, and says so.
    code, report, logs = h.run_once(
        kubeconfig,
        namespace=namespace,
        release=release,
        extra=["--use-builtin", "--dry-run", f"--resources={crd_name}"],
    )
    assert (code, report["method"]) == (0, "builtin") and "--use-builtin is deprecated" in logs, (
        report,
        logs,
    )

    # No kube-controller-manager yet: nobody picks the migration up; the resource fails with a clear reason
    # after the timeout, and nothing is recorded as done.
    code, report, logs = once("--builtin-timeout-seconds=3")
    assert code == 1 and report["failedResources"] == [crd_name], report
    error = report["resources"][crd_name]["error"]
    assert "kube-controller-manager" in error and "storage-version-migrator-controller" in error, error
    name = report["resources"][crd_name]["storageVersionMigration"]
    pending = await h.our_migrations(kube, release)
    assert list(pending) == [name] and not pending[name].get("status", {}).get("conditions")
    saved = await state.read(kube, namespace=namespace, name=f"{release}-uso-runner-state")
    assert saved.get("phase") == "Failed" and json.loads(saved.get("runDone")) == []
    assert {o["apiVersion"] for o in h.stored_objects(control_plane, prefix).values()} == {f"{group}/v1"}
    # A dry run now validates against the one that exists (it would follow it).
    code, report, _ = once("--dry-run")
    assert code == 0 and report["ok"], report

    # With the built-in controller running, the retry follows the same StorageVersionMigration to the end.
    control_plane.start_controller_manager()
    try:
        code, report, logs = once("--builtin-timeout-seconds=120")
    finally:
        control_plane.stop_controller_manager()
    assert code == 0 and report["ok"] and report["method"] == "builtin", (report, logs)
    assert report["resources"] == {crd_name: {"storageVersionMigration": name}}
    assert f"following the existing StorageVersionMigration {name}" in logs
    conditions = {
        c["type"]: c["status"] for c in (await kube.get(h.SVMS.path(name=name)))["status"]["conditions"]
    }
    assert conditions["Succeeded"] == "True" and conditions.get("Running") != "True", conditions

    # Every object is stored at v2 with its content unchanged; the controller set storedVersions to [v2].
    stored = h.stored_objects(control_plane, prefix)
    assert len(stored) == OBJECTS
    assert {o["apiVersion"] for o in stored.values()} == {f"{group}/v2"}
    assert {o["metadata"]["name"]: h.content(o) for o in stored.values()} == before
    crd = await kube.get(resources.CRDS.path(name=crd_name))
    assert crd["status"]["storedVersions"] == ["v2"]
    saved = await state.read(kube, namespace=namespace, name=f"{release}-uso-runner-state")
    assert saved.get("phase") == "Succeeded" and saved.get("version") == "v1.36.0"
    hashes = json.loads(saved.get("storageHashes"))
    assert hashes[crd_name] == await h.storage_hash(kube, group=group, version="v2", plural="widgets")

    # The next minor with an unchanged hash creates no migration and deletes the finished one of the last run.
    await nodes.set_status(f"m-{release}", version="v1.37.0")
    code, report, _ = once()
    assert code == 0 and report["unchanged"] == [crd_name] and report["resources"] == {}, report
    assert await h.our_migrations(kube, release) == {}


async def test_a_failed_migration_of_the_same_name_is_replaced(kube: client.Kube) -> None:
    """The built-in controller's Failed verdict (written here through the status subresource, as it writes
    it) is final for that object: the next attempt deletes it and creates a new one."""
    release = f"r{uuid.uuid4().hex[:6]}"
    exporter = runtime_metrics.Exporter(prefix="t", registry=prometheus_client.CollectorRegistry())
    runner = builtin.Builtin(
        kube=kube,
        metrics=metrics.Metrics(exporter),
        version="v1",
        release=release,
        labels={},
        timeout=1,
        pickup=1,
    )
    configmaps = discovery.ApiResource(
        group="", version="v1", name="configmaps", kind="ConfigMap", namespaced=True,
        verbs=frozenset({"list", "update"}), storage_version_hash="h-test",
    )  # fmt: skip
    name = logic.migration_name(
        release=release, group_resource="configmaps", target="v1.36.0", storage_hash="h-test"
    )
    manifest = logic.migration_manifest(
        api_version="storagemigration.k8s.io/v1", name=name, group="", resource="configmaps",
        labels={}, target="v1.36.0", storage_hash="h-test",
    )  # fmt: skip
    first = await kube.create(h.SVMS.path(), manifest)
    first["status"] = {
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "StorageVersionMigrationFailed",
                "message": "simulated",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ]
    }
    await kube.replace(h.SVMS.path(name=name, subresource="status"), first)
    try:
        result = await runner.migrate(configmaps, target="v1.36.0")
        replaced = await kube.get(h.SVMS.path(name=name))
        assert replaced["metadata"]["uid"] != first["metadata"]["uid"]
        assert not replaced.get("status", {}).get("conditions")
        # No controller runs here: the new one is not picked up within the (1 s) timeout.
        assert result.delegated_to == name and builtin.NOT_PICKED_UP in result.error, result
    finally:
        await kube.delete(h.SVMS.path(name=name))

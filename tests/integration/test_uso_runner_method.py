"""uso-runner --method=auto|builtin against the real kube-controller-manager v1.37 (GA storagemigration.k8s.io/v1),
and where the API is not served (a control plane of its own with the group turned off). auto hands resources to
kube-controller-manager only where uso-runner runs unpaced (``--latency-budget=0``): paced, it rewrites."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from controllers.kube import client, resources
from controllers.uso_runner import logic
from e2e import cluster, controlplane
from tests import harness
from tests.integration import uso_helpers as h

OBJECTS = 200


async def switched_crd(
    kube: client.Kube, plane: controlplane.ControlPlane, namespace: str, *, objects: int = OBJECTS
) -> tuple[str, str]:
    """A CRD with ``objects`` widgets stored at v1, its storage then switched to v2: (name, etcd key prefix)."""
    widgets = await h.crd_with_widgets(kube, namespace=namespace, objects=objects)
    await h.switch_storage(kube, plane, widgets, namespace=namespace, to="v2")
    return widgets.group_resource, f"/registry/{widgets.group}/widgets/{namespace}/"


def stored_versions(plane: controlplane.ControlPlane, prefix: str) -> set[str]:
    return {o["apiVersion"].split("/")[-1] for o in h.stored_objects(plane, prefix).values()}


async def warnings(kube: client.Kube, namespace: str, reason: str) -> list[str]:
    page = await kube.get(resources.EVENTS.path(namespace=namespace))
    return [
        e.get("note", "") for e in page["items"] if e.get("reason") == reason and e.get("type") == "Warning"
    ]


async def test_auto_paced_rewrites_itself_and_creates_no_storage_version_migration(
    kubeconfig: str,
    kube: client.Kube,
    namespace: str,
    nodes: cluster.Nodes,
    control_plane: controlplane.ControlPlane,
) -> None:
    """The default budget (paced) with the rewrite allowed: the paced rewrite, although the API is served (the
    Pareto benchmark measured it faster than the in-tree migrator at no more cost); the log says why."""
    crd_name, prefix = await switched_crd(kube, control_plane, namespace, objects=50)
    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version="v1.37.2", master=True)
    code, report, logs = await h.run_once_async(
        kubeconfig, namespace=namespace, release=release, extra=["--method=auto", f"--resources={crd_name}"]
    )
    assert (code, report["method"], report["ok"]) == (0, "rewrite", True), (report, logs)
    assert report["resources"][crd_name]["migrated"] == 50
    assert logic.AUTO_PACED in logs
    assert stored_versions(control_plane, prefix) == {"v2"}
    assert await h.our_migrations(kube, release) == {}
    assert (await kube.get(resources.CRDS.path(name=crd_name)))["status"]["storedVersions"] == ["v2"]


async def test_auto_unpaced_hands_each_changed_resource_to_the_in_tree_migrator_when_it_answers(
    kube: client.Kube,
    kubeconfig: str,
    namespace: str,
    nodes: cluster.Nodes,
    control_plane: controlplane.ControlPlane,
) -> None:
    crd_name, prefix = await switched_crd(kube, control_plane, namespace)
    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version="v1.37.2", master=True)
    control_plane.start_controller_manager()
    try:
        code, report, logs = await h.run_once_async(
            kubeconfig,
            namespace=namespace,
            release=release,
            extra=["--method=auto", "--latency-budget=0", f"--resources={crd_name}"],
        )
    finally:
        control_plane.stop_controller_manager()
    assert (code, report["method"], report["ok"]) == (0, "builtin", True), (report, logs)
    name = report["resources"][crd_name]["storageVersionMigration"]
    assert "fallbackFrom" not in report["resources"][crd_name]
    svm = (await h.our_migrations(kube, release))[name]
    conditions = {c["type"]: c["status"] for c in svm["status"]["conditions"]}
    assert conditions["Succeeded"] == "True" and conditions.get("Running") != "True", conditions
    assert stored_versions(control_plane, prefix) == {"v2"}
    # storedVersions is the in-tree migrator's to set (since v1.36); uso-runner did not touch it.
    assert report["storedVersions"] == {crd_name: "left to kube-controller-manager"}
    crd = await kube.get(resources.CRDS.path(name=crd_name))
    assert crd["status"]["storedVersions"] == ["v2"]
    assert await warnings(kube, namespace, "BuiltinMigrationFallback") == []


async def test_auto_rewrites_loudly_when_no_migrator_picks_the_migration_up(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    """Unpaced, no kube-controller-manager: the first StorageVersionMigration is not picked up within the bound, is
    withdrawn, and its resource rewritten; the next resource is rewritten without asking again."""
    first, first_prefix = await switched_crd(kube, control_plane, namespace, objects=50)
    second, second_prefix = await switched_crd(kube, control_plane, namespace, objects=50)
    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version="v1.37.2", master=True)
    argv = [
        "--method=auto",
        "--latency-budget=0",
        "--builtin-pickup-seconds=2",
        "--resource-workers=1",
        f"--resources={first},{second}",
    ]
    uso = h.runner(kube, namespace=namespace, release=release, argv=argv)
    report = await h.reconcile_now(uso)
    assert report["ok"] and report["method"] == "builtin", report
    by_name = report["resources"]
    stalled = [r for r in by_name.values() if "not picked up after 2 s" in r.get("fallbackFrom", "")]
    assert len(stalled) == 1 and stalled[0]["migrated"] == 50, report
    asked_no_more = [r for r in by_name.values() if "was never picked up" in r.get("fallbackFrom", "")]
    assert len(asked_no_more) == 1 and asked_no_more[0]["migrated"] == 50, report
    assert (
        stored_versions(control_plane, first_prefix)
        == stored_versions(control_plane, second_prefix)
        == {"v2"}
    )
    # Loudly: a Warning Event per resource, the fallback metric; the stalled migration is withdrawn.
    notes = await warnings(kube, namespace, "BuiltinMigrationFallback")
    assert len(notes) == 2 and all("instead of waiting for kube-controller-manager" in n for n in notes)
    assert harness.metric(uso, "uso_runner_builtin_fallbacks_total", reason="not_picked_up") == 2
    assert harness.metric(uso, "uso_runner_builtin_migrations_total", outcome="not_picked_up") == 1
    assert await h.our_migrations(kube, release) == {}
    # Rewritten by uso-runner: it sets storedVersions itself, as in rewrite mode.
    for name in (first, second):
        assert (await kube.get(resources.CRDS.path(name=name)))["status"]["storedVersions"] == ["v2"]


async def test_without_the_rewrite_fallback_a_stalled_migration_fails_loudly_and_nothing_is_rewritten(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    """--no-rewrite-fallback (the chart's usoRunner.rewriteFallback=false: no grant to rewrite every
    resource): the StorageVersionMigration no migrator picks up is left for one, and its resource fails with
    a log line, a Warning Event and the refused-fallback metric; no object is rewritten."""
    crd_name, prefix = await switched_crd(kube, control_plane, namespace, objects=50)
    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version="v1.37.2", master=True)
    argv = ["--method=auto", "--no-rewrite-fallback", "--builtin-pickup-seconds=2", f"--resources={crd_name}"]
    uso = h.runner(kube, namespace=namespace, release=release, argv=argv)
    report = await h.reconcile_now(uso)
    assert not report["ok"] and report["failedResources"] == [crd_name], report
    failed = report["resources"][crd_name]
    assert "not picked up after 2 s" in failed["error"] and "rewrite fallback is off" in failed["error"], (
        failed
    )
    assert "fallbackFrom" not in failed and failed.get("migrated", 0) == 0
    assert stored_versions(control_plane, prefix) == {"v1"}  # nothing rewritten
    notes = await warnings(kube, namespace, "RewriteFallbackDisabled")
    assert len(notes) == 1 and crd_name in notes[0], notes
    assert await warnings(kube, namespace, "BuiltinMigrationFallback") == []
    assert harness.metric(uso, "uso_runner_rewrite_fallback_refused_total", reason="not_picked_up") == 1
    assert harness.metric(uso, "uso_runner_builtin_fallbacks_total", reason="not_picked_up") == 0
    assert harness.metric(uso, "uso_runner_resources", state="failed") == 1  # KubeUpgradeMigrationFailed
    assert len(await h.our_migrations(kube, release)) == 1  # left for a migrator that may still come


@pytest.fixture(scope="module")
def not_served() -> Iterator[controlplane.ControlPlane]:
    """A control plane of its own (etcd and kube-apiserver) that does not serve storagemigration.k8s.io. (Not
    a second apiserver on the fixture's etcd: from 1.36 apiservers sharing an etcd aggregate their discovery
    as peers, and the fixture's would stop showing the group too.)"""
    with controlplane.running(apiserver_flags=[f"--runtime-config={logic.SVM_GROUP}/v1=false"]) as plane:
        yield plane


@pytest.mark.parametrize("fallback", [True, False])
@pytest.mark.parametrize("method", ["auto", "builtin"])
async def test_where_the_api_is_not_served_the_objects_are_rewritten_unless_the_fallback_is_off(
    method: str, fallback: bool, not_served: controlplane.ControlPlane
) -> None:
    async with await client.connect(kubeconfig=str(not_served.kubeconfig)) as kube:
        namespace = f"not-served-{uuid.uuid4().hex[:6]}"
        await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": namespace}})
        crd_name, prefix = await switched_crd(kube, not_served, namespace, objects=50)
        release = f"r{uuid.uuid4().hex[:6]}"
        nodes = cluster.Nodes(kube)
        await nodes.create(f"m-{release}", version="v1.37.2", master=True)
        code, report, logs = await h.run_once_async(
            str(not_served.kubeconfig),
            namespace=namespace,
            release=release,
            extra=[
                f"--method={method}",
                f"--resources={crd_name}",
                *([] if fallback else ["--no-rewrite-fallback"]),
            ],
        )
        unavailable = await warnings(kube, namespace, "BuiltinMigrationUnavailable")
        if fallback:
            assert (code, report["method"], report["ok"]) == (0, "rewrite", True), (report, logs)
            assert report["resources"][crd_name]["migrated"] == 50
            assert stored_versions(not_served, prefix) == {"v2"}
            # builtin was asked for and cannot be had: a Warning says so; auto just rewrites.
            assert len(unavailable) == (1 if method == "builtin" else 0), unavailable
        else:  # nothing may rewrite in the built-in migrator's place: every resource fails, loudly
            assert (code, report["ok"], report["failedResources"]) == (1, False, [crd_name]), (report, logs)
            assert "is not served" in report["resources"][crd_name]["error"]
            assert stored_versions(not_served, prefix) == {"v1"}
            assert len(unavailable) == 1 and "every resource fails" in unavailable[0], unavailable
            assert len(await warnings(kube, namespace, "RewriteFallbackDisabled")) == 1
            assert "rewrite fallback is off" in logs
        await nodes.delete_all()

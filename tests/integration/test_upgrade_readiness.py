"""upgrade-readiness on the real control plane: each check raised by a real object and cleared by the fix,
acknowledgements, and the ``readiness`` command's exit codes and JSON.

The daemon runs in process (``tests.harness``) so that the tests read its metrics and status; the command
runs as a real process. The fixture's masters are Node objects made here; the fixture's apiserver serves
resource.k8s.io/v1beta1 (removed in 1.38) for the removed-API check.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import pathlib
import subprocess
import sys
import uuid
from typing import Any

from controllers.kube import client, resources, state
from controllers.upgrade_readiness import controller, logic
from e2e import cluster, controlplane
from tests import harness
from tests.integration import uso_helpers

SCRIPT = pathlib.Path(sys.executable).parent / "kube-upgrade-controllers"
RELEASE = "kube-upgrade-controllers"  # the release the one-shot command is pointed at (none is installed)
MASTER = "v1.37.2"  # the masters' minor 1.37: the target is 1.38
PACE = controller.PACE_SECONDS
DEPRECATED = resources.Resource("resource.k8s.io", "v1beta1", "deviceclasses", namespaced=False)


def config(namespace: str, *checks: str, **overrides: Any) -> controller.UpgradeReadinessConfig:
    values: dict[str, Any] = {
        "namespace": namespace,
        "release": f"r{uuid.uuid4().hex[:6]}",
        "checks": checks,
        "settle_seconds": 0,
        "evaluate_interval_seconds": 0.3,
        "metrics_bind_address": "0",
        "health_probe_bind_address": "0",
        **overrides,
    }
    return controller.UpgradeReadinessConfig(**values)


def result(gate: controller.UpgradeReadiness, check: str) -> dict[str, Any]:
    """The check in the gate's /status (an empty one before the first evaluation)."""
    checks: list[dict[str, Any]] = gate.status().get("checks", [])
    return next((c for c in checks if c["check"] == check), {"status": "", "findings": [], "reason": ""})


def status_is(gate: controller.UpgradeReadiness, check: str, wanted: str) -> bool:
    return bool(result(gate, check)["status"] == wanted)


def blockers(gate: controller.UpgradeReadiness, check: str) -> float:
    return harness.metric(gate, "upgrade_readiness_blockers", check=check) or 0.0


async def master(nodes: cluster.Nodes) -> str:
    name = f"m-{uuid.uuid4().hex[:6]}"
    await nodes.create(name, version=MASTER, master=True)
    return name


async def test_kubelet_four_minors_below_the_target_blocks_until_upgraded(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    await master(nodes)
    worker = f"w-{uuid.uuid4().hex[:6]}"
    await nodes.create(worker, version="v1.34.6")  # 4 minors below 1.38
    cfg = config(namespace, "kubelet-skew")
    async with harness.running(controller.UpgradeReadiness, kube, cfg) as gate:
        await harness.eventually(lambda: status_is(gate, "kubelet-skew", "blocked"), what="skew blocked")
        assert gate.status()["target"] == "1.38"
        (finding,) = result(gate, "kubelet-skew")["findings"]
        assert finding["subject"] == f"Node {worker}" and "4 minors below 1.38" in finding["message"]
        assert blockers(gate, "kubelet-skew") == 1
        assert harness.metric(gate, "upgrade_readiness_upgradeable") == 0

        async def not_upgradeable_saved() -> bool:  # written after /status and the evaluation's Events
            saved = await state.read(kube, namespace=namespace, name=gate.ctx.state_name)
            return saved.get("phase") == "NotUpgradeable"

        await harness.eventually(not_upgradeable_saved, what="state NotUpgradeable")
        saved = await state.read(kube, namespace=namespace, name=gate.ctx.state_name)
        assert saved.get("upgradeable") == "False"
        assert f"Node {worker}" in json.loads(saved.get("reasons"))[0]

        await nodes.set_status(worker, version="v1.35.0")  # 3 minors below: inside the skew policy
        await harness.eventually(lambda: status_is(gate, "kubelet-skew", "pass"), what="skew cleared")
        assert blockers(gate, "kubelet-skew") == 0
        assert harness.metric(gate, "upgrade_readiness_upgradeable") == 1

        async def upgradeable_saved() -> bool:
            saved = await state.read(kube, namespace=namespace, name=gate.ctx.state_name)
            return saved.get("phase") == "Upgradeable"

        await harness.eventually(upgradeable_saved, what="state Upgradeable")
    events = await kube.list_items(resources.EVENTS.path(namespace=namespace))
    reasons = {e["reason"] for e in events if e["regarding"]["name"] == gate.ctx.state_name}
    assert {"CheckBlocked", "NotUpgradeable", "CheckPass", "Upgradeable"} <= reasons, reasons


async def test_crd_with_an_unserved_stored_version_blocks_until_uso_runner_migrates_it(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    await master(nodes)
    group = uso_helpers.unique_group()
    widgets = await uso_helpers.create_crd(kube, group=group, storage="v1")
    await kube.create(
        widgets.path(namespace=namespace), uso_helpers.widget("a", 1, api_version=f"{group}/v1")
    )
    await uso_helpers.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v2")
    crd_path = resources.CRDS.path(name=f"widgets.{group}")
    crd = await kube.get(crd_path)
    for version in crd["spec"]["versions"]:
        version["served"] = version["name"] == "v2"
    await kube.replace(crd_path, crd)  # v1 no longer served, still in storedVersions
    cfg = config(namespace, "crd-stored-versions")
    async with harness.running(controller.UpgradeReadiness, kube, cfg) as gate:
        await harness.eventually(lambda: status_is(gate, "crd-stored-versions", "blocked"), what="blocked")
        subjects = [f["subject"] for f in result(gate, "crd-stored-versions")["findings"]]
        assert f"CustomResourceDefinition widgets.{group}" in subjects

        # uso-runner rewrites the objects at v2 and sets storedVersions to [v2].
        release = f"r{uuid.uuid4().hex[:6]}"
        uso = uso_helpers.runner(
            kube, namespace=namespace, release=release, argv=["--resources", f"widgets.{group}"]
        )
        report = await uso_helpers.reconcile_now(uso)
        assert report["storedVersions"][f"widgets.{group}"].startswith("updated"), report
        assert (await kube.get(crd_path))["status"]["storedVersions"] == ["v2"]

        def cleared() -> bool:
            subjects = [f["subject"] for f in result(gate, "crd-stored-versions")["findings"]]
            return f"CustomResourceDefinition widgets.{group}" not in subjects

        await harness.eventually(cleared, what="the CRD cleared")


async def test_pdb_allowing_no_disruption_over_a_worker_to_drain_blocks_until_relaxed(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    await master(nodes)
    worker = f"w-{uuid.uuid4().hex[:6]}"
    await nodes.create(worker, version="v1.37.2")  # below the target 1.38: the upgrade drains it
    apps = resources.Resource("apps", "v1", "replicasets", namespaced=True)
    labels = {"app": "db"}
    replicaset = await kube.create(
        apps.path(namespace=namespace),
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            },
        },
    )
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "db", "uid": replicaset["metadata"]["uid"],
             "controller": True}  # fmt: skip
    await kube.create(
        resources.PODS.path(namespace=namespace),
        {
            "metadata": {"name": "db-0", "labels": labels, "ownerReferences": [owner]},
            "spec": {"nodeName": worker, "containers": [{"name": "c", "image": "x"}]},
        },
    )
    await kube.patch(  # Running and Ready, as a kubelet would report it
        resources.PODS.path(namespace=namespace, name="db-0", subresource="status"),
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
    )
    pdbs = resources.POD_DISRUPTION_BUDGETS
    await kube.create(
        pdbs.path(namespace=namespace),
        {"metadata": {"name": "db"}, "spec": {"maxUnavailable": 0, "selector": {"matchLabels": labels}}},
    )
    subject = f"PodDisruptionBudget {namespace}/db"
    control_plane.start_controller_manager(controllers=("disruption-controller",))
    try:
        cfg = config(namespace, "drain-blockers")
        async with harness.running(controller.UpgradeReadiness, kube, cfg) as gate:
            await harness.eventually(
                lambda: subject in [f["subject"] for f in result(gate, "drain-blockers")["findings"]],
                timeout=60,
                what="the PDB reported",
            )
            assert worker in result(gate, "drain-blockers")["reason"]
            await kube.patch(pdbs.path(namespace=namespace, name="db"), {"spec": {"maxUnavailable": 1}})

            def cleared() -> bool:
                return subject not in [f["subject"] for f in result(gate, "drain-blockers")["findings"]]

            await harness.eventually(cleared, timeout=60, what="the PDB cleared")
            pdb = await kube.get(pdbs.path(namespace=namespace, name="db"))
            assert pdb["status"]["disruptionsAllowed"] == 1
    finally:
        control_plane.stop_controller_manager()


async def request_deprecated(kube: client.Kube, times: int) -> None:
    for _ in range(times):
        await kube.get(DEPRECATED.path())


async def test_a_removed_api_requested_blocks_until_no_client_requested_it_within_the_window(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    await master(nodes)
    cfg = config(namespace, "removed-apis", deprecated_api_window_seconds=3.0)
    await request_deprecated(kube, 3)
    subject = "resource.k8s.io/v1beta1 deviceclasses"
    async with harness.running(controller.UpgradeReadiness, kube, cfg) as gate:

        def reported() -> bool:
            return subject in [f["subject"] for f in result(gate, "removed-apis")["findings"]]

        await harness.eventually(reported, what="the removed API reported")
        finding = next(f for f in result(gate, "removed-apis")["findings"] if f["subject"] == subject)
        assert "removed in 1.38" in finding["message"]
        await request_deprecated(kube, 5)  # still used: stays reported (its counter moves)
        await asyncio.sleep(1.5)
        assert reported()
        # No more requests: reported until the window passes, then cleared although the gauge stays 1.
        await harness.eventually(lambda: not reported(), timeout=30, what="the removed API cleared")
    gauge = await kube.get_text("/metrics")
    assert any(
        line.startswith("apiserver_requested_deprecated_apis{")
        and 'resource="deviceclasses"' in line
        and line.endswith(" 1")
        for line in gauge.splitlines()
    )


async def test_the_next_bundle_missing_blocks_until_it_is_there_and_valid(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, tmp_path: pathlib.Path
) -> None:
    await master(nodes)
    (tmp_path / "1.37").mkdir()
    (tmp_path / "1.37" / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    cfg = config(namespace, "addon-bundle", bundle_source="directory", bundle_dir=str(tmp_path))
    async with harness.running(controller.UpgradeReadiness, kube, cfg) as gate:
        await harness.eventually(lambda: status_is(gate, "addon-bundle", "blocked"), what="bundle missing")
        assert "no bundle for 1.38" in result(gate, "addon-bundle")["reason"]
        (tmp_path / "1.38").mkdir()
        (tmp_path / "1.38" / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
        await harness.eventually(
            lambda: "without metadata.name" in result(gate, "addon-bundle")["reason"], what="bundle invalid"
        )
        (tmp_path / "1.38" / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
        await harness.eventually(lambda: status_is(gate, "addon-bundle", "pass"), what="bundle valid")


async def test_a_hostile_next_bundle_fails_its_check_and_the_report_is_still_published(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, tmp_path: pathlib.Path
) -> None:
    """The shared bounded loader: a billion-laughs bundle, then 20,000 nested '[', are each a failed
    addon-bundle check in a published report (state and Events), not a crash or a missing report."""
    await master(nodes)
    (tmp_path / "1.38").mkdir()
    laughs = "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    hostile = {
        "more than 100000 nodes": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n"
        "  l0: &l0 [lol, lol]\n" + laughs,
        "nested deeper than 100 levels": "a: " + "[" * 20_000 + "]" * 20_000 + "\n",
    }
    cfg = config(namespace, "addon-bundle", bundle_source="directory", bundle_dir=str(tmp_path))
    async with harness.running(controller.UpgradeReadiness, kube, cfg) as gate:
        for complaint, text in hostile.items():
            (tmp_path / "1.38" / "a.yaml").write_text(text)

            def refused(complaint: str = complaint) -> bool:
                return complaint in result(gate, "addon-bundle")["reason"]

            await harness.eventually(refused, what=complaint)
            assert status_is(gate, "addon-bundle", "blocked")
            assert "limit: a.yaml:" in result(gate, "addon-bundle")["reason"]

            async def published(complaint: str = complaint) -> bool:
                saved = await state.read(kube, namespace=namespace, name=gate.ctx.state_name)
                reasons = json.loads(saved.get("reasons") or "[]")
                return saved.get("phase") == "NotUpgradeable" and any(complaint in r for r in reasons)

            await harness.eventually(published, what=f"the report saying {complaint}")


async def test_an_ack_for_the_target_minor_waives_its_check_until_it_expires(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    """The unscoped old key waives nothing (refused, showing the new form); an ack for 1.38 waives the check
    (shown, never hidden) while one for 1.39 and one for an unknown check do not; when the ack expires the
    check blocks again at once, with no other change and the next evaluation an hour away. Each write of the
    ConfigMap is seen through the watch (no evaluation is due)."""
    await master(nodes)
    worker = f"w-{uuid.uuid4().hex[:6]}"
    await nodes.create(worker, version="v1.39.0")  # newer than the target
    cfg = config(namespace, "kubelet-skew", evaluate_interval_seconds=3600)
    path = resources.CONFIGMAPS.path(namespace=namespace, name=cfg.acknowledgements_name)
    async with harness.running(controller.UpgradeReadiness, kube, cfg) as gate:

        def ack_states() -> dict[str, str]:
            return {a["key"]: a["state"] for a in gate.status().get("acknowledgements", [])}

        await harness.eventually(lambda: status_is(gate, "kubelet-skew", "blocked"), what="blocked")
        await kube.create(
            resources.CONFIGMAPS.path(namespace=namespace),
            {"metadata": {"name": cfg.acknowledgements_name}, "data": {"acknowledged": "kubelet-skew"}},
        )
        await harness.eventually(
            lambda: ack_states() == {"acknowledged": "malformed"}, what="old key refused"
        )
        assert status_is(gate, "kubelet-skew", "blocked") and gate.status()["upgradeable"] is False
        (legacy,) = gate.status()["acknowledgements"]
        assert "ack-1.38-kubelet-skew" in legacy["problem"] and "every later minor" in legacy["problem"]
        assert harness.metric(gate, "upgrade_readiness_acknowledgements", state="malformed") == 1

        until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=6)
        data = {
            "ack-1.38-kubelet-skew": logic.ack_value(
                until=until, reason="the new kubelets are tested, CHG-1"
            ),
            "ack-1.39-kubelet-skew": logic.ack_value(reason="next time"),
            "ack-1.38-bogus": "{}",
        }
        await kube.replace(path, {"metadata": {"name": cfg.acknowledgements_name}, "data": data})
        await harness.eventually(lambda: status_is(gate, "kubelet-skew", "acknowledged"), what="acknowledged")
        status = gate.status()
        assert status["upgradeable"] is True
        assert ack_states() == {
            "ack-1.38-bogus": "unknown", "ack-1.38-kubelet-skew": "active", "ack-1.39-kubelet-skew": "other-target",
        }  # fmt: skip
        assert [f["subject"] for f in result(gate, "kubelet-skew")["findings"]] == [f"Node {worker}"]
        assert any(r.startswith("kubelet-skew: ") for r in status["reasons"])  # shown, never hidden
        assert blockers(gate, "kubelet-skew") == 0
        labels = {
            "check": "kubelet-skew",
            "subject": f"Node {worker}",
            "severity": "blocker",
            "acknowledged": "true",
        }
        assert harness.metric(gate, "upgrade_readiness_finding_info", **labels) == 1
        assert harness.metric(gate, "upgrade_readiness_acknowledgements", state="active") == 1
        assert harness.metric(gate, "upgrade_readiness_acknowledgements", state="unknown") == 1
        expiry = harness.metric(
            gate, "upgrade_readiness_acknowledgement_expiry_timestamp_seconds", check="kubelet-skew"
        )
        assert expiry == int(until.timestamp())

        # Nothing else changes; the next evaluation is an hour away: the expiry alone makes it block again.
        expired = await harness.eventually(
            lambda: status_is(gate, "kubelet-skew", "blocked"), timeout=30, interval=0.1, what="expired"
        )
        late = datetime.datetime.now(datetime.UTC) - until.replace(microsecond=0)  # RFC 3339 to the second
        print(
            f"\nthe expired ack stopped waiving {late.total_seconds():.1f} s after its until ({expired:.1f} s)"
        )
        assert late.total_seconds() < PACE + 1.0
        assert ack_states()["ack-1.38-kubelet-skew"] == "expired"
        assert gate.status()["upgradeable"] is False and blockers(gate, "kubelet-skew") == 1
        assert harness.metric(gate, "upgrade_readiness_acknowledgements", state="expired") == 1
        wanted = {"AcknowledgementMalformed", "AcknowledgementActive", "AcknowledgementUnknown",
                  "AcknowledgementOtherTarget", "AcknowledgementExpired", "AcknowledgementRemoved"}  # fmt: skip

        async def recorded() -> bool:
            return wanted <= {e["reason"] for e in await harness.state_events(gate)}

        await harness.eventually(recorded, what=f"Events {sorted(wanted)}")


def readiness(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # The release named: other tests' releases of the chart share this apiserver (several: ambiguous).
        [
            str(SCRIPT),
            "readiness",
            f"--kubeconfig={kubeconfig}",
            "-n",
            "kube-system",
            "--release",
            RELEASE,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_readiness_command_exit_codes_and_json(
    kubeconfig: str, kube: client.Kube, nodes: cluster.Nodes
) -> None:
    await master(nodes)
    worker = f"w-{uuid.uuid4().hex[:6]}"
    await nodes.create(worker, version="v1.34.0")
    done = await asyncio.to_thread(readiness, kubeconfig, "--checks=kubelet-skew", "--output=json")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["upgradeable"] is False and document["target"] == "1.38"
    assert [c["status"] for c in document["checks"]] == ["blocked"]

    table = await asyncio.to_thread(readiness, kubeconfig, "--checks=kubelet-skew", "--target-version=v1.37")
    assert table.returncode == 0, table.stdout + table.stderr  # 1.34 is 3 minors below 1.37
    assert table.stdout.startswith("Upgradeable to 1.37 (--target-version 1.37)"), table.stdout
    assert "kubelet-skew  pass" in table.stdout

    for bad in (["--target-version=soon"], ["--checks=kubelet-skew,nope"], ["--output=csv"]):
        wrong = await asyncio.to_thread(readiness, kubeconfig, *bad)
        assert wrong.returncode == 2, (bad, wrong.stdout, wrong.stderr)
    saved = await state.read(
        kube, namespace="kube-system", name="kube-upgrade-controllers-upgrade-readiness-state"
    )
    assert saved.resource_version is None  # read-only: no state written


async def test_every_address_of_the_kubernetes_endpointslices_is_read(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    """Apiservers behind the kubernetes Service are each read at their own address (an IPv4 and an IPv6
    one here, where nothing answers): the check is unknown with each one's reason, not passed, not blocked.
    (A live second apiserver cannot be put behind it here: an EndpointSlice may hold neither a loopback
    address nor "localhost", and the fixture listens on loopback only.)"""
    await master(nodes)
    slices = resources.ENDPOINT_SLICES
    names = []
    for family, address in (("IPv4", "192.0.2.10"), ("IPv6", "2001:db8::10")):
        names.append(f"kubernetes-{family.lower()}-{uuid.uuid4().hex[:6]}")
        await kube.create(
            slices.path(namespace="default"),
            {
                "metadata": {"name": names[-1], "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": family,
                "endpoints": [{"addresses": [address]}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            },
        )
    try:
        cfg = config(namespace, "removed-apis")
        async with harness.running(controller.UpgradeReadiness, kube, cfg) as gate:
            await harness.eventually(
                lambda: status_is(gate, "removed-apis", "unknown"), timeout=60, what="unknown"
            )
            reason = result(gate, "removed-apis")["reason"]
            assert "https://192.0.2.10:6443: cannot read /metrics" in reason, reason
            assert "https://[2001:db8::10]:6443: cannot read /metrics" in reason, reason
            assert gate.status()["upgradeable"] is True  # unknown is no blocker without --strict
            assert harness.metric(gate, "upgrade_readiness_apiserver_scrapes_total", outcome="failed")
    finally:
        for name in names:
            await kube.delete(slices.path(namespace="default", name=name))

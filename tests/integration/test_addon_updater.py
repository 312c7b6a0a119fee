"""addon-updater on the real control plane, with the example bundles of the repository.

The example bundles name ``kube-system``; each test copies them with its own namespace instead (and its own
Service IP through the DNS_SERVICE_IP variable), so tests never see each other's objects. The fixture runs no
controller-manager: a test that needs available Deployments plays it by patching their status subresource.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from controllers.addon_updater import controller, logic
from controllers.agreement import version
from controllers.bundles import documents, model, policy
from controllers.kube import client, resources
from e2e import cluster
from tests import addon_dir, harness

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "bundles"
CM = resources.CONFIGMAPS
CRD_NAME = "forwardzones.dns.addons.example.io"
FORWARDZONES = resources.Resource("dns.addons.example.io", "v1", "forwardzones", namespaced=True)
PDBS = resources.Resource("policy", "v1", "poddisruptionbudgets", namespaced=True)
SERVICES = resources.Resource("", "v1", "services", namespaced=True)
_service_ips = itertools.count(20)


def v(text: str) -> version.Version:
    parsed = version.parse_version(text)
    assert parsed is not None
    return parsed


@pytest.fixture
def bundle_root(tmp_path: pathlib.Path, namespace: str) -> pathlib.Path:
    """A copy of the example bundles whose objects live in this test's namespace."""
    root = tmp_path / "bundles"
    for minor in ("1.35", "1.36"):
        (root / minor).mkdir(parents=True)
        for source in (EXAMPLES / minor).glob("*.yaml"):
            text = source.read_text().replace("namespace: kube-system", f"namespace: {namespace}")
            (root / minor / source.name).write_text(text)
    return root


# The controllers' own namespace (state, Events): never one a bundle may write to. The bundles' objects go to
# each test's namespace.
STATE_NAMESPACE = "default"
# The example bundles' kinds: the default policy and their custom resource.
EXAMPLE_RESOURCES = (*policy.DEFAULT_RESOURCES, "forwardzones.dns.addons.example.io")


def make_config(bundle_root: pathlib.Path, **overrides: Any) -> controller.AddonUpdaterConfig:
    """An updater of the bundles under ``bundle_root`` (whose objects name their namespace), its state in
    STATE_NAMESPACE."""
    values: dict[str, Any] = {
        "namespace": STATE_NAMESPACE,
        "allowed_resources": EXAMPLE_RESOURCES,
        "release": f"t{uuid.uuid4().hex[:8]}",
        "bundle_dir": str(bundle_root),
        "variables": ("CLUSTER_DOMAIN=cluster.local", f"DNS_SERVICE_IP=10.0.0.{next(_service_ips)}"),
        "health_timeout_seconds": 10.0,
        "crd_timeout_seconds": 30.0,
        "settle_seconds": 0.2,
        **overrides,
    }
    return controller.AddonUpdaterConfig(**values)


def make_updater(kube: client.Kube, cfg: controller.AddonUpdaterConfig) -> controller.AddonUpdater:
    return harness.build(controller.AddonUpdater, kube, cfg)


metric = harness.metric


async def state_of(updater: controller.AddonUpdater) -> dict[str, str]:
    return dict((await updater.ctx.read_state()).data)


async def event_reasons(kube: client.Kube, updater: controller.AddonUpdater) -> list[tuple[str, str]]:
    page = await kube.get(resources.EVENTS.path(namespace=updater.ctx.config.namespace))
    return [
        (e["reason"], e["note"])
        for e in page.get("items", [])
        if e["regarding"]["name"] == updater.ctx.state_name
    ]


async def get_or_none(kube: client.Kube, path: str) -> client.JSON | None:
    try:
        return await kube.get(path)
    except client.ApiError as error:
        if error.not_found:
            return None
        raise


async def snapshot(kube: client.Kube, namespace: str) -> dict[str, str]:
    """name → resourceVersion of everything a switch could touch in ``namespace`` (and the CRD)."""
    found: dict[str, str] = {}
    for resource in (CM, resources.DEPLOYMENTS, SERVICES, PDBS, FORWARDZONES):
        try:
            page = await kube.get(resource.path(namespace=namespace))
        except client.ApiError as error:
            if error.not_found:  # the CRD is not installed (yet)
                continue
            raise
        for item in page["items"]:
            meta = item["metadata"]
            if resource is CM and meta["name"].endswith("-state"):
                continue  # the controller's own state ConfigMap records each attempt
            found[f"{resource.plural}/{meta['name']}"] = meta["resourceVersion"]
    crd = await get_or_none(kube, resources.CRDS.path(name=CRD_NAME))
    found["crd"] = crd["metadata"]["resourceVersion"] if crd else ""
    return found


@contextlib.asynccontextmanager
async def fake_controller_manager(kube: client.Kube, namespace: str) -> AsyncIterator[None]:
    """Marks every Deployment in ``namespace`` available, as the deployment controller would."""

    async def loop() -> None:
        while True:
            page = await kube.get(resources.DEPLOYMENTS.path(namespace=namespace))
            for item in page["items"]:
                meta, status = item["metadata"], item.get("status") or {}
                if status.get("observedGeneration") != meta["generation"]:
                    await mark_available(kube, namespace, meta["name"], generation=meta["generation"])
            await asyncio.sleep(0.1)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def mark_available(kube: client.Kube, namespace: str, name: str, *, generation: int) -> None:
    status = {"observedGeneration": generation, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2}
    status["availableReplicas"] = 2
    await kube.patch(
        resources.DEPLOYMENTS.path(namespace=namespace, name=name, subresource="status"), {"status": status}
    )


async def wait_for_health(updater: controller.AddonUpdater, health: str) -> None:
    async def reached() -> bool:
        return (await state_of(updater)).get("health") == health

    await harness.eventually(reached, timeout=30, interval=0.1, what=f"bundle health {health}")


async def wait_for_switch(
    updater: controller.AddonUpdater, *, minor: str, version: str, timeout: float = 60
) -> dict[str, Any]:
    """Waits until the running controller finished a round that left ``minor`` in place for ``version``;
    returns that round's outcome (its /status)."""

    async def switched() -> bool:
        data = await state_of(updater)
        return data.get("version") == version and updater.status()["minor"] == minor

    await harness.eventually(switched, timeout=timeout, interval=0.1, what=f"bundle {minor} for {version}")
    data = await state_of(updater)
    assert data["bundleMinor"] == minor and data["phase"] == "Done", data
    return updater.status()


# --- apply target, driven by the agreement ------------------------------------------------------------------


async def test_agreement_switches_bundles_up_and_back_down(
    kube: client.Kube, namespace: str, bundle_root: pathlib.Path, nodes: cluster.Nodes
) -> None:
    run_label = f"addon-test-{uuid.uuid4().hex[:8]}"
    cfg = make_config(bundle_root, master_selectors=(f"{cluster.CONTROL_PLANE},{run_label}",))
    other = f"{namespace}-other"[:63]
    await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": other}})
    # Look-alikes without the bundle label: the 1.35-only object's name elsewhere, and its data here.
    lookalike_elsewhere = await kube.create(
        CM.path(namespace=other), {"metadata": {"name": "dns-autoscaler"}, "data": {"linear": "{}"}}
    )
    lookalike_here = await kube.create(
        CM.path(namespace=namespace),
        {
            "metadata": {"name": "dns-autoscaler-custom", "labels": {"k8s-app": "kube-dns"}},
            "data": {"linear": "{}"},
        },
    )
    await nodes.create(f"{run_label}-m1", version="v1.35.2", master=True, labels={run_label: ""})
    await nodes.create(f"{run_label}-m2", version="v1.35.2", master=True, labels={run_label: ""})

    async with (
        harness.running(controller.AddonUpdater, kube, cfg) as updater,
        fake_controller_manager(kube, namespace),
    ):
        first = await wait_for_switch(updater, minor="1.35", version="v1.35.2")
        assert first["result"] == "switched"
        await wait_for_health(updater, "Healthy")
        order = first["applied"]
        assert order.index(f"CustomResourceDefinition.apiextensions.k8s.io {CRD_NAME}") < order.index(
            f"ForwardZone.dns.addons.example.io {namespace}/corp"
        )
        assert await kube.get(CM.path(namespace=namespace, name="dns-autoscaler"))
        installed_135 = await kube.get(FORWARDZONES.path(namespace=namespace, name="corp"))
        assert "maxConcurrent" not in installed_135["spec"]

        # One master upgraded: no agreement, nothing happens; both upgraded: switch to 1.36.
        await nodes.set_status(f"{run_label}-m1", version="v1.36.0")
        await asyncio.sleep(0.5)
        assert (await state_of(updater))["bundleMinor"] == "1.35"
        await nodes.set_status(f"{run_label}-m2", version="v1.36.0")
        outcome = await wait_for_switch(updater, minor="1.36", version="v1.36.0")
        await wait_for_health(updater, "Healthy")
        data = await state_of(updater)
        assert outcome["pruned"] == [f"ConfigMap {namespace}/dns-autoscaler"]
        assert await get_or_none(kube, CM.path(namespace=namespace, name="dns-autoscaler")) is None
        pdb = await kube.get(PDBS.path(namespace=namespace, name="coredns"))
        assert pdb["metadata"]["labels"][logic.BUNDLE_LABEL] == cfg.release
        assert pdb["metadata"]["labels"][logic.ADDON_MANAGER_MODE_LABEL] == "Reconcile"
        zone = await kube.get(FORWARDZONES.path(namespace=namespace, name="corp"))
        assert zone["spec"]["maxConcurrent"] == 150  # needs the 1.36 CRD schema: applied after it
        deployment = await kube.get(resources.DEPLOYMENTS.path(namespace=namespace, name="coredns"))
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.12.1")
        assert [f["manager"] for f in deployment["metadata"]["managedFields"]].count("addon-updater") == 1
        corefile = (await kube.get(CM.path(namespace=namespace, name="coredns")))["data"]["Corefile"]
        assert "kubernetes cluster.local in-addr.arpa" in corefile
        # Untouched: same resourceVersion as created.
        for before, path in (
            (lookalike_elsewhere, CM.path(namespace=other, name="dns-autoscaler")),
            (lookalike_here, CM.path(namespace=namespace, name="dns-autoscaler-custom")),
        ):
            after = await kube.get(path)
            assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

        digest = data["bundleDigest"]
        assert metric(updater, "addon_updater_bundle_info", minor="1.36", digest=digest[:12]) == 1
        assert metric(updater, "addon_updater_bundle_info", minor="1.35", digest=first["digest"][:12]) is None
        assert metric(updater, "addon_updater_switches_total", result="success") == 2
        assert metric(updater, "addon_updater_objects_pruned_total") == 1
        assert metric(updater, "addon_updater_objects_applied_total") == 7 + 7
        assert metric(updater, "addon_updater_bundle_healthy") == 1
        assert (metric(updater, "addon_updater_last_switch_timestamp_seconds") or 0) > time.time() - 60
        reasons = [reason for reason, _ in await event_reasons(kube, updater)]
        assert reasons.count("BundleSwitched") == 2

        # Masters roll back to 1.35: the 1.35 bundle comes back, the 1.36-only PDB goes.
        for name in (f"{run_label}-m1", f"{run_label}-m2"):
            await nodes.set_status(name, version="v1.35.3")
        await wait_for_switch(updater, minor="1.35", version="v1.35.3")
        assert await get_or_none(kube, PDBS.path(namespace=namespace, name="coredns")) is None
        assert await kube.get(CM.path(namespace=namespace, name="dns-autoscaler"))
        zone = await kube.get(FORWARDZONES.path(namespace=namespace, name="corp"))
        assert "maxConcurrent" not in zone["spec"]
        deployment = await kube.get(resources.DEPLOYMENTS.path(namespace=namespace, name="coredns"))
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.12.0")
        assert metric(updater, "addon_updater_switches_total", result="success") == 3


async def test_resync_applies_a_changed_bundle_without_an_agreement_change(
    kube: client.Kube, namespace: str, bundle_root: pathlib.Path, nodes: cluster.Nodes, tmp_path: pathlib.Path
) -> None:
    run_label = f"addon-resync-{uuid.uuid4().hex[:8]}"
    target = tmp_path / "addons"
    cfg = make_config(
        bundle_root,
        target="directory",
        target_dir=str(target),
        resync_seconds=0.3,
        master_selectors=(f"{cluster.CONTROL_PLANE},{run_label}",),
    )
    await nodes.create(f"{run_label}-m1", version="v1.36.0", master=True, labels={run_label: ""})
    async with harness.running(controller.AddonUpdater, kube, cfg) as updater:
        await wait_for_switch(updater, minor="1.36", version="v1.36.0")
        digest = (await state_of(updater))["bundleDigest"]
        await asyncio.sleep(1)  # a few resync rounds: the same content is not switched again
        assert metric(updater, "addon_updater_switches_total", result="success") == 1
        corefile = bundle_root / "1.36" / "coredns.yaml"
        corefile.write_text(corefile.read_text().replace("cache 30", "cache 60"))

        async def switched_again() -> bool:
            return (await state_of(updater))["bundleDigest"] != digest

        await harness.eventually(switched_again, timeout=20, interval=0.1, what="the changed bundle")
        assert "cache 60" in addon_dir.listing(target)["coredns.yaml"]
        assert metric(updater, "addon_updater_switches_total", result="success") == 2


async def test_unavailable_deployment_is_reported_unhealthy_after_the_timeout(
    kube: client.Kube, namespace: str, bundle_root: pathlib.Path
) -> None:
    cfg = make_config(bundle_root, health_timeout_seconds=4.0)
    updater = make_updater(kube, cfg)
    outcome = await updater.reconcile(v("v1.36.0"))
    switched = time.monotonic()
    assert outcome.result == "switched"  # without waiting for the workloads: they are only Progressing
    key = model.ObjectKey("apps", "Deployment", namespace, "coredns")
    assert outcome.unavailable == {key: "the controller has not observed the latest spec"}
    assert outcome.health == "Progressing"
    assert (await state_of(updater))["health"] == "Progressing"
    assert "BundleUnhealthy" not in [reason for reason, _ in await event_reasons(kube, updater)]

    # The next rounds (the daemon's sync comes back every HEALTH_POLL_SECONDS) judge it after the timeout.
    await asyncio.sleep(max(0.0, 4.1 - (time.monotonic() - switched)))
    outcome = await updater.reconcile(v("v1.36.0"))
    assert outcome.result == "current" and outcome.health == "Unhealthy"
    assert outcome.unavailable == {key: "the controller has not observed the latest spec"}
    assert metric(updater, "addon_updater_bundle_healthy") == 0
    assert metric(updater, "addon_updater_workloads_unavailable") == 1
    assert (await state_of(updater))["health"] == "Unhealthy"
    notes = [note for reason, note in await event_reasons(kube, updater) if reason == "BundleUnhealthy"]
    assert len(notes) == 1 and f"Deployment.apps {namespace}/coredns" in notes[0]

    # The deployment controller catches up: the next round (resync) sees it available, nothing re-applied.
    deployment = await kube.get(resources.DEPLOYMENTS.path(namespace=namespace, name="coredns"))
    await mark_available(kube, namespace, "coredns", generation=deployment["metadata"]["generation"])
    again = await updater.reconcile(v("v1.36.0"))
    assert again.result == "current" and again.unavailable == {}
    assert metric(updater, "addon_updater_bundle_healthy") == 1
    assert metric(updater, "addon_updater_switches_total", result="success") == 1


# --- validation failures change nothing ---------------------------------------------------------------------


def break_bundle(root: pathlib.Path, case: str) -> None:
    coredns = root / "1.36" / "coredns.yaml"
    if case == "invalid-yaml":
        coredns.write_text(coredns.read_text() + "\n---\nkind: ConfigMap\nmetadata: {name: broken\n")
    elif case == "billion-laughs":  # 10**9 strings once expanded: refused while its nodes are still few
        levels = "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
        (root / "1.36" / "zz-laughs.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  l0: &l0 [lol, lol]\n" + levels
        )
    elif case == "no-kind":
        (root / "1.36" / "zz-extra.yaml").write_text("apiVersion: v1\nmetadata:\n  name: kindless\n")
    elif case == "dry-run-rejected":
        coredns.write_text(
            coredns.read_text().replace("port: 9153, protocol: TCP", "port: 9153, protocol: QUIC")
        )
    else:  # pragma: no cover
        raise AssertionError(case)


EXPECTED_REASON = {
    "invalid-yaml": "parse",
    "billion-laughs": "limit",
    "no-kind": "invalid",
    "dry-run-rejected": "dry_run",
}


@pytest.mark.parametrize("case", list(EXPECTED_REASON))
async def test_invalid_bundle_changes_nothing(
    kube: client.Kube,
    namespace: str,
    bundle_root: pathlib.Path,
    tmp_path: pathlib.Path,
    case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = tmp_path / "addons"
    apply_updater = make_updater(kube, make_config(bundle_root, health_timeout_seconds=0.0))
    directory_updater = make_updater(
        kube, make_config(bundle_root, target="directory", target_dir=str(target))
    )
    updaters = {each.ctx.config.target: each for each in (apply_updater, directory_updater)}
    for updater in updaters.values():
        assert (await updater.reconcile(v("v1.35.0"))).result == "switched"
    before_cluster = await snapshot(kube, namespace)
    before_files = addon_dir.listing(target)
    break_bundle(bundle_root, case)

    reason = EXPECTED_REASON[case]
    for mode in ("apply", "directory") if case != "dry-run-rejected" else ("apply",):
        updater = apply_updater if mode == "apply" else directory_updater
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            outcome = await updaters[mode].reconcile(v("v1.36.0"))
        assert outcome.result == "invalid", outcome.message
        assert f"({reason})" in outcome.message
        assert any(
            "is invalid" in r.getMessage() and "nothing changed" in r.getMessage() for r in caplog.records
        )
        assert metric(updater, "addon_updater_validation_failures_total", reason=reason) == 1
        assert metric(updater, "addon_updater_switches_total", result="failed") == 1
        notes = [note for r, note in await event_reasons(kube, updater) if r == "BundleInvalid"]
        assert len(notes) == 1 and f"({reason})" in notes[0]
        state = await state_of(updater)
        assert state["phase"] == "Invalid" and state["bundleMinor"] == "1.35"
        assert state["lastError"] == outcome.message
        assert await snapshot(kube, namespace) == before_cluster
        assert addon_dir.listing(target) == before_files
        assert (
            metric(updater, "addon_updater_bundle_info", minor="1.35", digest=state["bundleDigest"][:12]) == 1
        )

    if case == "dry-run-rejected":
        assert "coredns.yaml document 4" in outcome.message and "QUIC" in outcome.message
    # Reported once: the same broken bundle for the same version is not retried on every resync.
    again = await updaters["apply"].reconcile(v("v1.36.0"))
    assert again.result == "invalid"
    assert len([r for r, _ in await event_reasons(kube, apply_updater) if r == "BundleInvalid"]) == 1


# --- directory target ---------------------------------------------------------------------------------------


def rendered(root: pathlib.Path, minor: str, cfg: controller.AddonUpdaterConfig) -> dict[str, str]:
    files = tuple(
        model.BundleFile(name=p.name, text=p.read_text()) for p in sorted((root / minor).glob("*.yaml"))
    )
    bundle = model.Bundle(minor=minor, source="", files=files)
    loaded = documents.load(bundle, variables=model.parse_variables(cfg.variables))
    return {f.name: f.text for f in loaded.files}


@dataclasses.dataclass
class Reader:
    """Lists and reads the target directory in a loop, as kube-addon-manager would, from another thread."""

    target: pathlib.Path
    bundles: dict[str, dict[str, str]]
    seen: dict[str, int] = dataclasses.field(default_factory=dict)
    mixed: list[dict[str, str]] = dataclasses.field(default_factory=list)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                files = addon_dir.listing(self.target)
            except FileNotFoundError:
                continue  # the very first switch adopts a plain directory: an instant without one
            matches = [minor for minor, expected in self.bundles.items() if files == expected]
            if matches:
                self.seen[matches[0]] = self.seen.get(matches[0], 0) + 1
            else:
                self.mixed.append(files)


@contextlib.contextmanager
def reading(reader: Reader) -> Iterator[Reader]:
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    try:
        yield reader
    finally:
        reader.stop.set()
        thread.join(10)


async def test_directory_switch_is_atomic_for_a_concurrent_reader(
    kube: client.Kube, namespace: str, bundle_root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    target = tmp_path / "etc" / "addons"
    target.mkdir(parents=True)
    (target / "old-addon.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: before}\n")
    cfg = make_config(bundle_root, target="directory", target_dir=str(target))
    updater = make_updater(kube, cfg)
    bundles = {minor: rendered(bundle_root, minor, cfg) for minor in ("1.35", "1.36")}
    bundles["before"] = {"old-addon.yaml": (target / "old-addon.yaml").read_text()}
    assert (await updater.reconcile(v("v1.35.0"))).result == "switched"

    switches = 0
    with reading(Reader(target=target, bundles=bundles)) as reader:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 6
        while loop.time() < deadline or not {"1.35", "1.36"} <= set(reader.seen):
            agreed = "v1.36.0" if switches % 2 == 0 else "v1.35.0"
            outcome = await updater.reconcile(v(agreed))
            assert outcome.result == "switched", outcome.message
            switches += 1
            await asyncio.sleep(0.01)
    assert reader.mixed == []
    assert switches >= 10
    assert reader.seen["1.35"] > 10 and reader.seen["1.36"] > 10
    # The mode labels of kube-addon-manager are in the files as the bundle wrote them.
    assert "addonmanager.kubernetes.io/mode: EnsureExists" in addon_dir.listing(target)["coredns.yaml"]
    # Only the current and the previous generation are kept; the adopted directory is kept aside.
    siblings = sorted(p.name for p in target.parent.iterdir())
    generations = [n for n in siblings if logic.parse_generation(n)]
    assert len(generations) == 2 and os.readlink(target) in generations
    assert any(n.startswith("..adopted-addons-") for n in siblings)
    assert metric(updater, "addon_updater_switches_total", result="success") == switches + 1


async def test_missing_bundle_changes_nothing_and_nearest_lower_picks_the_closest(
    kube: client.Kube, namespace: str, bundle_root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    (bundle_root / "1.33").mkdir()
    shutil.copy(bundle_root / "1.35" / "dns-autoscaler.yaml", bundle_root / "1.33")
    target = tmp_path / "addons"
    cfg = make_config(bundle_root, target="directory", target_dir=str(target))
    strict = make_updater(kube, cfg)
    assert (await strict.reconcile(v("v1.35.0"))).result == "switched"
    before = addon_dir.listing(target), os.readlink(target)

    outcome = await strict.reconcile(v("v1.37.1"))
    assert outcome.result == "missing"
    assert (addon_dir.listing(target), os.readlink(target)) == before
    assert metric(strict, "addon_updater_bundle_missing") == 1
    state = await state_of(strict)
    assert state["phase"] == "BundleMissing" and state["bundleMinor"] == "1.35"
    assert [r for r, _ in await event_reasons(kube, strict)].count("BundleMissing") == 1

    lenient = make_updater(kube, dataclasses.replace(cfg, selection="nearestLower"))
    outcome = await lenient.reconcile(v("v1.37.1"))
    assert outcome.result == "switched" and outcome.minor == "1.36"
    assert addon_dir.listing(target) == rendered(bundle_root, "1.36", cfg)
    assert metric(lenient, "addon_updater_bundle_missing") == 0
    outcome = await lenient.reconcile(v("v1.34.0"))
    assert outcome.result == "switched" and outcome.minor == "1.33"


async def test_bundles_from_configmaps(kube: client.Kube, namespace: str, tmp_path: pathlib.Path) -> None:
    """Bundles as ConfigMaps labelled with their minor; one bundle may span several ConfigMaps."""
    for minor, parts in (("1.35", 1), ("1.36", 2)):
        files = sorted((EXAMPLES / minor).glob("*.yaml"))
        for part in range(parts):
            data = {f.name: f.read_text() for f in files[part::parts]}
            await kube.create(
                CM.path(namespace=namespace),
                {
                    "metadata": {
                        "name": f"addons-{minor.replace('.', '-')}-{part}",
                        "labels": {model.CONFIGMAP_MINOR_LABEL: minor},
                    },
                    "data": {**data, "README.md": "not a bundle file"},
                },
            )
    await kube.create(
        CM.path(namespace=namespace),
        {"metadata": {"name": "addon-vars"}, "data": {"CLUSTER_DOMAIN": "corp.local", "DNS_SERVICE_IP": "x"}},
    )
    target = tmp_path / "addons"
    cfg = make_config(
        tmp_path / "unused",
        bundle_source="configmap",
        bundle_namespace=namespace,
        target="directory",
        target_dir=str(target),
        variables=("DNS_SERVICE_IP=10.0.0.99",),
        variables_config_map="addon-vars",
    )
    updater = make_updater(kube, cfg)
    outcome = await updater.reconcile(v("v1.36.2"))
    assert outcome.result == "switched", outcome.message
    shown = addon_dir.listing(target)
    assert sorted(shown) == sorted(f.name for f in (EXAMPLES / "1.36").glob("*.yaml"))
    assert "kubernetes corp.local in-addr.arpa" in shown["coredns.yaml"]
    assert "clusterIP: 10.0.0.99" in shown["coredns.yaml"]
    assert (await state_of(updater))["bundleSource"].startswith(
        f"ConfigMap(s) {namespace}/addons-1-36-0, addons-1-36-1"
    )


async def test_dry_run_validates_and_plans_but_changes_nothing(
    kube: client.Kube, namespace: str, bundle_root: pathlib.Path
) -> None:
    cfg = make_config(bundle_root, health_timeout_seconds=0.0)
    updater = make_updater(kube, cfg)
    assert (await updater.reconcile(v("v1.35.0"))).result == "switched"
    before, state_before = await snapshot(kube, namespace), await state_of(updater)
    events_before = await event_reasons(kube, updater)

    dry_run = make_updater(kube, dataclasses.replace(cfg, dry_run=True))
    outcome = await dry_run.reconcile(v("v1.36.0"))
    assert outcome.result == "planned", outcome.message
    assert [str(k) for k in outcome.pruned] == [f"ConfigMap {namespace}/dns-autoscaler"]
    assert model.ObjectKey("policy", "PodDisruptionBudget", namespace, "coredns") in outcome.applied
    assert await snapshot(kube, namespace) == before
    assert await state_of(updater) == state_before
    assert await event_reasons(kube, updater) == events_before

    break_bundle(bundle_root, "dry-run-rejected")  # the server-side dry-run still runs in --dry-run
    assert (await dry_run.reconcile(v("v1.36.0"))).result == "invalid"
    assert await state_of(updater) == state_before


async def test_bundle_with_its_own_namespace(
    kube: client.Kube, namespace: str, tmp_path: pathlib.Path
) -> None:
    """Objects in a Namespace the bundle creates are dry-run once that Namespace exists, then applied."""
    own = f"addons-{uuid.uuid4().hex[:8]}"
    (tmp_path / "1.36").mkdir(parents=True)
    (tmp_path / "1.36" / "ingress.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ingress-config, namespace: {own}}}\n"
        f"data: {{proxy-body-size: 8m}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {own}}}\n"
    )
    updater = make_updater(kube, make_config(tmp_path))
    outcome = await updater.reconcile(v("v1.36.0"))
    assert outcome.result == "switched", outcome.message
    assert [str(k) for k in outcome.applied] == [f"Namespace {own}", f"ConfigMap {own}/ingress-config"]
    assert (await kube.get(CM.path(namespace=own, name="ingress-config")))["data"] == {
        "proxy-body-size": "8m"
    }


# --- the console script -------------------------------------------------------------------------------------


async def test_once_console_script(
    kube: client.Kube,
    kubeconfig: str,
    namespace: str,
    bundle_root: pathlib.Path,
    nodes: cluster.Nodes,
    tmp_path: pathlib.Path,
) -> None:
    run_label = f"addon-once-{uuid.uuid4().hex[:8]}"
    await nodes.create(f"{run_label}-m1", version="v1.36.1", master=True, labels={run_label: ""})
    target = tmp_path / "addons"
    common = [
        sys.executable, "-m", "controllers.addon_updater", "--once", "--kubeconfig", kubeconfig,
        "--namespace", STATE_NAMESPACE, "--bundle-dir", str(bundle_root), "--target", "directory",
        "--allowed-resources", ",".join(EXAMPLE_RESOURCES),
        "--target-dir", str(target), "--master-selectors", f"{cluster.CONTROL_PLANE},{run_label}",
        "--log-format", "text",
    ]  # fmt: skip
    env = {**os.environ, "ADDON_UPDATER_VARIABLES": "CLUSTER_DOMAIN=cluster.local,DNS_SERVICE_IP=10.0.0.98"}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(common, env=env, capture_output=True, text=True, timeout=90)

    real = await asyncio.to_thread(run)
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["minor"] == "1.36"
    assert "coredns-pdb.yaml" in addon_dir.listing(target)

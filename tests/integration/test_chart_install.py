"""The chart installed into the real fixture, and each controller run with its chart ServiceAccount's token.

``helm install`` applies every object server-side (the apiserver validates each one). No kubelet or
controller-manager runs, so the pods never start: that is expected; the controllers run here as local
processes instead, authenticated as their ServiceAccounts (TokenRequest), which proves their RBAC suffices.
SubjectAccessReviews prove what they may not do.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import pytest
import yaml

from controllers.kube import client, resources
from controllers.runtime import config
from e2e import cluster, controlplane, monitoring
from tests import chart_tools as ct
from tests.integration import uso_helpers
from tests.integration.kube_system import KubeSystem

BIN = pathlib.Path(sys.executable).parent
CRDS = resources.CRDS
TAINT_KEY = "upgrade.kube-upgrade-controllers.io/outdated"
MASTER_VERSION, OLD_VERSION = "v1.36.3", "v1.35.2"

# The controllers with two replicas (leader election, PDBs), except the watchdog: with one replica it
# needs no Lease, so it may write nothing but Events.
INSTALL_VALUES: dict[str, Any] = {
    "config": {"minMasters": 1, "settleSeconds": 0},
    "addonUpdater": {
        "enabled": True,
        "replicas": 2,
        "bundles": {"image": "registry.example/kube-upgrade-addons:v1.36"},
        "config": {"healthTimeoutSeconds": 1, "crdTimeoutSeconds": 30},
        # (policy.namespaces: the install's own add-on namespace, set by the fixture.)
        "policy": {
            "namespacedResources": [
                *yaml.safe_load((ct.CHART / "values.yaml").read_text())["addonUpdater"]["policy"][
                    "namespacedResources"
                ],
                {"apiGroups": ["dns.addons.example.io"], "resources": ["forwardzones"]},
            ]
        },
    },
    "usoRunner": {"replicas": 2},
    "nodeTainter": {"replicas": 2},
    "leaderWatchdog": {"replicas": 1},
    "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "prom"}},
    "prometheusRule": {"enabled": True, "additionalLabels": {"release": "prom"}},
    "grafanaDashboard": {"enabled": True},
    "alertmanagerConfig": {"enabled": True},
}

# The Prometheus Operator's two CRDs, reduced to what the apiserver needs to accept the chart's objects.
MONITORING_KINDS = {"servicemonitors": "ServiceMonitor", "prometheusrules": "PrometheusRule"}


def monitoring_crd(plural: str, kind: str) -> client.JSON:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"plural": plural, "kind": kind},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


class Installed:
    def __init__(self, plane: controlplane.ControlPlane, root: pathlib.Path) -> None:
        self.plane = plane
        self.root = root
        self.release = f"kuc{uuid.uuid4().hex[:6]}"
        self.namespace = f"chart-{uuid.uuid4().hex[:6]}"
        self.fullname = f"{self.release}-kube-upgrade-controllers"
        self.addons = (
            f"{self.namespace}-addons"  # where its bundles' objects go (addonUpdater.policy.namespaces)
        )
        self.manifest: list[dict[str, Any]] = []

    def values(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with addon-updater's policy naming this install's add-on namespace."""
        addon = values.get("addonUpdater", {})
        policy = {**addon.get("policy", {}), "namespaces": [self.addons]}
        return {**values, "addonUpdater": {**addon, "policy": policy}}

    async def create_addons_namespace(self, kube: client.Kube) -> None:
        """The add-on namespace exists before the install (its RoleBinding goes there)."""
        await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": self.addons}})

    def name(self, controller: str) -> str:
        return f"{self.fullname}-{controller}"

    def helm(self, *args: str | pathlib.Path, check: bool = True) -> str:
        return ct.helm(*args, "--kubeconfig", self.plane.kubeconfig, check=check, timeout=300).stdout


async def ensure_monitoring_crds(kube: client.Kube) -> None:
    # The AlertmanagerConfig's CRD is the Operator's own (its schema checks the inhibit rules' matchers).
    crds = [monitoring_crd(plural, kind) for plural, kind in MONITORING_KINDS.items()]
    crds.append(monitoring.crd("alertmanagerconfigs"))
    for body in crds:
        try:
            await kube.create(CRDS.path(), body)
        except client.ApiError as error:
            if not error.already_exists:
                raise
    for body in crds:  # served once Established (the apiserver's own controller sets it)
        await uso_helpers.established(kube, body["metadata"]["name"])


@pytest.fixture(scope="module")
def installed(
    control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    """The chart installed once for this module (everything enabled), uninstalled afterwards."""
    setup = Installed(control_plane, tmp_path_factory.mktemp("chart"))

    async def prepare() -> None:
        async with await client.connect(kubeconfig=str(control_plane.kubeconfig)) as kube:
            await ensure_monitoring_crds(kube)
            await setup.create_addons_namespace(kube)

    asyncio.run(prepare())
    values = setup.root / "values.yaml"
    values.write_text(yaml.safe_dump(setup.values(INSTALL_VALUES)))
    setup.helm("install", setup.release, ct.CHART, "--namespace", setup.namespace, "--create-namespace",
               "-f", values)  # fmt: skip
    setup.manifest = [
        doc
        for doc in yaml.safe_load_all(setup.helm("get", "manifest", setup.release, "-n", setup.namespace))
        if doc
    ]
    yield setup
    setup.helm("uninstall", setup.release, "--namespace", setup.namespace, check=False)


InstalledT = TypeVar("InstalledT", bound=Installed)


def install_each(
    kind: type[InstalledT],
    plane: controlplane.ControlPlane,
    factory: pytest.TempPathFactory,
    installs: Mapping[str, dict[str, Any]],
) -> Iterator[dict[str, InstalledT]]:
    """The chart installed once per value set (each with its add-on namespace), uninstalled afterwards: the
    body of a module fixture (``yield from``)."""
    done: dict[str, InstalledT] = {}
    try:
        for name, values in installs.items():
            setup = kind(plane, factory.mktemp(name))

            async def prepare(setup: InstalledT = setup) -> None:
                async with await client.connect(kubeconfig=str(plane.kubeconfig)) as kube:
                    await setup.create_addons_namespace(kube)

            asyncio.run(prepare())
            path = setup.root / "values.yaml"
            path.write_text(yaml.safe_dump(setup.values(values)))
            setup.helm("install", setup.release, ct.CHART, "--namespace", setup.namespace, "--create-namespace",
                       "-f", path)  # fmt: skip
            manifest = setup.helm("get", "manifest", setup.release, "-n", setup.namespace)
            setup.manifest = [doc for doc in yaml.safe_load_all(manifest) if doc]
            done[name] = setup
        yield done
    finally:
        for setup in done.values():
            setup.helm("uninstall", setup.release, "-n", setup.namespace, "--wait", check=False)


def object_path(obj: Mapping[str, Any]) -> str:
    group, _, version = obj["apiVersion"].rpartition("/")
    plural = obj["kind"].lower() + ("es" if obj["kind"].endswith("s") else "s")
    plural = {"poddisruptionbudgets": "poddisruptionbudgets", "endpointses": "endpoints",
              "networkpolicys": "networkpolicies"}.get(plural, plural)  # fmt: skip
    namespaced = "namespace" in obj["metadata"]
    resource = resources.Resource(group, version, plural, namespaced=namespaced)
    return resource.path(namespace=obj["metadata"].get("namespace"), name=obj["metadata"]["name"])


async def test_install_creates_every_object_server_side(installed: Installed, kube: client.Kube) -> None:
    kinds = sorted({obj["kind"] for obj in installed.manifest})
    assert kinds == sorted(
        ["AlertmanagerConfig", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "PodDisruptionBudget",
         "PrometheusRule", "Role", "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor",
         "FlowSchema", "PriorityLevelConfiguration"]
    )  # fmt: skip
    for obj in installed.manifest:
        live = await kube.get(object_path(obj))
        assert live["metadata"]["labels"]["app.kubernetes.io/instance"] == installed.release
    status = json.loads(installed.helm("status", installed.release, "-n", installed.namespace, "-o", "json"))
    assert status["info"]["status"] == "deployed"
    # The helm test hook is created only by `helm test` (its pod could never run here): validate it with a
    # server-side dry-run instead.
    (hook,) = [doc for doc in yaml.safe_load_all(installed.helm("get", "hooks", installed.release, "-n",
                                                                installed.namespace)) if doc]  # fmt: skip
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"
    created = await kube.create(resources.PODS.path(namespace=installed.namespace), hook, dry_run=True)
    # One /readyz URL per enabled controller (all but verdict-relay, a management cluster's).
    assert len(created["spec"]["containers"][0]["args"]) == len(ct.CONTROLLERS) - 1


async def token_kubeconfig(installed: Installed, kube: client.Kube, controller: str) -> pathlib.Path:
    """A kubeconfig that authenticates as the controller's ServiceAccount, with a token from TokenRequest."""
    return await cluster.service_account_kubeconfig(
        kube, server=installed.plane.server, ca=installed.plane.pki / "ca.crt", namespace=installed.namespace,
        name=installed.name(controller), path=installed.root / f"{controller}.kubeconfig",
    )  # fmt: skip


async def installed_config(installed: Installed, kube: client.Kube, controller: str) -> pathlib.Path:
    """The config file exactly as the chart installed it (its ConfigMap)."""
    cm = await kube.get(
        resources.CONFIGMAPS.path(namespace=installed.namespace, name=installed.name(controller))
    )
    target = installed.root / f"{controller}.yaml"
    target.write_text(cm["data"]["config.yaml"])
    return target


async def run_as_service_account(
    installed: Installed, kube: client.Kube, controller: str, *args: str, timeout: float = 240
) -> tuple[int, str, str]:
    kubeconfig = await token_kubeconfig(installed, kube, controller)
    config = await installed_config(installed, kube, controller)
    process = await asyncio.create_subprocess_exec(
        str(BIN / controller), "--config", str(config), "--kubeconfig", str(kubeconfig), "--once",
        "--log-format", "text", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
    assert process.returncode is not None
    text_err = err.decode()
    assert "forbidden" not in text_err.lower() and " 403" not in text_err, text_err
    return process.returncode, out.decode(), text_err


@pytest.fixture
async def agreed_cluster(nodes: cluster.Nodes) -> tuple[str, str]:
    """One master at MASTER_VERSION and one worker behind it: the masters agree."""
    suffix = uuid.uuid4().hex[:6]
    master, worker = f"chart-master-{suffix}", f"chart-worker-{suffix}"
    await nodes.create(master, version=MASTER_VERSION, master=True)
    await nodes.create(worker, version=OLD_VERSION)
    return master, worker


async def test_node_tainter_runs_with_its_service_account(
    installed: Installed, kube: client.Kube, agreed_cluster: tuple[str, str]
) -> None:
    _, worker = agreed_cluster
    code, out, err = await run_as_service_account(installed, kube, "node-tainter")
    assert code == 0, out + err
    taints = (await kube.get(resources.NODES.path(name=worker)))["spec"].get("taints", [])
    assert TAINT_KEY in [t["key"] for t in taints]  # (beside the node.kubernetes.io/not-ready of admission)


async def test_uso_runner_runs_with_its_service_account(
    installed: Installed, kube: client.Kube, agreed_cluster: tuple[str, str]
) -> None:
    code, out, err = await run_as_service_account(installed, kube, "uso-runner")
    assert code == 0, out + err
    state = await kube.get(
        resources.CONFIGMAPS.path(namespace=installed.namespace, name=f"{installed.name('uso-runner')}-state")
    )
    assert state["data"]["version"] == MASTER_VERSION, state["data"]


async def test_leader_watchdog_runs_with_its_service_account(
    installed: Installed, kube: client.Kube, agreed_cluster: tuple[str, str]
) -> None:
    # Exit 1 means a critical finding (the fixture's apiserver runs on no master Node); any API error would
    # have failed the run before it printed its status.
    code, out, err = await run_as_service_account(installed, kube, "leader-watchdog")
    assert code in (0, 1), out + err
    assert isinstance(json.loads(out), dict), out


async def test_addon_updater_runs_with_its_service_account(
    installed: Installed, kube: client.Kube, agreed_cluster: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    bundles = tmp_path / "bundles"
    for minor in ("1.35", "1.36"):
        (bundles / minor).mkdir(parents=True)
        for source in (ct.REPO / "examples" / "bundles" / minor).glob("*.yaml"):
            text = source.read_text().replace("namespace: kube-system", f"namespace: {installed.addons}")
            (bundles / minor / source.name).write_text(text)
    code, out, err = await run_as_service_account(
        installed, kube, "addon-updater", "--bundle-dir", str(bundles),
        "--variables", "CLUSTER_DOMAIN=cluster.local,DNS_SERVICE_IP=10.0.0.250",
    )  # fmt: skip
    # Applied (CRD, CR, ConfigMap, Deployment, Service, PDB); the Deployment never becomes available here,
    # so the run may end "unhealthy" (exit 1) — but not on an API error.
    assert code in (0, 1), out + err
    state = await kube.get(
        resources.CONFIGMAPS.path(
            namespace=installed.namespace, name=f"{installed.name('addon-updater')}-state"
        )
    )
    assert state["data"]["version"].startswith("v1.36"), state["data"]
    await kube.get(resources.CONFIGMAPS.path(namespace=installed.addons, name="coredns"))
    await kube.get(CRDS.path(name="forwardzones.dns.addons.example.io"))
    shutil.rmtree(bundles)


async def test_upgrade_readiness_runs_with_its_service_account(
    installed: Installed, kube: client.Kube, agreed_cluster: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    (
        tmp_path / "1.37"
    ).mkdir()  # the next minor's bundle, where the chart points it (addon-updater's bundles)
    (tmp_path / "1.37" / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    code, out, err = await run_as_service_account(
        installed, kube, "upgrade-readiness", "--bundle-dir", str(tmp_path)
    )
    assert code in (0, 1), out + err  # 1: the fixture's worker may be judged a blocker; never an API error
    report = json.loads(out.strip().splitlines()[-1])
    assert report["target"] == "1.37", report
    # Every check could read what it needs: /metrics, the EndpointSlices, Pods, PDBs, CRDs, the bundle, the
    # pods and kubeadm's ConfigMaps in kube-system, PrometheusRules (a PrometheusRule that other tests left
    # may hold what alert-metrics cannot read: unknown, never forbidden).
    assert [c["check"] for c in report["checks"]] == [
        "removed-apis", "kubelet-skew", "crd-stored-versions", "drain-blockers", "addon-bundle", "feature-gates",
        "component-flags", "kubeadm-config", "alert-metrics", "component-versions",
    ]  # fmt: skip
    for check in report["checks"]:
        assert check["status"] != "unknown" or check["check"] in ("drain-blockers", "alert-metrics"), check
        assert "forbidden" not in check["reason"].lower(), check


async def test_upgrade_readiness_reads_kubeadms_objects_in_kube_system_with_its_service_account(
    installed: Installed, kube: client.Kube, agreed_cluster: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    """The release checks with the chart's grants only: a control plane's static pods (mirror pods) and
    kubeadm's ConfigMaps in kube-system, read through the Role there."""
    made = KubeSystem(kube)
    master, _ = agreed_cluster
    try:
        await made.control_planes(MASTER_VERSION, "kind-sidecar-gate", [master])
        await made.config_maps(MASTER_VERSION, "kind-sidecar-gate")
        code, out, err = await run_as_service_account(
            installed,
            kube,
            "upgrade-readiness",
            "--checks",
            "feature-gates,kubeadm-config,component-versions",
        )
    finally:
        await made.delete_all()
    assert code == 1, out + err
    checks = {c["check"]: c for c in json.loads(out.strip().splitlines()[-1])["checks"]}
    assert checks["feature-gates"]["status"] == "blocked"
    assert (
        len(checks["feature-gates"]["findings"]) == 3 + 3 + 2
    )  # the static pods, extraArgs, kubelet, kube-proxy
    assert checks["kubeadm-config"]["status"] == "pass"
    assert "(the cluster runs 3.6.8-0)" in checks["component-versions"]["findings"][0]["message"]


async def test_upgrade_readiness_writes_nothing_but_its_state_its_verdict_and_events(
    installed: Installed, kube: client.Kube
) -> None:
    gate, ns = "upgrade-readiness", installed.namespace
    for verb in ("list", "watch"):
        assert await can(installed, kube, gate, verb, "pods")
        assert await can(installed, kube, gate, verb, "poddisruptionbudgets", group="policy")
        assert await can(
            installed, kube, gate, verb, "customresourcedefinitions", group="apiextensions.k8s.io"
        )
    targets = [("", "nodes"), ("", "pods"), ("policy", "poddisruptionbudgets"), ("apiextensions.k8s.io",
               "customresourcedefinitions"), ("discovery.k8s.io", "endpointslices"), ("", "secrets")]  # fmt: skip
    for group, resource in targets:
        for verb in (*WRITE_VERBS, "escalate"):
            for namespace in ("", "kube-system"):
                assert not await can(installed, kube, gate, verb, resource, group=group, namespace=namespace)
    assert not await can(installed, kube, gate, "get", "secrets", namespace="kube-system")
    assert not await can(installed, kube, gate, "create", "pods", subresource="eviction", namespace="default")
    state, acks = f"{installed.name(gate)}-state", f"{installed.name(gate)}-acks"
    assert await can(installed, kube, gate, "update", "configmaps", namespace=ns, name=state)
    # ... and its verdict, which the upgrade gate's admission policies read (docs/upgrade-gate.md)
    assert await can(
        installed,
        kube,
        gate,
        "update",
        "configmaps",
        namespace=ns,
        name=f"{installed.fullname}-upgrade-readiness-verdict",
    )
    for verb in ("get", "list", "watch"):  # list and watch by a metadata.name field selector
        assert await can(installed, kube, gate, verb, "configmaps", namespace=ns, name=acks)
    assert not await can(installed, kube, gate, "list", "configmaps", namespace=ns)  # no other ConfigMap
    assert not await can(installed, kube, gate, "update", "configmaps", namespace=ns, name=acks)
    assert not await can(installed, kube, gate, "get", "configmaps", namespace=ns, name="other")
    # kubeadm's three ConfigMaps in kube-system, by name, read-only; no other ConfigMap there.
    for name in ("kubeadm-config", "kubelet-config", "kube-proxy"):
        for verb in ("get", "list", "watch"):
            assert await can(installed, kube, gate, verb, "configmaps", namespace="kube-system", name=name)
        assert not await can(
            installed, kube, gate, "update", "configmaps", namespace="kube-system", name=name
        )
    assert not await can(installed, kube, gate, "list", "configmaps", namespace="kube-system")
    assert not await can(installed, kube, gate, "get", "configmaps", namespace="kube-system", name="coredns")
    # PrometheusRules, read-only (alert-metrics); never nodes/proxy (the kubelets' own configuration).
    for verb in ("get", "list", "watch"):
        assert await can(installed, kube, gate, verb, "prometheusrules", group="monitoring.coreos.com")
    for verb in WRITE_VERBS:
        assert not await can(installed, kube, gate, verb, "prometheusrules", group="monitoring.coreos.com")
    assert not await can(installed, kube, gate, "get", "nodes", subresource="proxy")


async def can(installed: Installed, kube: client.Kube, controller: str, verb: str, resource: str,
              *, group: str = "", namespace: str = "", subresource: str = "", name: str = "") -> bool:  # fmt: skip
    """A SubjectAccessReview for the controller's ServiceAccount."""
    sa = installed.name(controller)
    attributes = {"verb": verb, "resource": resource, "group": group, "namespace": namespace,
                  "subresource": subresource, "name": name}  # fmt: skip
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{installed.namespace}:{sa}",
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{installed.namespace}",
                "system:authenticated",
            ],
            "resourceAttributes": attributes,
        },
    }
    result = await kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
    return bool(result["status"].get("allowed"))


WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


async def test_node_tainter_cannot_delete_nodes_or_read_secrets(
    installed: Installed, kube: client.Kube
) -> None:
    assert await can(installed, kube, "node-tainter", "update", "nodes")  # what it needs, as a control
    assert not await can(installed, kube, "node-tainter", "delete", "nodes")
    assert not await can(installed, kube, "node-tainter", "deletecollection", "nodes")
    for verb in ("get", "list", "watch"):
        for namespace in ("", "kube-system", installed.namespace):
            assert not await can(installed, kube, "node-tainter", verb, "secrets", namespace=namespace)
    assert not await can(installed, kube, "node-tainter", "create", "pods", namespace="kube-system")
    assert not await can(
        installed, kube, "node-tainter", "create", "pods", subresource="eviction", namespace="default"
    )


async def test_watchdog_writes_nothing_but_events(installed: Installed, kube: client.Kube) -> None:
    assert await can(
        installed, kube, "leader-watchdog", "create", "events", group="events.k8s.io", namespace="default"
    )
    assert await can(installed, kube, "leader-watchdog", "list", "leases", group="coordination.k8s.io")
    targets = [("", "nodes"), ("", "configmaps"), ("coordination.k8s.io", "leases"), ("", "pods"), ("", "secrets"),
               ("", "endpoints"), ("", "services"), ("apps", "deployments"), ("discovery.k8s.io", "endpointslices"),
               ("rbac.authorization.k8s.io", "roles")]  # fmt: skip
    for group, resource in targets:
        for verb in WRITE_VERBS:
            for namespace in ("", "kube-system", installed.namespace):
                allowed = await can(
                    installed, kube, "leader-watchdog", verb, resource, group=group, namespace=namespace
                )
                assert not allowed, (verb, group, resource, namespace)
    assert not await can(installed, kube, "leader-watchdog", "get", "secrets", namespace="kube-system")


async def test_controllers_cannot_do_what_they_do_not_need(installed: Installed, kube: client.Kube) -> None:
    # uso-runner rewrites objects: it may update, never create or delete (but its StorageVersionMigrations).
    for verb, resource in (
        ("create", "pods"),
        ("delete", "secrets"),
        ("delete", "nodes"),
        ("deletecollection", "configmaps"),
    ):
        assert not await can(installed, kube, "uso-runner", verb, resource, namespace="kube-system"), (
            verb,
            resource,
        )
    assert await can(installed, kube, "uso-runner", "update", "secrets", namespace="kube-system")
    for verb in ("create", "get", "delete"):
        assert await can(
            installed, kube, "uso-runner", verb, "storageversionmigrations", group="storagemigration.k8s.io"
        )
    # addon-updater (apply mode) manages the bundle kinds in its policy's namespaces only; not nodes, pods or
    # Secrets' contents.
    assert await can(
        installed, kube, "addon-updater", "patch", "deployments", group="apps", namespace=installed.addons
    )
    for namespace in ("kube-system", installed.namespace):
        assert not await can(
            installed, kube, "addon-updater", "patch", "deployments", group="apps", namespace=namespace
        )
    for verb, resource in (("delete", "nodes"), ("create", "pods"), ("get", "secrets"), ("update", "nodes")):
        assert not await can(installed, kube, "addon-updater", verb, resource, namespace=installed.addons), (
            verb,
            resource,
        )
    # node-tainter writes only its own state ConfigMap in the release namespace (uso-runner updates every
    # object by design, and addon-updater's bundle kinds include ConfigMaps).
    ns, own = installed.namespace, f"{installed.name('node-tainter')}-state"
    assert await can(installed, kube, "node-tainter", "update", "configmaps", namespace=ns, name=own)
    assert not await can(installed, kube, "node-tainter", "update", "configmaps", namespace=ns, name="other")
    assert not await can(installed, kube, "node-tainter", "delete", "configmaps", namespace=ns, name=own)
    assert not await can(
        installed, kube, "node-tainter", "update", "configmaps", namespace="kube-system", name=own
    )


async def test_combined_runs_the_controllers_with_one_service_account(
    control_plane: controlplane.ControlPlane,
    kube: client.Kube,
    agreed_cluster: tuple[str, str],
    tmp_path: pathlib.Path,
) -> None:
    """combined.enabled: one ServiceAccount bound to every controller's roles runs them in one process."""
    setup = Installed(control_plane, tmp_path)
    await setup.create_addons_namespace(kube)
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(setup.values({**INSTALL_VALUES, "combined": {"enabled": True, "replicas": 2}}))
    )
    setup.helm(
        "install", setup.release, ct.CHART, "--namespace", setup.namespace, "--create-namespace", "-f", values
    )
    try:
        kubeconfig = await token_kubeconfig(setup, kube, "combined")
        names = ("uso-runner", "node-tainter", "leader-watchdog")
        env = {
            f"{config.env_prefix(name)}_CONFIG": str(await installed_config(setup, kube, name))
            for name in names
        }
        process = await asyncio.create_subprocess_exec(
            str(BIN / "kube-upgrade-controllers"), "run", *names, "--kubeconfig", str(kubeconfig), "--once",
            "--log-format", "text",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **env},
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=240)
        assert "forbidden" not in err.decode().lower(), err.decode()
        assert process.returncode in (0, 1), out.decode() + err.decode()  # 1: the watchdog's critical finding
        _, worker = agreed_cluster
        taints = (await kube.get(resources.NODES.path(name=worker)))["spec"].get("taints", [])
        assert TAINT_KEY in [t["key"] for t in taints]
        state = await kube.get(
            resources.CONFIGMAPS.path(namespace=setup.namespace, name=f"{setup.name('uso-runner')}-state")
        )
        assert state["data"]["version"] == MASTER_VERSION
        # Its Leases (two replicas: leader election), each controller's own; no per-controller accounts.
        for name in ("addon-updater", *names):
            lease = setup.name(name)
            assert await can(setup, kube, "combined", "update", "leases", group="coordination.k8s.io",
                             namespace=setup.namespace, name=lease), name  # fmt: skip
        accounts = await kube.get(
            resources.Resource("", "v1", "serviceaccounts", namespaced=True).path(namespace=setup.namespace)
        )
        assert [a["metadata"]["name"] for a in accounts["items"] if a["metadata"]["name"] != "default"] == [
            setup.name("combined")
        ]
    finally:
        setup.helm("uninstall", setup.release, "--namespace", setup.namespace, check=False)

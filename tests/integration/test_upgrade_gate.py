"""The upgrade gate on the real apiserver: the chart's ValidatingAdmissionPolicies over the verdict that
upgrade-readiness publishes, for each kind they guard, and ``readiness ack`` run as a user that may (or may
not) patch the acknowledgements ConfigMap.

Cluster and KubeadmControlPlane are Cluster API's own CRDs (the pinned module's, e2e/capi.py), Plan and
TenantControlPlane minimal CRDs with the version field. upgrade-readiness runs in process (one master at
v1.37: the target is 1.38; a worker four minors behind blocks it); the command runs as a real process with a
ServiceAccount's token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import pathlib
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controllers.kube import client, resources, state
from controllers.structs import gate as gate_struct
from controllers.upgrade_readiness import controller
from e2e import capi, cluster, controlplane
from tests import chart_tools as ct
from tests import harness
from tests.integration import uso_helpers

SCRIPT = pathlib.Path(sys.executable).parent / "kube-upgrade-controllers"
POLICIES = resources.Resource(
    "admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", namespaced=False
)
BINDINGS = resources.Resource(
    "admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings", namespaced=False
)
ROLES = resources.Resource("rbac.authorization.k8s.io", "v1", "roles", namespaced=True)
ROLE_BINDINGS = resources.Resource("rbac.authorization.k8s.io", "v1", "rolebindings", namespaced=True)
SERVICE_ACCOUNTS = cluster.SERVICEACCOUNTS
MASTER = "v1.37.2"  # the target is 1.38


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    resource: resources.Resource
    field: tuple[str, ...]  # the version field's path
    api_version: str

    def body(self, name: str, version: str) -> client.JSON:
        specs: dict[str, dict[str, Any]] = {
            "Cluster": {"topology": {"classRef": {"name": "quick-start"}, "version": version}},
            "KubeadmControlPlane": {
                "version": version,
                "machineTemplate": {
                    "spec": {
                        "infrastructureRef": {
                            "apiGroup": "infrastructure.cluster.x-k8s.io",
                            "kind": "DockerMachineTemplate",
                            "name": name,
                        }
                    }
                },
            },
            "Plan": {"version": version, "concurrency": 1},
            "TenantControlPlane": {"kubernetes": {"version": version}},
        }
        return {"apiVersion": self.api_version, "kind": self.name, "metadata": {"name": name},
                "spec": specs[self.name]}  # fmt: skip

    def patch(self, version: str) -> client.JSON:
        value: Any = version
        for name in reversed(self.field):
            value = {name: value}
        return value  # type: ignore[no-any-return]


KINDS = (
    Kind("Cluster", resources.Resource("cluster.x-k8s.io", "v1beta2", "clusters", namespaced=True),
         ("spec", "topology", "version"), "cluster.x-k8s.io/v1beta2"),
    Kind("KubeadmControlPlane",
         resources.Resource("controlplane.cluster.x-k8s.io", "v1beta2", "kubeadmcontrolplanes", namespaced=True),
         ("spec", "version"), "controlplane.cluster.x-k8s.io/v1beta2"),
    Kind("Plan", resources.Resource("upgrade.cattle.io", "v1", "plans", namespaced=True),
         ("spec", "version"), "upgrade.cattle.io/v1"),
    Kind("TenantControlPlane", resources.Resource("kamaji.clastix.io", "v1alpha1", "tenantcontrolplanes", namespaced=True),
         ("spec", "kubernetes", "version"), "kamaji.clastix.io/v1alpha1"),
)  # fmt: skip


async def ensure_crds(kube: client.Kube) -> None:
    """The four kinds' CRDs (shared by every test: created once, left in place)."""
    for crd in capi.gated_crds():
        try:
            await kube.create(resources.CRDS.path(), crd)
        except client.ApiError as error:
            if not error.already_exists:
                raise
    for crd in capi.gated_crds():
        await uso_helpers.established(kube, crd["metadata"]["name"])
    for kind in KINDS:
        await uso_helpers.wait_listable(kube, kind.resource)


@dataclasses.dataclass
class Gate:
    """One release of the chart's gate (policies, bindings, the acknowledgers' Role) for one namespace."""

    kube: client.Kube
    plane: controlplane.ControlPlane
    namespace: str
    root: pathlib.Path
    release: str = dataclasses.field(default_factory=lambda: f"g{uuid.uuid4().hex[:6]}")
    created: list[str] = dataclasses.field(default_factory=list)

    @property
    def fullname(self) -> str:
        return f"{self.release}-kube-upgrade-controllers"

    async def install(self, **values: Any) -> None:
        """The chart's gate objects, rendered by helm and created here (the bindings limited to this
        namespace, so that tests running beside each other do not meet each other's policies)."""
        gate = {"enabled": True, "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
                **values.pop("upgradeGate", {})}  # fmt: skip
        chosen = {"upgradeGate": gate, **values}
        path = self.root / f"{self.release}.yaml"
        path.write_text(json.dumps(chosen))
        shown = ["--show-only", "templates/upgrade-gate.yaml"]
        if values.get("upgradeReadiness", {}).get("acknowledgers", {}).get("enabled"):
            shown += ["--show-only", "templates/acknowledgers.yaml"]
        objects = ct.template("-f", str(path), *shown, release=self.release, namespace=self.namespace)
        for obj in objects:
            kind = obj["kind"]
            if kind == "ValidatingAdmissionPolicy":
                where = POLICIES.path()
            elif kind == "ValidatingAdmissionPolicyBinding":
                where = BINDINGS.path()
            elif kind == "Role":
                where = ROLES.path(namespace=self.namespace)
            elif kind == "RoleBinding":
                where = ROLE_BINDINGS.path(namespace=self.namespace)
            else:
                assert kind == "ConfigMap", kind
                where = resources.CONFIGMAPS.path(namespace=self.namespace)
            await self.kube.create(where, obj)
            if not obj["metadata"].get("namespace") and kind != "ConfigMap":
                self.created.append(f"{where}/{obj['metadata']['name']}")

    async def uninstall(self) -> None:
        for path in self.created:
            await self.kube.delete(path)

    async def token_kubeconfig(self, name: str) -> pathlib.Path:
        """A ServiceAccount ``name`` in the namespace and a kubeconfig with its token."""
        await self.kube.create(SERVICE_ACCOUNTS.path(namespace=self.namespace), {"metadata": {"name": name}})
        return await cluster.service_account_kubeconfig(
            self.kube, server=self.plane.server, ca=self.plane.pki / "ca.crt", namespace=self.namespace,
            name=name, path=self.root / f"{name}.kubeconfig",
        )  # fmt: skip

    async def readiness_ack(self, kubeconfig: pathlib.Path, *args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT), "readiness", "ack", "--kubeconfig", str(kubeconfig), "-n", self.namespace,
            "--release", self.release, "-o", "json", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def bump(self, kind: Kind, name: str, version: str, *, dry_run: bool = True) -> str:
        """Change the object's version field: "" when admitted, else the apiserver's message."""
        path = kind.resource.path(namespace=self.namespace, name=name)
        try:
            await self.kube.patch(path, kind.patch(version), dry_run=dry_run)
        except client.ApiError as error:
            if error.status not in (403, 422):  # refused by a policy: Forbidden, or Invalid
                raise
            return str(error.body.get("message"))
        return ""


@pytest.fixture(name="gate")
async def gate_fixture(
    kube: client.Kube, namespace: str, control_plane: controlplane.ControlPlane, tmp_path: pathlib.Path
) -> AsyncIterator[Gate]:
    """The chart's gate objects for one namespace (the kinds' CRDs installed), removed afterwards."""
    await ensure_crds(kube)
    installed = Gate(kube, control_plane, namespace, tmp_path)
    try:
        yield installed
    finally:
        await installed.uninstall()


def readiness_config(gate: Gate) -> controller.UpgradeReadinessConfig:
    return controller.UpgradeReadinessConfig(
        namespace=gate.namespace, release=gate.fullname, checks=("kubelet-skew",), settle_seconds=0,
        evaluate_interval_seconds=0.5, metrics_bind_address="0", health_probe_bind_address="0",
    )  # fmt: skip


async def blocked_cluster(nodes: cluster.Nodes) -> tuple[str, str]:
    """A master at v1.37 (the target is 1.38) and a worker four minors below 1.38: kubelet-skew blocks."""
    suffix = uuid.uuid4().hex[:6]
    master, worker = f"gate-m-{suffix}", f"gate-w-{suffix}"
    await nodes.create(master, version=MASTER, master=True)
    await nodes.create(worker, version="v1.34.6")
    return master, worker


def until(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def verdict(gate: Gate) -> dict[str, str]:
    found = await state.read(
        gate.kube, namespace=gate.namespace, name=f"{gate.fullname}-upgrade-readiness-verdict"
    )
    return dict(found.data)


async def every_kind(
    gate: Gate, version: str, check: Any, *, what: str, timeout: float = 30
) -> dict[str, str]:
    """Until ``check(message)`` holds for a dry-run bump of every kind to ``version``; the messages."""
    messages: dict[str, str] = {}

    async def holds() -> bool:
        for kind in KINDS:
            messages[kind.name] = await gate.bump(kind, f"{kind.name.lower()}-a", version)
        return all(check(message) for message in messages.values())

    await harness.eventually(holds, timeout=timeout, interval=0.3, what=f"{what}: {messages}")
    return messages


async def test_a_bump_is_refused_while_blocked_accepted_after_an_ack_and_refused_again_after_it_expires(
    gate: Gate, nodes: cluster.Nodes
) -> None:
    master, worker = await blocked_cluster(nodes)
    acker = await gate.token_kubeconfig("acker")
    stranger = await gate.token_kubeconfig("stranger")
    subject = {"kind": "ServiceAccount", "name": "acker", "namespace": gate.namespace}
    for kind in KINDS:  # before the policies: a Plan's creation is judged, and there is no verdict yet
        await gate.kube.create(kind.resource.path(namespace=gate.namespace),
                               kind.body(f"{kind.name.lower()}-a", MASTER))  # fmt: skip
    await gate.install(upgradeReadiness={"acknowledgers": {"enabled": True, "subjects": [subject]}})

    async with harness.running(controller.UpgradeReadiness, gate.kube, readiness_config(gate)):
        await harness.eventually(lambda: _verdict_says(gate, upgradeable="false"), what="verdict: blocked")
        published = await verdict(gate)
        assert published["target"] == "1.38" and f"Node {worker}" in published["reasons"]
        assert published["acknowledge"].startswith("kube-upgrade-controllers readiness ack --target v1.38")

        # Blocked: every kind's bump to 1.38 is refused, with the reasons and how to acknowledge.
        refused = await every_kind(gate, "v1.38.0", lambda m: "not upgradeable to 1.38" in m, what="refused")
        for name, message in refused.items():
            assert f"Node {worker}" in message and "readiness ack --target v1.38" in message, (name, message)
        # A patch within the current minor is no minor upgrade.
        for kind in KINDS:
            assert await gate.bump(kind, f"{kind.name.lower()}-a", "v1.37.9") == ""

        # Who may not patch the acknowledgements ConfigMap cannot acknowledge: exit 3, nothing written.
        code, out, err = await gate.readiness_ack(stranger, "--target", "v1.38", "--until", until(60))
        assert code == 3 and "permission missing" in err and 'resource "configmaps"' in err, (out, err)
        acks = await gate.kube.get(
            resources.CONFIGMAPS.path(
                namespace=gate.namespace, name=f"{gate.fullname}-upgrade-readiness-acks"
            )
        )
        assert not acks.get("data"), acks

        # The acknowledger may: an ack for 1.38 of kubelet-skew, expiring soon.
        expiry = until(25)
        code, out, err = await gate.readiness_ack(
            acker, "--target", "v1.38", "--until", expiry, "--checks", "kubelet-skew", "--reason", "CHG-42"
        )
        assert code == 0, (out, err)
        written = json.loads(out)
        assert written["keys"] == {"ack-1.38-kubelet-skew": json.dumps({"until": expiry, "reason": "CHG-42"})}
        await harness.eventually(
            lambda: _verdict_says(gate, upgradeable="true"), what="verdict: acknowledged"
        )
        published = await verdict(gate)
        assert published["expires"] == expiry and "ack-1.38-kubelet-skew" in published["acknowledged"]
        await every_kind(gate, "v1.38.0", lambda m: m == "", what="admitted after the ack")
        # The ack is for 1.38 only: the minor after it stays refused.
        beyond = await every_kind(gate, "v1.39.0", lambda m: "one minor at a time" in m, what="1.39 refused")
        assert all("the gate judged the next minor 1.38 only" in m for m in beyond.values())

        # The ack expires: upgrade-readiness judges again at that moment, and the bump is refused again.
        expired_at = datetime.datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
        await asyncio.sleep(max(0.0, expired_at - time.time()))
        await harness.eventually(lambda: _verdict_says(gate, upgradeable="false"), timeout=15,
                                 what="verdict: blocked again")  # fmt: skip
        await every_kind(gate, "v1.38.0", lambda m: "not upgradeable to 1.38" in m, what="refused again")

        # An active ack for 1.38 waives nothing once the target is 1.39 (the master upgraded).
        await gate.readiness_ack(
            acker, "--target", "v1.38", "--until", until(600), "--checks", "kubelet-skew"
        )
        await harness.eventually(lambda: _verdict_says(gate, upgradeable="true"), what="acknowledged again")
        await nodes.set_status(master, version="v1.38.1")
        await harness.eventually(lambda: _verdict_says(gate, target="1.39", upgradeable="false"),
                                 what="target 1.39")  # fmt: skip
        await every_kind(gate, "v1.39.0", lambda m: "not upgradeable to 1.39" in m, what="1.39 refused")

        # Revoked: the acknowledger removes the key again.
        code, out, err = await gate.readiness_ack(
            acker, "--target", "v1.38", "--revoke", "--checks", "kubelet-skew"
        )
        assert code == 0 and json.loads(out)["keys"] == {"ack-1.38-kubelet-skew": None}, (out, err)
        acks = await gate.kube.get(
            resources.CONFIGMAPS.path(
                namespace=gate.namespace, name=f"{gate.fullname}-upgrade-readiness-acks"
            )
        )
        assert not acks.get("data"), acks


async def _verdict_says(gate: Gate, **wanted: str) -> bool:
    published = await verdict(gate)
    return all(published.get(key) == value for key, value in wanted.items())


async def test_without_a_verdict_nothing_is_written_and_the_exempt_pass(gate: Gate) -> None:
    """parameterNotFoundAction Deny: with no verdict every write the bindings match is refused, a label as
    well as a version (fail closed: the break-glass is the binding, docs/upgrade-gate.md). With a verdict, the
    exempt user (Cluster API's core manager) and the break-glass group pass while it is not upgradeable."""
    manager = await gate.token_kubeconfig("capi-manager")
    exempt = f"system:serviceaccount:{gate.namespace}:capi-manager"
    await gate.install(upgradeGate={"exemptUsernames": [exempt], "exemptGroups": ["gate-break-glass"]})
    role = {"metadata": {"name": "versions"}, "rules": [{
        "apiGroups": [k.resource.group for k in KINDS], "resources": [k.resource.plural for k in KINDS],
        "verbs": ["get", "patch", "update"],
    }]}  # fmt: skip
    await gate.kube.create(ROLES.path(namespace=gate.namespace), role)
    await gate.kube.create(ROLE_BINDINGS.path(namespace=gate.namespace), {
        "metadata": {"name": "versions"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "versions"},
        "subjects": [{"kind": "ServiceAccount", "name": "capi-manager", "namespace": gate.namespace}],
    })  # fmt: skip
    for kind in KINDS:
        if kind.name != "Plan":  # a Plan's creation is judged: without a verdict it is refused too
            await gate.kube.create(kind.resource.path(namespace=gate.namespace),
                                   kind.body(f"{kind.name.lower()}-a", MASTER))  # fmt: skip
    cluster_kind = KINDS[0]
    label = {"metadata": {"labels": {"team": "a"}}}
    path = cluster_kind.resource.path(namespace=gate.namespace, name="cluster-a")

    async def label_refused() -> bool:
        try:
            await gate.kube.patch(path, label, dry_run=True)
        except client.ApiError as error:
            return "no params found" in str(error.body.get("message"))
        return False

    await harness.eventually(label_refused, what="a label refused without a verdict")
    plan = KINDS[2]
    with pytest.raises(client.ApiError, match="no params found"):
        await gate.kube.create(plan.resource.path(namespace=gate.namespace), plan.body("plan-a", MASTER))

    data = {"format": "1", "upgradeable": "false", "target": "1.38", "reasons": "judged by hand", "acknowledged": "",
            "expires": "", "acknowledge": ""}  # fmt: skip
    await gate.kube.create(resources.CONFIGMAPS.path(namespace=gate.namespace),
                           {"metadata": {"name": f"{gate.fullname}-upgrade-readiness-verdict"}, "data": data})  # fmt: skip
    await harness.eventually(
        lambda: _admitted(gate.kube, path, label), what="a label admitted with a verdict"
    )
    assert "not upgradeable to 1.38: judged by hand" in await gate.bump(cluster_kind, "cluster-a", "v1.38.0")

    async with await client.connect(kubeconfig=str(manager)) as as_manager:
        for kind in (KINDS[0], KINDS[1]):
            await as_manager.patch(kind.resource.path(namespace=gate.namespace, name=f"{kind.name.lower()}-a"),
                                   kind.patch("v1.38.0"))  # fmt: skip
    await gate.kube.patch(path, cluster_kind.patch("v1.37.2"))  # a downgrade is no upgrade
    # The break-glass group: a member (here by a client certificate with that organisation) passes.
    oncall = await asyncio.to_thread(
        gate.plane.user_kubeconfig, f"oncall-{uuid.uuid4().hex[:6]}", group="gate-break-glass"
    )
    await gate.kube.create(ROLE_BINDINGS.path(namespace=gate.namespace), {
        "metadata": {"name": "break-glass"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "versions"},
        "subjects": [{"kind": "Group", "name": "gate-break-glass", "apiGroup": "rbac.authorization.k8s.io"}],
    })  # fmt: skip
    async with await client.connect(kubeconfig=str(oncall)) as as_oncall:
        await as_oncall.patch(path, cluster_kind.patch("v1.38.0"))
    assert "not upgradeable" in await gate.bump(KINDS[3], "tenantcontrolplane-a", "v1.38.0")


async def _admitted(kube: client.Kube, path: str, body: client.JSON) -> bool:
    try:
        await kube.patch(path, body, dry_run=True)
    except client.ApiError:
        return False
    return True


# (old, new, verdict): upgradeable, target; None: no verdict keys at all
DECISIONS = [
    ("v1.37.2", "v1.37.9", (False, "1.38")),  # a patch
    ("v1.38.1", "v1.37.4", (False, "1.38")),  # a downgrade
    ("v1.36.1", "v1.37.0", (False, "1.38")),  # below the target
    ("v1.37.2", "v1.38.0", (False, "1.38")),  # the target, blocked
    ("v1.37.2", "v1.38.0+k3s1", (True, "1.38")),  # the target, upgradeable
    ("v1.37.2", "v1.39.0", (True, "1.38")),  # beyond the target
    ("v1.37.2", "v1.38.0", (False, "")),  # no target
    ("v1.37.2", "v1.38.0", None),  # no verdict for it
    ("v1.37.2", "1.38.0", (True, "1.38")),  # no v
    ("v1.37.2", "v2.0.0", (True, "1.38")),  # a major
    ("garbage", "v1.38.0", (True, "1.38")),  # from an unreadable version: an upgrade
    ("v1.37.2", "garbage", (True, "1.38")),  # to one
]


REFUSALS = (
    "not upgradeable to",
    "one minor at a time",
    "no verdict of the upgrade gate",
    "is not a Kubernetes version",
)


async def test_the_policies_and_the_extension_apply_one_rule(gate: Gate) -> None:
    """The CEL of the chart's policies and structs/gate.admits (the Runtime Extension's) decide alike."""
    await gate.install(upgradeGate={"kinds": ["TenantControlPlane"]})
    kind = KINDS[3]
    path = resources.CONFIGMAPS.path(namespace=gate.namespace)
    name = f"{gate.fullname}-upgrade-readiness-verdict"
    await gate.kube.create(path, {"metadata": {"name": name}, "data": {}})
    for index, (old, new, verdict) in enumerate(DECISIONS):
        written = (
            gate_struct.GateVerdict(upgradeable=verdict[0], target=verdict[1], reasons="r")
            if verdict
            else None
        )
        await gate.kube.replace(f"{path}/{name}", {"metadata": {"name": name},
                                                   "data": written.data() if written else {}})  # fmt: skip
        obj = f"t{index}"
        await gate.kube.create(kind.resource.path(namespace=gate.namespace), kind.body(obj, old))
        expected = gate_struct.admits(written, old=old, new=new)
        found = ""

        async def agrees(obj: str = obj, new: str = new, expected: str = expected) -> bool:
            nonlocal found
            found = await gate.bump(kind, obj, new)
            said = [phrase for phrase in REFUSALS if phrase in expected]
            return (found == "") == (expected == "") and all(phrase in found for phrase in said)

        await harness.eventually(
            agrees, timeout=20, what=f"{old} -> {new} with {verdict}: CEL {found!r}, Python {expected!r}"
        )

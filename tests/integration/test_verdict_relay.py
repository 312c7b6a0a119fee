"""verdict-relay on the real apiserver: each Cluster's verdict read through its ``<cluster>-kubeconfig`` Secret,
mirrored into the Cluster's namespace, the chart's policies reading the mirror (``upgradeGate.verdict: relay``),
and the Runtime Extension answering Cluster API's hooks over HTTPS from it.

The fixture's one apiserver plays both the management cluster and the workload clusters: the "workload"
verdict is a ConfigMap in a namespace of its own, read through a kubeconfig in a Secret like Cluster API's
(inline credentials: a ServiceAccount token for one cluster, a client certificate for the other), as a remote
cluster would be read, over HTTPS with its own client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import pathlib
import ssl
import uuid
from typing import Any

import aiohttp
import pytest
import yaml

from controllers.kube import client, resources, state
from controllers.structs import gate as gate_struct
from controllers.verdict_relay import controller, logic
from e2e import cluster, controlplane
from tests import chart_tools as ct
from tests import harness
from tests.integration import test_chart_install as installs
from tests.integration.test_upgrade_gate import KINDS, Gate, ensure_crds, gate_fixture  # noqa: F401 (the gate fixture)

SECRETS = resources.Resource("", "v1", "secrets", namespaced=True)
CLUSTERS = KINDS[0].resource
ROLES = resources.Resource("rbac.authorization.k8s.io", "v1", "roles", namespaced=True)
ROLE_BINDINGS = resources.Resource("rbac.authorization.k8s.io", "v1", "rolebindings", namespaced=True)
BLOCKED = gate_struct.GateVerdict(
    upgradeable=False, target="1.38", reasons="kubelet-skew: Node w1: kubelet v1.34.6 is 4 minors below 1.38",
    acknowledge="kube-upgrade-controllers readiness ack --target v1.38 --until <RFC 3339> -n kube-upgrade",
)  # fmt: skip
OPEN = gate_struct.GateVerdict(
    upgradeable=True, target="1.38", acknowledged="ack-1.38-kubelet-skew (no expiry)"
)


def inline_kubeconfig(plane: controlplane.ControlPlane, user: dict[str, Any]) -> str:
    ca = base64.b64encode((plane.pki / "ca.crt").read_bytes()).decode()
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "workload",
        "clusters": [{"name": "workload", "cluster": {"server": plane.server, "certificate-authority-data": ca}}],
        "users": [{"name": "relay", "user": user}],
        "contexts": [{"name": "workload", "context": {"cluster": "workload", "user": "relay"}}],
    })  # fmt: skip


async def put_secret(kube: client.Kube, namespace: str, cluster: str, kubeconfig: str) -> None:
    body = {
        "metadata": {"name": f"{cluster}{logic.KUBECONFIG_SUFFIX}", "labels": {"cluster.x-k8s.io/cluster-name": cluster}},
        "type": "cluster.x-k8s.io/secret",
        "data": {logic.KUBECONFIG_KEY: base64.b64encode(kubeconfig.encode()).decode()},
    }  # fmt: skip
    await kube.create(SECRETS.path(namespace=namespace), body)


async def write_verdict(
    kube: client.Kube, namespace: str, name: str, verdict: gate_struct.GateVerdict
) -> None:
    await state.replace_data(kube, namespace=namespace, name=name, data=verdict.data(), controller="test")


class Workload:
    """A "workload cluster": its verdict ConfigMap, and who may read it (one ServiceAccount, one user)."""

    def __init__(self, kube: client.Kube, plane: controlplane.ControlPlane) -> None:
        self.kube, self.plane = kube, plane
        self.namespace = f"workload-{uuid.uuid4().hex[:6]}"
        self.name = "kube-upgrade-controllers-upgrade-readiness-verdict"

    async def create(self) -> None:
        await self.kube.create(resources.NAMESPACES.path(), {"metadata": {"name": self.namespace}})
        await self.kube.create(
            ROLES.path(namespace=self.namespace),
            {"metadata": {"name": "verdict-reader"}, "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [self.name], "verbs": ["get"]}
            ]},
        )  # fmt: skip
        await self.kube.create(
            cluster.SERVICEACCOUNTS.path(namespace=self.namespace), {"metadata": {"name": "reader"}}
        )

    async def bind(self, subject: dict[str, str]) -> None:
        await self.kube.create(ROLE_BINDINGS.path(namespace=self.namespace), {
            "metadata": {"name": f"reader-{uuid.uuid4().hex[:6]}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "verdict-reader"},
            "subjects": [subject],
        })  # fmt: skip

    async def token(self) -> str:
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/reader/token"
        answer = await self.kube.request("POST", path, body={"spec": {"expirationSeconds": 3600}})
        return str(answer["status"]["token"])


def relay_config(gate: Gate, workload: Workload, **overrides: Any) -> controller.VerdictRelayConfig:
    values: dict[str, Any] = {
        "namespace": gate.namespace, "release": gate.fullname, "verdict_namespace": workload.namespace,
        "verdict_config_map": workload.name, "poll_interval_seconds": 0.5, "read_timeout_seconds": 5,
        "cluster_namespaces": (gate.namespace,), "metrics_bind_address": "0", "health_probe_bind_address": "0",
        "retry_after_seconds": 7, **overrides,
    }  # fmt: skip
    return controller.VerdictRelayConfig(**values)


async def mirrored(gate: Gate, cluster: str) -> gate_struct.GateVerdict | str:
    found = await state.read(gate.kube, namespace=gate.namespace, name=f"{gate.fullname}-upgrade-verdicts")
    return gate_struct.read(found.data, prefix=f"{cluster}.")


async def test_the_relay_mirrors_each_clusters_verdict_and_the_policies_and_hooks_follow_it(
    gate: Gate, control_plane: controlplane.ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kube = gate.kube
    workload = Workload(kube, control_plane)
    await workload.create()
    await write_verdict(kube, workload.namespace, workload.name, BLOCKED)
    # c1 reads with a ServiceAccount token; c2 with a client certificate; c3 has no Secret; c4 one with exec.
    await workload.bind({"kind": "ServiceAccount", "name": "reader", "namespace": workload.namespace})
    token = await workload.token()
    user = f"relay-reader-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(control_plane.user_kubeconfig, user)
    await workload.bind({"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"})
    cert = {
        "client-certificate-data": base64.b64encode(
            (control_plane.pki / f"{user}.crt").read_bytes()
        ).decode(),
        "client-key-data": base64.b64encode((control_plane.pki / f"{user}.key").read_bytes()).decode(),
    }
    canary = pathlib.Path(gate.root, "exec-ran")
    await put_secret(kube, gate.namespace, "c1", inline_kubeconfig(control_plane, {"token": token}))
    await put_secret(kube, gate.namespace, "c2", inline_kubeconfig(control_plane, cert))
    await put_secret(kube, gate.namespace, "c4", inline_kubeconfig(control_plane, {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "touch", "args": [str(canary)]}
    }))  # fmt: skip
    for name in ("c1", "c2", "c3", "c4"):
        await kube.create(CLUSTERS.path(namespace=gate.namespace), KINDS[0].body(name, "v1.37.2"))
    await gate.install(upgradeGate={"verdict": "relay", "kinds": ["Cluster"]})

    port = controlplane.free_port()
    cfg = relay_config(gate, workload, extension_bind_address=f"127.0.0.1:{port}")
    async with harness.running(controller.VerdictRelay, kube, cfg) as relay:

        async def says(cluster: str, upgradeable: bool, target: str = "1.38") -> bool:
            found = await mirrored(gate, cluster)
            return isinstance(found, gate_struct.GateVerdict) and (found.upgradeable, found.target) == (
                upgradeable,
                target,
            )

        async def both_blocked() -> bool:
            return await says("c1", False) and await says("c2", False)

        await harness.eventually(both_blocked, what="c1 and c2 mirrored as blocked")
        one = await mirrored(gate, "c1")
        assert isinstance(one, gate_struct.GateVerdict) and one.reasons == BLOCKED.reasons
        assert one.acknowledge.startswith(
            "with the workload cluster's kubeconfig (clusterctl get kubeconfig c1"
        )
        await harness.eventually(lambda: says("c3", False, ""), what="c3 without a verdict")
        three, four = await mirrored(gate, "c3"), await mirrored(gate, "c4")
        assert isinstance(three, gate_struct.GateVerdict) and "no Secret c3-kubeconfig" in three.reasons
        assert isinstance(four, gate_struct.GateVerdict) and "its user uses exec" in four.reasons
        assert not await asyncio.to_thread(canary.exists)  # the exec plugin never ran
        assert harness.metric(relay, "verdict_relay_clusters", state="blocked") == 2
        assert harness.metric(relay, "verdict_relay_clusters", state="unread") == 2

        # The admission policy reads the mirror, per Cluster.
        refused = await _eventually_refused(gate, "c1", "v1.38.0")
        assert "not upgradeable to 1.38: kubelet-skew: Node w1" in refused
        assert "no verdict of the upgrade gate: cluster" in await gate.bump(KINDS[0], "c3", "v1.38.0")

        # The Runtime Extension answers from the same mirror.
        async with extension(port) as call:
            discovery = await call(
                "discovery", {"apiVersion": logic.HOOKS_API_VERSION, "kind": "DiscoveryRequest"}
            )
            assert [h["requestHook"]["hook"] for h in discovery["handlers"]] == list(logic.HANDLERS.values())
            held = await call(
                "beforeclusterupgrade/before-cluster-upgrade", hook_request(gate.namespace, "c1")
            )
            assert held["status"] == "Success" and held["retryAfterSeconds"] == 7, held
            assert "not upgradeable to 1.38" in held["message"]
            unread = await call("beforecontrolplaneupgrade/before-control-plane-upgrade",
                                hook_request(gate.namespace, "c3", hook="BeforeControlPlaneUpgrade"))  # fmt: skip
            assert unread["retryAfterSeconds"] == 7 and "no verdict" in unread["message"]

            # The workload cluster is acknowledged: the mirror, the policy and the hook follow.
            await write_verdict(kube, workload.namespace, workload.name, OPEN)
            await harness.eventually(lambda: says("c1", True), what="c1 mirrored as upgradeable")
            await harness.eventually(lambda: says("c2", True), what="c2 mirrored as upgradeable")
            await harness.eventually(lambda: _admitted(gate, "c1", "v1.38.0"), what="the bump admitted")
            went = await call(
                "beforeclusterupgrade/before-cluster-upgrade", hook_request(gate.namespace, "c1")
            )
            assert went["retryAfterSeconds"] == 0 and "v1.38.0 admitted" in went["message"], went
            assert "one minor at a time" in await gate.bump(KINDS[0], "c1", "v1.39.0")
        assert (
            harness.metric(
                relay, "verdict_relay_hook_answers_total", hook="BeforeClusterUpgrade", answer="hold"
            )
            == 1
        )
        assert (
            harness.metric(
                relay, "verdict_relay_hook_answers_total", hook="BeforeClusterUpgrade", answer="proceed"
            )
            == 1
        )

        # A Cluster that goes leaves the mirror.
        await kube.delete(CLUSTERS.path(namespace=gate.namespace, name="c4"))
        await harness.eventually(lambda: _gone(gate, "c4"), what="c4 left the mirror")

    # Nothing of the Secrets (token, key) in any log line or Event.
    events = await kube.list_items(resources.EVENTS.path(namespace=gate.namespace))
    said = caplog.text + json.dumps(events)
    for secret in (token, cert["client-key-data"], base64.b64decode(cert["client-key-data"]).decode()[30:90]):
        assert secret not in said
    reasons = {e["reason"] for e in events if e["regarding"]["kind"] == "Cluster"}
    assert {"UpgradeGateClosed", "UpgradeGateOpen", "UpgradeGateNoVerdict"} <= reasons, reasons


def hook_request(namespace: str, cluster: str, *, hook: str = "BeforeClusterUpgrade") -> dict[str, Any]:
    return {
        "apiVersion": logic.HOOKS_API_VERSION, "kind": f"{hook}Request",
        "cluster": {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
                    "metadata": {"name": cluster, "namespace": namespace}, "spec": {}},
        "fromKubernetesVersion": "v1.37.2", "toKubernetesVersion": "v1.38.0",
    }  # fmt: skip


class extension:
    """Calls to the relay's Runtime Extension as Cluster API makes them: POST JSON over HTTPS (its
    certificate is self-signed here: not verified)."""

    def __init__(self, port: int) -> None:
        self.base = f"https://127.0.0.1:{port}/{logic.HOOKS_API_VERSION}"
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))

    async def __aenter__(self) -> Any:
        async def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with self.session.post(f"{self.base}/{path}", json=body) as response:
                assert response.status == 200, await response.text()
                answer: dict[str, Any] = await response.json()
                return answer

        return call

    async def __aexit__(self, *_: object) -> None:
        await self.session.close()


async def _eventually_refused(gate: Gate, cluster: str, version: str) -> str:
    found = ""

    async def refused() -> bool:
        nonlocal found
        found = await gate.bump(KINDS[0], cluster, version)
        return "not upgradeable" in found

    await harness.eventually(refused, what=f"{cluster} {version} refused")
    return found


async def _admitted(gate: Gate, cluster: str, version: str) -> bool:
    return await gate.bump(KINDS[0], cluster, version) == ""


async def _gone(gate: Gate, cluster: str) -> bool:
    found = await state.read(gate.kube, namespace=gate.namespace, name=f"{gate.fullname}-upgrade-verdicts")
    return not any(key.startswith(f"{cluster}.") for key in found.data)


async def test_the_chart_lets_the_relay_read_only_what_it_needs_in_its_cluster_namespaces(
    kube: client.Kube, namespace: str, control_plane: controlplane.ControlPlane, tmp_path: pathlib.Path
) -> None:
    """Installed by helm with ``verdictRelay.clusterNamespaces``, the relay runs with its ServiceAccount's
    token (--once): it reads the Cluster's Secret and the workload's verdict, writes the mirror, and may not
    read a Secret, or write a ConfigMap, anywhere else."""
    await ensure_crds(kube)
    workload = Workload(kube, control_plane)
    await workload.create()
    await write_verdict(kube, workload.namespace, workload.name, BLOCKED)
    await workload.bind({"kind": "ServiceAccount", "name": "reader", "namespace": workload.namespace})
    await put_secret(
        kube, namespace, "c1", inline_kubeconfig(control_plane, {"token": await workload.token()})
    )
    await kube.create(CLUSTERS.path(namespace=namespace), KINDS[0].body("c1", "v1.37.2"))
    setup = installs.Installed(control_plane, tmp_path)
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({"verdictRelay": {"enabled": True, "clusterNamespaces": [namespace]}}))
    await asyncio.to_thread(setup.helm, "install", setup.release, ct.CHART, "--namespace", setup.namespace,
                            "--create-namespace", "-f", values)  # fmt: skip
    try:
        code, out, err = await installs.run_as_service_account(
            setup, kube, "verdict-relay", "--verdict-namespace", workload.namespace,
            "--verdict-config-map", workload.name,
        )  # fmt: skip
        assert code == 0, out + err
        mirror = await state.read(kube, namespace=namespace, name=f"{setup.fullname}-upgrade-verdicts")
        found = gate_struct.read(mirror.data, prefix="c1.")
        assert isinstance(found, gate_struct.GateVerdict) and found.reasons == BLOCKED.reasons, mirror.data
        relay = "verdict-relay"
        assert await installs.can(
            setup, kube, relay, "get", "secrets", namespace=namespace, name="c1-kubeconfig"
        )
        for verb, where in (("get", "kube-system"), ("get", setup.namespace), ("list", namespace),
                            ("watch", namespace), ("list", "")):  # fmt: skip
            assert not await installs.can(setup, kube, relay, verb, "secrets", namespace=where), (verb, where)
        assert not await installs.can(
            setup, kube, relay, "update", "configmaps", namespace=namespace, name="x"
        )
        assert not await installs.can(setup, kube, relay, "create", "configmaps", namespace="kube-system")
        for verb in installs.WRITE_VERBS:
            assert not await installs.can(setup, kube, relay, verb, "clusters", group="cluster.x-k8s.io",
                                          namespace=namespace)  # fmt: skip
    finally:
        await asyncio.to_thread(
            setup.helm, "uninstall", setup.release, "--namespace", setup.namespace, check=False
        )

"""``make capi-proof``: Cluster API's own core manager holds a topology upgrade on the upgrade gate's word.

On the local control plane (etcd + kube-apiserver, as the tests use it), with Cluster API's core manager
(``sigs.k8s.io/cluster-api/core`` at the pinned release, built from the module proxy by e2e/build-tool.sh and
run as a local process with the ClusterTopology and RuntimeSDK gates on, its webhooks served with a
certificate made here and registered as its envtest does) and the suite's own processes:

1. the "workload cluster" (the same apiserver): a master at v1.37.2 and a worker four minors below 1.38;
   upgrade-readiness judges it not upgradeable to 1.38 and publishes its verdict;
2. verdict-relay reads that verdict through the Cluster's ``prod-kubeconfig`` Secret (a token that may get the
   verdict ConfigMap and nothing else), mirrors it, and serves the Runtime Extension that an ExtensionConfig
   registers with Cluster API;
3. a Cluster with a ClusterClass (Cluster API's KubeadmControlPlane CRDs; an infrastructure provider of
   generic CRDs, as Cluster API's envtest has; the control plane's status set by hand, since no
   KubeadmControlPlane controller and no machines run): ``topology.version`` v1.37.2 → v1.38.0 is held — the
   KubeadmControlPlane's ``spec.version`` stays v1.37.2 while the extension answers "hold";
4. ``kube-upgrade-controllers readiness ack --target v1.38`` in the workload cluster: the verdict turns, the
   relay mirrors it, the extension lets the step proceed, and ``spec.version`` becomes v1.38.0.

It prints a timeline and exits 0 when every step happened, 1 (with the processes' last log lines) otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import ipaddress
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controllers.kube import client, resources
from e2e import capi, cluster, controlplane

BIN = pathlib.Path(sys.executable).parent
NAMESPACE = "proof"  # the Cluster's, in the "management cluster" (the ExtensionConfig selects it)
CONTROL = "proof-control"  # a control Cluster's: not selected by the ExtensionConfig, so never held
GATED = {"upgrade-gate": "on"}  # the label the ExtensionConfig's namespaceSelector asks for
WORKLOAD = "kube-upgrade"  # upgrade-readiness's, in the "workload cluster"
RELEASE = "kube-upgrade-controllers"
VERDICT = f"{RELEASE}-upgrade-readiness-verdict"
FROM, TO = "v1.37.2", "v1.38.0"
HOLD_SECONDS = 30.0  # how long the upgrade must stay held before the acknowledgement
RETRY_AFTER = 5  # what the extension tells Cluster API while it holds
INFRA = ("GenericInfrastructureCluster", "GenericInfrastructureClusterTemplate",
         "GenericInfrastructureMachine", "GenericInfrastructureMachineTemplate")  # fmt: skip
GROUP_INFRA = "infrastructure.cluster.x-k8s.io"
KCP = resources.Resource("controlplane.cluster.x-k8s.io", "v1beta2", "kubeadmcontrolplanes", namespaced=True)
CLUSTERS = resources.Resource("cluster.x-k8s.io", "v1beta2", "clusters", namespaced=True)
CLUSTER_CLASSES = resources.Resource("cluster.x-k8s.io", "v1beta2", "clusterclasses", namespaced=True)
EXTENSION_CONFIGS = resources.Resource(
    "runtime.cluster.x-k8s.io", "v1beta2", "extensionconfigs", namespaced=False
)
SECRETS = resources.Resource("", "v1", "secrets", namespaced=True)
ROLES = resources.Resource("rbac.authorization.k8s.io", "v1", "roles", namespaced=True)
ROLE_BINDINGS = resources.Resource("rbac.authorization.k8s.io", "v1", "rolebindings", namespaced=True)
MUTATING = resources.Resource(
    "admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", namespaced=False
)
VALIDATING = resources.Resource(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", namespaced=False
)


class ProofFailed(Exception):
    pass


@dataclasses.dataclass
class Timeline:
    started: float = dataclasses.field(default_factory=time.monotonic)

    def mark(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", flush=True)


async def until(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str, every: float = 0.5
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise ProofFailed(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(every)


# --- certificates: one CA for the manager's webhooks and the extension, both on 127.0.0.1 ----------------


def certificates(directory: pathlib.Path) -> bytes:
    """A CA and a serving certificate for 127.0.0.1 in ``directory`` (tls.crt, tls.key); returns the CA's PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "capi-proof-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    serving = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "tls.key"
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return ca.public_bytes(serialization.Encoding.PEM)


# --- processes ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: pathlib.Path

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(f"    {line[:400]}" for line in text[-lines:])


@contextlib.contextmanager
def started(name: str, argv: list[str], logs: pathlib.Path, processes: list[Process]) -> Iterator[Process]:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    process = Process(name, popen, log)
    processes.append(process)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def metric(port: int, name: str, **labels: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(w in line for w in wanted)
    )


# --- the objects -------------------------------------------------------------------------------------


def generic_crd(kind: str) -> dict[str, Any]:
    """An infrastructure CRD that keeps what it is given (Cluster API's envtest's generic ones)."""
    plural = kind.lower() + "s"
    keep = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP_INFRA}", "labels": {capi.CONTRACT_LABEL: "v1beta2"}},
        "spec": {"group": GROUP_INFRA, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                 "versions": [{"name": "v1beta2", "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "properties": {"spec": keep, "status": keep}}}}]},
    }  # fmt: skip


def crd_files() -> list[str]:
    root = capi.module_dir()
    found = []
    for directory in (capi.CORE, capi.KUBEADM_CONTROL_PLANE, "bootstrap/kubeadm/config/crd/bases"):
        found += [f"{directory}/{path.name}" for path in sorted((root / directory).glob("*.yaml"))]
    return found


def webhooks(*, port: int, ca: bytes) -> list[dict[str, Any]]:
    """The core manager's webhook configurations (its module's), pointed at the local process."""
    documents = list(
        yaml.safe_load_all((capi.module_dir() / "core/config/webhook/manifests.yaml").read_text())
    )
    bundle = base64.b64encode(ca).decode()
    for document in documents:
        document["metadata"]["name"] = f"capi-proof-{document['metadata']['name']}"
        for hook in document["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
    return [d for d in documents if d]


def management_objects(cluster_name: str) -> list[tuple[resources.Resource, dict[str, Any]]]:
    def infra(kind: str, name: str) -> tuple[resources.Resource, dict[str, Any]]:
        resource = resources.Resource(GROUP_INFRA, "v1beta2", kind.lower() + "s", namespaced=True)
        return resource, {"apiVersion": f"{GROUP_INFRA}/v1beta2", "kind": kind, "metadata": {"name": name},
                          "spec": {"template": {"spec": {}}}}  # fmt: skip

    template = resources.Resource("controlplane.cluster.x-k8s.io", "v1beta2", "kubeadmcontrolplanetemplates",
                                  namespaced=True)  # fmt: skip
    ref = {"apiVersion": f"{GROUP_INFRA}/v1beta2"}
    return [
        infra("GenericInfrastructureClusterTemplate", "proof-infra"),
        infra("GenericInfrastructureMachineTemplate", "proof-cp-machine"),
        (template, {"apiVersion": "controlplane.cluster.x-k8s.io/v1beta2", "kind": "KubeadmControlPlaneTemplate",
                    "metadata": {"name": "proof-cp"},
                    "spec": {"template": {"spec": {"kubeadmConfigSpec": {"format": "cloud-config"}}}}}),
        (CLUSTER_CLASSES, {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "ClusterClass",
                           "metadata": {"name": "proof-class"},
                           "spec": {
                               "controlPlane": {
                                   "templateRef": {"apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
                                                   "kind": "KubeadmControlPlaneTemplate", "name": "proof-cp"},
                                   "machineInfrastructure": {"templateRef": {
                                       **ref, "kind": "GenericInfrastructureMachineTemplate",
                                       "name": "proof-cp-machine"}},
                               },
                               "infrastructure": {"templateRef": {
                                   **ref, "kind": "GenericInfrastructureClusterTemplate", "name": "proof-infra"}},
                           }}),
        (CLUSTERS, {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster", "metadata": {"name": cluster_name},
                    "spec": {"topology": {"classRef": {"name": "proof-class"}, "version": FROM,
                                          "controlPlane": {"replicas": 1}}}}),
    ]  # fmt: skip


async def create(kube: client.Kube, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return await kube.create(path, body)
    except client.ApiError as error:
        if not error.already_exists:
            raise
        return body


async def token_kubeconfig(kube: client.Kube, plane: controlplane.ControlPlane) -> str:
    """A kubeconfig (inline, as Cluster API writes one) whose token may get the verdict ConfigMap only."""
    await create(
        kube, cluster.SERVICEACCOUNTS.path(namespace=WORKLOAD), {"metadata": {"name": "verdict-reader"}}
    )
    await create(kube, ROLES.path(namespace=WORKLOAD), {"metadata": {"name": "verdict-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [VERDICT], "verbs": ["get"]}]})  # fmt: skip
    await create(kube, ROLE_BINDINGS.path(namespace=WORKLOAD), {
        "metadata": {"name": "verdict-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "verdict-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "verdict-reader", "namespace": WORKLOAD}]})  # fmt: skip
    path = f"{cluster.SERVICEACCOUNTS.path(namespace=WORKLOAD, name='verdict-reader')}/token"
    token = (await kube.request("POST", path, body={"spec": {"expirationSeconds": 7200}}))["status"]["token"]
    ca = base64.b64encode((plane.pki / "ca.crt").read_bytes()).decode()
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "prod",
        "clusters": [{"name": "prod", "cluster": {"server": plane.server, "certificate-authority-data": ca}}],
        "users": [{"name": "relay", "user": {"token": token}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "relay"}}],
    })  # fmt: skip


async def control_plane_object(
    kube: client.Kube, *, namespace: str = NAMESPACE, cluster_name: str = "prod"
) -> dict[str, Any] | None:
    found = await kube.list_items(KCP.path(namespace=namespace),
                                  query={"labelSelector": f"cluster.x-k8s.io/cluster-name={cluster_name}"})  # fmt: skip
    return found[0] if found else None


def topology_message(obj: dict[str, Any]) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "TopologyReconciled":
            return str(condition.get("message") or condition.get("reason") or "")
    return ""


# --- the proof ---------------------------------------------------------------------------------------


async def prove(plane: controlplane.ControlPlane, scratch: pathlib.Path, processes: list[Process]) -> None:
    timeline = Timeline()
    manager_binary = await asyncio.to_thread(controlplane.tool_path, "capi-manager")
    timeline.mark(
        f"Cluster API core manager {capi.version()}: {manager_binary.name} (built from the module proxy)"
    )
    ca = certificates(scratch / "certs")
    async with await client.connect(kubeconfig=str(plane.kubeconfig)) as kube:
        files = crd_files()
        crds = capi.crds(*files) + [generic_crd(kind) for kind in INFRA]
        for crd in crds:
            await create(kube, resources.CRDS.path(), crd)

        async def all_established() -> bool:
            return all([await established(kube, crd["metadata"]["name"]) for crd in crds])

        await until(all_established, within=60, what="the CRDs to be Established")
        timeline.mark(f"{len(crds)} CRDs: the module's {len(files)} files (labelled {capi.CONTRACT_LABEL}) "
                      f"and {len(INFRA)} generic infrastructure kinds")  # fmt: skip
        webhook_port, health_port, diagnostics = (controlplane.free_port() for _ in range(3))
        for document in webhooks(port=webhook_port, ca=ca):
            await create(
                kube, (MUTATING if document["kind"].startswith("Mutating") else VALIDATING).path(), document
            )
        argv = [str(manager_binary), f"--kubeconfig={plane.kubeconfig}",
                "--feature-gates=ClusterTopology=true,RuntimeSDK=true", f"--webhook-port={webhook_port}",
                f"--webhook-cert-dir={scratch / 'certs'}", f"--health-addr=127.0.0.1:{health_port}",
                f"--diagnostics-address=127.0.0.1:{diagnostics}", "--insecure-diagnostics", "--leader-elect=false"]  # fmt: skip
        with started("capi-manager", argv, scratch, processes):

            async def ready() -> bool:
                return await asyncio.to_thread(http_ok, f"http://127.0.0.1:{health_port}/readyz")

            await until(ready, within=180, what="the core manager to be ready")
            timeline.mark(
                "core manager ready: ClusterTopology and RuntimeSDK on, its webhooks registered on 127.0.0.1"
            )
            await run_the_gate(kube, plane, scratch, processes, timeline, ca)


async def established(kube: client.Kube, name: str) -> bool:
    crd = await kube.get(resources.CRDS.path(name=name))
    return any(
        c["type"] == "Established" and c["status"] == "True"
        for c in crd.get("status", {}).get("conditions") or []
    )


async def run_the_gate(
    kube: client.Kube, plane: controlplane.ControlPlane, scratch: pathlib.Path, processes: list[Process],
    timeline: Timeline, ca: bytes,
) -> None:  # fmt: skip
    for namespace in (WORKLOAD, NAMESPACE, CONTROL, "capi-gate"):
        labels = GATED if namespace == NAMESPACE else {}
        await create(kube, resources.NAMESPACES.path(), {"metadata": {"name": namespace, "labels": labels}})
    nodes = cluster.Nodes(kube)
    await nodes.create("proof-master", version=FROM, master=True)
    await nodes.create("proof-worker", version="v1.34.6")
    # Plain HTTP metrics on 127.0.0.1: the proof reads the extension's answers there.
    common = ["--kubeconfig", str(plane.kubeconfig), "--log-format", "text", "--no-metrics-secure"]
    readiness_port, relay_port, extension_port = (controlplane.free_port() for _ in range(3))
    readiness = [str(BIN / "upgrade-readiness"), *common, "--namespace", WORKLOAD, "--release", RELEASE,
                 "--checks", "kubelet-skew", "--settle-seconds", "0", "--evaluate-interval-seconds", "2",
                 f"--metrics-bind-address=127.0.0.1:{readiness_port}",
                 f"--health-probe-bind-address=127.0.0.1:{readiness_port}"]  # fmt: skip
    with started("upgrade-readiness", readiness, scratch, processes):
        await until(lambda: verdict_says(kube, "false"), within=60, what="the workload's verdict")
        verdict = (await kube.get(resources.CONFIGMAPS.path(namespace=WORKLOAD, name=VERDICT)))["data"]
        timeline.mark(
            f"workload cluster: upgrade-readiness says not upgradeable to {verdict['target']}: {verdict['reasons']}"
        )
        secret = {"metadata": {"name": "prod-kubeconfig", "labels": {"cluster.x-k8s.io/cluster-name": "prod"}},
                  "type": "cluster.x-k8s.io/secret",
                  "data": {"value": base64.b64encode((await token_kubeconfig(kube, plane)).encode()).decode()}}  # fmt: skip
        await create(kube, SECRETS.path(namespace=NAMESPACE), secret)
        relay = [str(BIN / "verdict-relay"), *common, "--namespace", "capi-gate", "--release", "gate",
                 "--cluster-namespaces", NAMESPACE, "--verdict-namespace", WORKLOAD, "--verdict-config-map", VERDICT,
                 "--poll-interval-seconds", "2", "--retry-after-seconds", str(RETRY_AFTER),
                 f"--extension-bind-address=127.0.0.1:{extension_port}", f"--extension-cert-dir={scratch / 'certs'}",
                 f"--metrics-bind-address=127.0.0.1:{relay_port}", f"--health-probe-bind-address=127.0.0.1:{relay_port}"]  # fmt: skip
        with started("verdict-relay", relay, scratch, processes):
            extension = {"apiVersion": "runtime.cluster.x-k8s.io/v1beta2", "kind": "ExtensionConfig",
                         "metadata": {"name": "upgrade-gate"},
                         "spec": {"clientConfig": {"url": f"https://127.0.0.1:{extension_port}",
                                                   "caBundle": base64.b64encode(ca).decode()},
                                  "namespaceSelector": {"matchLabels": GATED}}}  # fmt: skip
            await create(kube, EXTENSION_CONFIGS.path(), extension)

            async def discovered() -> bool:
                found = await kube.get(EXTENSION_CONFIGS.path(name="upgrade-gate"))
                return len((found.get("status") or {}).get("handlers") or []) == 2

            await until(discovered, within=120, what="Cluster API to discover the extension")
            handlers = (await kube.get(EXTENSION_CONFIGS.path(name="upgrade-gate")))["status"]["handlers"]
            timeline.mark(
                "ExtensionConfig discovered: "
                + ", ".join(
                    f"{h['name']} ({h['requestHook']['hook']}, failurePolicy {h['failurePolicy']})"
                    for h in handlers
                )
            )
            for namespace, cluster_name in ((NAMESPACE, "prod"), (CONTROL, "control")):
                for resource, body in management_objects(cluster_name):
                    await create(kube, resource.path(namespace=namespace), body)

            async def created() -> bool:
                return (await control_plane_object(kube) is not None
                        and await control_plane_object(kube, namespace=CONTROL, cluster_name="control") is not None)  # fmt: skip

            await until(created, within=120, what="the topology controller to create the KubeadmControlPlane")
            await hold_then_proceed(kube, plane, timeline, relay_port)


async def verdict_says(kube: client.Kube, upgradeable: str) -> bool:
    try:
        found = await kube.get(resources.CONFIGMAPS.path(namespace=WORKLOAD, name=VERDICT))
    except client.ApiError as error:
        if error.not_found:
            return False
        raise
    return bool((found.get("data") or {}).get("upgradeable") == upgradeable)


async def hold_then_proceed(
    kube: client.Kube, plane: controlplane.ControlPlane, timeline: Timeline, relay_port: int
) -> None:
    control_plane = await control_plane_object(kube)
    control = await control_plane_object(kube, namespace=CONTROL, cluster_name="control")
    assert control_plane is not None and control is not None
    name = control_plane["metadata"]["name"]
    timeline.mark(f"the topology controller created KubeadmControlPlane {name} at spec.version "
                  f"{control_plane['spec']['version']} (and {control['metadata']['name']} for the control Cluster "
                  f"in {CONTROL}, a namespace the ExtensionConfig does not select)")  # fmt: skip
    # No KubeadmControlPlane controller and no machines run here: say what one would once the control plane
    # runs its version (the topology controller upgrades only a stable control plane).
    for each in (control_plane, control):
        stable = {"status": {"version": FROM, "replicas": 1, "upToDateReplicas": 1, "readyReplicas": 1,
                             "availableReplicas": 1, "observedGeneration": each["metadata"]["generation"],
                             "initialization": {"controlPlaneInitialized": True}}}  # fmt: skip
        meta = each["metadata"]
        await kube.patch(
            KCP.path(namespace=meta["namespace"], name=meta["name"], subresource="status"), stable
        )
    timeline.mark(
        f"their status set as a KubeadmControlPlane controller would: running {FROM}, 1/1 replicas up to date"
    )
    await until(lambda: mirrored(kube), within=60, what="the relay to mirror the verdict")
    await kube.patch(CLUSTERS.path(namespace=NAMESPACE, name="prod"), {"spec": {"topology": {"version": TO}}})
    await kube.patch(
        CLUSTERS.path(namespace=CONTROL, name="control"), {"spec": {"topology": {"version": TO}}}
    )
    bumped = time.monotonic()
    timeline.mark(f"Clusters prod and control: spec.topology.version {FROM} -> {TO} (admitted: no admission "
                  "policy here)")  # fmt: skip

    async def control_moved() -> bool:
        found = await control_plane_object(kube, namespace=CONTROL, cluster_name="control") or {}
        return bool(found.get("spec", {}).get("version") == TO)

    await until(
        control_moved, within=60, what="the control Cluster's KubeadmControlPlane to move (no extension)"
    )
    timeline.mark(f"control (no extension called): its KubeadmControlPlane at {TO} after "
                  f"{time.monotonic() - bumped:.1f} s")  # fmt: skip
    held = False
    while time.monotonic() - bumped < HOLD_SECONDS:
        version = (await control_plane_object(kube) or {}).get("spec", {}).get("version")
        if version != FROM:
            raise ProofFailed(
                f"the KubeadmControlPlane's spec.version moved to {version} while the gate is closed"
            )
        message = topology_message(await kube.get(CLUSTERS.path(namespace=NAMESPACE, name="prod")))
        if not held and "BeforeClusterUpgrade" in message and "not upgradeable" in message:
            held = True
            timeline.mark(f"Cluster prod TopologyReconciled: {' | '.join(message.splitlines())}")
        await asyncio.sleep(1)
    holds = await asyncio.to_thread(metric, relay_port, "verdict_relay_hook_answers_total", answer="hold")
    if not held or holds < 1:
        raise ProofFailed(f"no hold seen (condition: {held}, hold answers: {holds})")
    timeline.mark(f"held for {HOLD_SECONDS:.0f} s: spec.version still {FROM}; the extension answered 'hold' "
                  f"{holds:.0f} times (retryAfterSeconds {RETRY_AFTER})")  # fmt: skip
    until_time = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    argv = [str(BIN / "kube-upgrade-controllers"), "readiness", "ack", "--kubeconfig", str(plane.kubeconfig),
            "--target", "v1.38", "--until", until_time, "--checks", "kubelet-skew", "--reason", "capi-proof",
            "-n", WORKLOAD, "--release", RELEASE]  # fmt: skip
    acked = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=120)
    if acked.returncode != 0:
        raise ProofFailed(f"readiness ack exited {acked.returncode}: {acked.stderr.strip()}")
    acknowledged = time.monotonic()
    timeline.mark(
        "$ kube-upgrade-controllers readiness ack --target v1.38 --until "
        + until_time
        + " --checks kubelet-skew --reason capi-proof -n kube-upgrade --release kube-upgrade-controllers"
    )
    for line in acked.stdout.strip().splitlines():
        timeline.mark(f"  {line}")

    async def moved() -> bool:
        return bool((await control_plane_object(kube) or {}).get("spec", {}).get("version") == TO)

    await until(lambda: verdict_says(kube, "true"), within=60, what="the workload's verdict to turn")
    timeline.mark("workload cluster: upgradeable to 1.38 (kubelet-skew acknowledged)")
    await until(moved, within=120, what=f"the KubeadmControlPlane's spec.version to become {TO}")
    proceeds = await asyncio.to_thread(
        metric, relay_port, "verdict_relay_hook_answers_total", answer="proceed"
    )
    timeline.mark(f"KubeadmControlPlane {name}: spec.version {TO}, {time.monotonic() - acknowledged:.1f} s after the "
                  f"acknowledgement (the extension answered 'proceed' {proceeds:.0f} times)")  # fmt: skip


async def mirrored(kube: client.Kube) -> bool:
    try:
        found = await kube.get(resources.CONFIGMAPS.path(namespace=NAMESPACE, name="gate-upgrade-verdicts"))
    except client.ApiError as error:
        if error.not_found:
            return False
        raise
    return bool((found.get("data") or {}).get("prod.target") == "1.38")


def main() -> int:
    processes: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="capi-proof-") as directory, controlplane.running() as plane:
        scratch = pathlib.Path(directory)
        try:
            asyncio.run(prove(plane, scratch, processes))
        except ProofFailed as error:
            print(f"capi-proof FAILED: {error}", file=sys.stderr)
            for process in processes:
                print(f"--- {process.name} (last lines) ---\n{process.tail()}", file=sys.stderr)
            return 1
    print(
        "capi-proof: the upgrade gate held Cluster API's topology upgrade while blocked and let it proceed after the ack"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

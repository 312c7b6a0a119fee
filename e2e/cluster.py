"""Shaping a cluster on the local control plane, for the tests and the benchmarks: Nodes with versions,
readiness, roles.

There is no kubelet in the fixture: a Node is an object the caller creates, and its status is whatever the
caller patches through the ``status`` subresource.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import uuid
from collections.abc import Iterable, Mapping

from controllers.kube import client, resources

NODES = resources.NODES
SERVICEACCOUNTS = resources.Resource("", "v1", "serviceaccounts", namespaced=True)
CLUSTER_ROLES = resources.Resource("rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDINGS = resources.Resource(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False
)
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


async def service_account_kubeconfig(
    kube: client.Kube,
    *,
    server: str,
    ca: pathlib.Path,
    namespace: str,
    name: str,
    path: pathlib.Path,
    seconds: int = 3600,
) -> pathlib.Path:
    """Write a kubeconfig that authenticates as the ServiceAccount ``namespace/name`` with a token from
    TokenRequest (valid ``seconds``), as a pod of it would; returns ``path``."""
    token = await service_account_token(kube, namespace=namespace, name=name, seconds=seconds)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fixture", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "fixture", "user": name}}],
        "current-context": name,
    }
    text = json.dumps(config, indent=2) + "\n"  # JSON is YAML: any kubeconfig reader takes it
    await asyncio.to_thread(path.write_text, text)
    return path


async def service_account_token(kube: client.Kube, *, namespace: str, name: str, seconds: int = 600) -> str:
    """A token of the ServiceAccount ``namespace/name`` from TokenRequest (valid ``seconds``), the way a pod
    of it gets its projected token."""
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": seconds},
    }
    sa = SERVICEACCOUNTS.path(namespace=namespace, name=name)
    return str((await kube.request("POST", f"{sa}/token", body=request))["status"]["token"])


async def grant_metrics_reader(kube: client.Kube, *, namespace: str, account: str) -> str:
    """A ClusterRole like the chart's metrics-reader (get /metrics, /status, /status/*) bound to the
    ServiceAccount ``namespace/account``: what a scraper of the secure default needs. Returns the binding's
    name (the ClusterRole's too)."""
    name = f"metrics-reader-{uuid.uuid4().hex[:8]}"
    rules = [{"nonResourceURLs": ["/metrics", "/status", "/status/*"], "verbs": ["get"]}]
    await kube.create(CLUSTER_ROLES.path(), {"metadata": {"name": name}, "rules": rules})
    await kube.create(
        CLUSTER_ROLE_BINDINGS.path(),
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )
    return name


def node_status(*, version: str, ready: bool = True, address: str = "") -> client.JSON:
    status: client.JSON = {
        "nodeInfo": {"kubeletVersion": version},
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "Test"}],
    }
    if address:
        status["addresses"] = [{"type": "InternalIP", "address": address}]
    return status


@dataclasses.dataclass
class Nodes:
    """Creates Nodes and deletes every one of them at the end (the tests' ``nodes`` fixture, the benchmarks)."""

    kube: client.Kube
    created: set[str] = dataclasses.field(default_factory=set)

    async def create(
        self,
        name: str,
        *,
        version: str,
        master: bool = False,
        ready: bool = True,
        labels: Mapping[str, str] | None = None,
        address: str = "",
    ) -> client.JSON:
        all_labels = {**(labels or {}), **({CONTROL_PLANE: ""} if master else {})}
        await self.kube.create(NODES.path(), {"metadata": {"name": name, "labels": all_labels}})
        self.created.add(name)
        return await self.set_status(name, version=version, ready=ready, address=address)

    async def create_many(
        self, names: Iterable[str], *, version: str, master: bool = False, concurrency: int = 32
    ) -> None:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(name: str) -> None:
            async with semaphore:
                await self.create(name, version=version, master=master)

        await asyncio.gather(*(one(name) for name in names))

    async def set_status(
        self, name: str, *, version: str, ready: bool = True, address: str = ""
    ) -> client.JSON:
        return await self.kube.patch(
            NODES.path(name=name, subresource="status"),
            {"status": node_status(version=version, ready=ready, address=address)},
        )

    async def delete(self, name: str) -> None:
        try:
            await self.kube.delete(NODES.path(name=name))
        except client.ApiError as error:
            if not error.not_found:
                raise
        self.created.discard(name)

    async def delete_all(self) -> None:
        await asyncio.gather(*(self.delete(name) for name in list(self.created)))

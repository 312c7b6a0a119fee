"""What kubeadm and the kubelets put into kube-system, made on the real apiserver from the fixtures
(tests/fixtures/kubeadm) for a test and deleted after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from controllers.kube import client, resources
from tests.fixtures import kubeadm

PODS, CONFIGMAPS = resources.PODS, resources.CONFIGMAPS
KUBE_SYSTEM = "kube-system"


class KubeSystem:
    """What kubeadm and the kubelets put into kube-system, made from the fixtures and deleted at the end: the
    static pods' mirror pods of each control plane, and kubeadm's three ConfigMaps."""

    def __init__(self, kube: client.Kube) -> None:
        self.kube = kube
        self.pods: set[str] = set()

    async def control_planes(self, release: str, variant: str, nodes: Iterable[str]) -> None:
        """Each node's static pods, as their mirror pods (replacing those the node had: kubeadm rewrites the
        manifests, the kubelet makes new mirror pods)."""
        for node in nodes:
            for name in kubeadm.STATIC_PODS:
                pod = kubeadm.mirror_pod(kubeadm.load(release, variant, name), node=node)
                await self._delete(PODS.path(namespace=KUBE_SYSTEM, name=pod["metadata"]["name"]))
                await self.kube.create(PODS.path(namespace=KUBE_SYSTEM), pod)
                self.pods.add(pod["metadata"]["name"])

    async def config_maps(self, release: str, variant: str, *, edit: dict[str, Any] | None = None) -> None:
        """kubeadm's ConfigMaps as it writes them (``edit``: a ConfigMap's data key replaced, by name)."""
        for name in kubeadm.CONFIGMAPS:
            document = kubeadm.load(release, variant, name)
            document["data"].update((edit or {}).get(name, {}))
            path = CONFIGMAPS.path(namespace=KUBE_SYSTEM, name=name)
            try:
                current = await self.kube.get(path)
            except client.ApiError as error:
                if not error.not_found:
                    raise
                await self.kube.create(CONFIGMAPS.path(namespace=KUBE_SYSTEM), document)
            else:
                current["data"] = document["data"]
                await self.kube.replace(path, current)

    async def delete_all(self) -> None:
        for name in sorted(self.pods):
            await self._delete(PODS.path(namespace=KUBE_SYSTEM, name=name))
        for name in kubeadm.CONFIGMAPS:
            await self._delete(CONFIGMAPS.path(namespace=KUBE_SYSTEM, name=name))

    async def _delete(self, path: str) -> None:
        with contextlib.suppress(client.ApiError):
            await self.kube.delete(path, query={"gracePeriodSeconds": 0})

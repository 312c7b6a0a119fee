"""Shared fixtures: one real control plane (etcd + kube-apiserver) per test session."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from controllers.kube import client, resources
from e2e import cluster, controlplane


@pytest.fixture(scope="session")
def control_plane() -> Iterator[controlplane.ControlPlane]:
    """etcd + kube-apiserver on loopback, started once; ``.kubeconfig`` is an admin kubeconfig."""
    with controlplane.running() as plane:
        yield plane


@pytest.fixture
def kubeconfig(control_plane: controlplane.ControlPlane) -> str:
    return str(control_plane.kubeconfig)


@pytest.fixture
async def kube(kubeconfig: str) -> AsyncIterator[client.Kube]:
    """A ready client (``.api_client`` is its kubernetes_asyncio ApiClient) on this test's event loop."""
    async with await client.connect(kubeconfig=kubeconfig) as connected:
        yield connected


@pytest.fixture
async def namespace(kube: client.Kube, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test. (The fixture runs no namespace controller, so it is not deleted.)"""
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": name}})
    return name


@pytest.fixture
async def nodes(kube: client.Kube) -> AsyncIterator[cluster.Nodes]:
    """Creates Nodes for the test and deletes them afterwards (Nodes are cluster-scoped)."""
    tracker = cluster.Nodes(kube)
    try:
        yield tracker
    finally:
        await tracker.delete_all()

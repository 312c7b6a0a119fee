"""uso-runner's sync under the skeleton's error contract (issue #20): it never waits for a run, and what is
not a resource's own failure propagates to the skeleton (which retries with backoff) instead of being turned
into a 300 s retry."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from controllers.kube import client
from controllers.uso_runner import controller
from e2e import cluster, controlplane
from tests import harness
from tests.integration import uso_helpers as h


class UnavailableConfigMaps:
    """The client's HTTP session, except that reads of ConfigMaps get the 503 of an apiserver going away."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        if method == "GET" and "/configmaps/" in str(url):
            raise client.ApiError(status=503, body={"reason": "ServiceUnavailable"})
        return self.session.request(method, url, **kwargs)


async def test_a_transient_api_error_propagates_out_of_sync(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version="v1.37.2", master=True)
    uso = h.runner(kube, namespace=namespace, release=release, argv=["--once"])
    await uso.ctx.agreements.now()
    kube._session = UnavailableConfigMaps(kube._session)  # type: ignore[assignment]
    with pytest.raises(client.ApiError) as raised:
        await uso.sync()
    assert raised.value.status == 503


async def test_sync_never_waits_for_a_run(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    """A StorageVersionMigration nobody picks up (no kube-controller-manager) keeps the run going for up to
    --builtin-pickup-seconds; the daemon's loop is free meanwhile (the run is spawned beside it)."""
    widgets = await h.crd_with_widgets(kube, namespace=namespace, objects=5)
    group = widgets.group
    await h.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v2")
    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version="v1.37.2", master=True)
    cfg = h.runner_config(
        namespace=namespace,
        release=release,
        argv=[
            "--settle-seconds=0",
            "--method=builtin",
            "--builtin-pickup-seconds=600",
            f"--resources=widgets.{group}",
        ],
    )
    async with harness.running(controller.UsoRunner, kube, cfg) as uso:
        await harness.eventually(lambda: uso.status().get("reason") == "run in progress", timeout=30,
                                 what="the run in progress, in /status")  # fmt: skip

        async def created() -> bool:
            return len(await h.our_migrations(kube, release)) == 1

        await harness.eventually(created, timeout=30, what="the StorageVersionMigration")
        # The loop still syncs: a wake while the run waits returns at once.
        async with asyncio.timeout(10):
            result = await uso.sync()
        assert result.ok and uso.status()["reason"] == "run in progress"

"""A RawExtension the apiserver compares byte for byte (ControllerRevision ``data`` is immutable) survives a
rewrite: the client sends JSON back as Go wrote it. Found on a real kind cluster, where uso-runner's first run
failed on kube-proxy's ControllerRevision with 422 "data: field is immutable"."""

from __future__ import annotations

import prometheus_client

from controllers.kube import client, discovery, resources
from controllers.runtime import metrics as runtime_metrics
from controllers.uso_runner import metrics
from controllers.uso_runner.effects import migrate

REVISIONS = resources.Resource("apps", "v1", "controllerrevisions", namespaced=True)
# As kube-controller-manager writes a DaemonSet's revision: compact, keys as Go orders them, "&" escaped.
GO_WRITTEN = (
    '{"apiVersion":"apps/v1","kind":"ControllerRevision","metadata":{"name":"%s"},"revision":1,'
    '"data":{"spec":{"template":{"$patch":"replace","spec":{"containers":[{"command":["sh","-c",'
    '"sleep 1 \\u0026\\u0026 echo \\u003cdone\\u003e é"],"name":"c","image":"i"}]}}}}}'
)


async def test_a_controller_revision_is_put_back_unchanged(kube: client.Kube, namespace: str) -> None:
    path = REVISIONS.path(namespace=namespace)
    await kube.request("POST", path, body=GO_WRITTEN % "rev-1")
    listed = await kube.get(REVISIONS.path(namespace=namespace, name="rev-1"))
    # The same object, written back as read: the apiserver accepts it (a 422 before the encoder matched Go's).
    replaced = await kube.replace(REVISIONS.path(namespace=namespace, name="rev-1"), listed)
    assert replaced["data"] == listed["data"]

    exporter = runtime_metrics.Exporter(prefix="t", registry=prometheus_client.CollectorRegistry())
    migrator = migrate.Migrator(kube=kube, metrics=metrics.Metrics(exporter))
    revisions = discovery.ApiResource(
        group="apps", version="v1", name="controllerrevisions", kind="ControllerRevision", namespaced=True,
        verbs=frozenset({"list", "update"}), storage_version_hash="",
    )  # fmt: skip
    result = await migrator.migrate(revisions, target="v1.36.0")
    assert result.ok and result.failed == 0

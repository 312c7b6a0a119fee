"""verdict-relay's reads and writes: a workload cluster's verdict through its ``<cluster>-kubeconfig`` Secret
(read, never logged: errors say what failed, never a value), and the mirror ConfigMaps it writes."""

from __future__ import annotations

import base64
import binascii

import aiohttp

from controllers.kube import client, remote, resources, retry
from controllers.structs import gate
from controllers.verdict_relay import logic

CLUSTERS = resources.Resource("cluster.x-k8s.io", "v1beta2", "clusters", namespaced=True)
SECRETS = resources.Resource("", "v1", "secrets", namespaced=True)
# What a workload cluster that does not answer raises (a reading without a verdict, not a bug).
UNANSWERED = (client.ApiError, aiohttp.ClientError, TimeoutError, OSError)


async def read_verdict(
    kube: client.Kube,
    *,
    cluster: logic.ClusterRef,
    verdict_namespace: str,
    verdict_name: str,
    request_timeout: float,
) -> logic.Reading:
    """The workload cluster's verdict (its ConfigMap ``verdict_namespace/verdict_name``), read with the
    kubeconfig in the Cluster's Secret; or why it could not be read."""
    secret_name = f"{cluster.name}{logic.KUBECONFIG_SUFFIX}"
    try:
        secret = await kube.get(SECRETS.path(namespace=cluster.namespace, name=secret_name))
    except client.ApiError as error:
        if error.not_found:
            return logic.Reading(None, f"no Secret {secret_name} (yet)")
        return logic.Reading(None, f"cannot read Secret {secret_name}: {retry.describe(error)}")
    encoded = (secret.get("data") or {}).get(logic.KUBECONFIG_KEY)
    try:
        text = base64.b64decode(encoded if isinstance(encoded, str) else "", validate=True)
        inline = remote.parse(text)
    except (binascii.Error, ValueError) as error:
        # RemoteConfigError says what is wrong without quoting; base64's errors quote nothing either.
        why = str(error) if isinstance(error, remote.RemoteConfigError) else "not base64"
        return logic.Reading(None, f"the kubeconfig in Secret {secret_name} ({logic.KUBECONFIG_KEY}): {why}")
    try:
        workload = remote.connect(inline, request_timeout=request_timeout)
    except remote.RemoteConfigError as error:
        return logic.Reading(None, f"the kubeconfig in Secret {secret_name}: {error}")
    where = f"ConfigMap {verdict_namespace}/{verdict_name}"
    try:
        configmap = await workload.get(
            resources.CONFIGMAPS.path(namespace=verdict_namespace, name=verdict_name)
        )
    except client.ApiError as error:
        if error.not_found:
            return logic.Reading(None, f"the cluster has no {where} (is upgrade-readiness installed there?)")
        return logic.Reading(None, f"reading {where}: the cluster answered {retry.describe(error)}")
    except UNANSWERED as error:
        return logic.Reading(None, f"cannot reach the cluster ({type(error).__name__})")
    finally:
        await workload.close()
    data = configmap.get("data")
    found = gate.read(data if isinstance(data, dict) else {})
    if isinstance(found, str):
        return logic.Reading(None, f"its {where}: {found}")
    return logic.Reading(found)


async def read_mirror(kube: client.Kube, *, namespace: str, name: str) -> dict[str, object] | str:
    """The mirror ConfigMap's data in ``namespace`` (for a hook), or why it cannot be had."""
    try:
        configmap = await kube.get(resources.CONFIGMAPS.path(namespace=namespace, name=name))
    except client.ApiError as error:
        if error.not_found:
            return f"no ConfigMap {namespace}/{name}: the relay has not mirrored a verdict there"
        return f"reading ConfigMap {namespace}/{name}: {retry.describe(error)}"
    except UNANSWERED as error:
        return f"reading ConfigMap {namespace}/{name}: {type(error).__name__}"
    data = configmap.get("data")
    return dict(data) if isinstance(data, dict) else {}

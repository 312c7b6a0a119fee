"""Every read upgrade-readiness makes beyond its watches (it writes nothing but its state, its verdict and
Events): each live apiserver's /metrics, and the next add-on bundle through addon-updater's own code
(controllers/bundles)."""

from __future__ import annotations

import asyncio

import aiohttp

from controllers.agreement.version import Version
from controllers.bundles import documents, model, source
from controllers.kube import resources
from controllers.kube.client import ApiError, Kube
from controllers.upgrade_readiness.checks import interface

KUBERNETES_SLICES = "kubernetes.io/service-name=kubernetes"  # label selector, in the default namespace
SCRAPE_TIMEOUT_SECONDS = 20.0
# What an apiserver that does not answer raises (a check that cannot be evaluated, not a bug).
UNANSWERED = (ApiError, aiohttp.ClientError, TimeoutError, OSError)


async def apiserver_bases(kube: Kube) -> list[str]:
    """``https://<address>:<port>`` of every address of the ``kubernetes`` Service's EndpointSlices: each live
    apiserver (one behind the Service would hide the others). Empty when the slices have none."""
    path = resources.ENDPOINT_SLICES.path(namespace="default")
    slices = await kube.list_items(path, query={"labelSelector": KUBERNETES_SLICES})
    bases = set()
    for item in slices:
        port = next((p.get("port") for p in item.get("ports") or [] if p.get("port")), 443)
        for endpoint in item.get("endpoints") or []:
            for address in endpoint.get("addresses") or []:
                host = f"[{address}]" if ":" in address else address  # an IPv6 address in a URL
                bases.add(f"https://{host}:{port}")
    return sorted(bases)


async def scrape(kube: Kube, *, base: str) -> interface.ApiserverMetrics:
    """One apiserver's deprecated-API metrics (``base`` "": the client's apiserver); a failure is reported
    in the result, not raised."""
    address = base or kube.host
    try:
        text = await kube.get_text("/metrics", base=base, request_timeout=SCRAPE_TIMEOUT_SECONDS)
    except UNANSWERED as error:
        return interface.ApiserverMetrics(
            address, {}, {}, error=f"cannot read /metrics: {str(error) or type(error).__name__}"
        )
    return await asyncio.to_thread(interface.parse_apiserver_metrics, text, address=address)


async def scrape_all(kube: Kube) -> list[interface.ApiserverMetrics]:
    """Every live apiserver's, or the client's apiserver's when the EndpointSlices name none (a control plane
    run with --endpoint-reconciler-type=none)."""
    try:
        bases = await apiserver_bases(kube)
    except UNANSWERED as error:
        return [
            interface.ApiserverMetrics(
                kube.host, {}, {}, error=f"cannot list the kubernetes EndpointSlices: {error}"
            )
        ]
    return list(await asyncio.gather(*(scrape(kube, base=base) for base in bases or [""])))


async def probe_bundle(
    kube: Kube,
    bundles: source.Source,
    *,
    target: Version,
    selection: model.BundleSelection,
    variables: dict[str, str],
    variables_config_map: str,
    namespace: str,
) -> interface.BundleProbe | str:
    """What the addon-bundle check judges: the bundle addon-updater would choose for ``target`` and whether it
    passes its validation (variables, documents), with addon-updater's own code; or why the bundle source
    cannot be read. Not its server-side dry-run: the objects are meant for the next release's apiserver, and
    this check writes nothing."""
    where = f"{bundles.kind} {bundles.directory if bundles.kind == 'directory' else bundles.namespace}"
    try:
        chosen = model.select_bundle(
            wanted=target.minor_key, available=await bundles.minors(), selection=selection
        )
        if chosen is None:
            return interface.BundleProbe(target.minor_text, "", where)
        found = await source.variables(
            kube, configured=variables, configmap=variables_config_map, namespace=namespace
        )
        try:
            documents.load(await bundles.load(chosen), variables=found)
        except model.BundleError as error:
            return interface.BundleProbe(target.minor_text, chosen, where, f"{error.reason}: {error}")
    except source.SourceError as error:
        return str(error)
    return interface.BundleProbe(target.minor_text, chosen, where)

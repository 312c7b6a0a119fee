"""The master Nodes (and, for the ``apiserver`` source, their kube-apiserver mirror pods) as watch stores.

One server-side label-selector watch per master selector alternative, so that only masters cross the wire
even in a 5,000-node cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

from controllers.agreement import masters, selector
from controllers.kube import resources, watch
from controllers.kube.client import JSON, Kube

APISERVER_POD_SELECTOR = "component=kube-apiserver"


def stores(
    *, selectors: Sequence[selector.Selector], source: masters.VersionSource
) -> tuple[watch.Store[JSON], ...]:
    """One store per master selector alternative, then (``apiserver`` source) one of the mirror pods."""
    found = [
        watch.Store(watch.Stream(resources.NODES, label_selector=s.text), watch.as_is) for s in selectors
    ]
    if source == "apiserver":
        pods = watch.Stream(resources.PODS, "kube-system", label_selector=APISERVER_POD_SELECTOR)
        found.append(watch.Store(pods, watch.as_is))
    return tuple(found)


def statuses(
    found: Sequence[watch.Store[JSON]],
    *,
    selectors: Sequence[selector.Selector],
    source: masters.VersionSource,
) -> tuple[masters.MasterStatus, ...]:
    """The masters' statuses from the stores of :func:`stores`."""
    nodes = {obj["metadata"]["name"]: obj for s in found[: len(selectors)] for obj in s.items.values()}
    pods = found[-1].items.values() if source == "apiserver" else ()
    return masters.master_statuses(nodes.values(), selectors=selectors, source=source, apiserver_pods=pods)


async def current_masters(
    kube: Kube, *, selectors: Sequence[selector.Selector], source: masters.VersionSource
) -> tuple[masters.MasterStatus, ...]:
    """The masters now (one list per store), without watching."""
    found = stores(selectors=selectors, source=source)
    for store in found:
        await watch.list_into(kube, store)
    return statuses(found, selectors=selectors, source=source)

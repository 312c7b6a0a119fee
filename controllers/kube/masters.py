"""Watch the master Nodes (and, for the ``apiserver`` source, their kube-apiserver mirror pods).

One server-side label-selector watch per master selector alternative, so that only masters cross the wire
even in a 5,000-node cluster; yields the masters' statuses after every change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from controllers.agreement import masters, selector
from controllers.kube import resources, watch
from controllers.kube.client import Kube

APISERVER_POD_SELECTOR = "component=kube-apiserver"


async def current_masters(
    kube: Kube, *, selectors: Sequence[selector.Selector], source: masters.VersionSource
) -> tuple[masters.MasterStatus, ...]:
    """The masters now (one list per selector), without watching."""
    nodes: dict[str, dict[str, object]] = {}
    for sel in selectors:
        async for page in kube.list_pages(resources.NODES.path(), query={"labelSelector": sel.text}):
            nodes.update({item["metadata"]["name"]: item for item in page.get("items", [])})
    pods: list[dict[str, object]] = []
    if source == "apiserver":
        query = {"labelSelector": APISERVER_POD_SELECTOR}
        async for page in kube.list_pages(resources.PODS.path(namespace="kube-system"), query=query):
            pods.extend(page.get("items", []))
    return masters.master_statuses(nodes.values(), selectors=selectors, source=source, apiserver_pods=pods)


async def watch_masters(
    kube: Kube, *, selectors: Sequence[selector.Selector], source: masters.VersionSource
) -> AsyncIterator[tuple[masters.MasterStatus, ...]]:
    """The masters' statuses, once all watches have listed and again after every change."""
    queue: asyncio.Queue[tuple[str, watch.WatchEvent | BaseException]] = asyncio.Queue()
    streams: dict[str, tuple[resources.Resource, str | None, str]] = {
        f"nodes[{sel.text}]": (resources.NODES, None, sel.text) for sel in selectors
    }
    if source == "apiserver":
        streams["apiserver-pods"] = (resources.PODS, "kube-system", APISERVER_POD_SELECTOR)

    async def pump(
        key: str, resource: resources.Resource, namespace: str | None, label_selector: str
    ) -> None:
        try:
            async for event in watch.watch(
                kube, resource, namespace=namespace, label_selector=label_selector
            ):
                await queue.put((key, event))
        except Exception as error:  # a bug, not an API error (those are retried): surface it to the reader
            await queue.put((key, error))

    stores = {key: watch.ObjectStore() for key in streams}
    synced: set[str] = set()
    tasks = [asyncio.create_task(pump(key, *spec), name=f"watch {key}") for key, spec in streams.items()]
    try:
        while True:
            key, event = await queue.get()
            if isinstance(event, BaseException):
                raise event
            stores[key].apply(event)
            if event.type == "SYNC":
                synced.add(key)
            if not queue.empty() or len(synced) < len(streams):
                continue  # coalesce a burst; report only once every watch has listed
            nodes = {
                name.split("/")[-1]: obj
                for k, s in stores.items()
                if k.startswith("nodes")
                for name, obj in s.objects.items()
            }
            pods = stores["apiserver-pods"].objects.values() if source == "apiserver" else ()
            yield masters.master_statuses(
                nodes.values(), selectors=selectors, source=source, apiserver_pods=pods
            )
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

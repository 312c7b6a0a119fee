"""list → watch, done the way the apiserver expects (after kopf and client-go's reflector).

Three nested layers: retry forever with jittered backoff > list then watch from the list's resourceVersion,
re-list on 410 Gone > one watch request with bookmarks and an inactivity timeout. Consumers get a ``SYNC``
event with the full listing after every (re)list, so a re-list never loses a deletion.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncGenerator, Iterable
from typing import Literal

from controllers.kube import retry
from controllers.kube.client import JSON, ApiError, Kube
from controllers.kube.resources import Resource
from controllers.structs import refs

log = logging.getLogger(__name__)

EventType = Literal["SYNC", "ADDED", "MODIFIED", "DELETED"]

# The apiserver sends a bookmark about once a minute; silence well beyond that means a dead connection.
INACTIVITY_TIMEOUT = 70.0


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    object: JSON | None = None
    objects: tuple[JSON, ...] = ()


class _Relist(Exception):
    """The resourceVersion we watch from is gone: list again."""


async def watch(
    kube: Kube,
    resource: Resource,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    resource_version: str | None = None,
    inactivity_timeout: float = INACTIVITY_TIMEOUT,
    backoff: retry.Backoff | None = None,
) -> AsyncGenerator[WatchEvent]:
    """Events of ``resource`` forever. ``resource_version`` starts by watching from there (no first list).
    A consumer that stops early wraps it in ``contextlib.aclosing``: that ends the watch request at once,
    not at some later garbage collection (after which the connection may already be unusable)."""
    backoff = backoff or retry.Backoff()
    path = resource.path(namespace=namespace)
    selectors: dict[str, str | int | bool] = {}
    if label_selector:
        selectors["labelSelector"] = label_selector
    if field_selector:
        selectors["fieldSelector"] = field_selector
    version = resource_version
    while True:
        try:
            if version is None:
                objects, version = await _list(kube, path, selectors)
                backoff.reset()
                yield WatchEvent("SYNC", objects=tuple(objects))
            # Each level closes the one below it: a consumer's aclose() then ends the request at once.
            events = _watch_once(
                kube, path, selectors, version=version, inactivity_timeout=inactivity_timeout
            )
            async with contextlib.aclosing(events):
                async for event, resume_from in events:
                    version = resume_from
                    backoff.reset()
                    yield event
        except _Relist:
            log.info("watch of %s: resourceVersion %s is gone, re-listing", resource.group_resource, version)
            version = None
        except Exception as error:
            reason = retry.classify(error)
            if reason is None:
                raise
            if reason == "gone":
                version = None
                continue
            delay = backoff.next_delay()
            log.warning(
                "watch of %s failed (%s: %s); retrying in %.1f s",
                resource.group_resource,
                type(error).__name__,
                error,
                delay,
            )
            await asyncio.sleep(delay)


async def _list(kube: Kube, path: str, selectors: dict[str, str | int | bool]) -> tuple[list[JSON], str]:
    objects: list[JSON] = []
    version = ""
    async for page in kube.list_pages(path, query=selectors):
        objects.extend(page.get("items", []))
        version = page.get("metadata", {}).get("resourceVersion", version)
    return objects, version


async def _watch_once(
    kube: Kube,
    path: str,
    selectors: dict[str, str | int | bool],
    *,
    version: str,
    inactivity_timeout: float,
) -> AsyncGenerator[tuple[WatchEvent, str]]:
    """One watch request; yields (event, resourceVersion to resume from). Ends when the server closes it."""
    query: dict[str, str | int | bool] = {
        **selectors,
        "watch": True,
        "allowWatchBookmarks": True,
        "resourceVersion": version,
        # The server ends the request after this; spread reconnects of many clients.
        "timeoutSeconds": random.randint(300, 600),
    }
    lines = kube.stream_lines(path, query=query, inactivity_timeout=inactivity_timeout)
    async with contextlib.aclosing(lines):
        async for line in lines:
            kind = line.get("type")
            obj = line.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Relist
                raise ApiError(status=int(obj.get("code") or 500), body=obj)
            version = obj.get("metadata", {}).get("resourceVersion", version)
            if kind == "BOOKMARK":
                continue
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                yield WatchEvent(kind, object=obj), version


class ObjectStore:
    """The current objects of a watch, by ``namespace/name``; feed it every event."""

    def __init__(self, objects: Iterable[JSON] = ()) -> None:
        self.objects: dict[str, JSON] = {refs.object_key(obj): obj for obj in objects}

    def apply(self, event: WatchEvent) -> None:
        if event.type == "SYNC":
            self.objects = {refs.object_key(obj): obj for obj in event.objects}
        elif event.object is not None:
            key = refs.object_key(event.object)
            if event.type == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = event.object

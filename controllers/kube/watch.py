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
from collections.abc import AsyncGenerator, Callable
from typing import Any, Generic, Literal, TypeVar

from controllers.kube import retry
from controllers.kube.client import JSON, ApiError, Kube, QueryValue
from controllers.kube.resources import Resource
from controllers.structs import refs

log = logging.getLogger(__name__)

ChangeType = Literal["SYNC", "ADDED", "MODIFIED", "DELETED"]
T = TypeVar("T")

# The apiserver sends a bookmark about once a minute; silence well beyond that means a dead connection.
INACTIVITY_TIMEOUT = 70.0
# How often an optional stream whose resource is not served looks again.
UNSERVED_RECHECK = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change, or (``SYNC``) a whole listing with the ``resource_version`` it was read at."""

    type: ChangeType
    object: JSON | None = None
    objects: tuple[JSON, ...] = ()
    resource_version: str = ""


class _Relist(Exception):
    """The resourceVersion we watch from is gone: list again."""


async def watch(
    kube: Kube,
    stream: Stream,
    *,
    resource_version: str | None = None,
    inactivity_timeout: float = INACTIVITY_TIMEOUT,
    backoff: retry.Backoff | None = None,
    unserved_recheck: float = UNSERVED_RECHECK,
) -> AsyncGenerator[WatchEvent]:
    """Events of ``stream`` forever. ``resource_version`` starts by watching from there (no first list).
    A consumer that stops early wraps it in ``contextlib.aclosing``: that ends the watch request at once,
    not at some later garbage collection (after which the connection may already be unusable)."""
    backoff = backoff or retry.Backoff()
    resource, path, selectors = stream.resource, stream.path, stream.query
    version = resource_version
    while True:
        try:
            if version is None:
                objects, version = await _list(kube, path, selectors)
                backoff.reset()
                yield WatchEvent("SYNC", objects=tuple(objects), resource_version=version)
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
            if reason == "not_found" and stream.optional:
                # Not served (a CRD not installed, or removed): nothing to hold; look again later.
                log.debug(
                    "%s is not served; listing again in %.0f s", resource.group_resource, unserved_recheck
                )
                version = None
                yield WatchEvent("SYNC")
                await asyncio.sleep(unserved_recheck)
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


async def _list(kube: Kube, path: str, selectors: dict[str, QueryValue]) -> tuple[list[JSON], str]:
    objects: list[JSON] = []
    version = ""
    async for page in kube.list_pages(path, query=selectors):
        objects.extend(page.get("items", []))
        version = page.get("metadata", {}).get("resourceVersion", version)
    return objects, version


async def _watch_once(
    kube: Kube,
    path: str,
    selectors: dict[str, QueryValue],
    *,
    version: str,
    inactivity_timeout: float,
) -> AsyncGenerator[tuple[WatchEvent, str]]:
    """One watch request; yields (event, resourceVersion to resume from). Ends when the server closes it."""
    query: dict[str, QueryValue] = {
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


@dataclasses.dataclass(frozen=True, slots=True)
class Stream:
    """What one watch follows: a resource, optionally in one namespace and narrowed by selectors.
    ``optional``: the resource may not be served (a CRD that may not be installed): while it is not (404), the
    stream holds nothing, is synced, and looks again every UNSERVED_RECHECK seconds."""

    resource: Resource
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    optional: bool = False

    @property
    def path(self) -> str:
        return self.resource.path(namespace=self.namespace)

    @property
    def query(self) -> dict[str, QueryValue]:
        query: dict[str, QueryValue] = {}
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        if self.field_selector:
            query["fieldSelector"] = self.field_selector
        return query


def as_is(obj: JSON) -> JSON:
    return obj


class Store(Generic[T]):
    """The current objects of one :class:`Stream` by ``namespace/name``, each parsed once when it arrives
    (objects that parse to None are left out). Fed by :func:`follow` or :func:`list_into`, and by its
    controller after a write of its own (:meth:`remember`).

    Feeds may interleave (a fresh list to confirm a finding while the watch goes on), so nothing older
    replaces what the store already knows: an object keeps its newest version, and a listing or event at a
    resourceVersion the store has already seen the stream reach is dropped."""

    def __init__(self, stream: Stream, parse: Callable[[JSON], T | None]) -> None:
        self.stream = stream
        self.parse = parse
        self.items: dict[str, T] = {}
        self.synced = False  # listed at least once
        self._versions: dict[str, str] = {}
        self._reached = ""  # every change of the stream up to this resourceVersion is in the store

    def apply(self, event: WatchEvent) -> None:
        if event.type == "SYNC":
            self._sync(event.objects, version=event.resource_version)
            return
        if event.object is None:
            return
        version = _version(event.object)
        if self._reached and not _newer(version, than=self._reached, equal=False):
            return  # a listing at or after this change is in the store already
        if event.type == "DELETED":
            self._forget(refs.object_key(event.object), version=version)
        else:
            self.remember(event.object)
        self._reached = version  # a watch delivers its stream's changes in order

    def remember(self, obj: JSON) -> T | None:
        """Keep ``obj`` unless a newer version of it is known; returns what the store holds for it now."""
        key = refs.object_key(obj)
        version = _version(obj)
        if key in self._versions and not _newer(version, than=self._versions[key]):
            return self.items.get(key)
        parsed = self.parse(obj)
        if parsed is None:
            self.items.pop(key, None)
            self._versions.pop(key, None)
        else:
            self.items[key] = parsed
            self._versions[key] = version
        return parsed

    def _sync(self, objects: tuple[JSON, ...], *, version: str) -> None:
        """A whole listing at ``version``: what it lacks is gone, unless the store knows a newer version of
        it (a write of its controller after the list was read). A listing older than the changes the
        store has already seen adds nothing and is dropped."""
        if self.synced and self._reached and not _newer(version, than=self._reached, equal=False):
            return
        listed = {refs.object_key(obj) for obj in objects}
        for key in [key for key in self._versions if key not in listed]:
            self._forget(key, version=version)
        for obj in objects:
            self.remember(obj)
        self._reached = version
        self.synced = True

    def _forget(self, key: str, *, version: str) -> None:
        """Drop ``key`` as deleted at ``version``, unless the store holds a newer version of it (created
        again since)."""
        if key in self._versions and not _newer(version, than=self._versions[key]):
            return
        self.items.pop(key, None)
        self._versions.pop(key, None)


def _version(obj: JSON) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion") or "")


def _newer(candidate: str, *, than: str, equal: bool = True) -> bool:
    """Whether resourceVersion ``candidate`` is newer (or, with ``equal``, as new). They are etcd revisions
    (integers) on every real apiserver; when either is not, the one received last wins."""
    try:
        return int(candidate) > int(than) or (equal and int(candidate) == int(than))
    except ValueError:
        return True


async def follow(kube: Kube, store: Store[Any], *, changed: Callable[[], None]) -> None:
    """Keep ``store`` current until cancelled; ``changed()`` after every event."""
    events = watch(kube, store.stream)
    async with contextlib.aclosing(events):
        async for event in events:
            store.apply(event)
            changed()


async def list_into(kube: Kube, store: Store[Any]) -> None:
    """One list (``--once``): the store as a watch's first SYNC would leave it (empty for an optional stream
    whose resource is not served)."""
    try:
        objects, version = await _list(kube, store.stream.path, store.stream.query)
    except ApiError as error:
        if not (error.not_found and store.stream.optional):
            raise
        objects, version = [], ""
    store.apply(WatchEvent("SYNC", objects=tuple(objects), resource_version=version))

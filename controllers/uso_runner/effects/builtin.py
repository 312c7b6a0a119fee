"""``--method=builtin|auto``: hand each resource to kube-controller-manager's storage version migrator.

One StorageVersionMigration (``storagemigration.k8s.io``) per resource, named after the resource, the run's
target and the storage hash, so a restarted run finds and follows the one it created instead of starting
another. The built-in controller rewrites the objects and, for a CRD, sets ``status.storedVersions``; this
side creates the object and watches its conditions until it finished, or until it stalled: not picked up
within ``pickup`` seconds, or not finished within ``timeout``. A stalled one is deleted when ``withdraw``
(auto: the resource is rewritten instead, and the migrator must not start it meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from typing import ClassVar

from controllers.kube import discovery, resources, retry, watch
from controllers.kube.client import JSON, ApiError, Kube
from controllers.uso_runner import logic
from controllers.uso_runner import metrics as metrics_module

log = logging.getLogger(__name__)

NOT_PICKED_UP = (
    "no controller picked it up: is kube-controller-manager running its storage-version-migrator-controller "
    "(feature gate StorageVersionMigrator, with the garbage collector on), and is no other migration of this "
    "resource in progress?"
)


@dataclasses.dataclass
class Builtin:
    """Creates StorageVersionMigrations and watches them; at most ``timeout`` seconds per resource."""

    kube: Kube
    metrics: metrics_module.Metrics
    version: str  # the served version of storagemigration.k8s.io
    release: str
    labels: Mapping[str, str]
    timeout: float
    pickup: float
    withdraw: bool = False
    dry_run: bool = False
    name: ClassVar[str] = "builtin"
    _waiting: int = dataclasses.field(default=0, init=False)  # migrations being followed now

    async def migrate(self, res: discovery.ApiResource, *, target: str) -> logic.ResourceResult:
        self._waiting += 1
        self.metrics.observe_builtin(running=self._waiting)
        try:
            return await self._migrate(res, target=target)
        finally:
            self._waiting -= 1
            self.metrics.observe_builtin(running=self._waiting)

    @property
    def resource(self) -> resources.Resource:
        return resources.Resource(logic.SVM_GROUP, self.version, logic.SVM_RESOURCE, namespaced=False)

    async def _migrate(self, res: discovery.ApiResource, *, target: str) -> logic.ResourceResult:
        name = logic.migration_name(
            release=self.release,
            group_resource=res.group_resource,
            target=target,
            storage_hash=res.storage_version_hash,
        )
        result = logic.ResourceResult(res.group_resource, delegated_to=name)
        manifest = logic.migration_manifest(
            api_version=f"{logic.SVM_GROUP}/{self.version}",
            name=name,
            group=res.group,
            resource=res.name,
            labels=self.labels,
            target=target,
            storage_hash=res.storage_version_hash,
        )
        try:
            if self.dry_run:
                await self._validate(manifest)
                return result
            await self._create(name, manifest)
        except ApiError as error:  # refused (403, 422...): this resource fails; transient errors propagate
            if retry.classify(error) in retry.TRANSIENT:
                raise
            result.error = f"StorageVersionMigration {name}: {retry.describe(error)}"
            return result
        status = await self._follow(name)
        self.metrics.observe_builtin_outcome(status.stalled or status.phase)
        if status.phase != "succeeded":
            result.error = f"StorageVersionMigration {name}: {status.message}"
            result.stalled = status.stalled
        if status.stalled and self.withdraw:
            await self._delete(name)
            log.warning("withdrew the stalled StorageVersionMigration %s: %s", name, status.message)
        return result

    async def _validate(self, manifest: JSON) -> None:
        """A server-side dry-run create (an existing one of the same name would be followed: fine too)."""
        try:
            await self.kube.create(self.resource.path(), manifest, dry_run=True)
        except ApiError as error:
            if not error.already_exists:
                raise

    async def _create(self, name: str, manifest: JSON) -> None:
        """Create it; an existing one of the same name is followed, unless it failed: then it is replaced."""
        path = self.resource.path()
        try:
            await self.kube.create(path, manifest)
            log.info("created StorageVersionMigration %s", name)
            return
        except ApiError as error:
            if not error.already_exists:
                raise
        existing = await self.kube.get(self.resource.path(name=name))
        if logic.migration_status(existing).phase != "failed":
            log.info("following the existing StorageVersionMigration %s", name)
            return
        await self._delete(name)  # no finalizers: gone when this returns
        await self.kube.create(path, manifest)
        log.info("re-created StorageVersionMigration %s (the previous one failed)", name)

    async def _follow(self, name: str) -> logic.MigrationStatus:
        """Watch it until it finished, or stalled: not picked up within ``pickup`` seconds, or not finished
        within ``timeout`` (the watch itself rides out connection errors)."""
        status = logic.MigrationStatus("pending", "not read yet")
        loop = asyncio.get_running_loop()
        started = loop.time()
        events = watch.watch(self.kube, watch.Stream(self.resource, field_selector=f"metadata.name={name}"))
        try:
            async with asyncio.timeout(min(self.pickup, self.timeout)) as bound, contextlib.aclosing(events):
                async for event in events:
                    current = event.objects[0] if event.type == "SYNC" and event.objects else event.object
                    if event.type == "DELETED" or current is None:
                        return logic.MigrationStatus("failed", "deleted before it finished")
                    status = logic.migration_status(current)
                    if status.phase in ("succeeded", "failed"):
                        return status
                    if status.phase == "running":
                        bound.reschedule(started + self.timeout)
        except TimeoutError:
            if status.phase == "pending":
                why = f"not picked up after {min(self.pickup, self.timeout):g} s: {NOT_PICKED_UP}"
                return logic.MigrationStatus("failed", why, stalled="not_picked_up")
            why = f"not finished after {self.timeout:g} s: still running ({status.message})"
            return logic.MigrationStatus("failed", why, stalled="timeout")
        raise AssertionError("a watch never ends")

    async def _delete(self, name: str) -> None:
        """Delete it (already gone: fine)."""
        try:
            await self.kube.delete(self.resource.path(name=name))
        except ApiError as error:
            if not error.not_found:
                raise

    async def tidy(self, *, target: str) -> list[str]:
        """After a successful run: delete this release's finished migrations of earlier runs; the names."""
        if not self.labels:  # no selector would select everybody's
            return []
        selector = ",".join(f"{key}={value}" for key, value in sorted(self.labels.items()))
        items = await self.kube.list_items(self.resource.path(), query={"labelSelector": selector})
        stale = logic.stale_migrations(items, target=target)
        for name in stale:
            await self._delete(name)
        return stale

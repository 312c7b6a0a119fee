"""The ``apply`` target: server-side apply of the bundle, validated by a server-side dry-run first.

Order: resolve every document's resource → dry-run every object → Namespaces and CRDs → wait until the CRDs
are Established → the rest → prune labelled objects that left the bundle → wait for Deployments and
DaemonSets to become available. Objects that cannot be dry-run before the Namespaces and CRDs of the same
bundle exist (custom resources of a new CRD, objects in a new Namespace) are dry-run right after those are
applied, before anything else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence

from controllers.addon_updater import logic
from controllers.bundles import model
from controllers.kube import apply, discovery, resources, retry, watch
from controllers.kube.client import JSON, ApiError, Kube
from controllers.runtime import failure
from controllers.structs import redact

log = logging.getLogger(__name__)

DRY_RUN_CONCURRENCY = 8
# A just-Established CRD may take a moment until its REST endpoint answers (404) and server-side apply
# knows its new schema (a 500 "field not declared in schema", classified invalid): tried again for a few s.
NEW_KIND = retry.Policy(base=0.05, cap=0.5, attempts=20, on=frozenset({"not_found", "invalid"}))


class SwitchError(failure.TemporaryError, redact.Redacted):
    """The switch could not finish for a reason that may pass (timeouts, apiserver errors, a permission or a
    kind missing for now): tried again with backoff, never recorded as an invalid bundle. Its message names
    objects and holds no apiserver message about an object with data values (``redact.describe``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    manifest: model.Manifest
    resource: resources.Resource
    key: model.ObjectKey
    body: logic.JSON


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    release: str
    field_manager: str
    default_namespace: str
    prune: bool
    crd_timeout_seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    applied: tuple[model.ObjectKey, ...]  # in the order applied (or that would be, in dry-run)
    pruned: tuple[model.ObjectKey, ...]
    unavailable: Mapping[model.ObjectKey, str]
    workloads: int


def label_selector(release: str) -> str:
    return f"{logic.BUNDLE_LABEL}={release}"


def resolve(
    manifests: Sequence[model.Manifest],
    *,
    served: discovery.Discovery,
    settings: Settings,
    minor: str,
    digest: str,
) -> tuple[Item, ...]:
    """Each document with its REST resource, identity and labelled body, in apply order. A kind neither
    served nor defined by a CRD of the bundle is a BundleError."""
    crds = logic.bundle_crd_kinds(manifests)
    items = []
    for manifest in logic.ordered(manifests):
        found = served.lookup(api_version=manifest.api_version, kind=manifest.kind)
        resource = (
            found.resource if found else _crd_resource(crds.get((manifest.group, manifest.kind)), manifest)
        )
        if resource is None and (manifest.group, manifest.api_version.rsplit("/", 1)[-1]) in served.failed:
            raise SwitchError(
                f"{manifest.where}: {manifest.api_version} {manifest.kind}: the discovery of its API failed "
                "just now; trying again"
            )
        if resource is None:
            raise model.BundleError(
                "unknown_kind",
                f"{manifest.where}: {manifest.api_version} {manifest.kind} is not served by the apiserver "
                "and no CRD of the bundle defines it",
            )
        body = logic.labelled_body(
            manifest,
            namespaced=resource.namespaced,
            default_namespace=settings.default_namespace,
            release=settings.release,
            minor=minor,
            digest=digest,
        )
        key = logic.object_key(
            manifest, namespaced=resource.namespaced, default_namespace=settings.default_namespace
        )
        items.append(Item(manifest=manifest, resource=resource, key=key, body=body))
    return tuple(items)


def _crd_resource(crd: JSON | None, manifest: model.Manifest) -> resources.Resource | None:
    if crd is None:
        return None
    spec = crd["spec"]
    version = manifest.api_version.rsplit("/", 1)[-1]
    versions = {str(v.get("name")) for v in spec.get("versions") or [] if v.get("served", True)}
    if version not in versions:
        return None
    namespaced = spec.get("scope") == "Namespaced"
    return resources.Resource(
        str(spec["group"]), version, str(spec["names"]["plural"]), namespaced=namespaced
    )


def _rejection(item: Item, error: ApiError) -> model.BundleError:
    said = redact.describe(error, sent=item.body)
    return model.BundleError(
        "dry_run", f"{item.manifest.where}: {item.key} rejected by the apiserver (dry-run): {said}"
    )


async def dry_run(
    kube: Kube,
    items: Sequence[Item],
    *,
    settings: Settings,
    deferrable: set[model.ObjectKey],
    policy: retry.Policy = retry.ONCE,
) -> list[Item]:
    """Dry-run every item; returns those that failed only because the bundle's own Namespaces or CRDs do not
    exist yet (``deferrable``). A failure that may pass — the apiserver busy, a permission (403) or a resource
    (404) missing for now — is a SwitchError (tried again later, the bundle is not called invalid); any other
    rejection is a BundleError (the first in bundle order)."""
    semaphore = asyncio.Semaphore(DRY_RUN_CONCURRENCY)

    async def one(item: Item) -> ApiError | None:
        async with semaphore:
            try:
                await retry.call(
                    lambda: apply.server_side_apply(
                        kube, item.resource, item.body, field_manager=settings.field_manager, dry_run=True
                    ),
                    policy=policy,
                )
            except ApiError as error:
                return error
            return None

    errors = await asyncio.gather(*(one(item) for item in items))
    deferred: list[Item] = []
    for item, error in zip(items, errors, strict=True):
        if error is None:
            continue
        reason = retry.classify(error)
        if reason in retry.TRANSIENT:  # the apiserver is busy or broken: retry later
            raise SwitchError(f"dry-run of {item.key}: {redact.describe(error, sent=item.body)}") from None
        if item.key in deferrable:
            deferred.append(item)
        elif reason in ("forbidden", "not_found"):  # fixing RBAC (or the resource coming back) helps
            said = redact.describe(error, sent=item.body)
            raise SwitchError(f"dry-run of {item.key}: {said}; trying again") from None
        else:
            raise _rejection(item, error) from None
    return deferred


def deferrable_keys(items: Sequence[Item], manifests: Sequence[model.Manifest]) -> set[model.ObjectKey]:
    """Objects whose dry-run may fail before the bundle's own Namespaces and CRDs are applied."""
    crd_kinds = set(logic.bundle_crd_kinds(manifests))
    namespaces = logic.bundle_namespaces(manifests)
    return {
        item.key
        for item in items
        if (item.key.group, item.key.kind) in crd_kinds
        or (item.key.namespace and item.key.namespace in namespaces)
    }


async def labelled_objects(
    kube: Kube, served: discovery.Discovery, *, release: str
) -> tuple[list[logic.LiveObject], dict[tuple[str, str], resources.Resource]]:
    """Every object of every listable kind carrying this release's bundle label."""
    listable = served.listable()
    selector = label_selector(release)

    async def one(item: discovery.ApiResource) -> list[logic.LiveObject]:
        objects = await kube.list_items(item.resource.path(), query={"labelSelector": selector})
        parsed = (logic.live_object(obj, group=item.group, kind=item.kind) for obj in objects)
        return [obj for obj in parsed if obj is not None]

    found = await asyncio.gather(*(one(item) for item in listable), return_exceptions=True)
    for item, outcome in zip(listable, found, strict=True):
        if isinstance(outcome, ApiError):
            raise SwitchError(f"listing {item.group_resource} to prune: {redact.describe(outcome)}") from None
        if isinstance(outcome, BaseException):
            raise outcome
    by_kind = {(item.group, item.kind): item.resource for item in listable}
    return [obj for objs in found if isinstance(objs, list) for obj in objs], by_kind


async def switch(
    kube: Kube,
    manifests: Sequence[model.Manifest],
    *,
    settings: Settings,
    minor: str,
    digest: str,
    dry_run_only: bool,
    progress: Callable[[str], None] = lambda _: None,
) -> Result:
    """Validate against the apiserver, then (unless ``dry_run_only``) apply, prune and look at the workloads'
    health once (the controller follows it from there, without waiting). Raises BundleError before anything
    changed when the apiserver rejects an object."""
    served = await discovery.discover(kube)
    items = resolve(manifests, served=served, settings=settings, minor=minor, digest=digest)
    deferred = await dry_run(kube, items, settings=settings, deferrable=deferrable_keys(items, manifests))
    progress(f"dry-run passed for {len(items) - len(deferred)} of {len(items)} objects")
    desired = {item.key for item in items}
    doomed: tuple[logic.LiveObject, ...] = ()
    by_kind: dict[tuple[str, str], resources.Resource] = {}
    if settings.prune:
        live, by_kind = await labelled_objects(kube, served, release=settings.release)
        doomed = logic.prune_set(live=live, desired=desired, release=settings.release)
    if dry_run_only:
        return Result(
            applied=tuple(i.key for i in items),
            pruned=tuple(o.key for o in doomed),
            unavailable={},
            workloads=len(logic.workloads(desired)),
        )

    applied: list[model.ObjectKey] = []
    first = [item for item in items if logic.is_first_phase(item.manifest)]
    rest = [item for item in items if not logic.is_first_phase(item.manifest)]
    for item in first:
        await _apply(kube, item, settings=settings)
        applied.append(item.key)
    crd_names = [item.key.name for item in first if (item.key.group, item.key.kind) == logic.CRD_KIND]
    if crd_names:
        progress(f"waiting for {len(crd_names)} CRD(s) to be Established")
        await wait_established(kube, crd_names, seconds=settings.crd_timeout_seconds)
    if deferred:
        await dry_run(kube, deferred, settings=settings, deferrable=set(), policy=NEW_KIND)
    for item in rest:
        await _apply(kube, item, settings=settings)
        applied.append(item.key)
        progress(f"applied {len(applied)}/{len(items)}")

    pruned: list[model.ObjectKey] = []
    for obj in doomed:
        resource = by_kind[(obj.key.group, obj.key.kind)]
        if await apply.delete(kube, resource, namespace=obj.key.namespace, name=obj.key.name, uid=obj.uid):
            pruned.append(obj.key)
            log.info("pruned %s", obj.key)
    wanted = logic.workloads(desired)
    problems = await wait_available(kube, wanted, release=settings.release, seconds=0.0)
    return Result(applied=tuple(applied), pruned=tuple(pruned), unavailable=problems, workloads=len(wanted))


async def _apply(kube: Kube, item: Item, *, settings: Settings) -> None:
    try:
        await retry.call(
            lambda: apply.server_side_apply(
                kube, item.resource, item.body, field_manager=settings.field_manager
            ),
            policy=NEW_KIND if item.resource.group else retry.ONCE,
        )
    except ApiError as error:
        raise SwitchError(f"applying {item.key}: {redact.describe(error, sent=item.body)}") from None


async def wait_established(kube: Kube, names: Sequence[str], *, seconds: float) -> None:
    pending = set(names)
    try:
        events = watch.watch(kube, watch.Stream(resources.CRDS))
        async with asyncio.timeout(seconds), contextlib.aclosing(events):
            async for event in events:
                objects = event.objects if event.type == "SYNC" else (event.object,) if event.object else ()
                for obj in objects:
                    if logic.crd_established(obj):
                        pending.discard(obj["metadata"]["name"])
                if not pending:
                    return
    except TimeoutError as error:
        raise SwitchError(
            f"CRD(s) not Established after {seconds:.0f} s: {', '.join(sorted(pending))}"
        ) from error


WORKLOAD_RESOURCES = {"Deployment": resources.DEPLOYMENTS, "DaemonSet": resources.DAEMONSETS}


async def wait_available(
    kube: Kube, wanted: Sequence[model.ObjectKey], *, release: str, seconds: float
) -> dict[model.ObjectKey, str]:
    """Watch the bundle's Deployments and DaemonSets until all are available or ``seconds`` pass; returns
    the unavailable ones with the reason (empty: healthy). ``seconds`` 0 looks once."""
    if not wanted:
        return {}
    kinds = sorted({key.kind for key in wanted})
    stores = [
        watch.Store(
            watch.Stream(WORKLOAD_RESOURCES[kind], label_selector=label_selector(release)),
            functools.partial(_with_kind, kind=kind),
        )
        for kind in kinds
    ]
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    list_deadline = deadline + 30  # the first listing is awaited even when the timeout is 0
    async with asyncio.TaskGroup() as group:
        follows = [group.create_task(watch.follow(kube, store, changed=changed.set)) for store in stores]
        try:
            while True:
                synced = all(store.synced for store in stores)
                if synced:
                    live = {_workload_key(obj): obj for store in stores for obj in store.items.values()}
                    problems = logic.unavailable(wanted=wanted, live=live)
                    if not problems or loop.time() >= deadline:
                        return problems
                elif loop.time() >= list_deadline:
                    raise SwitchError("could not list the bundle's Deployments and DaemonSets")
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(
                        max((deadline if synced else list_deadline) - loop.time(), 0.0)
                    ):
                        await changed.wait()
        finally:
            for task in follows:
                task.cancel()


def _with_kind(obj: JSON, *, kind: str) -> JSON:
    return {**obj, "kind": kind}  # list items carry no kind


def _workload_key(obj: JSON) -> model.ObjectKey:
    meta = obj["metadata"]
    return model.ObjectKey("apps", str(obj["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))

"""The ``apply`` target: server-side apply of the bundle, validated by a server-side dry-run first.

Order: resolve every document's resource and judge the bundle by its policy (``admission``) → dry-run every
object → read each one (does it exist: created or adopted?) → Namespaces and CRDs → wait until the CRDs are
Established → the rest → prune what the suite created (its inventory) and left the bundle → look at the
Deployments and DaemonSets once. Objects that cannot be dry-run before the Namespaces and CRDs of the same
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
from controllers.addon_updater.effects import admission
from controllers.bundles import model, policy
from controllers.kube import apply, discovery, resources, retry, watch
from controllers.kube.client import JSON, ApiError, Kube
from controllers.structs import fields, redact

log = logging.getLogger(__name__)

DRY_RUN_CONCURRENCY = 8
# A just-Established CRD may take a moment until its REST endpoint answers (404) and server-side apply
# knows its new schema (a 500 "field not declared in schema", classified invalid): tried again for a few s.
NEW_KIND = retry.RetryPolicy(base=0.05, cap=0.5, attempts=20, on=frozenset({"not_found", "invalid"}))


@dataclasses.dataclass(frozen=True, slots=True)
class ApplySettings:
    release: str
    field_manager: str
    default_namespace: str
    prune: bool
    prune_max_fraction: float
    crd_timeout_seconds: float
    rules: policy.Policy


@dataclasses.dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: tuple[model.ObjectKey, ...]  # in the order applied (or that would be, in dry-run)
    pruned: tuple[model.ObjectKey, ...]  # (in dry-run: that would be, unless found kept then)
    unavailable: Mapping[model.ObjectKey, str]
    workloads: int
    inventory: tuple[logic.Created, ...] = ()  # what the suite created and has not pruned, after the switch
    # Left the bundle and not pruned, with the reason.
    kept: Mapping[model.ObjectKey, str] = dataclasses.field(default_factory=dict)
    prune_skipped: str = ""  # why nothing was pruned


def label_selector(release: str) -> str:
    return f"{logic.BUNDLE_LABEL}={release}"


def _rejection(item: admission.Item, error: ApiError) -> model.BundleError:
    said = redact.describe(error, sent=item.body)
    return model.BundleError(
        "dry_run", f"{item.manifest.where}: {item.key} rejected by the apiserver (dry-run): {said}"
    )


async def dry_run(
    kube: Kube,
    items: Sequence[admission.Item],
    *,
    settings: ApplySettings,
    deferrable: set[model.ObjectKey],
    policy: retry.RetryPolicy = retry.ONCE,
) -> list[admission.Item]:
    """Dry-run every item; returns those that failed only because the bundle's own Namespaces or CRDs do not
    exist yet (``deferrable``). A failure that may pass — the apiserver busy, a permission (403) or a resource
    (404) missing for now — is a SwitchError (tried again later, the bundle is not called invalid); any other
    rejection is a BundleError (the first in bundle order)."""
    semaphore = asyncio.Semaphore(DRY_RUN_CONCURRENCY)

    async def one(item: admission.Item) -> ApiError | None:
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
    deferred: list[admission.Item] = []
    for item, error in zip(items, errors, strict=True):
        if error is None:
            continue
        reason = retry.classify(error)
        if reason in retry.TRANSIENT:  # the apiserver is busy or broken: retry later
            raise admission.SwitchError(
                f"dry-run of {item.key}: {redact.describe(error, sent=item.body)}"
            ) from None
        if item.key in deferrable:
            deferred.append(item)
        elif reason in ("forbidden", "not_found"):  # fixing RBAC (or the resource coming back) helps
            said = redact.describe(error, sent=item.body)
            raise admission.SwitchError(f"dry-run of {item.key}: {said}; trying again") from None
        else:
            raise _rejection(item, error) from None
    return deferred


def deferrable_keys(
    items: Sequence[admission.Item], manifests: Sequence[model.Manifest]
) -> set[model.ObjectKey]:
    """Objects whose dry-run may fail before the bundle's own Namespaces and CRDs are applied."""
    crd_kinds = set(logic.bundle_crd_kinds(manifests))
    namespaces = logic.bundle_namespaces(manifests)
    return {
        item.key
        for item in items
        if (item.key.group, item.key.kind) in crd_kinds
        or (item.key.namespace and item.key.namespace in namespaces)
    }


async def observe(kube: Kube, items: Sequence[admission.Item]) -> dict[model.ObjectKey, JSON | None]:
    """Each object as it is now (None: it does not exist), to know what the suite creates and what it adopts.
    A namespace or a kind that does not exist yet (the bundle brings it) reads as absent."""
    semaphore = asyncio.Semaphore(DRY_RUN_CONCURRENCY)

    async def one(item: admission.Item) -> JSON | None:
        async with semaphore:
            return await _get(kube, item.resource, item.key)

    found = await asyncio.gather(*(one(item) for item in items))
    return {item.key: live for item, live in zip(items, found, strict=True)}


async def _get(kube: Kube, resource: resources.Resource, key: model.ObjectKey) -> JSON | None:
    try:
        return await kube.get(resource.path(namespace=key.namespace or None, name=key.name))
    except ApiError as error:
        if error.not_found:
            return None
        raise admission.SwitchError(f"reading {key}: {redact.describe(error)}") from None


async def switch(
    kube: Kube,
    manifests: Sequence[model.Manifest],
    *,
    settings: ApplySettings,
    minor: str,
    digest: str,
    inventory: Sequence[logic.Created],
    dry_run_only: bool,
    progress: Callable[[str], None] = lambda _: None,
) -> ApplyResult:
    """Validate against the apiserver, then (unless ``dry_run_only``) apply, prune and look at the workloads'
    health once (the controller follows it from there, without waiting). Raises BundleError before anything
    changed when the apiserver rejects an object."""
    served = await discovery.discover(kube)
    items = await admission.admit(
        kube,
        manifests,
        served=served,
        rules=settings.rules,
        default_namespace=settings.default_namespace,
        minor=minor,
        digest=digest,
    )
    deferred = await dry_run(kube, items, settings=settings, deferrable=deferrable_keys(items, manifests))
    progress(f"dry-run passed for {len(items) - len(deferred)} of {len(items)} objects")
    live = await observe(kube, items)
    origins = {item.key: logic.origin_of(live[item.key]) for item in items}
    items = tuple(dataclasses.replace(i, body=logic.with_origin(i.body, origins[i.key])) for i in items)
    desired = {item.key for item in items}
    plan = logic.prune_plan(inventory=inventory, desired=desired, max_fraction=settings.prune_max_fraction)
    if not settings.prune:
        plan = logic.PrunePlan(())
    if dry_run_only:
        return ApplyResult(
            applied=tuple(i.key for i in items),
            pruned=tuple(entry.key for entry in plan.doomed),
            unavailable={},
            workloads=len(logic.workloads(desired)),
            prune_skipped=plan.skipped,
        )

    created: list[logic.Created] = []
    applied: list[model.ObjectKey] = []
    first = [item for item in items if logic.is_first_phase(item.manifest)]
    rest = [item for item in items if not logic.is_first_phase(item.manifest)]

    async def apply_one(item: admission.Item) -> None:
        uid = await _apply(kube, item, settings=settings)
        applied.append(item.key)
        if origins[item.key] == "created":
            created.append(logic.Created(item.key, uid))

    for item in first:
        await apply_one(item)
    crd_names = [item.key.name for item in first if (item.key.group, item.key.kind) == logic.CRD_KIND]
    if crd_names:
        progress(f"waiting for {len(crd_names)} CRD(s) to be Established")
        await wait_established(kube, crd_names, seconds=settings.crd_timeout_seconds)
    if deferred:  # (now with their origin, as they will be applied)
        later = {item.key for item in deferred}
        await dry_run(
            kube, [i for i in items if i.key in later], settings=settings, deferrable=set(), policy=NEW_KIND
        )
    for item in rest:
        await apply_one(item)
        progress(f"applied {len(applied)}/{len(items)}")

    pruned, kept, gone = await prune(kube, plan.doomed, served=served, release=settings.release)
    # Still the suite's to prune later: what left the bundle and was not pruned now (the guards skipped it, or
    # prune is off); what was kept for a reason or is gone leaves the inventory.
    done = {*pruned, *kept, *gone}
    remaining = [entry for entry in inventory if entry.key not in desired and entry.key not in done]
    wanted = logic.workloads(desired)
    problems = await wait_available(kube, wanted, release=settings.release, seconds=0.0)
    return ApplyResult(
        applied=tuple(applied),
        pruned=tuple(pruned),
        unavailable=problems,
        workloads=len(wanted),
        inventory=(*created, *remaining),
        kept=kept,
        prune_skipped=plan.skipped,
    )


async def prune(
    kube: Kube, doomed: Sequence[logic.Created], *, served: discovery.Discovery, release: str
) -> tuple[list[model.ObjectKey], dict[model.ObjectKey, str], set[model.ObjectKey]]:
    """Delete the doomed objects that are still the suite's (read first: ``logic.keep_reason``), by UID
    precondition so that a namesake created meanwhile survives. Returns what was pruned, what was kept and
    why, and what was gone already."""
    by_kind = {(item.group, item.kind): item.resource for item in served.listable()}
    pruned: list[model.ObjectKey] = []
    kept: dict[model.ObjectKey, str] = {}
    gone: set[model.ObjectKey] = set()
    for entry in doomed:
        resource = by_kind.get((entry.key.group, entry.key.kind))
        live = await _get(kube, resource, entry.key) if resource else None
        if resource is None or live is None:
            gone.add(entry.key)
            continue
        reason = logic.keep_reason(entry, live, release=release)
        if reason:
            kept[entry.key] = reason
            log.info("not pruning %s: %s", entry.key, reason)
            continue
        try:
            deleted = await apply.delete(
                kube, resource, namespace=entry.key.namespace, name=entry.key.name, uid=entry.uid
            )
        except ApiError as error:
            raise admission.SwitchError(f"pruning {entry.key}: {redact.describe(error)}") from None
        if deleted:
            pruned.append(entry.key)
            log.info("pruned %s", entry.key)
        else:
            gone.add(entry.key)
    return pruned, kept, gone


async def _apply(kube: Kube, item: admission.Item, *, settings: ApplySettings) -> str:
    """Apply one object; returns its UID."""
    try:
        applied = await retry.call(
            lambda: apply.server_side_apply(
                kube, item.resource, item.body, field_manager=settings.field_manager
            ),
            policy=NEW_KIND if item.resource.group else retry.ONCE,
        )
    except ApiError as error:
        raise admission.SwitchError(
            f"applying {item.key}: {redact.describe(error, sent=item.body)}"
        ) from None
    return str(fields.dig(applied, "metadata", "uid") or "")


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
        raise admission.SwitchError(
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
    # One watch per kind and namespace: the updater's rights on namespaced kinds hold in the policy's
    # namespaces only (the chart binds them there), never cluster-wide.
    places = sorted({(key.kind, key.namespace) for key in wanted})
    stores = [
        watch.Store(
            watch.Stream(
                WORKLOAD_RESOURCES[kind], namespace=namespace, label_selector=label_selector(release)
            ),
            functools.partial(_with_kind, kind=kind),
        )
        for kind, namespace in places
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
                    raise admission.SwitchError("could not list the bundle's Deployments and DaemonSets")
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

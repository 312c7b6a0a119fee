"""uso-runner's decisions (pure): when to run, which resources to migrate, what the checkpoint says.

The state ConfigMap holds, besides the common keys:
- ``storageHashes``: JSON ``{group_resource: storageVersionHash}`` recorded after each successful migration
  of that resource (kept across runs: an unchanged hash means nothing to rewrite);
- ``runTarget``: the agreed version of the run in progress ("" when none);
- ``runDone``: JSON list of the resources that run finished (a restart resumes without redoing them);
- ``runContinue``: JSON ``{group_resource: continue token}`` of the resources the run is part-way through:
  every object listed before the token was rewritten, so a new leader lists the rest from there (at the
  first list's snapshot: an object the previous leader rewrote after its last bookmark answers 409, and is
  not rewritten twice).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

from controllers.agreement.version import Version, parse_version
from controllers.structs import fields

TriggerMode = Literal["minor", "any"]
RunAction = Literal["start", "resume", "none"]
# A StorageVersionMigration that made no progress: never picked up by a migrator, or not finished in time.
Stall = Literal["", "not_picked_up", "timeout"]
DEFAULT_SKIP = ("events", "events.events.k8s.io")
REQUIRED_VERBS = frozenset({"list", "update"})

KEY_HASHES = "storageHashes"
KEY_RUN_TARGET = "runTarget"
KEY_RUN_DONE = "runDone"
KEY_RUN_CONTINUE = "runContinue"


class Discovered(Protocol):
    """What the plan needs of a discovered resource (``controllers.kube.discovery.ApiResource``)."""

    @property
    def group(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def group_resource(self) -> str: ...
    @property
    def verbs(self) -> frozenset[str]: ...
    @property
    def storage_version_hash(self) -> str: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    """What the state ConfigMap says about past and current runs."""

    version: str = ""  # the last agreed version a run finished for
    hashes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    run_target: str = ""  # the run in progress ("" = none)
    run_done: frozenset[str] = frozenset()
    run_continue: Mapping[str, str] = dataclasses.field(default_factory=dict)  # bookmarks, see the module


def read_checkpoint(data: Mapping[str, str]) -> Checkpoint:
    """Parse the state's data; anything malformed counts as absent (never raises)."""
    try:
        raw_done = json.loads(data.get(KEY_RUN_DONE) or "[]")
    except ValueError:
        raw_done = []
    done = frozenset(str(item) for item in raw_done) if isinstance(raw_done, list) else frozenset()
    return Checkpoint(
        version=str(data.get("version") or ""),
        hashes=_strings(data.get(KEY_HASHES)),
        run_target=str(data.get(KEY_RUN_TARGET) or ""),
        run_done=done,
        run_continue=_strings(data.get(KEY_RUN_CONTINUE)),
    )


def _strings(raw: str | None) -> dict[str, str]:
    """A JSON object of strings; anything else (absent, malformed, other values) is empty or skipped."""
    try:
        parsed = json.loads(raw or "{}")
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(k): v for k, v in parsed.items() if isinstance(v, str)}


def checkpoint_data(checkpoint: Checkpoint) -> dict[str, str]:
    """The state keys of ``checkpoint`` (deterministic JSON: sorted keys)."""
    return {
        "version": checkpoint.version,
        KEY_HASHES: json.dumps(dict(sorted(checkpoint.hashes.items())), separators=(",", ":")),
        KEY_RUN_TARGET: checkpoint.run_target,
        KEY_RUN_DONE: json.dumps(sorted(checkpoint.run_done), separators=(",", ":")),
        KEY_RUN_CONTINUE: json.dumps(dict(sorted(checkpoint.run_continue.items())), separators=(",", ":")),
    }


def finish_resource(checkpoint: Checkpoint, *, group_resource: str, storage_hash: str) -> Checkpoint:
    """The checkpoint after one resource of the current run was migrated completely."""
    return dataclasses.replace(
        checkpoint,
        hashes={**checkpoint.hashes, group_resource: storage_hash},
        run_done=checkpoint.run_done | {group_resource},
        run_continue={k: v for k, v in checkpoint.run_continue.items() if k != group_resource},
    )


def bookmark(checkpoint: Checkpoint, *, group_resource: str, token: str) -> Checkpoint:
    """The checkpoint once every object of ``group_resource`` listed before ``token`` was rewritten."""
    return dataclasses.replace(checkpoint, run_continue={**checkpoint.run_continue, group_resource: token})


@dataclasses.dataclass
class Pages:
    """One resource's listed pages in list order, and how many of each page's objects are still being
    rewritten. The bookmark moves to a page's continue token once that page and every one before it are
    finished (writes finish out of order; a bookmark never skips an object still in flight)."""

    _open: list[int] = dataclasses.field(default_factory=list)  # objects in flight, per page
    _tokens: list[str] = dataclasses.field(default_factory=list)  # each page's continue token
    _finished: int = 0  # pages 0.._finished-1 are finished

    def add(self, *, objects: int, token: str) -> int:
        """A page was listed with ``objects`` to rewrite; its index."""
        self._open.append(objects)
        self._tokens.append(token)
        return len(self._open) - 1

    def done(self, page: int) -> None:
        """One object of ``page`` was written (or answered for good)."""
        self._open[page] -= 1

    def advance(self) -> str:
        """The new bookmark when more pages finished since the last call, else "" (nothing to save). The
        last page has no continue token: the resource is then done, which its own checkpoint says."""
        start = self._finished
        while self._finished < len(self._open) and self._open[self._finished] == 0:
            self._finished += 1
        return self._tokens[self._finished - 1] if self._finished > start else ""


def start_run(checkpoint: Checkpoint, *, target: str) -> Checkpoint:
    return dataclasses.replace(checkpoint, run_target=target, run_done=frozenset(), run_continue={})


def finish_run(checkpoint: Checkpoint) -> Checkpoint:
    return dataclasses.replace(
        checkpoint, version=checkpoint.run_target, run_target="", run_done=frozenset(), run_continue={}
    )


def same_trigger(a: Version, b: Version, *, mode: TriggerMode) -> bool:
    """Whether ``a`` and ``b`` are the same version for the trigger: same minor (default) or same x.y.z."""
    return a.key == b.key if mode == "any" else a.minor_key == b.minor_key


Guard = Literal["go", "pause", "superseded"]


def guard(*, current: Version | None, target: Version, mode: TriggerMode) -> Guard:
    """Whether a daemon's run for ``target`` may write now, given the settled agreement in force (None while
    the masters do not agree): only while they agree on the same trigger version; a write through an
    apiserver of another version would undo the migration. Agreement on another one supersedes the run."""
    if current is None:
        return "pause"
    return "go" if same_trigger(current, target, mode=mode) else "superseded"


@dataclasses.dataclass(frozen=True, slots=True)
class RunDecision:
    action: RunAction
    reason: str


def decide(*, checkpoint: Checkpoint, agreed: Version, mode: TriggerMode) -> RunDecision:
    """What to do now that the masters agree on ``agreed``."""
    target = parse_version(checkpoint.run_target)
    if checkpoint.run_target:
        if target is not None and same_trigger(target, agreed, mode=mode):
            return RunDecision("resume", f"resuming the unfinished run for {checkpoint.run_target}")
        return RunDecision(
            "start", f"the unfinished run for {checkpoint.run_target!r} is superseded by {agreed}"
        )
    previous = parse_version(checkpoint.version)
    if previous is None:
        if checkpoint.version:
            return RunDecision("start", f"recorded version {checkpoint.version!r} is not a version")
        return RunDecision("start", "no run recorded yet: migrating every stored resource")
    if same_trigger(previous, agreed, mode=mode):
        return RunDecision(
            "none", f"already migrated for {previous} ({'version' if mode == 'any' else 'minor'})"
        )
    return RunDecision("start", f"agreed version changed from {previous} to {agreed}")


@dataclasses.dataclass(frozen=True)
class MigrationPlan:
    """Resources by what happens to them (each a tuple of discovered resources, in discovery order)."""

    migrate: tuple[Discovered, ...]
    unchanged: tuple[Discovered, ...]  # hash equals the one recorded after the last migration
    done: tuple[Discovered, ...]  # finished earlier in this same run (resumed after a restart)
    skipped: tuple[tuple[str, str], ...]  # (group_resource, why)


def plan(
    *,
    discovered: Sequence[Discovered],
    aggregated: Iterable[tuple[str, str]],
    checkpoint: Checkpoint,
    skip: Iterable[str],
    only: Iterable[str] = (),
    all_resources: bool,
) -> MigrationPlan:
    """Which discovered resources to migrate: stored ones (list+update, not aggregated, not skipped), whose
    storageVersionHash changed since their last migration or that were never migrated (``all_resources``:
    every one), minus those this run already finished."""
    aggregated_set = frozenset(aggregated)
    skip_set, only_set = frozenset(skip), frozenset(only)
    migrate: list[Discovered] = []
    unchanged: list[Discovered] = []
    done: list[Discovered] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for res in discovered:
        name = res.group_resource
        if name in seen:
            continue
        seen.add(name)
        if only_set and name not in only_set:
            continue
        if name in skip_set:
            skipped.append((name, "in the skip list"))
        elif (res.group, res.version) in aggregated_set:
            skipped.append((name, "served by an aggregated APIService"))
        elif not res.verbs >= REQUIRED_VERBS:
            skipped.append((name, "not stored: no list and update verbs"))
        elif name in checkpoint.run_done:
            done.append(res)
        elif all_resources or checkpoint.hashes.get(name) != res.storage_version_hash:
            migrate.append(res)
        else:
            unchanged.append(res)
    return MigrationPlan(
        migrate=tuple(migrate), unchanged=tuple(unchanged), done=tuple(done), skipped=tuple(skipped)
    )


StoredVersionsReason = Literal[
    "update", "already", "generation_changed", "migrating_in_tree", "no_single_storage"
]
STORAGE_MIGRATING = "StorageMigrating"  # the CRD condition kube-controller-manager's migrator sets


@dataclasses.dataclass(frozen=True, slots=True)
class StoredVersionsUpdate:
    """What to do with a CRD's ``status.storedVersions`` once its objects were all rewritten: set it to
    ``stored`` (None: leave it), for a typed ``reason``, explained by ``note``."""

    stored: list[str] | None
    reason: StoredVersionsReason
    note: str

    @property
    def warn(self) -> bool:
        """Left alone for a reason someone should see (the CRD changed during the run)."""
        return self.reason == "generation_changed"


def stored_versions_update(
    *, crd: Mapping[str, object], expected_generation: int | None
) -> StoredVersionsUpdate:
    """The ``status.storedVersions`` to set on a CRD whose objects were all rewritten.

    ``expected_generation`` is the CRD's generation when its migration began: a different one means the CRD
    (maybe its storage version) changed during the run, so the rewrite proves nothing. A CRD that
    kube-controller-manager's migrator is migrating (condition StorageMigrating true) is left to it: since
    v1.36 it sets storedVersions itself when its migration ends."""
    metadata = crd.get("metadata")
    spec = crd.get("spec")
    status = crd.get("status")
    status = status if isinstance(status, dict) else {}
    generation = metadata.get("generation") if isinstance(metadata, dict) else None
    if expected_generation is None or generation != expected_generation:
        note = f"generation changed during the run ({expected_generation} -> {generation})"
        return StoredVersionsUpdate(None, "generation_changed", note)
    conditions = status.get("conditions")
    if any(
        isinstance(c, dict) and c.get("type") == STORAGE_MIGRATING and c.get("status") == "True"
        for c in (conditions if isinstance(conditions, list) else ())
    ):
        return StoredVersionsUpdate(
            None, "migrating_in_tree", "kube-controller-manager's migrator owns it now"
        )
    versions = spec.get("versions") if isinstance(spec, dict) else None
    storage = [
        str(v.get("name"))
        for v in (versions if isinstance(versions, list) else ())
        if isinstance(v, dict) and v.get("storage") and v.get("name")
    ]
    if len(storage) != 1:
        return StoredVersionsUpdate(None, "no_single_storage", "no single storage version")
    current = status.get("storedVersions")
    if current == storage:
        return StoredVersionsUpdate(None, "already", f"storedVersions already {storage}")
    return StoredVersionsUpdate(storage, "update", f"storedVersions {current} -> {storage}")


@dataclasses.dataclass
class ResourceResult:
    """What migrating one resource did (counted as it goes)."""

    group_resource: str
    listed: int = 0
    migrated: int = 0
    conflicts: int = 0
    not_found: int = 0
    failed: int = 0
    error: str = ""  # why the resource failed (status and reason, never object content)
    delegated_to: str = ""  # the StorageVersionMigration that did (or was to do) the rewrite
    stalled: Stall = ""  # it made no progress within its bound (auto: then rewritten instead)
    fallback_from: str = ""  # auto: rewritten here because this StorageVersionMigration stalled

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.error

    def summary(self) -> str:
        """One line for the log."""
        if self.delegated_to:
            ended = f"failed: {self.error}" if self.error else "succeeded"
            return f"StorageVersionMigration {self.delegated_to} {ended}"
        return (
            f"{self.migrated} rewritten, {self.conflicts} conflicts (already rewritten), {self.not_found} gone, "
            f"{self.failed} failed"
        )

    def as_json(self) -> dict[str, int | str]:
        # A delegated resource's objects are counted by nobody: the built-in migrator reports no figures.
        result: dict[str, int | str] = (
            {"storageVersionMigration": self.delegated_to}
            if self.delegated_to
            else {
                "listed": self.listed,
                "migrated": self.migrated,
                "conflicts": self.conflicts,
                "notFound": self.not_found,
                "failed": self.failed,
            }
        )
        if self.fallback_from:
            result["fallbackFrom"] = self.fallback_from
        if self.error:
            result["error"] = self.error
        return result


@dataclasses.dataclass(frozen=True, slots=True)
class Conclusion:
    """How a run ends: the phase to record ("" for a dry run: nothing is recorded), the Event, the log."""

    phase: Literal["Succeeded", "Failed", ""]
    reason: str
    note: str
    last_error: str = ""


def conclude(*, results: Sequence[ResourceResult], target: str, dry_run: bool) -> Conclusion:
    """The end of a run: failed when any resource failed (the run is tried again later), else succeeded."""
    if dry_run:
        return Conclusion("", "", f"dry run: {_what_was_done(results, dry_run=True)}")
    failed = [r for r in results if not r.ok]
    if failed:
        error = "; ".join(f"{r.group_resource}: {r.error}" for r in failed)[:1000]
        return Conclusion("Failed", "MigrationFailed", f"{len(failed)} resource(s) failed: {error}", error)
    return Conclusion(
        "Succeeded", "MigrationSucceeded", f"{_what_was_done(results, dry_run=False)} for {target}"
    )


def _what_was_done(results: Sequence[ResourceResult], *, dry_run: bool) -> str:
    """Resources handed to StorageVersionMigrations, and objects rewritten (listed, for a dry run)."""
    delegated = sum(1 for r in results if r.delegated_to)
    rewritten = [r for r in results if not r.delegated_to]
    objects = sum(r.listed if dry_run else r.migrated for r in rewritten)
    parts: list[str] = []
    if delegated:
        done = (
            "StorageVersionMigration(s) would be created"
            if dry_run
            else "resource(s) migrated by StorageVersionMigrations"
        )
        parts.append(f"{delegated} {done}")
    if rewritten or not delegated:
        parts.append(
            f"{len(rewritten)} resource(s) with {objects} object(s) would be rewritten"
            if dry_run
            else f"{objects} object(s) of {len(rewritten)} resource(s) rewritten"
        )
    return ", ".join(parts)


# --- how a run migrates: rewriting objects itself, or StorageVersionMigrations --------------------------------

MigrationMethod = Literal["auto", "rewrite", "builtin"]


NO_REWRITE = (
    "the rewrite fallback is off (--rewrite-fallback=false, the chart's usoRunner.rewriteFallback: no grant "
    "to rewrite every resource), so uso-runner does not rewrite it itself"
)


@dataclasses.dataclass(frozen=True, slots=True)
class MethodChoice:
    """How one run migrates: ``builtin`` (StorageVersionMigrations at ``version``) or ``rewrite``.
    ``fallback``: a StorageVersionMigration that stalls is replaced by rewriting (auto). ``unavailable``:
    why the asked-for built-in method cannot be used (a warning; "" when nothing to say). ``no_rewrite``: why
    uso-runner may not rewrite objects itself although the built-in method cannot do it ("" when it may):
    then each such resource fails, loudly."""

    method: Literal["rewrite", "builtin"]
    version: str = ""
    fallback: bool = False
    unavailable: str = ""
    no_rewrite: str = ""
    preferred: str = ""  # auto: why it chose what it chose, where that is not plain (logged at info)


AUTO_PACED = (
    "the paced rewrite (--latency-budget > 0): measured faster than kube-controller-manager's migrator at no "
    "more cost to other clients' latency (docs/uso-runner.md)"
)


def choose_method(
    *,
    asked: MigrationMethod,
    discovered: Iterable[Discovered],
    rewrite_fallback: bool = True,
    paced: bool = False,
) -> MethodChoice:
    """``rewrite``: always. ``builtin``: StorageVersionMigrations when served (else rewrite, with a warning).
    ``auto``: uso-runner's own rewrite where it paces itself (``paced``) and may rewrite (``rewrite_fallback``):
    the Pareto benchmark measured it faster than the in-tree migrator at no more cost to other clients;
    otherwise StorageVersionMigrations when served, falling back to rewriting any that stalls, and rewrite when
    not served (quietly: that is what auto means). Without ``rewrite_fallback`` (builtin and auto only) nothing
    is rewritten in their place: ``no_rewrite`` says why."""
    if asked == "rewrite":
        return MethodChoice("rewrite")
    if asked == "auto" and paced and rewrite_fallback:
        return MethodChoice("rewrite", preferred=AUTO_PACED)
    no_rewrite = "" if rewrite_fallback else NO_REWRITE
    version = builtin_version(discovered)
    if version is None:
        why = (
            f"{SVM_RESOURCE}.{SVM_GROUP} is not served (GA and on by default from Kubernetes 1.37; in 1.35-1.36 "
            f"kube-apiserver needs --runtime-config={SVM_GROUP}/v1beta1=true and the StorageVersionMigrator "
            "feature gate)"
        )
        said = asked == "builtin" or not rewrite_fallback
        return MethodChoice("rewrite", unavailable=why if said else "", no_rewrite=no_rewrite)
    return MethodChoice(
        "builtin", version=version, fallback=asked == "auto" and rewrite_fallback, no_rewrite=no_rewrite
    )


def falls_back(choice: MethodChoice, result: ResourceResult) -> bool:
    """Whether a resource handed to a StorageVersionMigration is to be rewritten after all: in auto mode,
    when its migration made no progress within its bound (a Failed verdict is the migrator's answer: kept)."""
    return choice.fallback and bool(result.delegated_to) and result.stalled != ""


# --- --use-builtin: StorageVersionMigration objects for kube-controller-manager's migrator -------------------

SVM_GROUP = "storagemigration.k8s.io"
SVM_RESOURCE = "storageversionmigrations"
SVM_CREATE_VERBS = frozenset({"create", "get"})
ANNOTATION_TARGET = "kube-upgrade-controllers.io/run-target"
ANNOTATION_HASH = "kube-upgrade-controllers.io/storage-version-hash"
_MAX_NAME = 253

MigrationPhase = Literal["pending", "running", "succeeded", "failed"]


def builtin_version(discovered: Iterable[Discovered]) -> str | None:
    """The version at which ``storageversionmigrations.storagemigration.k8s.io`` can be created, if served
    (``v1`` from Kubernetes 1.37, ``v1beta1`` in 1.35-1.36 when turned on)."""
    for res in discovered:
        if res.group == SVM_GROUP and res.group_resource == f"{SVM_RESOURCE}.{SVM_GROUP}":
            return res.version if res.verbs >= SVM_CREATE_VERBS else None
    return None


def migration_name(*, release: str, group_resource: str, target: str, storage_hash: str) -> str:
    """A StorageVersionMigration's name, the same for one resource, run target and storage hash (so a
    restarted run finds the migration it created), a DNS subdomain of at most 253 characters."""
    digest = hashlib.sha256(f"{target}\n{group_resource}\n{storage_hash}".encode()).hexdigest()[:10]
    base = f"{release}-{group_resource}"[: _MAX_NAME - len(digest) - 1].rstrip(".-")
    return f"{base}-{digest}"


def migration_manifest(
    *,
    api_version: str,
    name: str,
    group: str,
    resource: str,
    labels: Mapping[str, str],
    target: str,
    storage_hash: str,
) -> dict[str, Any]:
    """The StorageVersionMigration asking the built-in migrator to rewrite every object of one resource."""
    return {
        "apiVersion": api_version,
        "kind": "StorageVersionMigration",
        "metadata": {
            "name": name,
            "labels": dict(labels),
            "annotations": {ANNOTATION_TARGET: target, ANNOTATION_HASH: storage_hash},
        },
        "spec": {"resource": {"group": group, "resource": resource}},
    }


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationStatus:
    phase: MigrationPhase
    message: str
    stalled: Stall = ""


def migration_status(svm: Mapping[str, object]) -> MigrationStatus:
    """Where a StorageVersionMigration is. Finished means Succeeded or Failed with Running no longer true: the
    built-in controller turns Running off only after it has set the CRD's storedVersions."""
    status = svm.get("status")
    status = status if isinstance(status, dict) else {}
    conditions = {str(c.get("type")): c for c in fields.mappings(status.get("conditions")) if c.get("type")}

    def true(kind: str) -> bool:
        return str(conditions.get(kind, {}).get("status")) == "True"

    def message(kind: str) -> str:
        condition = conditions.get(kind, {})
        return str(condition.get("message") or condition.get("reason") or kind)

    if true("Running"):
        return MigrationStatus("running", message("Running"))
    if true("Failed"):
        return MigrationStatus("failed", message("Failed"))
    if true("Succeeded"):
        return MigrationStatus("succeeded", message("Succeeded"))
    if not conditions and not status.get("resourceVersion"):
        return MigrationStatus("pending", "not picked up by a controller yet")
    return MigrationStatus("running", "waiting for the migration to start")


def stale_migrations(items: Iterable[Mapping[str, object]], *, target: str) -> list[str]:
    """Names of this controller's finished StorageVersionMigrations from runs for another target (the last
    run's are kept for inspection; unfinished ones are never deleted)."""
    stale: list[str] = []
    for svm in items:
        metadata = svm.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        annotations = fields.mapping(metadata.get("annotations"))
        finished = migration_status(svm).phase in ("succeeded", "failed")
        if finished and annotations.get(ANNOTATION_TARGET) != target and metadata.get("name"):
            stale.append(str(metadata["name"]))
    return sorted(stale)


# --- self-pacing (--latency-budget): how many object writes a migration keeps in flight ---------------------
#
# A migration competes with the cluster's other clients for the apiserver (on a CPU-bound apiserver, each
# write in flight makes every other request slower). The Pacer holds its own writes' latency within
# ``budget`` times their idle latency, after TCP Vegas and Netflix's concurrency-limits (Gradient2):
#
# - **learn**: before pacing, writes go one at a time; the median latency of ``probe_samples`` of them (the
#   very first write, which opens the connection, left out) is the *idle latency*: a write alone, the
#   apiserver's cost of one write plus the network, with whatever else the cluster does at the time;
# - **pace**: every window (``min_window`` writes, or as many as the limit, all started at the current limit)
#   compares the window's latency with the budget: a quarter of its writes above ``hard_factor`` times it (or a
#   write throttled: 429, 5xx, a dropped connection) halves the limit at once (a *hard* back-off); a median
#   above the budget shrinks it in proportion (latency grows with concurrency on a busy apiserver); below it,
#   the limit grows by one while one more write in flight would still fit the budget (slow probing), doubling
#   at first (slow start) while far below it; never above ``ceiling`` (``--workers``), never below 1;
# - **re-learn**: every ``relearn_seconds`` the idle latency is measured again the same way (writes drain to
#   one in flight for ``probe_samples`` writes, then the limit goes back): the cluster's other load changes.
#   The idle latency is the lower of the last two measurements, so that one taken during a burst of the
#   cluster's other load does not loosen the budget (a lasting change is followed at the second).
#
# Decided from what the caller reports (latencies, the clock): no I/O, no time source of its own.

PacePhase = Literal["learn", "pace", "relearn", "off"]
PaceWhy = Literal["learned", "relearn", "relearned", "slow_start", "up", "over_budget", "hard", "throttled"]
# The changes that lower the limit because of the apiserver (counted: uso_runner_pacing_backoffs_total).
PACE_BACKOFFS: tuple[PaceWhy, ...] = ("over_budget", "hard", "throttled")


@dataclasses.dataclass(frozen=True, slots=True)
class PaceSettings:
    """``budget``: the allowed latency as a multiple of the idle latency (0: no pacing, ``ceiling`` always)."""

    budget: float
    ceiling: int
    probe_samples: int = 10
    min_window: int = 16
    hard_factor: float = 2.0
    relearn_seconds: float = 30.0
    announce_seconds: float = 60.0  # a hard back-off is announced (Event) at most this often


@dataclasses.dataclass(frozen=True, slots=True)
class PaceChange:
    """The limit moved from ``before`` to ``after`` because of ``why``; ``announce``: a hard back-off to tell
    (log at warning level, Event), rate-limited to one per ``announce_seconds``."""

    before: int
    after: int
    why: PaceWhy
    latency: float  # the window's median latency (s) that decided it (0 for a throttled write)
    idle: float  # the idle latency it was compared with (s)
    announce: bool = False

    def describe(self, *, budget: float) -> str:
        """One line for the log or an Event."""
        if self.why == "throttled":
            cause = "a write was throttled or failed (429, 5xx or a dropped connection)"
        else:
            ratio = self.latency / self.idle if self.idle else 0.0
            cause = (
                f"write latency {self.latency * 1000:.1f} ms is {ratio:.1f}x the idle "
                f"{self.idle * 1000:.1f} ms (budget {budget:g}x)"
            )
        return f"{cause}: writes in flight {self.before} -> {self.after}"


@dataclasses.dataclass
class Pacer:
    """The current limit of writes in flight (:attr:`limit`), moved by what the caller reports: each answered
    write's latency (:meth:`observe`) and each throttled one (:meth:`throttled`). A write reports the
    :attr:`epoch` it started in: a write started before the last change says nothing about the new limit."""

    settings: PaceSettings
    now: float  # when the pacer was made (the clock of every later call)
    limit: int = dataclasses.field(init=False)
    phase: PacePhase = dataclasses.field(init=False)
    epoch: int = 0
    idle: float = 0.0  # the idle latency learned (s); 0 before it is
    latency: float = 0.0  # the last window's median latency (s)
    _window: list[float] = dataclasses.field(default_factory=list)
    _probe: list[float] = dataclasses.field(default_factory=list)
    _measured: float = math.inf  # the last measurement of the idle latency (s)
    _warm: bool = False  # the first write (a new connection) was seen
    _slow_start: bool = True
    _resume: int = 1  # the limit to go back to after re-learning
    _learned_at: float = 0.0
    _announced_at: float = -math.inf

    def __post_init__(self) -> None:
        if self.settings.budget:
            self.limit, self.phase = 1, "learn"
        else:
            self.limit, self.phase = self.settings.ceiling, "off"

    @property
    def target(self) -> float:
        """The latency (s) the pacer holds writes under (0 until the idle latency is learned)."""
        return self.idle * self.settings.budget

    def observe(self, *, latency: float, epoch: int, alone: bool, now: float) -> PaceChange | None:
        """A write started in ``epoch`` was answered after ``latency`` s; ``alone``: no other write of this
        migration was in flight while it ran. The change of limit it brings, if any."""
        if epoch != self.epoch or latency < 0 or not math.isfinite(latency):
            return None
        if self.phase == "off":
            self._window_off(latency)
            return None
        if self.phase in ("learn", "relearn"):
            return self._learn(latency, alone=alone, now=now)
        if now - self._learned_at >= self.settings.relearn_seconds:
            return self._set(1, "relearn", latency=latency, now=now, phase="relearn", resume=self.limit)
        self._window.append(latency)
        if len(self._window) < max(self.settings.min_window, self.limit):
            return None
        window = sorted(self._window)
        self._window.clear()
        self.latency = statistics.median(window)
        return self._decide(slow=window[len(window) * 3 // 4], now=now)

    def throttled(self, *, epoch: int, now: float) -> PaceChange | None:
        """A write started in ``epoch`` was throttled or failed transiently: back off hard (once per epoch)."""
        if self.phase in ("off", "learn", "relearn") or epoch != self.epoch:
            return None
        return self._set(max(1, self.limit // 2), "throttled", latency=0.0, now=now)

    def _window_off(self, latency: float) -> None:
        """Unpaced: only the observed latency is kept (for the metric)."""
        self._window.append(latency)
        if len(self._window) >= max(self.settings.min_window, self.limit):
            self.latency = statistics.median(self._window)
            self._window.clear()

    def _learn(self, latency: float, *, alone: bool, now: float) -> PaceChange | None:
        if not alone:  # one still in flight from before: the probe starts once the writes drained to one
            return None
        if not self._warm:  # the first write opened the connection (TLS): not what a write costs
            self._warm = True
            return None
        self._probe.append(latency)
        if len(self._probe) < self.settings.probe_samples:
            return None
        measured = statistics.median(self._probe)
        self.idle = min(measured, self._measured)
        self._measured = measured
        self._probe.clear()
        self._learned_at = now
        if self.phase == "relearn":
            return self._set(self._resume, "relearned", latency=self.idle, now=now, phase="pace")
        return self._set(1, "learned", latency=self.idle, now=now, phase="pace")

    def _decide(self, *, slow: float, now: float) -> PaceChange | None:
        """``slow``: the window's upper quartile. A quarter of the writes far over budget (a stall: every write
        in flight was slow, those after it may not be) is a hard back-off; the median decides the rest."""
        s, limit, ratio = self.settings, self.limit, self.latency / self.idle
        if max(ratio, slow / self.idle) >= s.budget * s.hard_factor:
            return self._set(max(1, limit // 2), "hard", latency=max(self.latency, slow), now=now)
        if ratio > s.budget:
            self._slow_start = False
            shrunk = max(1, min(limit - 1, math.floor(limit * s.budget / ratio)))
            return self._set(shrunk, "over_budget", latency=self.latency, now=now)
        headroom = 1 + (s.budget - 1) / 2  # far enough below the budget to grow whatever the slope
        if self._slow_start and ratio <= 1 + (s.budget - 1) / 4:
            return self._set(min(s.ceiling, limit * 2), "slow_start", latency=self.latency, now=now)
        self._slow_start = False
        # One more write in flight makes each take about (limit + 1) / limit as long where latency grows
        # with concurrency: grow only when that still fits (or when the latency is well below the budget).
        if ratio <= headroom or ratio * (limit + 1) / limit <= s.budget:
            return self._set(min(s.ceiling, limit + 1), "up", latency=self.latency, now=now)
        return None

    def _set(
        self,
        limit: int,
        why: PaceWhy,
        *,
        latency: float,
        now: float,
        phase: PacePhase | None = None,
        resume: int | None = None,
    ) -> PaceChange | None:
        before = self.limit
        if phase is not None:
            self.phase = phase
        if resume is not None:
            self._resume = resume
        self._window.clear()
        if limit == before and phase is None:
            return None
        self.limit = limit
        self.epoch += 1
        hard = why in ("hard", "throttled")
        announce = hard and now - self._announced_at >= self.settings.announce_seconds
        if announce:
            self._announced_at = now
        return PaceChange(
            before=before, after=limit, why=why, latency=latency, idle=self.idle, announce=announce
        )

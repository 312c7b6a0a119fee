"""uso-runner's pure decisions: trigger, plan, checkpoint, CRD storedVersions, retry policy."""

from __future__ import annotations

import dataclasses
import re

import pytest

from controllers.agreement.version import Version, parse_version
from controllers.kube import discovery
from controllers.uso_runner import logic


def v(text: str) -> Version:
    parsed = parse_version(text)
    assert parsed is not None
    return parsed


def res(
    name: str, group: str = "", *, hash: str = "h1", verbs: str = "list,update,get", version: str = "v1"
) -> discovery.ApiResource:
    return discovery.ApiResource(
        group=group,
        version=version,
        name=name,
        kind=name.title(),
        namespaced=True,
        verbs=frozenset(verbs.split(",")),
        storage_version_hash=hash,
    )


# --- trigger -------------------------------------------------------------------------------------------------


def test_first_run_ever_starts() -> None:
    decision = logic.decide(checkpoint=logic.Checkpoint(), agreed=v("v1.31.0"), mode="minor")
    assert decision.action == "start"


@pytest.mark.parametrize(
    ("previous", "agreed", "mode", "action"),
    [
        ("v1.30.4", "v1.31.0", "minor", "start"),
        ("v1.31.0", "v1.31.5", "minor", "none"),
        ("v1.31.0-eks-1", "v1.31.0+k3s1", "any", "none"),
        ("v1.31.0", "v1.31.5", "any", "start"),
        ("v1.32.0", "v1.31.9", "minor", "start"),  # a downgrade changes the storage versions too
        ("garbage", "v1.31.0", "minor", "start"),
    ],
)
def test_trigger(previous: str, agreed: str, mode: logic.TriggerMode, action: str) -> None:
    decision = logic.decide(checkpoint=logic.Checkpoint(version=previous), agreed=v(agreed), mode=mode)
    assert decision.action == action


def test_unfinished_run_resumes_for_the_same_minor_and_is_superseded_by_another() -> None:
    running = logic.Checkpoint(version="v1.30.0", run_target="v1.31.0", run_done=frozenset({"pods"}))
    assert logic.decide(checkpoint=running, agreed=v("v1.31.2"), mode="minor").action == "resume"
    assert logic.decide(checkpoint=running, agreed=v("v1.31.2"), mode="any").action == "start"
    assert logic.decide(checkpoint=running, agreed=v("v1.32.0"), mode="minor").action == "start"


@pytest.mark.parametrize(
    ("current", "mode", "verdict"),
    [
        ("v1.36.0", "minor", "go"),
        ("v1.36.4", "minor", "go"),  # a patch of the same minor: the same storage versions
        (None, "minor", "pause"),  # the masters do not agree on anything (now)
        ("v1.35.9", "minor", "superseded"),  # rolled back, settled
        ("v1.37.0", "minor", "superseded"),
        ("v1.36.4", "any", "superseded"),
        ("v1.36.0", "any", "go"),
    ],
)
def test_guard_of_a_running_daemon_run(current: str | None, mode: logic.TriggerMode, verdict: str) -> None:
    agreed = v(current) if current else None
    assert logic.guard(current=agreed, target=v("v1.36.0"), mode=mode) == verdict


# --- plan ----------------------------------------------------------------------------------------------------


def test_plan_migrates_changed_and_new_hashes_only() -> None:
    discovered = [
        res("configmaps", hash="a"),
        res("secrets", hash="b2"),
        res("widgets", "example.com", hash="w"),
    ]
    checkpoint = logic.Checkpoint(hashes={"configmaps": "a", "secrets": "b1"})
    plan = logic.plan(
        discovered=discovered, aggregated=(), checkpoint=checkpoint, skip=(), all_resources=False
    )
    assert [r.group_resource for r in plan.migrate] == ["secrets", "widgets.example.com"]
    assert [r.group_resource for r in plan.unchanged] == ["configmaps"]


def test_plan_all_resources_overrides_hashes_but_not_finished_work_of_this_run() -> None:
    discovered = [res("configmaps", hash="a"), res("secrets", hash="b")]
    checkpoint = logic.Checkpoint(hashes={"configmaps": "a", "secrets": "b"}, run_done=frozenset({"secrets"}))
    plan = logic.plan(
        discovered=discovered, aggregated=(), checkpoint=checkpoint, skip=(), all_resources=True
    )
    assert [r.group_resource for r in plan.migrate] == ["configmaps"]
    assert [r.group_resource for r in plan.done] == ["secrets"]


def test_plan_skips_events_aggregated_and_unstorable() -> None:
    discovered = [
        res("events"),
        res("events", "events.k8s.io"),
        res("pods", "metrics.k8s.io", version="v1beta1", verbs="get,list"),
        res("widgets", "agg.example.com", version="v1"),
        res("tokenreviews", "authentication.k8s.io", verbs="create", hash=""),
        res("pods"),
    ]
    plan = logic.plan(
        discovered=discovered,
        aggregated={("agg.example.com", "v1")},
        checkpoint=logic.Checkpoint(),
        skip=logic.DEFAULT_SKIP,
        all_resources=True,
    )
    assert [r.group_resource for r in plan.migrate] == ["pods"]
    assert dict(plan.skipped) == {
        "events": "in the skip list",
        "events.events.k8s.io": "in the skip list",
        "pods.metrics.k8s.io": "not stored: no list and update verbs",
        "widgets.agg.example.com": "served by an aggregated APIService",
        "tokenreviews.authentication.k8s.io": "not stored: no list and update verbs",
    }


def test_plan_only_list_restricts() -> None:
    discovered = [res("configmaps"), res("secrets")]
    plan = logic.plan(
        discovered=discovered,
        aggregated=(),
        checkpoint=logic.Checkpoint(),
        skip=(),
        only=["secrets"],
        all_resources=False,
    )
    assert [r.group_resource for r in plan.migrate] == ["secrets"]


# --- checkpoint ----------------------------------------------------------------------------------------------


def test_checkpoint_round_trip_and_run_lifecycle() -> None:
    checkpoint = logic.start_run(logic.Checkpoint(version="v1.30.1", hashes={"pods": "x"}), target="v1.31.0")
    checkpoint = logic.finish_resource(checkpoint, group_resource="secrets", storage_hash="s")
    assert logic.read_checkpoint(logic.checkpoint_data(checkpoint)) == checkpoint
    finished = logic.finish_run(checkpoint)
    assert finished == logic.Checkpoint(version="v1.31.0", hashes={"pods": "x", "secrets": "s"})


@pytest.mark.parametrize(
    "data",
    [
        {"storageHashes": "not json", "runDone": "{"},
        {"storageHashes": "[1, 2]", "runDone": '{"a": 1}'},
        {"storageHashes": '{"pods": 3}', "runDone": "7"},
        {},
    ],
)
def test_malformed_checkpoint_counts_as_absent(data: dict[str, str]) -> None:
    checkpoint = logic.read_checkpoint(data)
    assert checkpoint.hashes == {} and checkpoint.run_done == frozenset()


# --- CRD storedVersions --------------------------------------------------------------------------------------


def crd(*, generation: int = 3, stored: list[str] | None = None, storage: str = "v2") -> dict[str, object]:
    return {
        "metadata": {"name": "widgets.example.com", "generation": generation},
        "spec": {
            "versions": [
                {"name": "v1", "storage": storage == "v1"},
                {"name": "v2", "storage": storage == "v2"},
            ]
        },
        "status": {"storedVersions": stored if stored is not None else ["v1", "v2"]},
    }


def test_stored_versions_set_to_the_storage_version() -> None:
    update = logic.stored_versions_update(crd=crd(), expected_generation=3)
    assert (update.stored, update.reason, update.warn) == (["v2"], "update", False)


def test_stored_versions_left_alone_for_a_typed_reason() -> None:
    """The controller branches on the reason (a Warning Event only for a CRD changed during the run), never
    on the note's text."""

    def reason(crd: dict[str, object]) -> tuple[list[str] | None, str, bool]:
        update = logic.stored_versions_update(crd=crd, expected_generation=3)
        return update.stored, update.reason, update.warn

    assert reason(crd(generation=4)) == (None, "generation_changed", True)
    assert reason(crd(stored=["v2"])) == (None, "already", False)
    assert reason({"metadata": "odd"}) == (None, "generation_changed", True)
    assert reason({"metadata": {"generation": 3}, "spec": {"versions": "garbage"}}) == (
        None,
        "no_single_storage",
        False,
    )
    migrating = crd()
    migrating["status"] = {  # kube-controller-manager's migrator is at it: it sets storedVersions itself
        "storedVersions": ["v1", "v2"],
        "conditions": [{"type": logic.STORAGE_MIGRATING, "status": "True"}, "garbage"],
    }
    assert reason(migrating) == (None, "migrating_in_tree", False)


def test_discovery_parsing() -> None:
    pairs = discovery.preferred_group_versions(
        core={"versions": ["v1"]},
        groups={
            "groups": [{"name": "apps", "preferredVersion": {"version": "v1"}}, {"name": "x", "versions": []}]
        },
    )
    assert pairs == [("", "v1"), ("apps", "v1")]
    found = discovery.parse_resource_list(
        group="apps",
        version="v1",
        document={
            "resources": [
                {
                    "name": "deployments",
                    "kind": "Deployment",
                    "namespaced": True,
                    "verbs": ["list", "update"],
                    "storageVersionHash": "8aSe+NMegvE=",
                },
                {"name": "deployments/status", "kind": "Deployment", "verbs": ["get"]},
            ]
        },
    )
    assert [dataclasses.astuple(r) for r in found] == [
        ("apps", "v1", "deployments", "Deployment", True, frozenset({"list", "update"}), "8aSe+NMegvE=")
    ]
    assert discovery.aggregated_group_versions(
        [
            {"spec": {"group": "metrics.k8s.io", "version": "v1beta1", "service": {"name": "m"}}},
            {"spec": {"group": "apps", "version": "v1"}},
            {},
        ]
    ) == {("metrics.k8s.io", "v1beta1")}


# --- --method: rewrite, builtin, auto -------------------------------------------------------------------------


def test_choose_method() -> None:
    v1 = res(logic.SVM_RESOURCE, logic.SVM_GROUP, verbs="create,get,list,delete", version="v1")
    served, not_served = [res("configmaps"), v1], [res("configmaps")]
    choose = logic.choose_method
    assert choose(asked="rewrite", discovered=served) == logic.MethodChoice("rewrite")
    assert choose(asked="builtin", discovered=served) == logic.MethodChoice("builtin", version="v1")
    assert choose(asked="auto", discovered=served) == logic.MethodChoice(
        "builtin", version="v1", fallback=True
    )
    # Paced and allowed to rewrite, auto rewrites (and says why); unpaced, or without the grant, it hands over.
    paced = choose(asked="auto", discovered=served, paced=True)
    assert paced == logic.MethodChoice("rewrite", preferred=logic.AUTO_PACED)
    assert choose(asked="auto", discovered=served, paced=True, rewrite_fallback=False) == logic.MethodChoice(
        "builtin", version="v1", no_rewrite=logic.NO_REWRITE
    )
    assert choose(asked="builtin", discovered=served, paced=True).method == "builtin"  # asked for: kept
    # Not served: auto rewrites quietly; builtin rewrites and says why (the warning names the 1.37 GA).
    assert choose(asked="auto", discovered=not_served) == logic.MethodChoice("rewrite")
    builtin = choose(asked="builtin", discovered=not_served)
    assert (
        builtin.method == "rewrite" and "not served" in builtin.unavailable and "1.37" in builtin.unavailable
    )
    assert builtin.no_rewrite == ""


@pytest.mark.parametrize("asked", ["auto", "builtin"])
def test_without_the_rewrite_fallback_nothing_is_rewritten_in_the_builtin_methods_place(
    asked: logic.MigrationMethod,
) -> None:
    v1 = res(logic.SVM_RESOURCE, logic.SVM_GROUP, verbs="create,get,list,delete", version="v1")
    served = logic.choose_method(asked=asked, discovered=[res("configmaps"), v1], rewrite_fallback=False)
    assert served == logic.MethodChoice("builtin", version="v1", fallback=False, no_rewrite=logic.NO_REWRITE)
    stalled = logic.ResourceResult("configmaps", delegated_to="svm", error="x", stalled="not_picked_up")
    assert not logic.falls_back(served, stalled)
    unserved = logic.choose_method(asked=asked, discovered=[res("configmaps")], rewrite_fallback=False)
    assert unserved.method == "rewrite" and "not served" in unserved.unavailable  # said even for auto
    assert unserved.no_rewrite == logic.NO_REWRITE
    # rewrite is the method itself: the switch does not apply.
    assert logic.choose_method(asked="rewrite", discovered=[], rewrite_fallback=False).no_rewrite == ""


def test_only_auto_falls_back_and_only_from_a_stalled_migration() -> None:
    auto, builtin = logic.MethodChoice("builtin", "v1", fallback=True), logic.MethodChoice("builtin", "v1")
    stalled = logic.ResourceResult("configmaps", delegated_to="svm", error="x", stalled="not_picked_up")
    late = logic.ResourceResult("configmaps", delegated_to="svm", error="x", stalled="timeout")
    failed = logic.ResourceResult("configmaps", delegated_to="svm", error="Failed: the migrator's verdict")
    done = logic.ResourceResult("configmaps", delegated_to="svm")
    assert logic.falls_back(auto, stalled) and logic.falls_back(auto, late)
    assert not logic.falls_back(auto, failed) and not logic.falls_back(auto, done)
    assert not logic.falls_back(builtin, stalled)


def test_builtin_version_is_the_served_creatable_version_or_none() -> None:
    svm = res(logic.SVM_RESOURCE, logic.SVM_GROUP, verbs="create,get,list,delete", version="v1beta1")
    assert logic.builtin_version([res("configmaps"), svm]) == "v1beta1"
    assert logic.builtin_version([res("configmaps")]) is None
    read_only = dataclasses.replace(svm, verbs=frozenset({"get", "list"}))
    assert logic.builtin_version([read_only]) is None
    assert logic.builtin_version([res(logic.SVM_RESOURCE, "other.example.com", verbs="create,get")]) is None


DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")  # DNS-1123


def test_migration_name_is_stable_per_resource_target_and_hash_and_a_valid_name() -> None:
    def name(
        *,
        release: str = "kuc",
        group_resource: str = "widgets.example.com",
        target: str = "v1.36.0",
        hash: str = "h1",
    ) -> str:
        return logic.migration_name(
            release=release, group_resource=group_resource, target=target, storage_hash=hash
        )

    assert name() == name()
    assert name().startswith("kuc-widgets.example.com-")
    assert len({name(), name(target="v1.37.0"), name(hash="h2"), name(group_resource="configmaps")}) == 4
    # Cut to 253 characters: where the cut lands on a "." or "-", that separator goes.
    for cut_on_separator in (
        name(group_resource="x" * 300 + ".example.com"),
        name(group_resource="x" * 237 + ".example.com"),  # the cut leaves "xxx."
        name(release="a" * 241 + "-b"),  # the cut leaves "aaa-"
        name(release="a" * 240 + "-", group_resource="configmaps"),  # "aaa--configmaps": valid as is
    ):
        assert len(cut_on_separator) <= 253 and DNS_SUBDOMAIN.match(cut_on_separator), cut_on_separator


def test_migration_manifest_names_the_group_resource_and_the_run() -> None:
    manifest = logic.migration_manifest(
        api_version="storagemigration.k8s.io/v1beta1",
        name="kuc-configmaps-0123456789",
        group="",
        resource="configmaps",
        labels={"app.kubernetes.io/instance": "kuc"},
        target="v1.36.0",
        storage_hash="h1",
    )
    assert manifest["kind"] == "StorageVersionMigration"
    assert manifest["spec"] == {"resource": {"group": "", "resource": "configmaps"}}
    assert manifest["metadata"]["annotations"] == {
        logic.ANNOTATION_TARGET: "v1.36.0",
        logic.ANNOTATION_HASH: "h1",
    }


def svm(
    *conditions: tuple[str, str], resource_version: str = "", target: str = "v1", name: str = "m"
) -> dict[str, object]:
    return {
        "metadata": {"name": name, "annotations": {logic.ANNOTATION_TARGET: target}},
        "status": {
            "resourceVersion": resource_version,
            "conditions": [{"type": t, "status": s, "message": f"{t} says {s}"} for t, s in conditions],
        },
    }


@pytest.mark.parametrize(
    ("conditions", "resource_version", "phase"),
    [
        ((), "", "pending"),
        ((("Running", "True"),), "", "running"),
        ((("Running", "True"),), "42", "running"),
        # Succeeded, but the controller has not turned Running off yet (it updates the CRD first).
        ((("Running", "True"), ("Succeeded", "True")), "42", "running"),
        ((("Running", "False"), ("Succeeded", "True")), "42", "succeeded"),
        ((("Running", "False"), ("Failed", "True")), "42", "failed"),
        ((("Failed", "True"),), "", "failed"),
        ((("Running", "False"),), "42", "running"),
    ],
)
def test_migration_status(conditions: tuple[tuple[str, str], ...], resource_version: str, phase: str) -> None:
    assert logic.migration_status(svm(*conditions, resource_version=resource_version)).phase == phase


def test_migration_status_of_a_failure_carries_its_message_and_tolerates_junk() -> None:
    failed = logic.migration_status(svm(("Failed", "True")))
    assert failed == logic.MigrationStatus("failed", "Failed says True")
    assert logic.migration_status({"status": "junk"}).phase == "pending"
    assert logic.migration_status({"status": {"conditions": ["junk", {"type": ""}]}}).phase == "pending"


def test_stale_migrations_are_finished_ones_of_other_targets() -> None:
    items = [
        svm(("Succeeded", "True"), target="v1.35.0", name="old-done"),
        svm(("Failed", "True"), target="v1.35.0", name="old-failed"),
        svm(("Running", "True"), target="v1.35.0", name="old-running"),
        svm(("Succeeded", "True"), target="v1.36.0", name="current"),
        svm(target="v1.35.0", name="old-pending"),
    ]
    assert logic.stale_migrations(items, target="v1.36.0") == ["old-done", "old-failed"]


def test_conclusion_of_a_run() -> None:
    results = [
        logic.ResourceResult("configmaps", migrated=3, listed=3),
        logic.ResourceResult("widgets.example.io", migrated=2, listed=4, conflicts=2),
    ]
    delegated = [
        logic.ResourceResult(r.group_resource, delegated_to=f"svm-{r.group_resource}") for r in results
    ]
    end = logic.conclude(results=results, target="v1.36.0", dry_run=False)
    assert (end.phase, end.reason, end.last_error) == ("Succeeded", "MigrationSucceeded", "")
    assert end.note == "5 object(s) of 2 resource(s) rewritten for v1.36.0"
    builtin = logic.conclude(results=delegated, target="v1.36.0", dry_run=False)
    assert builtin.note == "2 resource(s) migrated by StorageVersionMigrations for v1.36.0"
    mixed = logic.conclude(results=[delegated[0], results[1]], target="v1.36.0", dry_run=False)
    assert mixed.note == (
        "1 resource(s) migrated by StorageVersionMigrations, 2 object(s) of 1 resource(s) rewritten for v1.36.0"
    )
    failed = logic.conclude(
        results=[*results, logic.ResourceResult("secrets", error="403 Forbidden")], target="v1.36.0",
        dry_run=False,
    )  # fmt: skip
    assert (failed.phase, failed.reason, failed.last_error) == (
        "Failed",
        "MigrationFailed",
        "secrets: 403 Forbidden",
    )
    dry = logic.conclude(results=results, target="v1.36.0", dry_run=True)
    assert (dry.phase, dry.note) == ("", "dry run: 2 resource(s) with 7 object(s) would be rewritten")
    assert logic.conclude(results=delegated, target="", dry_run=True).note == (
        "dry run: 2 StorageVersionMigration(s) would be created"
    )


def test_bookmarks_round_trip_and_end_with_their_resource_or_run() -> None:
    running = logic.start_run(logic.Checkpoint(version="v1.36.3"), target="v1.37.2")
    marked = logic.bookmark(running, group_resource="widgets.example.com", token="t1")
    marked = logic.bookmark(marked, group_resource="secrets", token="s1")
    assert logic.read_checkpoint(logic.checkpoint_data(marked)) == marked
    done = logic.finish_resource(marked, group_resource="secrets", storage_hash="h")
    assert done.run_continue == {"widgets.example.com": "t1"}
    assert logic.start_run(done, target="v1.38.0").run_continue == {}
    assert logic.finish_run(done).run_continue == {}


@pytest.mark.parametrize("raw", ["", "not json", "[1]", '{"a": 1}', '"x"'])
def test_a_malformed_bookmark_key_reads_as_no_bookmark(raw: str) -> None:
    assert logic.read_checkpoint({logic.KEY_RUN_CONTINUE: raw}).run_continue == {}


def test_the_bookmark_moves_only_over_pages_finished_from_the_start() -> None:
    pages = logic.Pages()
    first, second, last = (pages.add(objects=2, token=t) for t in ("after-1", "after-2", ""))
    assert pages.advance() == ""  # nothing finished
    pages.done(second)
    pages.done(second)
    assert pages.advance() == ""  # page 2 finished, page 1 not: no object may be skipped
    pages.done(first)
    assert pages.advance() == ""  # half of page 1
    pages.done(first)
    assert pages.advance() == "after-2"  # pages 1 and 2 at once
    assert pages.advance() == ""  # no news: nothing to save again
    pages.done(last)
    pages.done(last)
    assert pages.advance() == ""  # the last page has no token: the resource's own checkpoint says done


def test_an_empty_page_is_finished_when_listed() -> None:
    pages = logic.Pages()
    pages.add(objects=0, token="after-empty")
    assert pages.advance() == "after-empty"

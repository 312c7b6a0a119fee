"""Properties: uso-runner's decisions never raise on a garbage state ConfigMap, discovery document, CRD or
StorageVersionMigration: a malformed checkpoint counts as absent, a CRD it cannot read is not updated (with
the reason), an unreadable migration is still running."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controllers.agreement import version
from controllers.kube import discovery
from controllers.uso_runner import logic
from tests import strategies

V136 = version.Version(1, 36, 1, raw="v1.36.1")


@strategies.PROPERTY
@given(
    data=strategies.configmap_data,
    documents=st.lists(strategies.api_resource_lists, max_size=2),
    apiservices=st.lists(strategies.api_services, max_size=2),
    mode=st.sampled_from(["minor", "any"]),
    all_resources=st.booleans(),
)
def test_decide_and_plan_from_any_state(
    data: dict[str, str],
    documents: list[dict[str, Any]],
    apiservices: list[dict[str, Any]],
    mode: logic.TriggerMode,
    all_resources: bool,
) -> None:
    checkpoint = logic.read_checkpoint(data)
    assert logic.read_checkpoint(logic.checkpoint_data(checkpoint)) == checkpoint
    decision = logic.decide(checkpoint=checkpoint, agreed=V136, mode=mode)
    assert decision.reason
    discovered = [
        res
        for doc in documents
        for res in discovery.parse_resource_list(group="", version="v1", document=doc)
    ]
    plan = logic.plan(
        discovered=discovered,
        aggregated=discovery.aggregated_group_versions(apiservices),
        checkpoint=checkpoint,
        skip=logic.DEFAULT_SKIP,
        all_resources=all_resources,
    )
    assert all(res.verbs >= logic.REQUIRED_VERBS for res in plan.migrate)
    logic.builtin_version(discovered)


@strategies.PROPERTY
@given(crd=strategies.crds, expected=st.one_of(st.none(), st.integers(-(2**70), 2**70)))
def test_stored_versions_of_any_crd(crd: dict[str, Any], expected: int | None) -> None:
    update = logic.stored_versions_update(crd=crd, expected_generation=expected)
    assert update.note
    assert update.stored is None or (len(update.stored) == 1 and isinstance(update.stored[0], str))


@strategies.PROPERTY
@given(svms=st.lists(strategies.storage_version_migrations, max_size=3), target=strategies.version_texts)
def test_migration_status_of_any_object(svms: list[dict[str, Any]], target: str) -> None:
    for svm in svms:
        assert logic.migration_status(svm).phase in ("pending", "running", "succeeded", "failed")
    assert all(isinstance(name, str) for name in logic.stale_migrations(svms, target=target))

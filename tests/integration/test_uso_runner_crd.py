"""uso-runner on the real fixture: a CRD's storage switch v1 -> v2, hashes, --all-resources, Secrets in logs."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from controllers.kube import client, resources, state
from e2e import cluster, controlplane
from tests import harness
from tests.integration import uso_helpers as h

OBJECTS = 2000


async def test_crd_storage_switch_migrates_every_object_once_per_hash_change(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    group = h.unique_group()
    widgets = await h.create_crd(kube, group=group, storage="v1")
    crd_name = f"widgets.{group}"
    release = f"r{uuid.uuid4().hex[:6]}"
    await nodes.create(f"m-{release}", version="v1.35.2", master=True)

    async def once() -> dict[str, Any]:
        return await h.reconcile_now(
            h.runner(kube, namespace=namespace, release=release, argv=["--resources", crd_name])
        )

    # First run ever, with the CRD still empty: the resource is migrated and its hash recorded.
    first = await once()
    assert first["action"] == "start" and first["resources"] == {crd_name: json_result(0)}

    await h.create_many(
        kube,
        widgets,
        (h.widget(f"w{i:05d}", i, api_version=f"{group}/v1") for i in range(OBJECTS)),
        namespace=namespace,
    )
    before = {o["metadata"]["name"]: h.content(o) for o in await h.list_all(kube, widgets, namespace)}
    prefix = f"/registry/{group}/widgets/{namespace}/"
    assert {o["apiVersion"] for o in h.stored_objects(control_plane, prefix).values()} == {f"{group}/v1"}

    # Switch the storage version to v2: storedVersions becomes [v1, v2], the discovery hash changes.
    await h.switch_storage(kube, control_plane, widgets, namespace=namespace, to="v2")
    crd = await kube.get(resources.CRDS.path(name=crd_name))
    assert crd["status"]["storedVersions"] == ["v1", "v2"]

    # A new patch of the same minor: nothing happens (default trigger: minor changes).
    await nodes.set_status(f"m-{release}", version="v1.35.9")
    assert (await once())["action"] == "none"

    # Masters move to a new minor: every object is rewritten at v2, content unchanged, storedVersions [v2].
    await nodes.set_status(f"m-{release}", version="v1.36.0")
    second = await once()
    assert second["resources"][crd_name]["migrated"] == OBJECTS
    assert second["resources"][crd_name]["failed"] == 0
    assert second["storedVersions"][crd_name].startswith("updated")
    stored = h.stored_objects(control_plane, prefix)
    assert len(stored) == OBJECTS
    assert {o["apiVersion"] for o in stored.values()} == {f"{group}/v2"}
    crd = await kube.get(resources.CRDS.path(name=crd_name))
    assert crd["status"]["storedVersions"] == ["v2"]
    after = {o["metadata"]["name"]: h.content(o) for o in await h.list_all(kube, widgets, namespace)}
    assert after == before
    assert {o["metadata"]["name"]: h.content(o) for o in stored.values()} == before

    saved = await state.read(kube, namespace=namespace, name=f"{release}-uso-runner-state")
    assert saved.get("version") == "v1.36.0" and saved.get("phase") == "Succeeded"
    assert saved.get("runTarget") == "" and crd_name in json.loads(saved.get("storageHashes"))

    # Another minor with no storageVersionHash change: 0 objects.
    await nodes.set_status(f"m-{release}", version="v1.37.0")
    third = await once()
    assert third["action"] == "start" and third["objectsMigrated"] == 0 and third["unchanged"] == [crd_name]
    # (--all-resources migrating every object regardless of hashes: the daemon test in test_uso_runner_resume.)


def json_result(migrated: int) -> dict[str, int]:
    return {"listed": migrated, "migrated": migrated, "conflicts": 0, "notFound": 0, "failed": 0}


async def test_a_secret_value_never_appears_in_the_logs(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, control_plane: controlplane.ControlPlane
) -> None:
    """Even when the apiserver's error message quotes the Secret (a policy denying its update does)."""
    value = f"s3cr3t-{uuid.uuid4().hex}"
    encoded = base64.b64encode(value.encode()).decode()
    secrets = resources.Resource("", "v1", "secrets", namespaced=True)
    for name in ("plain", "blocked"):
        await kube.create(
            secrets.path(namespace=namespace),
            {
                "metadata": {"name": name, "labels": {"deny": str(name == "blocked")}},
                "stringData": {"v": value},
            },
        )
    policy = f"deny-{namespace}"
    await kube.create(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        {
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["secrets"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "object.metadata.labels['deny'] != 'True'",
                        "messageExpression": "'denied: ' + string(object.data['v'])",
                    }
                ],
            },
        },
    )
    await kube.create(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
        {
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    )
    try:
        # The policy is live once a direct update is denied with the Secret's value in the message.
        path = secrets.path(namespace=namespace, name="blocked")
        denial = ""

        async def denied() -> bool:
            nonlocal denial
            try:
                await kube.replace(path, await kube.get(path), dry_run=True)
            except client.ApiError as error:
                denial = str(error.body.get("message"))
                return True
            return False

        await harness.eventually(denied, timeout=20, interval=0.2, what="the policy to take effect")
        assert encoded in denial

        release = f"r{uuid.uuid4().hex[:6]}"
        await nodes.create(f"m-{release}", version="v1.35.0", master=True)
        code, report, logs = await h.run_once_async(
            str(control_plane.kubeconfig),
            namespace=namespace,
            release=release,
            extra=["--resources=secrets", "--log-level=debug", "--max-retries=1"],
        )
        assert code == 1 and report["failedResources"] == ["secrets"], logs
        assert report["resources"]["secrets"]["failed"] == 1
        output = logs + json.dumps(report)
        assert f"object {namespace}/blocked: 422" in output  # reported by status, not message
        assert value not in output and encoded not in output
        saved = await state.read(kube, namespace=namespace, name=f"{release}-uso-runner-state")
        assert encoded not in json.dumps(dict(saved.data)) and saved.get("phase") == "Failed"
    finally:
        for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
            await kube.delete(f"/apis/admissionregistration.k8s.io/v1/{kind}/{policy}")

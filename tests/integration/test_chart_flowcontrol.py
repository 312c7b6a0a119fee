"""The chart's API Priority and Fairness objects for uso-runner (usoRunner.flowControl), offline (helm template)
and on the real fixture: the apiserver classifies the ServiceAccount's requests into the chart's priority level."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from controllers.kube import client, resources
from e2e import controlplane
from tests import chart_tools as ct
from tests import harness

FULL = "kuc-kube-upgrade-controllers-uso-runner"
FLOWSCHEMAS = resources.Resource("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", namespaced=False)
SERVICEACCOUNTS = resources.Resource("", "v1", "serviceaccounts", namespaced=True)
LEVELS = resources.Resource(
    "flowcontrol.apiserver.k8s.io", "v1", "prioritylevelconfigurations", namespaced=False
)


def flow_objects(*args: str) -> dict[str, dict[str, Any]]:
    objects = ct.template(*args)
    return {o["kind"]: o for o in objects if o["apiVersion"].startswith("flowcontrol.apiserver.k8s.io/")}


def test_on_by_default_and_only_with_uso_runner() -> None:
    assert set(flow_objects()) == {"FlowSchema", "PriorityLevelConfiguration"}
    assert flow_objects("--set", "usoRunner.flowControl.enabled=false") == {}
    assert flow_objects("--set", "usoRunner.enabled=false") == {}


def test_the_flowschema_sends_the_service_account_to_its_sized_priority_level() -> None:
    objects = flow_objects(
        "--set", "usoRunner.flowControl.enabled=true", "--set", "usoRunner.flowControl.nominalConcurrencyShares=3",
        "--set", "usoRunner.flowControl.queueLengthLimit=20",
    )  # fmt: skip
    schema, level = objects["FlowSchema"], objects["PriorityLevelConfiguration"]
    assert schema["metadata"]["name"] == level["metadata"]["name"] == FULL
    assert schema["spec"]["priorityLevelConfiguration"] == {"name": FULL}
    assert schema["spec"]["matchingPrecedence"] == 1000
    (rule,) = schema["spec"]["rules"]
    assert rule["subjects"] == [
        {"kind": "ServiceAccount", "serviceAccount": {"name": FULL, "namespace": "upgrades"}}
    ]
    limited = level["spec"]["limited"]
    assert (limited["nominalConcurrencyShares"], limited["borrowingLimitPercent"]) == (3, 0)
    assert limited["limitResponse"]["queuing"]["queueLengthLimit"] == 20
    # In the combined Deployment uso-runner runs as the combined ServiceAccount: that is the subject then.
    combined = flow_objects("--set", "usoRunner.flowControl.enabled=true", "--set", "combined.enabled=true")
    (rule,) = combined["FlowSchema"]["spec"]["rules"]
    assert rule["subjects"][0]["serviceAccount"]["name"] == "kuc-kube-upgrade-controllers-combined"


@pytest.mark.parametrize(
    "value",
    [
        "usoRunner.flowControl.lendablePercent=101",
        "usoRunner.flowControl.queues=0",
        "usoRunner.flowControl.x=1",
    ],
)
def test_the_schema_rejects_bad_sizes(value: str) -> None:
    result = ct.helm("template", "kuc", ct.CHART, "--set", value, check=False)
    assert result.returncode != 0 and "flowControl" in result.stderr, result.stderr


async def test_the_apiserver_classifies_uso_runners_requests_into_the_charts_level(
    kube: client.Kube, control_plane: controlplane.ControlPlane
) -> None:
    """Installed for real, the apiserver puts a request of the ServiceAccount into the chart's priority level
    (it says which in the X-Kubernetes-PF-PriorityLevel-UID response header)."""
    release, namespace = f"f{uuid.uuid4().hex[:6]}", f"apf-{uuid.uuid4().hex[:6]}"
    objects = ct.template("--set", "usoRunner.flowControl.enabled=true", release=release, namespace=namespace)
    name = f"{release}-kube-upgrade-controllers-uso-runner"
    await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": namespace}})
    service_account = ct.find(objects, "ServiceAccount", name)
    await kube.create(SERVICEACCOUNTS.path(namespace=namespace), service_account)
    level = await kube.create(LEVELS.path(), ct.find(objects, "PriorityLevelConfiguration", name))
    await kube.create(FLOWSCHEMAS.path(), ct.find(objects, "FlowSchema", name))
    try:
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
        path = f"{SERVICEACCOUNTS.path(namespace=namespace, name=name)}/token"
        token = (await kube.request("POST", path, body=request))["status"]["token"]
        tls = ssl.create_default_context(cafile=str(control_plane.pki / "ca.crt"))

        def classified() -> bool:
            # Any request is classified before it is authorized: a 403 answer carries the headers too.
            asked = urllib.request.Request(
                f"{control_plane.server}/api/v1/namespaces/{namespace}/configmaps?limit=1",
                headers={"Authorization": f"Bearer {token}"},
            )
            try:
                with urllib.request.urlopen(asked, context=tls, timeout=10) as answer:
                    headers = answer.headers
            except urllib.error.HTTPError as error:
                headers = error.headers
            return bool(headers.get("X-Kubernetes-PF-PriorityLevel-UID") == level["metadata"]["uid"])

        # The apiserver's APF configuration controller picks new objects up within seconds.
        await harness.eventually(
            classified, timeout=60, interval=0.5, what="the chart's priority level in use"
        )
    finally:
        await kube.delete(FLOWSCHEMAS.path(name=name))
        await kube.delete(LEVELS.path(name=name))

"""addon-updater's trust on the real control plane (issue 29): no data value leaves through a log line, an
Event, the state ConfigMap, /status or a metric; a bundle refused for a permission or a discovery that failed
for now is tried again, not recorded as invalid."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib
import uuid
from typing import Any

import prometheus_client
import pytest

from controllers.addon_updater import controller
from controllers.addon_updater.effects import admission
from controllers.agreement import version
from controllers.bundles import policy
from controllers.kube import client, resources
from e2e import cluster, controlplane
from tests import harness

CM = resources.CONFIGMAPS
SECRETS = resources.Resource("", "v1", "secrets", namespaced=True)
RBAC = "rbac.authorization.k8s.io"
SECRET_VALUE = "s3cr3t-Value-7f2b"
SECRET_NUMBER = "4815162342"  # an unquoted numeric password: YAML reads an integer, the apiserver rejects it


def v(text: str) -> version.Version:
    parsed = version.parse_version(text)
    assert parsed is not None
    return parsed


def write_bundle(root: pathlib.Path, minor: str, **files: str) -> pathlib.Path:
    (root / minor).mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / minor / name).write_text(text)
    return root


# The updater's own namespace (its state and Events): the bundles' objects go to each test's namespace.
STATE_NAMESPACE = "default"


def make_config(root: pathlib.Path, **overrides: Any) -> controller.AddonUpdaterConfig:
    values: dict[str, Any] = {
        "namespace": STATE_NAMESPACE,
        "allowed_resources": (*policy.DEFAULT_RESOURCES, "secrets"),
        "release": f"t{uuid.uuid4().hex[:8]}",
        "bundle_dir": str(root),
        "health_timeout_seconds": 0.0,
        "settle_seconds": 0.2,
        **overrides,
    }
    return controller.AddonUpdaterConfig(**values)


async def everything_it_wrote(kube: client.Kube, updater: controller.AddonUpdater) -> str:
    """The state ConfigMap, every Event of its namespace, its /status and its metrics, as one text."""
    namespace = updater.ctx.config.namespace
    state = await kube.get(CM.path(namespace=namespace, name=updater.ctx.state_name))
    events = await kube.get(resources.EVENTS.path(namespace=namespace))
    metrics = prometheus_client.generate_latest(updater.ctx.registry).decode()
    return "\n".join([json.dumps(state), json.dumps(events), json.dumps(updater.status()), metrics])


SECRET_HEAD = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: NS}\n"


@pytest.mark.parametrize(
    ("case", "text", "reason", "value"),
    [
        # The value's line does not parse: PyYAML would quote it.
        ("parse", SECRET_HEAD + f"stringData:\n  password: '{SECRET_VALUE}\n", "parse", SECRET_VALUE),
        # The apiserver rejects it and prints the value ("expected string, got …{Value:4815162342}").
        ("apiserver", SECRET_HEAD + f"stringData:\n  pin: {SECRET_NUMBER}\n", "dry_run", SECRET_NUMBER),
        # The same for a ConfigMap: any object's data values are redacted, not only Secrets'.
        (
            "configmap",
            f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: NS}}\ndata:\n  n: {SECRET_NUMBER}\n",
            "dry_run",
            SECRET_NUMBER,
        ),
    ],
)
async def test_no_data_value_leaves_through_logs_events_state_status_or_metrics(
    kube: client.Kube,
    namespace: str,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    text: str,
    reason: str,
    value: str,
) -> None:
    root = write_bundle(tmp_path, "1.36", **{"secret.yaml": text.replace("NS", namespace)})
    updater = harness.build(controller.AddonUpdater, kube, make_config(root))
    with caplog.at_level(logging.DEBUG):
        outcome = await updater.reconcile(v("v1.36.0"))
        again = await updater.reconcile(v("v1.36.0"))  # known-invalid: reported from the state
    assert outcome.result == "invalid" and f"({reason})" in outcome.message, outcome.message
    assert again.result == "invalid"
    if case != "parse":  # the apiserver's message is withheld; the object and what was refused are named
        assert "rejected by the apiserver (dry-run): 500" in outcome.message
        assert "the apiserver's message is withheld" in outcome.message
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "is invalid" in logged
    wrote = await everything_it_wrote(kube, updater)
    assert "BundleInvalid" in wrote
    for text_out in (logged, wrote, outcome.message, again.message):
        assert value not in text_out
    with pytest.raises(client.ApiError):  # nothing was applied
        await kube.get(SECRETS.path(namespace=namespace, name="db"))


# --- permission and discovery failures are tried again --------------------------------------------------


async def service_account_kube(
    kube: client.Kube, control_plane: controlplane.ControlPlane, namespace: str, tmp_path: pathlib.Path
) -> tuple[client.Kube, str]:
    """A client authenticated as a new ServiceAccount of ``namespace`` that may keep its state and Events in
    STATE_NAMESPACE, and nothing else yet; and the account's name."""
    name = f"updater-{uuid.uuid4().hex[:6]}"
    accounts = resources.Resource("", "v1", "serviceaccounts", namespaced=True)
    await kube.create(accounts.path(namespace=namespace), {"metadata": {"name": name}})
    rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "update"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    await grant(kube, STATE_NAMESPACE, f"{name}-state", name, rules, account_namespace=namespace)
    path = await cluster.service_account_kubeconfig(
        kube, server=control_plane.server, ca=control_plane.pki / "ca.crt", namespace=namespace, name=name,
        path=tmp_path / "sa.kubeconfig",
    )  # fmt: skip
    return await client.connect(kubeconfig=str(path)), name


async def grant(
    kube: client.Kube,
    namespace: str,
    name: str,
    account: str,
    rules: list[dict[str, Any]],
    *,
    account_namespace: str = "",
) -> None:
    roles = resources.Resource(RBAC, "v1", "roles", namespaced=True)
    bindings = resources.Resource(RBAC, "v1", "rolebindings", namespaced=True)
    await kube.create(roles.path(namespace=namespace), {"metadata": {"name": name}, "rules": rules})
    binding = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
        "subjects": [
            {"kind": "ServiceAccount", "name": account, "namespace": account_namespace or namespace}
        ],
    }
    await kube.create(bindings.path(namespace=namespace), binding)


async def test_a_bundle_refused_for_a_permission_is_tried_again_and_applied_once_granted(
    kube: client.Kube,
    control_plane: controlplane.ControlPlane,
    namespace: str,
    tmp_path: pathlib.Path,
) -> None:
    text = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {namespace}}}\n"
    root = write_bundle(tmp_path / "bundles", "1.36", **{"settings.yaml": text + "data: {a: b}\n"})
    limited, account = await service_account_kube(kube, control_plane, namespace, tmp_path)
    async with limited:
        updater = harness.build(controller.AddonUpdater, limited, make_config(root))
        for _ in range(2):  # not recorded as invalid: every round tries again
            with pytest.raises(Exception, match="403") as raised:
                await updater.reconcile(v("v1.36.0"))
            await updater.failed(raised.value)  # what the skeleton does with a sync that raised
            assert updater.status()["result"] == "failed"
            state = (await kube.get(CM.path(namespace=STATE_NAMESPACE, name=updater.ctx.state_name)))["data"]
            assert state["phase"] == "Failed" and "dry-run of ConfigMap" in state["lastError"], state
            assert not state.get("failedDigest")
        rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]}]
        await grant(kube, namespace, f"{account}-bundle", account, rules)

        async def switched() -> bool:  # (the authorizer sees a new binding within moments)
            with contextlib.suppress(admission.SwitchError):
                return (await updater.reconcile(v("v1.36.0"))).result == "switched"
            return False

        await harness.eventually(switched, timeout=10, interval=0.2, what="the switch once granted")
    assert (await kube.get(CM.path(namespace=namespace, name="settings")))["data"] == {"a": "b"}


async def test_a_kind_missing_because_its_discovery_failed_is_tried_again(
    kube: client.Kube, namespace: str, tmp_path: pathlib.Path
) -> None:
    """An aggregated API whose server is down: its group is listed, its discovery fails (503). A bundle with
    one of its kinds is not invalid: it is tried again (the API may come back)."""
    group = f"down{uuid.uuid4().hex[:6]}.example.io"
    apiservices = resources.APISERVICES
    await kube.create(
        apiservices.path(),
        {
            "metadata": {"name": f"v1.{group}"},
            "spec": {
                "group": group, "version": "v1", "groupPriorityMinimum": 100, "versionPriority": 10,
                "service": {"name": "nowhere", "namespace": namespace, "port": 443},
                "insecureSkipTLSVerify": True,
            },
        },
    )  # fmt: skip
    try:
        text = f"apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w, namespace: {namespace}}}\n"
        root = write_bundle(tmp_path, "1.36", **{"widget.yaml": text})
        updater = harness.build(controller.AddonUpdater, kube, make_config(root))

        async def discovery_fails() -> bool:
            try:
                await kube.get(f"/apis/{group}/v1")
            except client.ApiError as error:
                return error.status >= 500
            return False

        await harness.eventually(discovery_fails, what=f"discovery of {group} to fail")
        for _ in range(2):
            with pytest.raises(Exception, match="discovery of its API failed") as raised:
                await updater.reconcile(v("v1.36.0"))
            await updater.failed(raised.value)  # what the skeleton does with a sync that raised
            state = (await kube.get(CM.path(namespace=STATE_NAMESPACE, name=updater.ctx.state_name)))["data"]
            assert state["phase"] == "Failed" and not state.get("failedDigest"), state
    finally:
        await kube.request("DELETE", apiservices.path(name=f"v1.{group}"))


# --- prune by inventory -----------------------------------------------------------------------------------


def configmaps(namespace: str, *names: str, note: str = "") -> str:
    return "".join(
        f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
        f"data: {{from: bundle{note}}}\n"
        for name in names
    )


async def names_in(kube: client.Kube, namespace: str) -> set[str]:
    page = await kube.get(CM.path(namespace=namespace))
    return {
        item["metadata"]["name"] for item in page["items"] if not item["metadata"]["name"].endswith("-state")
    }


async def test_prune_deletes_only_what_the_suite_created(
    kube: client.Kube, namespace: str, tmp_path: pathlib.Path
) -> None:
    """An object that existed before the first apply is adopted and survives a bundle that drops it; an
    object annotated prune: disabled survives; an empty bundle, or one that would prune more than
    pruneMaxFraction, prunes nothing and says why; what the suite created and the bundle dropped goes."""
    await kube.create(
        CM.path(namespace=namespace), {"metadata": {"name": "adopted"}, "data": {"mine": "yes"}}
    )
    root = tmp_path / "bundles"
    everything = ("adopted", "created", "opted-out", "k1", "k2", "k3")
    write_bundle(root, "1.35", **{"all.yaml": configmaps(namespace, *everything)})
    write_bundle(root, "1.36", **{"some.yaml": configmaps(namespace, "k1", "k2", "k3")})
    write_bundle(root, "1.37", **{"empty.yaml": "# nothing here\n---\n"})
    write_bundle(root, "1.38", **{"one.yaml": configmaps(namespace, "k1")})
    updater = harness.build(controller.AddonUpdater, kube, make_config(root))

    first = await updater.reconcile(v("v1.35.0"))
    assert first.result == "switched", first.message
    adopted = await kube.get(CM.path(namespace=namespace, name="adopted"))
    assert adopted["metadata"]["annotations"]["addons.kube-upgrade-controllers.io/origin"] == "adopted"
    state = (await kube.get(CM.path(namespace=STATE_NAMESPACE, name=updater.ctx.state_name)))["data"]
    assert sorted(e["name"] for e in json.loads(state["inventory"])) == [
        "created",
        "k1",
        "k2",
        "k3",
        "opted-out",
    ]
    await kube.patch(
        CM.path(namespace=namespace, name="opted-out"),
        {"metadata": {"annotations": {"addons.kube-upgrade-controllers.io/prune": "disabled"}}},
    )

    dropped = await updater.reconcile(v("v1.36.0"))  # drops 3 objects: 2 of the 5 created are pruned
    assert dropped.result == "switched", dropped.message
    assert sorted(map(str, dropped.pruned)) == [f"ConfigMap {namespace}/created"]
    assert f"kept ConfigMap {namespace}/opted-out (addons.kube-upgrade-controllers.io/prune: disabled)" in (
        dropped.message
    )
    assert await names_in(kube, namespace) == {"adopted", "opted-out", "k1", "k2", "k3"}
    after = await kube.get(CM.path(namespace=namespace, name="adopted"))
    assert after["metadata"]["uid"] == adopted["metadata"]["uid"]

    empty = await updater.reconcile(v("v1.37.0"))
    assert empty.result == "switched" and empty.pruned == ()
    assert "the bundle is empty: an empty bundle prunes nothing (3 object(s) kept)" in empty.message
    assert await names_in(kube, namespace) == {"adopted", "opted-out", "k1", "k2", "k3"}

    over = await updater.reconcile(v("v1.38.0"))  # 2 of the 3 created would go: more than 0.5
    assert over.result == "switched" and over.pruned == ()
    assert (
        "2 of the 3 object(s) the suite created would be pruned, more than pruneMaxFraction 0.5"
        in over.message
    )
    assert await names_in(kube, namespace) == {"adopted", "opted-out", "k1", "k2", "k3"}
    events = await kube.get(resources.EVENTS.path(namespace=STATE_NAMESPACE))
    assert any("pruneMaxFraction" in e.get("note", "") for e in events["items"])

    # They stay in the inventory: the next switch (here a changed bundle) prunes them once allowed.
    lenient = harness.build(
        controller.AddonUpdater, kube, dataclasses.replace(updater.ctx.config, prune_max_fraction=1.0)
    )
    write_bundle(root, "1.38", **{"one.yaml": configmaps(namespace, "k1", note=" v2")})
    allowed = await lenient.reconcile(v("v1.38.0"))
    assert allowed.result == "switched", allowed.message
    assert await names_in(kube, namespace) == {"adopted", "opted-out", "k1"}


async def test_a_labelled_object_outside_the_inventory_is_never_pruned(
    kube: client.Kube, namespace: str, tmp_path: pathlib.Path
) -> None:
    """Objects carrying the bundle label without having been created by this suite (an earlier version of
    it, a copy, someone's kubectl) are not in the inventory and are never deleted."""
    release = f"t{uuid.uuid4().hex[:8]}"
    lookalike = {
        "metadata": {
            "name": "lookalike",
            "labels": {"addons.kube-upgrade-controllers.io/bundle": release},
            "annotations": {"addons.kube-upgrade-controllers.io/origin": "created"},
        }
    }
    await kube.create(CM.path(namespace=namespace), lookalike)
    root = write_bundle(tmp_path, "1.36", **{"a.yaml": configmaps(namespace, "a", "b", "c")})
    cfg = make_config(root, release=release)
    assert (
        await harness.build(controller.AddonUpdater, kube, cfg).reconcile(v("v1.36.0"))
    ).result == "switched"
    assert await names_in(kube, namespace) == {"lookalike", "a", "b", "c"}


# --- the bundle policy ------------------------------------------------------------------------------------


def binding(name: str, role: str) -> str:
    return (
        f"---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {name}}}\n"
        f"roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n"
        "subjects: [{kind: ServiceAccount, name: default, namespace: default}]\n"
    )


@pytest.mark.parametrize(
    ("case", "extra", "rule"),
    [
        ("cluster-admin", lambda ns: binding(f"{ns}-root", "cluster-admin"), "binds cluster-admin"),
        # A role of the cluster (made by the test) that lets its holder impersonate: read and judged.
        ("cluster role", lambda ns: binding(f"{ns}-imp", f"{ns}-impersonator"), "-impersonator, which grants impersonate"),
        ("own namespace", lambda ns: configmaps(STATE_NAMESPACE, "planted"), "namespace default is the suite's own"),
        ("kind", lambda ns: f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: {ns}}}\n"
         "spec: {containers: [{name: c, image: x}]}\n", "the kind pods is not an allowed resource"),
    ],
)  # fmt: skip
async def test_a_bundle_the_policy_refuses_is_refused_whole_naming_the_object_and_the_rule(
    kube: client.Kube, namespace: str, tmp_path: pathlib.Path, case: str, extra: Any, rule: str
) -> None:
    text = configmaps(namespace, "harmless", "also-harmless") + extra(namespace)
    root = write_bundle(tmp_path, "1.36", **{"bundle.yaml": text})
    roles = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
    impersonate = {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}
    await kube.create(roles, {"metadata": {"name": f"{namespace}-impersonator"}, "rules": [impersonate]})
    for target in ("apply", "directory"):
        cfg = make_config(root, target=target, target_dir=str(tmp_path / "addons"))
        updater = harness.build(controller.AddonUpdater, kube, cfg)
        outcome = await updater.reconcile(v("v1.36.0"))
        assert outcome.result == "invalid", outcome.message
        assert "(policy): refused by the bundle policy: bundle.yaml document 3: " in outcome.message
        assert rule in outcome.message, outcome.message
        assert harness.metric(updater, "addon_updater_validation_failures_total", reason="policy") == 1
        state = (await kube.get(CM.path(namespace=STATE_NAMESPACE, name=updater.ctx.state_name)))["data"]
        assert state["phase"] == "Invalid" and rule in state["lastError"]
    assert await names_in(kube, namespace) == set()  # nothing of it was applied
    assert not (tmp_path / "addons").exists()  # nor written
    for name in (f"{namespace}-root", f"{namespace}-imp"):
        with pytest.raises(client.ApiError):
            await kube.get(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")
    await kube.request("DELETE", f"{roles}/{namespace}-impersonator")


async def test_a_binding_to_a_harmless_role_of_the_cluster_is_admitted(
    kube: client.Kube, namespace: str, tmp_path: pathlib.Path
) -> None:
    name = f"{namespace}-view"
    root = write_bundle(tmp_path, "1.36", **{"bundle.yaml": binding(name, "view")})
    updater = harness.build(controller.AddonUpdater, kube, make_config(root))
    try:
        outcome = await updater.reconcile(v("v1.36.0"))
        assert outcome.result == "switched", outcome.message
    finally:
        await kube.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")

"""The bundle policy (controllers/bundles/policy.py): allowed kinds and namespaces, nothing of the suite, no
path to cluster-admin through RBAC; a refusal names each object and the rule."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pytest

from controllers.bundles import documents, model, policy

POLICY = policy.Policy(
    resources=frozenset(
        {"configmaps", "namespaces", "deployments.apps", "clusterroles.rbac.authorization.k8s.io",
         "clusterrolebindings.rbac.authorization.k8s.io", "roles.rbac.authorization.k8s.io",
         "rolebindings.rbac.authorization.k8s.io"}
    ),
    namespaces=frozenset({"kube-system", "addons"}),
    allow_privileged_rbac=False,
    release="kuc-kube-upgrade-controllers",
    release_namespace="upgrades",
    bundle_namespace="upgrades-bundles",
)  # fmt: skip
RBAC = policy.RBAC_GROUP


def target(
    kind: str, name: str, *, namespace: str = "", group: str = "", resource: str = "", **body: Any
) -> policy.Target:
    plural = resource or kind.lower() + "s"
    return policy.Target(
        where=f"f.yaml document {name}",
        key=model.ObjectKey(group, kind, namespace, name),
        resource=f"{plural}.{group}" if group else plural,
        namespaced=bool(namespace),
        body={"kind": kind, "metadata": {"name": name}, **body},
    )


def refusal(
    *targets: policy.Target, roles: dict[policy.RoleRef, Any] | None = None, rules: policy.Policy = POLICY
) -> str:
    with pytest.raises(model.BundleError) as error:
        policy.check(targets, policy=rules, roles=roles or {})
    assert error.value.reason == "policy"
    return str(error.value)


def allowed(*targets: policy.Target, roles: dict[policy.RoleRef, Any] | None = None) -> None:
    policy.check(targets, policy=POLICY, roles=roles or {})


ADMIN_RULES = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
READ_RULES = [{"apiGroups": [""], "resources": ["endpoints", "services"], "verbs": ["get", "list", "watch"]}]


def binding(
    name: str, role: str, *, kind: str = "ClusterRoleBinding", ref: str = "ClusterRole", namespace: str = ""
) -> policy.Target:
    return target(
        kind, name, namespace=namespace, group=RBAC, roleRef={"apiGroup": RBAC, "kind": ref, "name": role}
    )


def test_an_allowed_bundle_passes() -> None:
    allowed(
        target("Namespace", "addons"),
        target("ConfigMap", "c", namespace="addons"),
        target("Deployment", "d", namespace="kube-system", group="apps"),
        target("ClusterRole", "system:coredns", group=RBAC, rules=READ_RULES),
        binding("system:coredns", "system:coredns"),
        binding("reads", "system:coredns"),
    )


@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        (
            target("Secret", "s", namespace="addons"),
            "the kind secrets is not an allowed resource of the policy (allowedResources)",
        ),
        (
            target("ConfigMap", "c", namespace="default"),
            "namespace default is not an allowed namespace of the policy (allowedNamespaces)",
        ),
        (target("Namespace", "default"), "namespace default is not an allowed namespace"),
        (
            target("ConfigMap", "state", namespace="upgrades"),
            "namespace upgrades is the suite's own (its state, Leases and ServiceAccounts): no bundle may write "
            "there unless allowedNamespaces names it",
        ),
        (
            target("ConfigMap", "next-bundle", namespace="upgrades-bundles"),
            "namespace upgrades-bundles holds the suite's bundles: no bundle may write there",
        ),
        (target("Namespace", "upgrades-bundles"), "namespace upgrades-bundles holds the suite's bundles"),
        (
            target("ClusterRole", "kuc-kube-upgrade-controllers-uso-runner", group=RBAC, rules=READ_RULES),
            "named like the suite's own objects",
        ),
        (
            binding("kuc-kube-upgrade-controllers-addon-updater", "system:coredns"),
            "named like the suite's own objects",
        ),
        (
            target("ClusterRole", "all", group=RBAC, rules=ADMIN_RULES),
            "grants * (privileged RBAC is not allowed: allowPrivilegedRbac)",
        ),
        (
            target(
                "ClusterRole",
                "esc",
                group=RBAC,
                rules=[{"apiGroups": [RBAC], "resources": ["clusterroles"], "verbs": ["escalate"]}],
            ),
            "grants escalate",
        ),
        (
            target(
                "Role",
                "imp",
                namespace="addons",
                group=RBAC,
                rules=[{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}],
            ),
            "grants impersonate",
        ),
        (
            target(
                "ClusterRole",
                "sub",
                group=RBAC,
                rules=[{"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]}],
            ),
            "grants * in resources",
        ),
        (
            target("ClusterRole", "urls", group=RBAC, rules=[{"nonResourceURLs": ["*"], "verbs": ["get"]}]),
            "grants * in nonResourceURLs",
        ),
        (
            target("ClusterRole", "agg", group=RBAC, aggregationRule={"clusterRoleSelectors": [{}]}),
            "aggregates other roles",
        ),
        (binding("root", "cluster-admin"), "binds cluster-admin"),
        (
            binding("unknown", "nowhere"),
            "binds ClusterRole nowhere, which neither the bundle nor the cluster has",
        ),
        (
            binding("rb", "admin-like", kind="RoleBinding", ref="Role", namespace="addons"),
            "binds Role addons/admin-like, which neither",
        ),
        (binding("weird", "x", ref="Group"), "binds Group x, which neither the bundle nor the cluster has"),
    ],
)
def test_each_rule_refuses_naming_the_object_and_the_rule(bad: policy.Target, rule: str) -> None:
    said = refusal(target("ConfigMap", "fine", namespace="addons"), bad)
    assert said.startswith("refused by the bundle policy: ")
    assert f"{bad.where}: {bad.key}: " in said and rule in said
    assert "fine" not in said


def test_a_binding_is_judged_by_the_role_it_refers_to_in_the_bundle_or_the_cluster() -> None:
    ref = policy.RoleRef("ClusterRole", "", "edit-like")
    bind = binding("b", "edit-like")
    assert policy.role_refs([bind]) == {ref}
    assert "which grants * (privileged" in refusal(bind, roles={ref: {"rules": ADMIN_RULES}})
    allowed(bind, roles={ref: {"rules": READ_RULES}})
    # A role of the bundle wins over (and needs no read of) the cluster's.
    own = target("ClusterRole", "edit-like", group=RBAC, rules=READ_RULES)
    assert policy.role_refs([bind, own]) == set()
    allowed(bind, own)
    # A role of the cluster is judged by the rules it has now (aggregated ones included); one of the bundle
    # that aggregates would take in whatever is labelled so later: refused, and so is a binding to it.
    aggregated: dict[str, Any] = {"aggregationRule": {"clusterRoleSelectors": [{}]}, "rules": READ_RULES}
    allowed(bind, roles={ref: aggregated})
    own_aggregating = target("ClusterRole", "edit-like", group=RBAC, **aggregated)
    assert "which aggregates other roles" in refusal(bind, own_aggregating)
    local = binding("rb", "reader", kind="RoleBinding", ref="Role", namespace="addons")
    assert policy.role_refs([local]) == {policy.RoleRef("Role", "addons", "reader")}


def test_privileged_rbac_may_be_allowed_but_never_the_suites_own() -> None:
    privileged = dataclasses.replace(POLICY, allow_privileged_rbac=True)
    policy.check([binding("root", "cluster-admin")], policy=privileged, roles={})
    assert "suite's own" in refusal(target("ConfigMap", "s", namespace="upgrades"), rules=privileged)


def test_the_release_namespace_only_by_name_and_never_the_suites_objects_or_accounts() -> None:
    """Where the suite runs in kube-system (its CLI default), an admin may let bundles write there too."""
    there = dataclasses.replace(POLICY, namespaces=frozenset({"upgrades"}))
    policy.check([target("ConfigMap", "coredns", namespace="upgrades")], policy=there, roles={})
    for bad, rule in (
        (target("ConfigMap", "kuc-kube-upgrade-controllers-uso-runner-state", namespace="upgrades"),
         "named like the suite's own objects"),
        (target("Deployment", "evil", namespace="upgrades", group="apps",
                spec={"template": {"spec": {"serviceAccountName": "kuc-kube-upgrade-controllers-uso-runner"}}}),
         "runs as the suite's ServiceAccount kuc-kube-upgrade-controllers-uso-runner"),
    ):  # fmt: skip
        assert rule in refusal(bad, rules=there)
    assert "holds the suite's bundles" in refusal(
        target("ConfigMap", "c", namespace="upgrades-bundles"),
        rules=dataclasses.replace(POLICY, namespaces=frozenset({"upgrades-bundles"})),
    )
    # Elsewhere such names are not the suite's.
    policy.check(
        [target("ConfigMap", "kuc-kube-upgrade-controllers-x", namespace="addons")], policy=POLICY, roles={}
    )


def test_any_namespace_but_the_suites_own() -> None:
    anywhere = dataclasses.replace(POLICY, namespaces=frozenset({policy.ANY_NAMESPACE}))
    policy.check([target("ConfigMap", "c", namespace="default")], policy=anywhere, roles={})
    with pytest.raises(model.BundleError):
        policy.check([target("ConfigMap", "c", namespace="upgrades")], policy=anywhere, roles={})


def test_every_broken_rule_is_counted_a_few_named() -> None:
    said = refusal(*(target("Secret", f"s{i}", namespace="addons") for i in range(8)))
    assert said.count("not an allowed resource") == policy.SHOWN and said.endswith("; and 3 more")


# The kinds of the repository's bundles, as discovery would resolve them.
PLURALS = {
    ("", "Namespace"): ("namespaces", False),
    ("", "ConfigMap"): ("configmaps", True),
    ("", "ServiceAccount"): ("serviceaccounts", True),
    ("", "Service"): ("services", True),
    ("apps", "Deployment"): ("deployments.apps", True),
    ("policy", "PodDisruptionBudget"): ("poddisruptionbudgets.policy", True),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): (
        "customresourcedefinitions.apiextensions.k8s.io",
        False,
    ),
    ("dns.addons.example.io", "ForwardZone"): ("forwardzones.dns.addons.example.io", True),
}


@pytest.mark.parametrize(
    ("root", "namespaces", "extra"),
    [
        # e2e/kind/values.yaml: the chart's default kinds, the e2e's one namespace.
        ("e2e/kind/bundles", ["kuc-e2e-addons"], ()),
        # The examples (and the demo): CoreDNS in kube-system with its custom resource.
        ("examples/bundles", ["kube-system"], ("forwardzones.dns.addons.example.io",)),
    ],
)
def test_the_repositorys_bundles_pass_the_policy_they_are_used_with(
    root: str, namespaces: list[str], extra: tuple[str, ...]
) -> None:
    rules = policy.Policy(
        resources=frozenset((*policy.DEFAULT_RESOURCES, *extra)),
        namespaces=frozenset(namespaces),
        allow_privileged_rbac=False,
        release="kuc-kube-upgrade-controllers",
        release_namespace="kube-upgrade",
        bundle_namespace="kuc-addon-bundles",
    )
    folders = sorted(p for p in (pathlib.Path(__file__).resolve().parents[2] / root).iterdir() if p.is_dir())
    assert folders
    for folder in folders:
        files = tuple(
            model.BundleFile(name=f.name, text=f.read_text()) for f in sorted(folder.glob("*.yaml"))
        )
        bundle = model.Bundle(minor=folder.name, source=str(folder), files=files)
        variables = {"CLUSTER_DOMAIN": "cluster.local", "DNS_SERVICE_IP": "10.96.0.10"}
        targets = []
        for manifest in documents.load(bundle, variables=variables).manifests:
            resource, namespaced = PLURALS[(manifest.group, manifest.kind)]
            key = model.ObjectKey(
                manifest.group, manifest.kind, manifest.namespace if namespaced else "", manifest.name
            )
            targets.append(policy.Target(manifest.where, key, resource, namespaced, manifest.body))
        policy.check(targets, policy=rules, roles={})

"""What a bundle may contain, pure: the bundle policy (after Argo CD's AppProject allow-lists of kinds and
destinations), judged on every object before anything of the bundle is validated against the apiserver or
applied. A bundle that breaks a rule is refused whole, with an error naming each object and the rule.

The rules:
- its kind is one of the allowed resources (``plural.group`` as RBAC and kubectl spell it);
- a namespaced object is in an allowed namespace, and a Namespace is one of them;
- nothing of the suite itself: no object in the bundles' namespace; none in the release's namespace (where
  its state, Leases and ServiceAccounts live) unless that one is allowed by name, and even then none named like
  the suite's objects (``<release>`` or ``<release>-…``) and no workload running as one of its ServiceAccounts;
  no such Namespace; no cluster-scoped object named like the release's (its ClusterRoles, bindings,
  FlowSchema…);
- unless privileged RBAC is allowed: no (Cluster)Role granting ``*`` (verbs, resources, API groups, URLs),
  ``escalate``, ``bind`` or ``impersonate``, or aggregating other roles; no binding to cluster-admin or to
  such a role, nor to one that neither the bundle nor the cluster has (it cannot be judged).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from controllers.bundles import model
from controllers.structs import fields

RBAC_GROUP = "rbac.authorization.k8s.io"
# The kinds a bundle may contain by default (the chart's addonUpdater.policy defaults, RBAC's spelling): what
# common add-ons are made of. No Secrets, no admission webhooks, no APIServices: add them where needed.
DEFAULT_RESOURCES = (
    "namespaces",
    "serviceaccounts",
    "configmaps",
    "services",
    "deployments.apps",
    "daemonsets.apps",
    "statefulsets.apps",
    "poddisruptionbudgets.policy",
    "networkpolicies.networking.k8s.io",
    "ingressclasses.networking.k8s.io",
    "priorityclasses.scheduling.k8s.io",
    "customresourcedefinitions.apiextensions.k8s.io",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io",
)
_RESOURCE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ROLE_KINDS = ("Role", "ClusterRole")
BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")
PRIVILEGED_VERBS = frozenset({"*", "escalate", "bind", "impersonate"})
ANY_NAMESPACE = "*"
# At most this many broken rules are named in one error (the count of the rest follows).
SHOWN = 5


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    resources: frozenset[str]  # allowed kinds as "plural.group" ("configmaps" for the core group)
    namespaces: frozenset[str]  # allowed namespaces; "*": any but the suite's own
    allow_privileged_rbac: bool
    release: str  # the suite's release name: "<release>" and "<release>-…" are its objects
    release_namespace: str  # where its state, Leases, ServiceAccounts and workloads live
    bundle_namespace: str  # where its bundles come from ("" when none)


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """One object of the bundle as it would be applied: where it is, what it is, its document."""

    where: str  # "coredns.yaml document 2"
    key: model.ObjectKey
    resource: str  # "deployments.apps"
    namespaced: bool
    body: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class RoleRef:
    """A (Cluster)Role a binding refers to: ``namespace`` is "" for a ClusterRole."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def resources_problem(values: Sequence[str]) -> str | None:
    """Config check of allowed resources: each ``plural`` or ``plural.group``, lower case."""
    bad = [value for value in values if not _RESOURCE.match(value)]
    return f"{', '.join(map(repr, bad))}: not plural or plural.group (e.g. deployments.apps)" if bad else None


def namespaces_problem(values: Sequence[str]) -> str | None:
    """Config check of allowed namespaces: namespace names, or "*" alone."""
    bad = [value for value in values if not _NAMESPACE.match(value) and value != ANY_NAMESPACE]
    if bad:
        return f"{', '.join(map(repr, bad))}: not a namespace name (or * for any)"
    return None


def role_refs(targets: Iterable[Target]) -> set[RoleRef]:
    """The roles the bundle's bindings refer to that the bundle does not define itself: what the caller must
    read from the cluster (None when absent) for :func:`check`."""
    targets = list(targets)
    defined = {ref for t in targets if (ref := _defines(t)) is not None}
    wanted = {ref for t in targets if (ref := _refers(t)) is not None}
    return wanted - defined


def check(
    targets: Sequence[Target], *, policy: Policy, roles: Mapping[RoleRef, Mapping[str, Any] | None]
) -> None:
    """Raise BundleError("policy") naming every object that breaks a rule (the first few) and the rule;
    ``roles`` holds the roles of :func:`role_refs` as read from the cluster."""
    defined = {ref: t.body for t in targets if (ref := _defines(t)) is not None}
    known = {**roles, **defined}
    broken = [f"{t.where}: {t.key}: {why}" for t in targets if (why := _refusal(t, policy, known, defined))]
    if broken:
        more = f"; and {len(broken) - SHOWN} more" if len(broken) > SHOWN else ""
        raise model.BundleError("policy", f"refused by the bundle policy: {'; '.join(broken[:SHOWN])}{more}")


def _refusal(
    target: Target,
    policy: Policy,
    roles: Mapping[RoleRef, Mapping[str, Any] | None],
    defined: Mapping[RoleRef, Mapping[str, Any]],
) -> str | None:
    key = target.key
    if target.resource not in policy.resources:
        return f"the kind {target.resource} is not an allowed resource of the policy (allowedResources)"
    namespace = key.namespace if target.namespaced else key.name if _kind(target) == ("", "Namespace") else ""
    if namespace and namespace == policy.bundle_namespace:
        return f"namespace {namespace} holds the suite's bundles: no bundle may write there"
    if namespace == policy.release_namespace and namespace not in policy.namespaces:
        return (
            f"namespace {namespace} is the suite's own (its state, Leases and ServiceAccounts): no bundle may "
            "write there unless allowedNamespaces names it"
        )
    if namespace and ANY_NAMESPACE not in policy.namespaces and namespace not in policy.namespaces:
        return f"namespace {namespace} is not an allowed namespace of the policy (allowedNamespaces)"
    ours = policy.release, f"{policy.release}-"
    if (not target.namespaced or key.namespace == policy.release_namespace) and (
        key.name == policy.release or key.name.startswith(ours[1])
    ):
        return f"named like the suite's own objects ({policy.release}-…)"
    account = _service_account(target.body)
    if key.namespace == policy.release_namespace and (
        account == policy.release or account.startswith(ours[1])
    ):
        return f"runs as the suite's ServiceAccount {account}"
    if policy.allow_privileged_rbac:
        return None
    if _kind(target) in ((RBAC_GROUP, kind) for kind in ROLE_KINDS):
        if target.body.get("aggregationRule"):  # it would take in any role labelled so, now or later
            return "aggregates other roles (aggregationRule): what it grants cannot be judged"
        return _privileged(target.body)
    ref = _refers(target)
    if ref is None:
        return None
    if ref == RoleRef("ClusterRole", "", "cluster-admin"):
        return "binds cluster-admin (privileged RBAC is not allowed: allowPrivilegedRbac)"
    role = roles.get(ref)
    if role is None:
        return f"binds {ref}, which neither the bundle nor the cluster has: it cannot be judged"
    if role.get("aggregationRule") and ref in defined:
        return f"binds {ref}, which aggregates other roles (aggregationRule): what it grants cannot be judged"
    why = _privileged(role)  # a role of the cluster by the rules it has now (aggregated ones included)
    return f"binds {ref}, which {why}" if why else None


def _privileged(role: Mapping[str, Any]) -> str | None:
    """Why a role's rules are privileged (None: they are not)."""
    for rule in fields.mappings(role.get("rules")):
        verbs = set(fields.strings(rule.get("verbs")))
        if found := sorted(verbs & PRIVILEGED_VERBS):
            return f"grants {'/'.join(found)} (privileged RBAC is not allowed: allowPrivilegedRbac)"
        for field in ("apiGroups", "resources", "nonResourceURLs"):
            if any("*" in value for value in fields.strings(rule.get(field))):
                return f"grants * in {field} (privileged RBAC is not allowed: allowPrivilegedRbac)"
    return None


def _service_account(body: Mapping[str, Any]) -> str:
    """The ServiceAccount the pods of a workload (or a Pod) run as ("" when none is named)."""
    for path in (
        ("spec",),
        ("spec", "template", "spec"),
        ("spec", "jobTemplate", "spec", "template", "spec"),
    ):
        name = fields.dig(body, *path, "serviceAccountName")
        if isinstance(name, str) and name:
            return name
    return ""


def _kind(target: Target) -> tuple[str, str]:
    return target.key.group, target.key.kind


def _defines(target: Target) -> RoleRef | None:
    group, kind = _kind(target)
    if group == RBAC_GROUP and kind in ROLE_KINDS:
        return RoleRef(kind, target.key.namespace if kind == "Role" else "", target.key.name)
    return None


def _refers(target: Target) -> RoleRef | None:
    group, kind = _kind(target)
    if group != RBAC_GROUP or kind not in BINDING_KINDS:
        return None
    ref = fields.mapping(target.body.get("roleRef"))
    ref_kind, name = ref.get("kind"), ref.get("name")
    if ref_kind not in ROLE_KINDS or not isinstance(name, str):
        return RoleRef(str(ref_kind), "", str(name))  # judged as absent: refused
    return RoleRef(str(ref_kind), target.key.namespace if ref_kind == "Role" else "", name)

"""Least privilege of the chart's ServiceAccounts, by SubjectAccessReviews against the real apiserver (the
chart installed with helm, RBAC evaluated by the apiserver's own authorizer).

- No ServiceAccount of the chart can read Secrets cluster-wide, except uso-runner's while it holds the rewrite
  grant (method rewrite, or auto with usoRunner.rewriteFallback): a rewrite reads and writes back every object.
- uso-runner with method builtin, or auto without the fallback, holds no ``*`` rule and no escalate/bind: it
  only hands resources to kube-controller-manager's migrator, and runs so with its own token.
- No ServiceAccount of the chart but uso-runner's rewrite grant (which updates every object) can write
  upgrade-readiness's acknowledgements (which waive blockers): none may update or delete them, and the name is
  taken by the chart's own ConfigMap, so that the ConfigMap create every controller holds for its state cannot
  make it; an admin's keys survive ``helm upgrade``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from controllers.kube import client, resources
from e2e import controlplane
from tests import chart_tools as ct
from tests.integration import test_chart_install as installs
from tests.integration.test_chart_install import agreed_cluster  # noqa: F401 (a fixture used below)

CONFIGMAPS = resources.CONFIGMAPS

SVM = "storagemigration.k8s.io"
SECRET_READS = (("list", ""), ("watch", ""), ("get", "kube-system"), ("list", "kube-system"))

# Every controller, each with its own ServiceAccount (two replicas: Leases), uso-runner handing resources to
# kube-controller-manager only. (addon-updater's rights follow its bundle policy: test_chart_bundles.py.)
BUILTIN: dict[str, Any] = {
    "config": {"minMasters": 1, "settleSeconds": 0},
    "addonUpdater": {"enabled": True, "replicas": 2},
    "usoRunner": {"replicas": 2, "config": {"method": "builtin", "builtinPickupSeconds": 1}},
    "nodeTainter": {"replicas": 2},
    "leaderWatchdog": {"replicas": 2},
    "upgradeReadiness": {"replicas": 2},
}
# One process for all (but addon-updater in directory mode, its own DaemonSet), uso-runner in auto mode
# without the rewrite fallback.
COMBINED_AUTO: dict[str, Any] = {
    "addonUpdater": {"enabled": True, "mode": "directory"},
    "usoRunner": {"config": {"method": "auto"}, "rewriteFallback": False},
    "combined": {"enabled": True, "replicas": 2},
}
# The chart's defaults: uso-runner rewrites (method rewrite), the one grant that reads every Secret.
DEFAULTS: dict[str, Any] = {}
INSTALLS = {"builtin": BUILTIN, "combined-auto": COMBINED_AUTO, "defaults": DEFAULTS}


class Install(installs.Installed):
    def service_accounts(self) -> list[str]:
        return sorted(d["metadata"]["name"] for d in self.manifest if d["kind"] == "ServiceAccount")

    def rules_of(self, account: str) -> list[dict[str, Any]]:
        """Every rule of every (Cluster)Role bound to ``account`` in this release."""
        roles = {
            (d["kind"], d["metadata"]["name"]): d.get("rules", [])
            for d in self.manifest
            if d["kind"] in ("ClusterRole", "Role")
        }
        found = []
        for binding in (d for d in self.manifest if d["kind"] in ("ClusterRoleBinding", "RoleBinding")):
            if any(s.get("name") == account for s in binding.get("subjects", [])):
                found += roles.get((binding["roleRef"]["kind"], binding["roleRef"]["name"]), [])
        return found


@pytest.fixture(scope="module")
def releases(
    control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Install]]:
    """The chart installed once per value set, uninstalled afterwards."""
    yield from installs.install_each(Install, control_plane, tmp_path_factory, INSTALLS)


async def allowed(kube: client.Kube, setup: Install, account: str, verb: str, resource: str, *,
                  group: str = "", namespace: str = "", name: str = "") -> bool:  # fmt: skip
    """A SubjectAccessReview for ``account`` of the release, as the apiserver authenticates its tokens."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{setup.namespace}:{account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{setup.namespace}", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace,
                                   "name": name},
        },
    }  # fmt: skip
    answer = await kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
    return bool(answer["status"].get("allowed"))


def rewrites(setup: Install, account: str) -> bool:
    """Whether ``account`` is uso-runner's (or the combined one running it) with the rewrite grant."""
    return any(
        "*" in rule.get("resources", []) and "update" in rule.get("verbs", [])
        for rule in setup.rules_of(account)
    )


async def test_no_service_account_but_uso_runners_rewrite_grant_reads_secrets_cluster_wide(
    releases: dict[str, Install], kube: client.Kube
) -> None:
    seen: dict[str, list[str]] = {}
    for install, setup in releases.items():
        accounts = setup.service_accounts()
        assert accounts, install
        for account in accounts:
            exempt = rewrites(setup, account)
            if exempt:  # only uso-runner's, and only where it rewrites
                assert account.endswith(("-uso-runner", "-combined")), (install, account)
                assert install in ("defaults",), (install, account)
            for verb, namespace in SECRET_READS:
                found = await allowed(kube, setup, account, verb, "secrets", namespace=namespace)
                wanted = exempt and verb != "watch"  # a rewrite gets, lists and updates: it watches nothing
                assert found == wanted, (install, account, verb, namespace or "all namespaces")
            seen.setdefault(install, []).append(
                account.removeprefix(setup.fullname + "-") + (" (exempt)" if exempt else "")
            )
    print(f"\nServiceAccounts checked for reading Secrets: {seen}")
    assert "uso-runner (exempt)" in seen["defaults"]  # the control: a grant the reviews do see
    assert (
        len(seen["builtin"]) == 5 and len(seen["combined-auto"]) == 2
    )  # every controller's; combined + DaemonSet


@pytest.mark.parametrize(("install", "account"), [("builtin", "uso-runner"), ("combined-auto", "combined")])
async def test_uso_runner_without_rewriting_holds_no_wildcard_and_no_escalate_or_bind(
    releases: dict[str, Install], kube: client.Kube, install: str, account: str
) -> None:
    setup = releases[install]
    sa = f"{setup.fullname}-{account}"
    rules = setup.rules_of(sa)
    assert rules
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "nonResourceURLs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
        assert not {"escalate", "bind", "impersonate"} & set(rule.get("verbs", [])), rule
    for verb, resource, group in (
        ("escalate", "clusterroles", "rbac.authorization.k8s.io"),
        ("bind", "clusterroles", "rbac.authorization.k8s.io"),
        ("update", "deployments", "apps"),
        ("update", "configmaps", ""),
        ("get", "configmaps", ""),
        ("update", "customresourcedefinitions/status", "apiextensions.k8s.io"),
    ):
        assert not await allowed(kube, setup, sa, verb, resource, group=group, namespace="kube-system"), verb
    for verb, resource, group in (
        ("create", "storageversionmigrations", SVM),
        ("delete", "storageversionmigrations", SVM),
        ("watch", "storageversionmigrations", SVM),
        ("list", "customresourcedefinitions", "apiextensions.k8s.io"),
        ("list", "apiservices", "apiregistration.k8s.io"),
    ):
        assert await allowed(kube, setup, sa, verb, resource, group=group), verb


async def test_uso_runner_builtin_runs_with_its_own_token(
    releases: dict[str, Install],
    kube: client.Kube,
    agreed_cluster: tuple[str, str],  # noqa: F811
) -> None:
    """Discovery, the CRDs and APIServices it plans with, a StorageVersionMigration created and followed: all
    with the builtin grant. No kube-controller-manager picks it up here: the resource fails (exit 1), not
    rewritten (no grant to), and says so; never a 403."""
    setup = releases["builtin"]
    code, out, err = await installs.run_as_service_account(
        setup, kube, "uso-runner", "--resources=configmaps"
    )
    assert code == 1, out + err
    assert "rewrite fallback is off" in err and "not picked up after 1 s" in err, err
    path = resources.Resource(SVM, "v1", "storageversionmigrations", namespaced=False).path()
    created = [m for m in await kube.list_items(path) if m["metadata"]["name"].startswith(setup.fullname)]
    assert len(created) == 1, created
    for migration in created:  # no migrator of a later test may pick it up
        await kube.delete(f"{path}/{migration['metadata']['name']}")


def test_the_rendered_rules_follow_the_method() -> None:
    """The chart's switch, as rendered: the broad grant with rewrite and auto+fallback, never with builtin."""

    def broad(*args: str) -> bool:
        documents = ct.template(*args)
        role = next(
            d
            for d in documents
            if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("uso-runner")
        )
        return any("*" in rule.get("resources", []) for rule in role["rules"])

    assert broad()
    assert broad("--set", "usoRunner.config.method=auto")
    assert not broad("--set", "usoRunner.config.method=auto", "--set", "usoRunner.rewriteFallback=false")
    assert not broad("--set", "usoRunner.config.method=builtin")
    assert not broad("--set", "usoRunner.config.method=builtin", "--set", "usoRunner.rewriteFallback=true")
    assert not broad("--set", "usoRunner.config.useBuiltin=true")


async def test_no_chart_service_account_can_write_the_acknowledgements(
    releases: dict[str, Install], kube: client.Kube
) -> None:
    setup = releases["defaults"]
    name = f"{setup.fullname}-upgrade-readiness-acks"
    path = CONFIGMAPS.path(namespace=setup.namespace, name=name)
    assert (await kube.get(path)).get("data") is None  # the chart's, empty
    for account in setup.service_accounts():
        for verb in ("update", "patch", "delete"):
            # uso-runner's rewrite grant updates every object by design (the one exemption, as for Secrets).
            wanted = rewrites(setup, account) and verb == "update"
            found = await allowed(
                kube, setup, account, verb, "configmaps", namespace=setup.namespace, name=name
            )
            assert found == wanted, (account, verb)
    # A stolen controller token: create is allowed in the namespace (its state), but the name is taken.
    kubeconfig = await installs.token_kubeconfig(setup, kube, "node-tainter")
    forged = {"metadata": {"name": name}, "data": {"ack-1.99-drain-blockers": "{}"}}
    async with await client.connect(kubeconfig=str(kubeconfig)) as stolen:
        with pytest.raises(client.ApiError) as created:
            await stolen.create(CONFIGMAPS.path(namespace=setup.namespace), forged)
        assert created.value.already_exists, created.value
        with pytest.raises(client.ApiError) as patched:
            await stolen.patch(path, {"data": forged["data"]})
        assert patched.value.status == 403, patched.value
    # An admin's acknowledgement survives an upgrade of the release (helm leaves keys it did not set alone).
    admin = {"ack-1.38-drain-blockers": '{"until": "2030-01-01T00:00:00Z", "reason": "CHG-1"}'}
    await kube.patch(path, {"data": admin})
    setup.helm("upgrade", setup.release, ct.CHART, "-n", setup.namespace, "--set", "config.settleSeconds=7")
    assert (await kube.get(path))["data"] == admin

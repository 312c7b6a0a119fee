"""Who can write bundles, proven with the chart installed by helm into the real apiserver (issue 29, 1).

Bundles and the variables ConfigMap come from the bundle namespace (addonUpdater.bundles.namespace), which
no ServiceAccount of the chart may write: SubjectAccessReviews for every one of them, evaluated by the
apiserver's own authorizer, and real requests with addon-updater's token. The bundle image's reference is in
the Deployments of the release namespace, which none of them may change either. The one exception is
uso-runner's rewrite grant (update on every resource, the storage migration's nature; method builtin, or auto
without usoRunner.rewriteFallback, has none): it may update what exists there, never create it, and is
already as strong as cluster-admin (docs/security.md).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from controllers.bundles import model
from controllers.kube import client, resources
from e2e import controlplane
from tests import chart_tools as ct
from tests.integration import test_chart_install as installs
from tests.integration import test_chart_rbac as rbac
from tests.integration.test_chart_install import agreed_cluster  # noqa: F401 (a fixture used below)

CM = resources.CONFIGMAPS
WRITES = ("create", "update", "patch", "delete", "deletecollection")
BUNDLE_VALUES: dict[str, Any] = {
    "config": {"minMasters": 1, "settleSeconds": 0},
    "addonUpdater": {
        "enabled": True,
        "config": {
            "bundleSource": "configmap",
            "variablesConfigMap": "addon-variables",
            "healthTimeoutSeconds": 0,
        },
    },
    "upgradeReadiness": {"enabled": True},
}
INSTALLS: dict[str, dict[str, Any]] = {
    # Every controller its own ServiceAccount; uso-runner hands resources to the built-in migrator only.
    "separate": {**BUNDLE_VALUES, "usoRunner": {"config": {"method": "builtin"}}},
    # One ServiceAccount for all, uso-runner rewriting (the chart's default method): the one exception.
    "combined-rewrite": {**BUNDLE_VALUES, "combined": {"enabled": True}},
}


class Install(rbac.Install):
    @property
    def bundles(self) -> str:
        return f"{self.fullname}-bundles"


@pytest.fixture(scope="module")
def releases(
    control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Install]]:
    yield from installs.install_each(Install, control_plane, tmp_path_factory, INSTALLS)


async def test_no_service_account_of_the_chart_can_write_a_bundle(
    releases: dict[str, Install], kube: client.Kube
) -> None:
    checked: dict[str, list[str]] = {}
    for install, setup in releases.items():
        accounts = setup.service_accounts()
        assert accounts, install
        await kube.get(resources.NAMESPACES.path(name=setup.bundles))  # the chart made it
        for account in accounts:
            rewrites = rbac.rewrites(setup, account)  # uso-runner's rewrite grant (update on everything)
            for verb in WRITES:
                for resource, group in (("configmaps", ""), ("roles", "rbac.authorization.k8s.io"),
                                        ("rolebindings", "rbac.authorization.k8s.io")):  # fmt: skip
                    wanted = rewrites and verb == "update"
                    found = await rbac.allowed(
                        kube, setup, account, verb, resource, group=group, namespace=setup.bundles
                    )
                    assert found == wanted, (install, account, verb, resource)
                # The bundle image is named in the release's Deployments: none may change them.
                found = await rbac.allowed(
                    kube, setup, account, verb, "deployments", group="apps", namespace=setup.namespace
                )
                assert found == (rewrites and verb == "update"), (install, account, verb, "deployments")
            checked.setdefault(install, []).append(
                account.removeprefix(setup.fullname + "-")
                + (" (rewrite grant: update only)" if rewrites else "")
            )
    print(f"\nServiceAccounts checked for writing bundles: {checked}")
    assert len(checked["separate"]) == 5 and not any("rewrite" in a for a in checked["separate"])
    assert checked["combined-rewrite"] == ["combined (rewrite grant: update only)"]  # the control


async def test_only_addon_updater_and_upgrade_readiness_read_the_bundles(
    releases: dict[str, Install], kube: client.Kube
) -> None:
    setup = releases["separate"]
    for account in setup.service_accounts():
        reader = account.endswith(("-addon-updater", "-upgrade-readiness"))
        for verb in ("get", "list", "watch"):
            found = await rbac.allowed(kube, setup, account, verb, "configmaps", namespace=setup.bundles)
            assert found == reader, (account, verb)
        # Nor do they read ConfigMaps of the release namespace beyond their own (a bundle there is not one).
        assert not await rbac.allowed(kube, setup, account, "list", "configmaps", namespace=setup.namespace)


async def test_addon_updaters_own_token_cannot_write_bundles_nor_grant_itself_more(
    releases: dict[str, Install], kube: client.Kube
) -> None:
    """Real requests with its token: the apiserver's escalation check stands between its rights in the
    policy's namespaces and the same rights cluster-wide."""
    setup = releases["separate"]
    sa = f"{setup.fullname}-addon-updater"
    kubeconfig = await installs.token_kubeconfig(setup, kube, "addon-updater")
    async with await client.connect(kubeconfig=str(kubeconfig)) as token:
        # (In the release namespace every controller may create ConfigMaps, for its state: why bundles are
        # never read from there.)
        with pytest.raises(client.ApiError) as error:
            await token.create(CM.path(namespace=setup.bundles), {"metadata": {"name": "planted"}})
        assert error.value.status == 403
        binding = {
            "metadata": {"name": f"{sa}-everywhere"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{sa}-namespaced",
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": setup.namespace}],
        }
        with pytest.raises(client.ApiError) as error:
            await token.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
        assert error.value.status == 403
        await token.create(CM.path(namespace=setup.addons), {"metadata": {"name": "allowed-here"}})  # control


async def test_addon_updater_applies_configmap_bundles_with_the_charts_rights(
    releases: dict[str, Install],
    kube: client.Kube,
    agreed_cluster: tuple[str, str],  # noqa: F811
) -> None:
    """The whole switch with its token: the bundle and variables ConfigMaps from the bundle namespace,
    the policy (a binding's role read), the dry-run, the reads before the apply, the apply in the policy's
    namespace, prune by inventory, the health watch in that namespace; then upgrade-readiness judges the next
    bundle from there too."""
    setup = releases["separate"]
    ns = setup.addons
    bundle = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: dns-settings, namespace: {ns}}}\n"
        "data: {domain: '${CLUSTER_DOMAIN}'}\n---\n"
        f"apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: reader, namespace: {ns}}}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\n"
        f"subjects: [{{kind: ServiceAccount, name: default, namespace: {ns}}}]\n---\n"
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: echo, namespace: {ns}}}\n"
        "spec: {selector: {matchLabels: {app: echo}}, template: {metadata: {labels: {app: echo}}, "
        "spec: {containers: [{name: c, image: registry.example/echo:1}]}}}\n"
    )
    for minor, text in (("1.36", bundle), ("1.37", bundle.replace("dns-settings", "next-settings"))):
        await kube.create(
            CM.path(namespace=setup.bundles),
            {"metadata": {"name": f"addons-{minor.replace('.', '-')}", "labels": {model.CONFIGMAP_MINOR_LABEL: minor}},
             "data": {"bundle.yaml": text}},
        )  # fmt: skip
    await kube.create(
        CM.path(namespace=setup.bundles),
        {"metadata": {"name": "addon-variables"}, "data": {"CLUSTER_DOMAIN": "corp.local"}},
    )
    code, out, err = await installs.run_as_service_account(setup, kube, "addon-updater")
    assert code in (0, 1), out + err  # 1: the Deployment never becomes available here (no kubelet)
    status = json.loads(out.strip().splitlines()[-1])
    assert status["result"] in ("switched", "current") and status["minor"] == "1.36", status
    assert (await kube.get(CM.path(namespace=ns, name="dns-settings")))["data"] == {"domain": "corp.local"}
    code, out, err = await installs.run_as_service_account(setup, kube, "upgrade-readiness")
    report = json.loads(out.strip().splitlines()[-1])
    (bundle_check,) = [c for c in report["checks"] if c["check"] == "addon-bundle"]
    assert bundle_check["status"] == "pass", bundle_check


def test_the_bundle_namespace_is_never_the_release_namespace(tmp_path: pathlib.Path) -> None:
    """The controllers refuse it themselves (exit 2 before any API call), whatever the chart renders."""
    for name in ("addon-updater", "upgrade-readiness"):
        config = tmp_path / f"{name}.yaml"
        source = "configmap"
        config.write_text(f"namespace: upgrades\nbundleSource: {source}\nbundleNamespace: upgrades\n")
        result = ct.run([str(installs.BIN / name), "--config", str(config), "--once"], check=False)
        assert result.returncode == 2, result.stderr
        assert "must not be --namespace (upgrades)" in result.stderr
        config.write_text(f"namespace: upgrades\nbundleSource: {source}\n")
        result = ct.run([str(installs.BIN / name), "--config", str(config), "--once"], check=False)
        assert result.returncode == 2 and "--bundle-namespace is required" in result.stderr

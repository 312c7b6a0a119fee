"""The addon-updater's options: flags, environment, YAML keys, checks."""

from __future__ import annotations

import pathlib

import pytest

from controllers.addon_updater import controller
from controllers.bundles import policy
from controllers.runtime import config

PREFIX = "ADDON_UPDATER"


def load(argv: list[str], environ: dict[str, str] | None = None) -> controller.AddonUpdaterConfig:
    return config.load(
        controller.AddonUpdaterConfig,
        argv,
        prog="addon-updater",
        prefix=PREFIX,
        description="",
        environ=environ or {},
    )


def test_defaults() -> None:
    cfg = load([])
    assert (cfg.bundle_source, cfg.selection, cfg.target) == ("directory", "exact", "apply")
    assert cfg.field_manager == "addon-updater" and cfg.prune and cfg.prune_max_fraction == 0.5
    assert cfg.variables == ()
    rules = cfg.rules
    assert rules.resources == frozenset(policy.DEFAULT_RESOURCES) and "secrets" not in rules.resources
    assert rules.namespaces == {"*"} and not rules.allow_privileged_rbac
    assert (rules.release, rules.release_namespace, rules.bundle_namespace) == (
        "kube-upgrade-controllers", "kube-system", ""
    )  # fmt: skip


def test_the_bundle_policy_options() -> None:
    cfg = load(["--allowed-resources", "configmaps,deployments.apps", "--allowed-namespaces", "addons",
                "--allow-privileged-rbac", "--bundle-namespace", "bundles"])  # fmt: skip
    assert cfg.rules.resources == {"configmaps", "deployments.apps"} and cfg.rules.namespaces == {"addons"}
    assert cfg.rules.allow_privileged_rbac and cfg.rules.bundle_namespace == "bundles"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--bundle-source", "configmap"], "--bundle-namespace is required"),
        (["--variables-config-map", "vars"], "--bundle-namespace is required"),
        (["--bundle-source", "configmap", "--bundle-namespace", "kube-system"], "must not be --namespace"),
        (["--allowed-resources", "Deployments"], "not plural or plural.group"),
        (["--allowed-namespaces", "a_b"], "not a namespace name"),
        (["--prune-max-fraction", "1.5"], "between 0 and 1"),
    ],
)
def test_bundle_sources_and_policy_are_checked(argv: list[str], complaint: str) -> None:
    with pytest.raises(config.ConfigError, match=complaint):
        load(argv)


def test_flags_env_and_file(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(
        "selection: nearestLower\nvariables: [CLUSTER_DOMAIN=corp.local, 'UPSTREAMS=1.1.1.1,8.8.8.8']\n"
    )
    cfg = load(
        ["--config", str(file), "--target", "directory", "--target-dir", "/srv/addons"],
        {
            "ADDON_UPDATER_HEALTH_TIMEOUT_SECONDS": "45",
            "ADDON_UPDATER_BUNDLE_SOURCE": "configmap",
            "ADDON_UPDATER_BUNDLE_NAMESPACE": "addon-bundles",
        },
    )
    assert cfg.selection == "nearestLower"
    assert cfg.variables == ("CLUSTER_DOMAIN=corp.local", "UPSTREAMS=1.1.1.1,8.8.8.8")
    assert (cfg.target, cfg.target_dir, cfg.bundle_source) == ("directory", "/srv/addons", "configmap")
    assert cfg.health_timeout_seconds == 45.0


@pytest.mark.parametrize(
    "argv",
    [
        ["--selection", "newest"],
        ["--target", "kubectl"],
        ["--variables", "not-a-pair"],
        ["--crd-timeout-seconds", "0"],
        ["--health-timeout-seconds", "-1"],
    ],
)
def test_bad_values_are_config_errors(argv: list[str]) -> None:
    with pytest.raises(config.ConfigError):
        load(argv)


def test_every_option_has_help() -> None:
    parser = config.build_parser(
        controller.AddonUpdaterConfig, prog="addon-updater", prefix=PREFIX, description=""
    )
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and not action.help.startswith(" ["), action.dest

"""The addon-updater's options: flags, environment, YAML keys, checks."""

from __future__ import annotations

import pathlib

import pytest

from controllers.addon_updater import controller
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
    assert cfg.field_manager == "addon-updater" and cfg.prune
    assert cfg.variables == ()


def test_flags_env_and_file(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(
        "selection: nearestLower\nvariables: [CLUSTER_DOMAIN=corp.local, 'UPSTREAMS=1.1.1.1,8.8.8.8']\n"
    )
    cfg = load(
        ["--config", str(file), "--target", "directory", "--target-dir", "/srv/addons"],
        {"ADDON_UPDATER_HEALTH_TIMEOUT_SECONDS": "45", "ADDON_UPDATER_BUNDLE_SOURCE": "configmap"},
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

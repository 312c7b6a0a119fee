"""The one list of controllers: console scripts, packages, names and the CLI follow it."""

from __future__ import annotations

import importlib
import pathlib
import tomllib

import pytest

from controllers import cli, registry

PYPROJECT = pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_console_scripts_are_the_registry() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    expected = {entry.name: f"controllers.{entry.package}.__main__:run" for entry in registry.CONTROLLERS}
    assert scripts == {"kube-upgrade-controllers": "controllers.cli:run", **expected}
    for entry in registry.CONTROLLERS:
        assert callable(importlib.import_module(f"controllers.{entry.package}.__main__").run)


def test_every_controller_package_has_the_same_files() -> None:
    root = pathlib.Path(registry.__file__).parent
    for entry in registry.CONTROLLERS:
        files = {path.name for path in (root / entry.package).glob("*.py")}
        shape = {"__init__.py", "__main__.py", "controller.py", "logic.py", "metrics.py"}
        assert shape <= files, entry.name
        assert files - shape <= {"effects.py"}, entry.name  # the rest is its effects: a module, or a package
        assert entry.controller.__module__ == f"controllers.{entry.package}.controller"
        assert entry.values_key == entry.package.split("_")[0] + entry.package.split("_")[1].capitalize()
        assert entry.controller.config_type.__name__ == entry.controller.__name__ + "Config"


def test_names_and_lookup() -> None:
    assert registry.NAMES == ("addon-updater", "uso-runner", "node-tainter", "leader-watchdog")
    assert registry.find("node-tainter").env_prefix == "NODE_TAINTER"
    with pytest.raises(KeyError, match="known: addon-updater"):
        registry.find("node-taint")


def test_run_rejects_an_unknown_name_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "node-tainter", "no-such-controller"])
    assert exited.value.code == 2
    assert "'no-such-controller' is not a controller" in capsys.readouterr().err

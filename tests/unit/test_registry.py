"""The one list of controllers: console scripts, packages, names, the CLI, the chart's controller list and the
import-linter contracts follow it. Nothing here names a controller: a new one is checked by adding it."""

from __future__ import annotations

import importlib
import pathlib
import re
import tomllib
from typing import Any

import pytest
import yaml

from controllers import cli, registry

REPO = pathlib.Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
CHART = REPO / "charts" / "kube-upgrade-controllers"
PACKAGES = {f"controllers.{entry.package}" for entry in registry.CONTROLLERS}


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)


def test_console_scripts_are_the_registry() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    expected = {entry.name: f"controllers.{entry.package}.__main__:run" for entry in registry.CONTROLLERS}
    commands = {
        "kube-upgrade-controllers": "controllers.cli:run",
        "kubectl-upgrade": "controllers.cli:run_plugin",
    }
    assert scripts == {**commands, **expected}
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
        assert entry.values_key == camel(entry.package)
        assert entry.name == entry.package.replace("_", "-")
        assert entry.controller.config_type.__name__ == entry.controller.__name__ + "Config"


def test_names_and_lookup() -> None:
    assert tuple(entry.name for entry in registry.CONTROLLERS) == registry.NAMES
    assert len(set(registry.NAMES)) == len(registry.NAMES)
    for entry in registry.CONTROLLERS:
        assert registry.find(entry.name) is entry
        assert entry.env_prefix == entry.package.upper()
    with pytest.raises(KeyError, match=f"known: {registry.NAMES[0]}"):
        registry.find("no-such-controller")


def test_run_rejects_an_unknown_name_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", registry.NAMES[0], "no-such-controller"])
    assert exited.value.code == 2
    assert "'no-such-controller' is not a controller" in capsys.readouterr().err


def test_the_charts_controller_list_is_the_registry() -> None:
    """kuc.controllerNames (_registry.tpl) is what the chart ranges over; values.yaml has a section for each."""
    helpers = (CHART / "templates" / "_registry.tpl").read_text()
    block = re.search(r'define "kuc\.controllerNames" -}}\n(.*?)\n{{- end', helpers, re.DOTALL)
    assert block, "no kuc.controllerNames in _registry.tpl"
    assert list(yaml.safe_load(block.group(1)).items()) == [
        (entry.values_key, entry.name) for entry in registry.CONTROLLERS
    ]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for entry in registry.CONTROLLERS:
        assert {"enabled", "replicas", "config"} <= set(values[entry.values_key]), entry.values_key


def contract(name_start: str) -> dict[str, Any]:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    found: list[dict[str, Any]] = [c for c in contracts if c["name"].startswith(name_start)]
    assert len(found) == 1, name_start
    return found[0]


# The packages below the controllers (every other package under controllers/ is a controller of the registry).
SHARED = {
    "controllers.agreement",
    "controllers.structs",
    "controllers.runtime",
    "controllers.kube",
    "controllers.bundles",
    "controllers.release_delta",
}


def test_import_linter_contracts_name_every_controller() -> None:
    """A package left off a contract would be silently unchecked."""
    root = pathlib.Path(registry.__file__).parent
    packages = {f"controllers.{path.parent.name}" for path in root.glob("*/__init__.py")}
    commands = {"controllers.cli"}  # the commands: above every controller (the layers contract's top)
    assert packages == PACKAGES | SHARED | commands, (
        "a package under controllers/ is neither shared nor registered"
    )
    api = contract("Only controllers.kube talks to the Kubernetes API")["source_modules"]
    assert set(api) == PACKAGES | SHARED - {"controllers.kube"}
    assert set(contract("Controllers are independent of each other")["modules"]) == PACKAGES
    layers = contract("Layers: controllers > runtime > kube")["layers"]
    assert {layer.strip() for layer in layers[2].split("|")} == PACKAGES
    logic = contract("Each controller's logic.py is pure")["source_modules"]
    checks = {
        f"{package}.checks" for package in PACKAGES if (root / package.split(".")[1] / "checks").is_dir()
    }
    assert set(logic) == {f"{package}.logic" for package in PACKAGES} | checks

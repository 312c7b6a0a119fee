"""Helpers of the chart tests: the helm, promtool and alertmanager binaries, rendering, and the controllers'
config types.

They come from ``e2e/build-tool.sh`` (built from the Go module proxy, cached like the fixture binaries;
``make tools`` builds them). A missing tool fails the tests with the build's message: they are
never skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import re
import subprocess
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pytest
import yaml

from controllers import registry
from controllers.runtime import config
from e2e import controlplane

REPO = controlplane.REPO
CHART = REPO / "charts" / "kube-upgrade-controllers"
ALL_ENABLED = CHART / "ci" / "all-enabled-values.yaml"

# Controller values key → its controller name (console script, resource names).
CONTROLLERS: Mapping[str, str] = {entry.values_key: entry.name for entry in registry.CONTROLLERS}
# Options the chart decides itself (rendered into every config file); users cannot set them in values.
CHART_OWNED = frozenset(
    {
        "kubeconfig",
        "config",
        "once",
        "namespace",
        "release",
        "leaderElect",
        "metricsBindAddress",
        "healthProbeBindAddress",
        "metricsSecure",
        "metricsCertDir",
    }
)
# addon-updater's target follows addonUpdater.mode, its targetDir addonUpdater.directory, its bundleNamespace
# addonUpdater.bundles.namespace and its bundle policy addonUpdater.policy (the RBAC goes with it);
# uso-runner's rewriteFallback follows usoRunner.rewriteFallback and its method (the grant goes with it);
# verdict-relay's namespaces follow verdictRelay.clusterNamespaces (its RBAC), its extension verdictRelay.extension.
OWNED_BY_KEY: Mapping[str, frozenset[str]] = {
    "addonUpdater": frozenset(
        {
            "target",
            "targetDir",
            "bundleNamespace",
            "allowedResources",
            "allowedNamespaces",
            "allowPrivilegedRbac",
        }
    ),
    "usoRunner": frozenset({"rewriteFallback"}),
    "verdictRelay": frozenset({"clusterNamespaces", "extensionBindAddress", "extensionCertDir"}),
}


def chart_owned(key: str) -> frozenset[str]:
    return CHART_OWNED | OWNED_BY_KEY.get(key, frozenset())


@functools.cache
def tool(
    name: Literal[
        "helm", "promtool", "alertmanager", "prometheus", "prometheus-operator", "kube-state-metrics"
    ],
    *,
    version: str | None = None,
) -> pathlib.Path:
    """The cached binary (the pinned release unless ``version``); builds it when missing, and fails (never
    skips) the test when it cannot."""
    try:
        return controlplane.tool_path(name, version=version)
    except subprocess.CalledProcessError as error:
        argv = " ".join([name, *([version] if version else [])])
        pytest.fail(
            f"{name} could not be built by e2e/build-tool.sh {argv} (exit {error.returncode}); "
            f"run it to see why"
        )


def run(
    argv: Sequence[str | pathlib.Path], *, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, argv))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def helm(
    *args: str | pathlib.Path, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return run([tool("helm"), *args], check=check, timeout=timeout)


def template(
    *args: str | pathlib.Path, release: str = "kuc", namespace: str = "upgrades"
) -> list[dict[str, Any]]:
    """``helm template`` → the rendered objects (empty documents dropped)."""
    out = helm("template", release, CHART, "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: Sequence[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind} {name} in {[(o['kind'], o['metadata']['name']) for o in objects]}")


# --- the controllers' config types (for the schema and the config files the chart renders) -----------------


def config_types() -> dict[str, type[config.BaseConfig]]:
    """Values key → the controller's config dataclass."""
    return {entry.values_key: entry.controller.config_type for entry in registry.CONTROLLERS}


def yaml_key(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_CHECK_BOUNDS: Mapping[Callable[[Any], str | None], dict[str, float]] = {
    config.positive: {"exclusiveMinimum": 0},
    config.non_negative: {"minimum": 0},
    config.fraction: {"minimum": 0, "maximum": 1},
}


def option_schema(field: dataclasses.Field[Any], hint: Any) -> dict[str, Any]:
    """The JSON schema of one config option, derived from its type (and its range check)."""
    schema: dict[str, Any]
    if typing.get_origin(hint) is Literal:
        schema = {"enum": list(typing.get_args(hint))}
    elif hint is bool:
        schema = {"type": "boolean"}
    elif hint is int:
        schema = {"type": "integer"}
    elif hint is float:
        schema = {"type": "number"}
    elif typing.get_origin(hint) is tuple:
        schema = {"type": "array", "items": {"type": "string"}}
    else:
        schema = {"type": "string"}
    schema.update(_CHECK_BOUNDS.get(field.metadata.get("check"), {}))  # type: ignore[arg-type]
    return schema


def config_schema(
    config_type: type[config.BaseConfig], *, owned: frozenset[str] = CHART_OWNED
) -> dict[str, Any]:
    """The strict schema of a ``config`` value: every option of ``config_type`` the chart does not own."""
    hints = typing.get_type_hints(config_type)
    properties = {
        yaml_key(field.name): option_schema(field, hints[field.name])
        for field in dataclasses.fields(config_type)
        if yaml_key(field.name) not in owned
    }
    return {"type": "object", "additionalProperties": False, "properties": properties}


def load_yaml(path: pathlib.Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules_file(path: pathlib.Path, *values: str) -> dict[str, Any]:
    """Render the chart's PrometheusRule (with ``values``: more helm flags) and write its ``spec`` (the rule
    groups) as a Prometheus rules file, for promtool. Returns the groups."""
    objects = template(
        "--set", "prometheusRule.enabled=true", *values, "--show-only", "templates/prometheusrule.yaml"
    )
    (rule,) = objects
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    spec: dict[str, Any] = rule["spec"]
    return spec


ALERT_CASES = REPO / "tests" / "integration" / "chart_alerts_cases.yaml"
_TEMPLATE = re.compile(r"\{\{ *\$(value|labels\.([a-zA-Z_]+)) *\}\}")


def expand(text: str, *, labels: Mapping[str, str], value: float) -> str:
    """Prometheus' expansion of the two template forms the chart's annotations use."""
    return _TEMPLATE.sub(lambda m: labels[m.group(2)] if m.group(2) else f"{value:g}", text)


def promtool_files(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Write the rendered rules and the promtool unit tests built from ``ALERT_CASES`` into ``directory``:
    per alert, no alert at each ``quiet`` time, exactly ``firing`` (with severity and expanded annotations)
    at the ``fires`` time."""
    rules_path = directory / "kube-upgrade-controllers.rules.yaml"
    rules = {rule["alert"]: rule for group in rules_file(rules_path)["groups"] for rule in group["rules"]}
    groups = []
    for case in load_yaml(ALERT_CASES):
        rule = rules[case["alert"]]
        expected = []
        for alert in case["firing"]:
            labels = {**alert["labels"], **rule["labels"]}
            annotations = {
                k: expand(v, labels=labels, value=alert["value"]) for k, v in rule["annotations"].items()
            }
            expected.append({"exp_labels": labels, "exp_annotations": annotations})
        checks = [{"eval_time": when, "alertname": case["alert"], "exp_alerts": []} for when in case["quiet"]]
        checks.append({"eval_time": case["fires"], "alertname": case["alert"], "exp_alerts": expected})
        groups.append(
            {
                "name": case.get("name", case["alert"]),
                "interval": "1m",
                "input_series": [{"series": s, "values": str(v)} for s, v in case["series"].items()],
                "alert_rule_test": checks,
            }
        )
    tests_path = directory / "kube-upgrade-controllers.tests.yaml"
    tests = {"rule_files": [rules_path.name], "evaluation_interval": "1m", "tests": groups}
    tests_path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return rules_path, tests_path


if (
    __name__ == "__main__"
):  # python -m tests.chart_tools DIR: the rules and their promtool tests (make promtool)
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.chart_tools DIR")
    for written in promtool_files(pathlib.Path(sys.argv[1])):
        print(written)

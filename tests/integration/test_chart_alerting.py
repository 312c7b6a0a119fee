"""The chart's alerting through an upgrade, offline: clusterLabel in every alert and the dashboard, the
AlertmanagerConfig's inhibit rules and what it refuses, and docs/alerting.md's plain Alertmanager rules.

Rendered with the project's helm (tests/chart_tools.py); nothing here is skipped.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import pytest
import yaml

from controllers.structs import promql
from tests import chart_tools as ct

ALERTING_DOC = ct.REPO / "docs" / "alerting.md"
INHIBIT_MARKER = "<!-- inhibit-rules:"


def alertmanager_config(*values: str) -> dict[str, Any]:
    (obj,) = ct.template(
        "--set",
        "alertmanagerConfig.enabled=true",
        *values,
        "--show-only",
        "templates/alertmanagerconfig.yaml",
    )
    return obj


def failure(*values: str) -> str:
    """helm template's complaint (it must fail)."""
    result = ct.helm("template", "kuc", ct.CHART, *values, check=False)
    assert result.returncode != 0, f"helm accepted {values}"
    return result.stderr


def chart_alert_names(tmp_path: pathlib.Path) -> list[str]:
    groups = ct.rules_file(tmp_path / "rules.yaml")["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_upgrade_readiness_reads_the_metric_names_of_every_chart_alert(tmp_path: pathlib.Path) -> None:
    """alert-metrics judges the chart's own rules too: none of them may leave it unable to name its metrics
    (a kind run showed the check "unknown" on KubeUpgradeMastersNotAgreeing's grouped __name__ regex)."""
    groups = ct.rules_file(tmp_path / "rules.yaml")["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        selection = promql.metric_names(rule["expr"])
        assert selection.names and not selection.problem, (rule["alert"], selection.problem)


# --- clusterLabel ----------------------------------------------------------------------------------------


def test_every_alert_aggregates_by_the_cluster_label(tmp_path: pathlib.Path) -> None:
    groups = ct.rules_file(tmp_path / "rules.yaml", "--set", "clusterLabel=k8s_cluster")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    for rule in rules:
        groupings = re.findall(r"\b(?:by|on) \(([^)]*)\)", rule["expr"])
        assert groupings, f"{rule['alert']} aggregates nothing: {rule['expr']}"
        for grouping in groupings:
            labels = grouping.split(", ")
            if rule["alert"] == "KubeUpgradeInProgress":  # one per cluster: the inhibit rules' source
                assert labels == ["k8s_cluster"], rule["expr"]
            else:
                assert labels[:2] == ["k8s_cluster", "namespace"], (rule["alert"], rule["expr"])


@pytest.mark.parametrize("label", ["k8s-cluster", "1cluster", "__cluster", "", "clus ter"])
def test_a_cluster_label_that_is_no_label_name_fails_with_a_clear_message(label: str) -> None:
    """Refused by the schema, and by the chart itself when the schema is skipped, whatever is enabled."""
    assert "/clusterLabel" in failure("--set-string", f"clusterLabel={label}")
    skipped = failure("--set-string", f"clusterLabel={label}", "--skip-schema-validation")
    assert f'clusterLabel "{label}" is not a Prometheus label name' in skipped


@pytest.mark.parametrize("label", ["namespace", "phase", "severity"])
def test_a_cluster_label_the_alerts_already_use_is_refused(label: str) -> None:
    assert f'clusterLabel "{label}" is a label the chart\'s alerts already use' in failure(
        "--set", f"clusterLabel={label}"
    )


def test_the_dashboard_has_a_cluster_variable_and_filters_every_query_by_it() -> None:
    (cm,) = ct.template("--set", "grafanaDashboard.enabled=true", "--set", "clusterLabel=k8s_cluster",
                        "--show-only", "templates/dashboard-configmap.yaml")  # fmt: skip
    dashboard = json.loads(cm["data"]["kube-upgrade-controllers.json"])
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["cluster"]["query"]["query"].endswith(", k8s_cluster)")
    assert 'k8s_cluster=~"$cluster"' in variables["namespace"]["query"]["query"]
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert all('k8s_cluster=~"$cluster",namespace=~"$namespace"' in expr for expr in exprs), exprs
    assert any("leader_watchdog_upgrade_in_progress" in expr for expr in exprs)


# --- the AlertmanagerConfig -------------------------------------------------------------------------------


def test_alertmanager_config_inhibits_kube_version_mismatch_during_an_upgrade() -> None:
    obj = alertmanager_config()
    assert (obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"]) == (
        "monitoring.coreos.com/v1alpha1",
        "AlertmanagerConfig",
        "upgrades",
    )
    assert obj["spec"] == {
        "inhibitRules": [
            {
                "sourceMatch": [{"name": "alertname", "value": "KubeUpgradeInProgress", "matchType": "="}],
                "targetMatch": [{"name": "alertname", "value": "KubeVersionMismatch", "matchType": "=~"}],
                "equal": ["cluster"],
            }
        ]
    }


def test_alertmanager_config_values() -> None:
    obj = alertmanager_config(
        "--set", "alertmanagerConfig.namespace=monitoring", "--set", "alertmanagerConfig.additionalLabels.alertmanager=main",
        "--set", "alertmanagerConfig.inhibitDuringUpgrade={KubeVersionMismatch,KubeNodeNotReady,Kube.Odd}",
        "--set", "clusterLabel=k8s_cluster",
    )  # fmt: skip
    assert obj["metadata"]["namespace"] == "monitoring"
    assert obj["metadata"]["labels"]["alertmanager"] == "main"
    (rule,) = obj["spec"]["inhibitRules"]
    assert rule["targetMatch"][0]["value"] == r"KubeVersionMismatch|KubeNodeNotReady|Kube\.Odd"
    assert rule["equal"] == ["k8s_cluster"]


def test_none_of_the_charts_own_alerts_can_be_inhibited(tmp_path: pathlib.Path) -> None:
    """KubeUpgradeMastersNotAgreeing, KubeUpgradeNodesOutdated, ...: what reports a stalled upgrade."""
    names = chart_alert_names(tmp_path)
    assert {"KubeUpgradeMastersNotAgreeing", "KubeUpgradeNodesOutdated"} <= set(names)
    for name in names:
        complaint = failure("--set", "alertmanagerConfig.enabled=true",
                            "--set", f"alertmanagerConfig.inhibitDuringUpgrade={{KubeVersionMismatch,{name}}}")  # fmt: skip
        assert (
            f"alertmanagerConfig.inhibitDuringUpgrade: {name} is one of this chart's own alerts" in complaint
        )


def test_alertmanager_config_needs_targets_and_its_source_alert() -> None:
    assert "alertmanagerConfig.inhibitDuringUpgrade is empty" in failure(
        "--set", "alertmanagerConfig.enabled=true", "--set", "alertmanagerConfig.inhibitDuringUpgrade=null"
    )
    assert "needs the KubeUpgradeInProgress alert" in failure(
        "--set", "alertmanagerConfig.enabled=true", "--set", "prometheusRule.disabled={KubeUpgradeInProgress}"
    )


def documented_alertmanager_yaml() -> dict[str, Any]:
    """The plain Alertmanager configuration block of docs/alerting.md (the one after the marker)."""
    text = ALERTING_DOC.read_text()
    after = text[text.index(INHIBIT_MARKER) :]
    block = after.split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded: dict[str, Any] = yaml.safe_load(block)
    return loaded


def as_plain_alertmanager(rule: dict[str, Any]) -> dict[str, Any]:
    """What the Operator writes into alertmanager.yaml for one inhibit rule (matchers v2, strategy None)."""

    def matchers(found: list[dict[str, str]]) -> list[str]:
        return [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in found]

    return {
        "source_matchers": matchers(rule["sourceMatch"]),
        "target_matchers": matchers(rule["targetMatch"]),
        "equal": rule["equal"],
    }


def test_the_documented_plain_alertmanager_rules_are_the_charts() -> None:
    documented = documented_alertmanager_yaml()
    rendered = alertmanager_config()["spec"]["inhibitRules"]
    assert documented["inhibit_rules"] == [as_plain_alertmanager(rule) for rule in rendered]
    # The source alert itself goes nowhere.
    (route,) = documented["route"]["routes"]
    assert route == {"matchers": ['alertname="KubeUpgradeInProgress"'], "receiver": "null"}
    assert documented["receivers"] == [{"name": "null"}]

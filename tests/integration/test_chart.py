"""The Helm chart offline: helm lint/template, the strict schema, the rendered config files, the alerts.

helm and promtool are the project's own builds (tests/chart_tools.py); nothing here is skipped.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import prometheus_client
import pytest
import yaml

from controllers import registry
from controllers.addon_updater import metrics as addon_metrics
from controllers.bundles import policy
from controllers.leader_watchdog import metrics as watchdog_metrics
from controllers.node_tainter import metrics as tainter_metrics
from controllers.runtime import agreement_feed, config, metrics
from controllers.uso_runner import metrics as uso_metrics
from tests import chart_schema
from tests import chart_tools as ct

DIRECTORY_MODE = ct.CHART / "ci" / "directory-mode-values.yaml"
COMBINED = ct.CHART / "ci" / "combined-values.yaml"
VALUE_FILES: dict[str, list[str | pathlib.Path]] = {
    "defaults": [],
    "all-enabled": ["-f", ct.ALL_ENABLED],
    "directory": ["-f", DIRECTORY_MODE],
    "combined": ["-f", COMBINED],
}


@pytest.mark.parametrize("values", list(VALUE_FILES))
def test_helm_lint_passes(values: str) -> None:
    ct.helm("lint", "--strict", ct.CHART, *VALUE_FILES[values])


def kinds(objects: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    return counts


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "DaemonSet")]
    return specs + [o["spec"] for o in objects if o["kind"] == "Pod"]


def config_file(objects: list[dict[str, Any]], controller: str) -> dict[str, Any]:
    cm = ct.find(objects, "ConfigMap", f"kuc-kube-upgrade-controllers-{controller}")
    loaded: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return loaded


def test_defaults_render_every_controller_but_addon_updater_and_verdict_relay_without_extras() -> None:
    objects = ct.template()
    n = len(ct.CONTROLLERS) - 2
    # + the metrics-reader ClusterRole (metrics.secure, the default) and the acknowledgements ConfigMap
    assert kinds(objects) == {
        "ServiceAccount": n, "ClusterRole": n + 1, "ClusterRoleBinding": n, "Role": n, "RoleBinding": n,
        "ConfigMap": n + 1, "Service": n, "Deployment": n, "Pod": 1, "FlowSchema": 1, "PriorityLevelConfiguration": 1,
    }  # fmt: skip
    # addon-updater and verdict-relay (a management cluster's) are off by default; the watchdog writes
    # nothing, so it has no Role; upgrade-readiness has one more, in kube-system (what its release checks read).
    assert not [
        o for o in objects if "addon-updater" in o["metadata"]["name"] or "relay" in o["metadata"]["name"]
    ]
    assert not [o for o in objects if o["kind"] == "Role" and "leader-watchdog" in o["metadata"]["name"]]
    for controller in set(ct.CONTROLLERS.values()) - {"addon-updater", "verdict-relay"}:
        assert config_file(objects, controller)["leaderElect"] is False


def test_all_enabled_renders_every_object() -> None:
    objects = ct.template("-f", ct.ALL_ENABLED)
    n = len(ct.CONTROLLERS)
    # (+1 ClusterRole and RoleBinding: addon-updater's namespaced rights, bound in kube-system only; +1
    # ClusterRole: the metrics reader, metrics.secure; + the acknowledgements ConfigMap, the acknowledgers' Role
    # and RoleBinding, a policy and binding per gated kind, the verdict relay's Role and RoleBinding in each of
    # its two cluster namespaces, its Runtime Extension's Service and ExtensionConfig; upgrade-readiness's Role
    # and RoleBinding in kube-system.)
    assert kinds(objects) == {
        "ServiceAccount": n, "ClusterRole": n + 2, "ClusterRoleBinding": n, "Role": n + 4, "RoleBinding": n + 5,
        "ConfigMap": n + 2, "Service": n + 1, "Deployment": n, "PodDisruptionBudget": n, "ServiceMonitor": 1,
        "PrometheusRule": 1, "Pod": 1, "ValidatingAdmissionPolicy": 4, "ValidatingAdmissionPolicyBinding": 4,
        "FlowSchema": 1, "PriorityLevelConfiguration": 1, "ExtensionConfig": 1,
    }  # fmt: skip
    for controller in ct.CONTROLLERS.values():
        cfg = config_file(objects, controller)
        assert cfg["leaderElect"] is True  # replicas 2
        assert (cfg["namespace"], cfg["release"], cfg["minMasters"]) == (
            "upgrades",
            "kuc-kube-upgrade-controllers",
            3,
        )
        role = ct.find(objects, "Role", f"kuc-kube-upgrade-controllers-{controller}")
        assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]} in role[
            "rules"
        ]
    assert ct.find(objects, "ServiceMonitor", "kuc-kube-upgrade-controllers")["metadata"]["labels"][
        "release"
    ] == ("kube-prometheus-stack")
    rule = ct.find(objects, "PrometheusRule", "kuc-kube-upgrade-controllers")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    addon = ct.find(objects, "Deployment", "kuc-kube-upgrade-controllers-addon-updater")["spec"]["template"][
        "spec"
    ]
    assert {"name": "bundles", "image": {"reference": "registry.example/kube-upgrade-addons:v1.36",
                                         "pullPolicy": "IfNotPresent"}} in addon["volumes"]  # fmt: skip
    assert config_file(objects, "addon-updater")["bundleDir"] == "/bundles"
    # upgrade-readiness checks the next bundle where addon-updater finds its bundles, as it would choose it.
    readiness = config_file(objects, "upgrade-readiness")
    assert (readiness["bundleSource"], readiness["bundleDir"], readiness["bundleSelection"]) == (
        "directory", "/bundles", "nearestLower",
    )  # fmt: skip
    gate = ct.find(objects, "Deployment", "kuc-kube-upgrade-controllers-upgrade-readiness")["spec"][
        "template"
    ]
    assert [v for v in gate["spec"]["volumes"] if v["name"] == "bundles"] == [
        v for v in addon["volumes"] if v["name"] == "bundles"
    ]
    # The helm test checks every enabled controller's /readyz.
    test_pod = ct.find(objects, "Pod", "kuc-kube-upgrade-controllers-test-readyz")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert sorted(test_pod["spec"]["containers"][0]["args"]) == sorted(
        f"http://kuc-kube-upgrade-controllers-{c}.upgrades.svc:8081/readyz" for c in ct.CONTROLLERS.values()
    )


def test_combined_is_one_deployment_bound_to_every_controllers_roles() -> None:
    objects = ct.template(
        "-f", ct.ALL_ENABLED, "--set", "combined.enabled=true", "--set", "combined.replicas=2",
        "--set", "upgradeReadiness.acknowledgers.enabled=false", "--set", "upgradeGate.enabled=false",
        "--set", "verdictRelay.enabled=false",  # it never joins the combined process (below)
    )  # fmt: skip
    n = len(ct.CONTROLLERS) - 1
    assert kinds(objects) == {
        "ServiceAccount": 1, "ClusterRole": n + 2, "ClusterRoleBinding": n, "Role": n + 1, "RoleBinding": n + 2,
        "ConfigMap": n + 2, "Service": 1, "Deployment": 1, "PodDisruptionBudget": 1, "ServiceMonitor": 1,
        "PrometheusRule": 1, "Pod": 1, "FlowSchema": 1, "PriorityLevelConfiguration": 1,
    }  # fmt: skip
    combined = "kuc-kube-upgrade-controllers-combined"
    for binding in (o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": combined, "namespace": "upgrades"}]
    pod = ct.find(objects, "Deployment", combined)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == combined
    (container,) = pod["containers"]
    assert container["command"] == ["kube-upgrade-controllers"]
    assert container["args"][0] == "run"
    inside = sorted(set(ct.CONTROLLERS.values()) - {"verdict-relay"})
    assert sorted(container["args"][1 : 1 + n]) == inside
    env = {item["name"]: item.get("value") for item in container["env"]}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for controller in inside:
        path = f"/etc/kube-upgrade-controllers/{controller}"
        assert env[f"{config.env_prefix(controller)}_CONFIG"] == f"{path}/config.yaml"
        assert path in mounts
        # The replicas of the combined Deployment decide leader election for every controller in it.
        assert config_file(objects, controller)["leaderElect"] is True
    test_pod = ct.find(objects, "Pod", "kuc-kube-upgrade-controllers-test-readyz")
    assert test_pod["spec"]["containers"][0]["args"] == [f"http://{combined}.upgrades.svc:8081/readyz"]
    # The verdict relay stays a Deployment of its own (its Secret reads and its extension out of the combined
    # process and its ServiceAccount).
    relay = "kuc-kube-upgrade-controllers-verdict-relay"
    objects = ct.template("-f", ct.ALL_ENABLED, "--set", "combined.enabled=true")
    assert ct.find(objects, "Deployment", relay)["spec"]["template"]["spec"]["serviceAccountName"] == relay
    assert "verdict-relay" not in ct.find(objects, "Deployment", combined)["spec"]["template"]["spec"][
        "containers"][0]["args"]  # fmt: skip
    # Directory mode stays a DaemonSet of its own; the others are combined.
    objects = ct.template("-f", DIRECTORY_MODE, "--set", "combined.enabled=true")
    assert ct.find(objects, "DaemonSet", "kuc-kube-upgrade-controllers-addon-updater")
    args = ct.find(objects, "Deployment", combined)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "addon-updater" not in args and "node-tainter" in args
    # Off by default: nothing combined.
    assert not [o for o in ct.template() if "combined" in o["metadata"]["name"]]


@pytest.mark.parametrize("combined", [False, True])
def test_the_watchdogs_prometheus_secret_is_mounted_where_its_config_names_files(combined: bool) -> None:
    """leaderWatchdog.prometheusSecret: in the pod that runs the watchdog only (its own, or the combined one),
    read-only at the directory blind-alert-rules' token and CA files are in; no Kubernetes grant comes with it."""
    directory = "/etc/kube-upgrade-controllers/prometheus"
    extra = ["--set", "combined.enabled=true", "--set", "verdictRelay.enabled=false"] if combined else []
    args: list[str | pathlib.Path] = ["-f", ct.ALL_ENABLED, *extra, "--set", "leaderWatchdog.config.prometheusUrl=https://prometheus:9090",
            "--set", f"leaderWatchdog.config.prometheusBearerTokenFile={directory}/token"]  # fmt: skip
    without = ct.template(*args)
    with_secret = ct.template(*args, "--set", "leaderWatchdog.prometheusSecret=prometheus-credentials")
    assert [o for o in with_secret if o["kind"].endswith("Role")] == [
        o for o in without if o["kind"].endswith("Role")
    ]
    watchdog = "kuc-kube-upgrade-controllers-" + ("combined" if combined else "leader-watchdog")
    for deployment in (o for o in with_secret if o["kind"] in ("Deployment", "DaemonSet")):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mounts = [m for m in container["volumeMounts"] if m["name"] == "prometheus"]
        volumes = [v for v in pod["volumes"] if v["name"] == "prometheus"]
        if deployment["metadata"]["name"] == watchdog:
            assert mounts == [{"name": "prometheus", "mountPath": directory, "readOnly": True}]
            assert volumes == [{"name": "prometheus", "secret": {"secretName": "prometheus-credentials"}}]
        else:
            assert mounts == volumes == [], deployment["metadata"]["name"]
    assert not [
        m
        for o in pod_specs(without)
        for c in o["containers"]
        for m in c.get("volumeMounts", [])
        if m["name"] == "prometheus"
    ]


def test_dashboard_has_a_panel_per_controller_and_the_sidecar_label() -> None:
    objects = ct.template("-f", ct.ALL_ENABLED, "--set", "grafanaDashboard.namespace=monitoring")
    cm = ct.find(objects, "ConfigMap", "kuc-kube-upgrade-controllers-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    dashboard = json.loads(cm["data"]["kube-upgrade-controllers.json"])
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert set(ct.CONTROLLERS.values()) <= set(titles)
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(target["expr"] for target in panel["targets"])


def test_directory_mode_is_a_daemonset_on_the_masters() -> None:
    objects = ct.template("-f", DIRECTORY_MODE)
    ds = ct.find(objects, "DaemonSet", "kuc-kube-upgrade-controllers-addon-updater")
    spec = ds["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert {
        "name": "addons",
        "hostPath": {"path": "/etc/kubernetes/addons", "type": "DirectoryOrCreate"},
    } in spec["volumes"]
    cfg = config_file(objects, "addon-updater")
    assert (cfg["target"], cfg["targetDir"], cfg["leaderElect"]) == (
        "directory",
        "/etc/kubernetes/addons/active",
        False,
    )
    # It writes files, not API objects: no bundle rules, no list of everything; it reads the roles that the
    # bundle's bindings refer to (its policy judges them), and reviews the tokens of its metrics' readers.
    role = ct.find(objects, "ClusterRole", "kuc-kube-upgrade-controllers-addon-updater")
    reviews = (["authentication.k8s.io"], ["authorization.k8s.io"])
    for rule in role["rules"]:
        reads = set(rule["verbs"]) <= {"get", "list", "watch"}
        assert reads or rule["apiGroups"] in (["events.k8s.io"], *reviews), rule
        assert rule["apiGroups"] not in reviews or rule["verbs"] == ["create"], rule
    assert not [o for o in objects if o["metadata"]["name"].endswith("addon-updater-namespaced")]
    assert not [o for o in objects if o["kind"] == "Deployment" and "addon-updater" in o["metadata"]["name"]]


@pytest.mark.parametrize("values", list(VALUE_FILES))
def test_every_pod_is_locked_down(values: str) -> None:
    for spec in pod_specs(ct.template(*VALUE_FILES[values])):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert (
            isinstance(spec["securityContext"]["runAsUser"], int) and spec["securityContext"]["runAsUser"] > 0
        )
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("values", list(VALUE_FILES))
def test_rendered_config_files_are_accepted_by_the_controllers(values: str, tmp_path: pathlib.Path) -> None:
    """Each controller loads the config file the chart renders for it (an unknown key would exit 2)."""
    objects = ct.template(*VALUE_FILES[values])
    types = ct.config_types()
    for key, controller in ct.CONTROLLERS.items():
        config_type = types[key]
        names = [o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"]
        if f"kuc-kube-upgrade-controllers-{controller}" not in names:
            continue
        path = tmp_path / f"{controller}.yaml"
        path.write_text(yaml.safe_dump(config_file(objects, controller)))
        prefix = config.env_prefix(controller)
        loaded = config.load(config_type, ["--config", str(path)], prog=controller, prefix=prefix,
                             description="", environ={})  # fmt: skip
        assert loaded.namespace == "upgrades"


def test_schema_is_generated_from_the_registry_and_the_config_types() -> None:
    """values.schema.json's controller sections are what ``make generate`` writes (tests/chart_schema.py)."""
    text = chart_schema.SCHEMA.read_text()
    assert text == chart_schema.render(chart_schema.generate(json.loads(text))), "run make generate"
    schema = json.loads(text)["properties"]
    assert schema["config"] == ct.config_schema(config.BaseConfig)
    for key, config_type in ct.config_types().items():
        assert schema[key]["properties"]["config"] == ct.config_schema(config_type, owned=ct.chart_owned(key))


def test_schema_generation_adds_a_new_controllers_section() -> None:
    current = json.loads(chart_schema.SCHEMA.read_text())
    del current["properties"]["leaderWatchdog"]
    properties = list(chart_schema.generate(current)["properties"])
    keys = [entry.values_key for entry in registry.CONTROLLERS]
    assert properties[properties.index(keys[0]) :][: len(keys) + 1] == [*keys, "combined"]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "usoRunner.replicas=two"], "usoRunner/replicas"),
        (["--set-json", 'nodeTainter.config={"settleSeconds": "soon"}'], "settleSeconds"),
        (["--set", "nodeTainter.replica=2"], "replica"),
        (["--set", "leaderWatchdog.config.heartbeatStaleSecond=40"], "heartbeatStaleSecond"),
        (["--set", "addonUpdater.mode=sideways"], "mode"),
        (["--set", "config.namespace=other"], "namespace"),  # the chart owns it
        (["--set", "prometheusRule.thresholds.staleLeader=5 minutes"], "staleLeader"),
    ],
)
def test_schema_rejects_wrong_types_and_unknown_keys(args: list[str], complaint: str) -> None:
    result = ct.helm("template", "kuc", ct.CHART, *args, check=False)
    assert result.returncode != 0, f"helm accepted {args}"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


def test_every_value_is_documented_by_a_comment_starting_with_its_name() -> None:
    """Every value needs a comment block right above it whose first line is "# <path> -- ...", unless an
    enclosing key has one (that comment covers its content, e.g. resources or podSecurityContext). A pure
    grouping key (image:, bundles:) needs none: its children have theirs."""
    documented: set[str] = set()
    paths: list[str] = []
    stack: list[tuple[int, str]] = []
    comment = ""  # first line of the comment block just above
    for line in (ct.CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if match:
            indent, key = len(match.group(1)), match.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = f"{stack[-1][1]}.{key}" if stack else key
            if comment.startswith(f"# {path} -- "):
                documented.add(path)
            paths.append(path)
            stack.append((indent, path))
        comment = (comment or stripped) if stripped.startswith("#") else ""
    groups = {path.rsplit(".", 1)[0] for path in paths if "." in path}
    missing = [
        path
        for path in paths
        if path not in documented
        and path not in groups
        and not any(path.startswith(f"{d}.") for d in documented)
    ]
    assert not missing, f"values without a comment starting with their name: {missing}"
    assert "addonUpdater.policy.namespaces" in documented and "image.repository" in documented


RUNBOOKS = sorted((ct.REPO / "docs" / "runbooks").glob("*.md"))


def test_every_alert_is_complete_and_has_a_runbook(tmp_path: pathlib.Path) -> None:
    base = "https://docs.example.com/kuc/runbooks/"
    groups = ct.rules_file(tmp_path / "rules.yaml", "--set", f"prometheusRule.runbookBaseUrl={base}")[
        "groups"
    ]
    alerts = [rule for group in groups for rule in group["rules"]]
    assert len(alerts) == len(RUNBOOKS)  # one runbook per alert, none without one
    cases = {case["alert"] for case in ct.load_yaml(ct.ALERT_CASES)}
    for rule in alerts:
        # none: KubeUpgradeInProgress, a state that inhibits others (kube-prometheus' InfoInhibitor convention)
        assert rule["labels"]["severity"] in ("warning", "critical", "none")
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        assert rule["annotations"]["runbook_url"] == f"{base}{rule['alert']}.md"
        runbook = ct.REPO / "docs" / "runbooks" / f"{rule['alert']}.md"
        assert runbook.is_file(), f"missing {runbook.relative_to(ct.REPO)}"
        assert rule["alert"] in cases, f"no promtool case for {rule['alert']}"
    # By default the runbook's path in the project (the chart cannot know where its user publishes them).
    default = ct.rules_file(tmp_path / "default.yaml")["groups"]
    for rule in (rule for group in default for rule in group["rules"]):
        assert (ct.REPO / rule["annotations"]["runbook_url"]).is_file(), rule["annotations"]["runbook_url"]
    empty = ct.rules_file(tmp_path / "empty.yaml", "--set", "prometheusRule.runbookBaseUrl=")["groups"]
    assert not [rule for group in empty for rule in group["rules"] if "runbook_url" in rule["annotations"]]


def test_disabled_alerts_are_left_out(tmp_path: pathlib.Path) -> None:
    objects = ct.template("--set", "prometheusRule.enabled=true", "--set",
                          "prometheusRule.disabled={KubeUpgradeNodesOutdated}")  # fmt: skip
    rule = ct.find(objects, "PrometheusRule", "kuc-kube-upgrade-controllers")
    names = [r["alert"] for r in rule["spec"]["groups"][0]["rules"]]
    assert "KubeUpgradeNodesOutdated" not in names and len(names) == len(RUNBOOKS) - 1


def test_promtool_checks_and_unit_tests_the_alerts(tmp_path: pathlib.Path) -> None:
    rules, tests = ct.promtool_files(tmp_path)
    promtool = ct.tool("promtool")
    checked = ct.run([promtool, "check", "rules", rules])
    assert f"SUCCESS: {len(RUNBOOKS)} rules found" in checked.stdout + checked.stderr
    tested = ct.run([promtool, "test", "rules", tests])
    assert "SUCCESS" in tested.stdout + tested.stderr
    # Every alert has at least one firing and one quiet check.
    for group in yaml.safe_load(tests.read_text())["tests"]:
        expectations = [bool(check["exp_alerts"]) for check in group["alert_rule_test"]]
        assert True in expectations and False in expectations, group["name"]


def test_promtool_test_fails_when_an_alert_is_broken(tmp_path: pathlib.Path) -> None:
    """The unit tests can fail: the same tests against a rule with a different threshold fail."""
    rules, tests = ct.promtool_files(tmp_path)
    rules.write_text(
        rules.read_text().replace("(node_tainter_outdated_nodes) > 0", "(node_tainter_outdated_nodes) > 5")
    )
    result = ct.run([ct.tool("promtool"), "test", "rules", tests], check=False)
    assert result.returncode != 0 and "KubeUpgradeNodesOutdated" in result.stdout + result.stderr


def exported_samples() -> dict[str, list[dict[str, str]]]:
    """Every sample the controllers export at start (their label sets are pre-initialised)."""
    registry = prometheus_client.CollectorRegistry()

    def exporter(prefix: str) -> metrics.Exporter:
        return metrics.Exporter(prefix=prefix, registry=registry)

    addon_metrics.Metrics(exporter("addon_updater"))
    tainter_metrics.Metrics(exporter("node_tainter"))
    uso_metrics.Metrics(exporter("uso_runner"))
    watchdog_metrics.Metrics(exporter("leader_watchdog"), leader_leases=["kube-system/kube-scheduler"])
    for prefix in ("addon_updater", "uso_runner", "node_tainter", "leader_watchdog"):
        agreement_feed.AgreementMetrics(exporter(prefix))
    samples: dict[str, list[dict[str, str]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
        # A labelled metric without samples yet (e.g. *_info, per-resource counters).
        samples.setdefault(family.name + ("_total" if family.type == "counter" else ""), [])
    return samples


METRIC = re.compile(r"\b((?:addon_updater|uso_runner|node_tainter|leader_watchdog)_[a-z_]+)(\{[^}]*\})?")


def test_alerts_and_dashboard_use_only_metrics_the_controllers_export(tmp_path: pathlib.Path) -> None:
    samples = exported_samples()
    groups = ct.rules_file(tmp_path / "rules.yaml")["groups"]
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    dashboard = json.loads((ct.CHART / "dashboards" / "kube-upgrade-controllers.json").read_text())
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for prefix in (
        "addon_updater",
        "uso_runner",
        "node_tainter",
        "leader_watchdog",
    ):  # the __name__=~ regexes
        exprs += [f"{prefix}_masters_agreed", f"{prefix}_masters", f"{prefix}_agreed_version_info"]
    used = 0
    for expr in exprs:
        for name, matchers in METRIC.findall(expr):
            used += 1
            assert name in samples, f"{name} (in {expr!r}) is not exported by any controller"
            for label, value in re.findall(r'(\w+)="([^"]*)"', matchers):
                if label == "namespace":
                    continue  # added by the scrape, not the controller
                assert any(s.get(label) == value for s in samples[name]), (
                    f"{name}{{{label}={value!r}}} never exported"
                )
    assert used > 20


def test_addon_updaters_rights_follow_its_bundle_policy() -> None:
    """apply mode: the policy's cluster-scoped kinds cluster-wide, its namespaced kinds bound in the policy's
    namespaces only; no * rule, no Secrets, no escalate/bind unless asked; the config says the same policy."""
    name = "kuc-kube-upgrade-controllers-addon-updater"
    objects = ct.template(
        "-f", ct.ALL_ENABLED, "--set", "addonUpdater.policy.namespaces={kube-system,addons}"
    )
    rules = (
        ct.find(objects, "ClusterRole", name)["rules"]
        + ct.find(objects, "ClusterRole", f"{name}-namespaced")["rules"]
    )
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), rule
        assert "secrets" not in rule.get("resources", []) and not {"escalate", "bind"} & set(rule["verbs"])
    bindings = [
        o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == f"{name}-namespaced"
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["addons", "kube-system"]
    assert not [
        o
        for o in objects
        if o["kind"] == "ClusterRoleBinding" and o["roleRef"]["name"] == f"{name}-namespaced"
    ]
    namespaces = [r for r in rules if "namespaces" in r.get("resources", []) and "delete" in r["verbs"]]
    assert namespaces == [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system", "addons"],
                           "verbs": ["update", "patch", "delete"]}]  # fmt: skip
    cfg = config_file(objects, "addon-updater")
    assert cfg["allowedNamespaces"] == ["kube-system", "addons"] and cfg["allowPrivilegedRbac"] is False
    assert sorted(cfg["allowedResources"]) == sorted(
        policy.DEFAULT_RESOURCES
    )  # the chart's defaults: the same
    granted = {f"{res}.{group}" if group else res for r in rules for group in r.get("apiGroups", [])
               for res in r.get("resources", []) if "create" in r["verbs"]}  # fmt: skip
    # (Events: every controller's; the token and access reviews: every controller's with metrics.secure.)
    common = {
        "events.events.k8s.io",
        "tokenreviews.authentication.k8s.io",
        "subjectaccessreviews.authorization.k8s.io",
    }
    assert granted - common == set(cfg["allowedResources"])
    escalating = ct.template("-f", ct.ALL_ENABLED, "--set", "addonUpdater.rbac.escalate=true")
    assert {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
            "verbs": ["escalate", "bind"]} in ct.find(escalating, "ClusterRole", name)["rules"]  # fmt: skip


def test_bundles_from_configmaps_come_from_their_own_namespace() -> None:
    """configmap source: the bundle namespace (created, kept on uninstall), read by addon-updater and
    upgrade-readiness only; their config files name it; the release namespace's Roles read no ConfigMaps."""
    objects = ct.template("--set", "addonUpdater.enabled=true", "--set", "addonUpdater.config.bundleSource=configmap",
                          "--set", "addonUpdater.config.variablesConfigMap=addon-vars")  # fmt: skip
    bundles = "kuc-kube-upgrade-controllers-bundles"
    namespace = ct.find(objects, "Namespace", bundles)
    assert namespace["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    role = ct.find(objects, "Role", "kuc-kube-upgrade-controllers-bundle-readers")
    assert role["metadata"]["namespace"] == bundles
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
    ]
    binding = ct.find(objects, "RoleBinding", "kuc-kube-upgrade-controllers-bundle-readers")
    assert sorted(s["name"] for s in binding["subjects"]) == [
        "kuc-kube-upgrade-controllers-addon-updater", "kuc-kube-upgrade-controllers-upgrade-readiness"
    ]  # fmt: skip
    for controller in ("addon-updater", "upgrade-readiness"):
        assert config_file(objects, controller)["bundleNamespace"] == bundles
    for obj in objects:
        if obj["kind"] == "Role" and obj["metadata"].get("namespace", "upgrades") == "upgrades":
            for rule in obj["rules"]:
                if "configmaps" in rule["resources"]:
                    assert rule.get("resourceNames") or rule["verbs"] == ["create"], (
                        obj["metadata"]["name"],
                        rule,
                    )
    named = ct.template("--set", "addonUpdater.enabled=true", "--set", "addonUpdater.config.bundleSource=configmap",
                        "--set", "addonUpdater.bundles.namespace=addon-bundles",
                        "--set", "addonUpdater.bundles.createNamespace=false")  # fmt: skip
    assert not [o for o in named if o["kind"] == "Namespace"]
    assert ct.find(named, "Role", "kuc-kube-upgrade-controllers-bundle-readers")["metadata"]["namespace"] == (
        "addon-bundles"
    )


def test_a_bundle_image_named_by_digest_is_kept_as_written() -> None:
    image = "registry.example/kube-upgrade-addons@sha256:" + "ab" * 32
    objects = ct.template(
        "--set", "addonUpdater.enabled=true", "--set", f"addonUpdater.bundles.image={image}"
    )
    for name in ("addon-updater", "upgrade-readiness"):
        pod = ct.find(objects, "Deployment", f"kuc-kube-upgrade-controllers-{name}")["spec"]["template"][
            "spec"
        ]
        assert {"name": "bundles", "image": {"reference": image, "pullPolicy": "IfNotPresent"}} in pod[
            "volumes"
        ]


def test_upgrade_readiness_grants_follow_its_checks() -> None:
    """What the release checks read is granted only while one of them runs: the pods and kubeadm's ConfigMaps
    (by name) in kube-system through a Role there, PrometheusRules in its ClusterRole."""
    name = "kuc-kube-upgrade-controllers-upgrade-readiness"

    def grants(*args: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        objects = ct.template(*args)
        roles = [o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] == "kube-system"]
        cluster = ct.find(objects, "ClusterRole", name)["rules"]
        return [r for role in roles for r in role["rules"]], [
            r for r in cluster if "monitoring.coreos.com" in r.get("apiGroups", [])
        ]

    in_kube_system, rules = grants()
    assert in_kube_system == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"],
         "resourceNames": ["kubeadm-config", "kubelet-config", "kube-proxy"]},
    ]  # fmt: skip
    assert rules == [{"apiGroups": ["monitoring.coreos.com"], "resources": ["prometheusrules"],
                      "verbs": ["get", "list", "watch"]}]  # fmt: skip
    assert grants("--set", "upgradeReadiness.config.checks={removed-apis,kubelet-skew}") == ([], [])
    in_kube_system, rules = grants("--set", "upgradeReadiness.config.checks={kubeadm-config}")
    assert in_kube_system and not rules
    in_kube_system, rules = grants("--set", "upgradeReadiness.config.checks={alert-metrics}")
    assert rules and not in_kube_system

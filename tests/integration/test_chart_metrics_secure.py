"""The chart's metrics.secure (on by default) and networkPolicy: rendered offline, then installed into the real
fixture with a controller run as its ServiceAccount serving /metrics to a reader the chart bound, and
refusing a stranger."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import pytest
import yaml

from controllers.kube import client
from controllers.runtime import config
from e2e import controlplane
from tests import chart_tools as ct
from tests import harness
from tests.integration import test_chart_install as install
from tests.integration import test_metrics_secure as secure_test

BIN = pathlib.Path(sys.executable).parent
FULLNAME = "kuc-kube-upgrade-controllers"
SECURE = ["--set", "serviceMonitor.enabled=true"]  # metrics.secure is the default
PLAIN = ["--set", "metrics.secure=false", "--set", "serviceMonitor.enabled=true"]
READERS = [
    "--set-json",
    'metrics.readers=[{"kind": "ServiceAccount", "name": "prom"}, {"kind": "Group", "name": "ops"}]',
]
REVIEW_RULES = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def endpoint(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (monitor,) = by_kind(objects, "ServiceMonitor")
    (found,) = monitor["spec"]["endpoints"]
    result: dict[str, Any] = found
    return result


def loaded_configs(objects: list[dict[str, Any]], tmp_path: pathlib.Path) -> list[config.BaseConfig]:
    """Each controller's config file as the chart rendered it, loaded as the controller loads it."""
    types, found = ct.config_types(), []
    for key, controller in ct.CONTROLLERS.items():
        cm = ct.find(objects, "ConfigMap", f"{FULLNAME}-{controller}")
        path = tmp_path / f"{controller}.yaml"
        path.write_text(cm["data"]["config.yaml"])
        found.append(config.load(types[key], ["--config", str(path)], prog=controller,
                                 prefix=config.env_prefix(controller), description="", environ={}))  # fmt: skip
    return found


@pytest.mark.parametrize("combined", [False, True])
def test_turned_off_plain_http_no_review_rights_and_every_controller_told(
    combined: bool, tmp_path: pathlib.Path
) -> None:
    """metrics.secure=false must reach every controller: their own default is secure too."""
    extra = ["--set", "combined.enabled=true"] if combined else []
    objects = ct.template("-f", ct.ALL_ENABLED, *PLAIN, *extra)
    assert "scheme" not in endpoint(objects) and "bearerTokenFile" not in endpoint(objects)
    for role in by_kind(objects, "ClusterRole"):
        assert not [rule for rule in role["rules"] if rule in REVIEW_RULES], role["metadata"]["name"]
    assert not [o for o in objects if "metrics-reader" in o["metadata"]["name"]]
    assert not by_kind(objects, "NetworkPolicy")
    for loaded in loaded_configs(objects, tmp_path):
        assert not loaded.metrics_secure
    if combined:  # the combined process (the verdict relay keeps a Deployment of its own)
        deployment = ct.find(objects, "Deployment", f"{FULLNAME}-combined")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "--no-metrics-secure" in container["args"]


def test_secure_by_default_scrapes_https_with_a_token_and_lets_each_controller_review_it() -> None:
    objects = ct.template("-f", ct.ALL_ENABLED, *SECURE, *READERS)
    assert endpoint(objects) | {"interval": "", "scrapeTimeout": ""} == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "",
        "scrapeTimeout": "",
        "scheme": "https",
        "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "tlsConfig": {"insecureSkipVerify": True},
    }
    for controller in ct.CONTROLLERS.values():
        role = ct.find(objects, "ClusterRole", f"{FULLNAME}-{controller}")
        assert all(rule in role["rules"] for rule in REVIEW_RULES), controller
    reader = ct.find(objects, "ClusterRole", f"{FULLNAME}-metrics-reader")
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics", "/status", "/status/*"], "verbs": ["get"]}]
    binding = ct.find(objects, "ClusterRoleBinding", f"{FULLNAME}-metrics-reader")
    assert binding["roleRef"]["name"] == f"{FULLNAME}-metrics-reader"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prom", "namespace": "upgrades"},  # the release namespace
        {"kind": "Group", "name": "ops", "apiGroup": "rbac.authorization.k8s.io"},
    ]


@pytest.mark.parametrize("combined", [False, True])
def test_secure_options_reach_the_controllers(combined: bool, tmp_path: pathlib.Path) -> None:
    """Without a certificate Secret: metricsSecure in each config file (accepted by the controller), or the
    combined process's flag; with one: the Secret mounted where --metrics-cert-dir points."""
    extra = ["--set", "combined.enabled=true"] if combined else []
    objects = ct.template("-f", ct.ALL_ENABLED, *SECURE, *extra)
    for loaded in loaded_configs(objects, tmp_path):
        assert loaded.metrics_secure and not loaded.metrics_cert_dir
    with_cert = ct.template("-f", ct.ALL_ENABLED, *SECURE, *extra, "--set", "metrics.certSecret=metrics-tls")
    deployments = by_kind(with_cert, "Deployment")
    # Combined: one process, and the verdict relay's own Deployment (it never joins the combined process).
    assert len(deployments) == (2 if combined else len(ct.CONTROLLERS))
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert {"name": "metrics-tls", "secret": {"secretName": "metrics-tls"}} in pod["volumes"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "metrics-tls")
        if deployment["metadata"]["name"].endswith("-combined"):
            assert ["--metrics-secure", f"--metrics-cert-dir={mount['mountPath']}"] == [
                a for a in container["args"] if a.startswith("--metrics-") and "bind" not in a
            ]
        else:
            name = deployment["metadata"]["name"]
            cm = ct.find(with_cert, "ConfigMap", name)
            assert yaml.safe_load(cm["data"]["config.yaml"])["metricsCertDir"] == mount["mountPath"]


def test_network_policy_admits_only_the_named_namespaces_to_metrics() -> None:
    objects = ct.template(
        "--set",
        "networkPolicy.enabled=true",
        "--set-json",
        'networkPolicy.metricsNamespaces=["monitoring", "ops"]',
    )
    (policy,) = by_kind(objects, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "kube-upgrade-controllers",
        "app.kubernetes.io/instance": "kuc",
    }
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    metrics_rule, probes_rule = policy["spec"]["ingress"]
    assert metrics_rule == {
        "ports": [{"port": "metrics", "protocol": "TCP"}],
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
            for name in ("monitoring", "ops")
        ],
    }
    assert probes_rule == {"ports": [{"port": "health", "protocol": "TCP"}]}  # from anywhere: the kubelet
    # No namespace named: nobody may scrape (an empty "from" would have admitted everyone).
    (closed,) = by_kind(
        ct.template(
            "--set", "networkPolicy.enabled=true", "--set-json", "networkPolicy.metricsNamespaces=[]"
        ),
        "NetworkPolicy",
    )
    assert closed["spec"]["ingress"] == [probes_rule]


def test_schema_rejects_a_reader_of_an_unknown_kind() -> None:
    result = ct.helm("template", "kuc", ct.CHART, "--set-json", 'metrics.readers=[{"kind": "Robot", "name": "r"}]',
                     check=False)  # fmt: skip
    assert result.returncode != 0 and "kind" in result.stderr


async def test_installed_secure_chart_serves_metrics_to_the_bound_reader_only(
    control_plane: controlplane.ControlPlane, kube: client.Kube, tmp_path: pathlib.Path
) -> None:
    """node-tainter runs as its ServiceAccount with the installed config: its own ClusterRole must let it
    review tokens (else every scrape is a 503), the chart's binding must let the reader in."""
    setup = install.Installed(control_plane, tmp_path)
    await install.ensure_monitoring_crds(kube)
    values = {
        **install.INSTALL_VALUES,
        "metrics": {"readers": [{"kind": "ServiceAccount", "name": "prom"}]},  # secure: the default
        "networkPolicy": {"enabled": True, "metricsNamespaces": ["monitoring"]},
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    setup.helm("install", setup.release, ct.CHART, "--namespace", setup.namespace, "--create-namespace",
               "-f", tmp_path / "values.yaml")  # fmt: skip
    try:
        manifest = [doc for doc in yaml.safe_load_all(setup.helm("get", "manifest", setup.release, "-n",
                                                                 setup.namespace)) if doc]  # fmt: skip
        for obj in manifest:  # every object, the NetworkPolicy included, accepted by the apiserver
            await kube.get(install.object_path(obj))
        reader = await secure_test.service_account_token(kube, namespace=setup.namespace, name="prom")
        stranger = await secure_test.service_account_token(kube, namespace=setup.namespace, name="stranger")
        kubeconfig = await install.token_kubeconfig(setup, kube, "node-tainter")
        cfg = await install.installed_config(setup, kube, "node-tainter")
        assert yaml.safe_load(cfg.read_text())["metricsSecure"] is True
        tls = secure_test.unverified()
        # --dry-run: it decides on the fixture's nodes but leaves them alone.
        argv = (str(BIN / "node-tainter"), "--config", str(cfg), "--kubeconfig", str(kubeconfig), "--dry-run")
        with harness.serve(*argv, probe_port=controlplane.free_port()) as (_, port):
            await harness.eventually(lambda: harness.scrape(port, "/healthz", tls=tls)[0] == 200, timeout=60)
            status, body = harness.scrape(port, tls=tls, token=reader)
            assert status == 200 and "node_tainter_" in body, (status, body)
            assert harness.scrape(port, "/status", tls=tls, token=reader)[0] == 200
            assert harness.scrape(port, tls=tls, token=stranger)[0] == 403
            assert harness.scrape(port, tls=tls)[0] == 401
    finally:
        setup.helm("uninstall", setup.release, "--namespace", setup.namespace, check=False)

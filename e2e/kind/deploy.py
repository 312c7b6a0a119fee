"""Install the suite into the e2e kind cluster as a user would (the second half of ``make kind-up``).

    python -m e2e.kind.deploy

1. loads the image from ``make image`` into every node (``kind load docker-image``; the chart never pulls it);
2. makes the e2e's add-on bundles (``e2e/kind/bundles/<minor>/``) ConfigMaps labelled with their minor, in
   the bundle namespace (``kuc-addon-bundles``: admins only, the chart's controllers may just read it), the
   namespace the bundles' objects go to (``kuc-e2e-addons``, the bundle policy's one namespace: the chart
   binds addon-updater's rights there), and a Secret with a random marker that uso-runner's first run
   rewrites (the e2e suite checks that no controller ever logs it);
3. ``helm upgrade --install`` release ``kuc`` with every controller (``e2e/kind/values.yaml``,
   ``config.minMasters`` = the cluster's control planes), and a second release ``kuc-apiserver`` with only the
   leader-watchdog, reading the masters' versions from their kube-apiserver mirror pods
   (``versionSource: apiserver``), so both version sources are exercised;
4. ``helm test`` of both; then waits until every controller's ``/metrics`` shows the masters agreed, and
   prints ``kube-upgrade-controllers status``. The controllers serve ``/metrics`` and ``/status`` as the chart
   ships them (HTTPS, to a bearer token RBAC allows): the suite reads them through an in-cluster reader
   (``e2e/kind/metrics_reader.py``, installed first, in namespace ``kuc-e2e``), whose ServiceAccount both
   releases bind with ``metrics.readers`` (``e2e/kind/values.yaml``).

With ``KUC_E2E_MONITORING=1`` (``make e2e``; ``MONITORING=0`` turns it off) the Prometheus stack (``e2e/kind/monitoring.py``)
is installed before the chart, release ``kuc`` gets ``e2e/kind/monitoring-values.yaml`` (its ServiceMonitor,
PrometheusRule and AlertmanagerConfig) and ``kuc-apiserver`` its ServiceMonitor; deploy ends once Prometheus
scrapes both watchdogs, the apiservers, the kubelets and kube-state-metrics.
"""

from __future__ import annotations

import argparse
import base64
import pathlib
import re
import secrets
import sys
from typing import Any

from kubernetes import client as k8s

from controllers import registry
from e2e.kind import k8s as cluster
from e2e.kind import monitoring

TAG = "kind-deploy"
IMAGE = "kube-upgrade-controllers"
BUNDLES = pathlib.Path(__file__).resolve().parent / "bundles"
VALUES = pathlib.Path(__file__).resolve().parent / "values.yaml"
READER_SCRIPT = pathlib.Path(__file__).resolve().parent / "metrics_reader.py"
MINOR_LABEL = "addons.kube-upgrade-controllers.io/minor"
# The bundle namespace and the one the bundles' objects go to, as e2e/kind/values.yaml names them.
BUNDLE_NAMESPACE, ADDON_NAMESPACE = "kuc-addon-bundles", "kuc-e2e-addons"
APISERVER_RELEASE = "kuc-apiserver"
SECRET_NAMESPACE, SECRET_NAME = "kuc-e2e", "e2e-marker"
# (release, controller) pairs the two releases run.
INSTALLED = [(cluster.RELEASE, c) for c in cluster.CONTROLLERS] + [(APISERVER_RELEASE, "leader-watchdog")]


def app_version() -> str:
    for line in (cluster.CHART / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise RuntimeError("no appVersion in Chart.yaml")


def controller_image() -> str:
    return f"{IMAGE}:{app_version()}"


def load_image() -> None:
    image = controller_image()
    cluster.log(TAG, f"loading {image} into every node (kind load docker-image)")
    cluster.run(["kind", "load", "docker-image", "--name", cluster.CLUSTER, image])


def with_pause_image(text: str) -> str:
    """A bundle file with the nodes' own pause image (releases name different pause tags, and a pod of a
    bundle never pulls)."""
    return re.sub(r"registry\.k8s\.io/pause(:[\w.-]+)?", cluster.pause_image(), text)


def bundle_config_maps() -> None:
    """One ConfigMap per minor in the bundle namespace, a key per file, labelled with the minor; and the
    namespace the bundles' objects go to (it exists before the chart binds addon-updater's rights in it)."""
    core = cluster.api().core
    ensure_namespace(BUNDLE_NAMESPACE)
    ensure_namespace(ADDON_NAMESPACE)
    for directory in sorted(p for p in BUNDLES.iterdir() if p.is_dir()):
        minor = directory.name
        body = k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(
                name=f"e2e-addons-{minor.replace('.', '-')}", labels={MINOR_LABEL: minor}
            ),
            data={f.name: with_pause_image(f.read_text()) for f in sorted(directory.glob("*.yaml"))},
        )
        try:
            core.create_namespaced_config_map(BUNDLE_NAMESPACE, body)
        except k8s.ApiException as error:
            if error.status != 409:
                raise
            core.replace_namespaced_config_map(body.metadata.name, BUNDLE_NAMESPACE, body)
        cluster.log(TAG, f"bundle {minor}: ConfigMap {body.metadata.name} ({len(body.data)} files)")


def marker_secret() -> None:
    ensure_namespace(SECRET_NAMESPACE)
    body = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=SECRET_NAME),
        string_data={"password": f"kuc-e2e-{secrets.token_hex(12)}"},
    )
    try:
        cluster.api().core.create_namespaced_secret(SECRET_NAMESPACE, body)
    except k8s.ApiException as error:
        if error.status != 409:
            raise


def secret_marker() -> str:
    secret = cluster.api().core.read_namespaced_secret(SECRET_NAME, SECRET_NAMESPACE)
    return base64.b64decode(secret.data["password"]).decode()


def metrics_reader() -> None:
    """The in-cluster reader of the controllers' /metrics and /status (``e2e/kind/metrics_reader.py``, run by
    the controller image from a ConfigMap) with its ServiceAccount and Service, on the first control plane
    (upgraded in place, never drained): what ``k8s.pod_get`` reads through."""
    ensure_namespace(cluster.READER_NAMESPACE)
    name, namespace, port = cluster.READER, cluster.READER_NAMESPACE, cluster.READER_PORT
    labels = {"app": name}
    container = {
        "name": "reader", "image": controller_image(), "imagePullPolicy": "Never",
        "command": ["python", "/reader/metrics_reader.py", str(port)],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 2},
        "volumeMounts": [{"name": "script", "mountPath": "/reader", "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": 65532, "capabilities": {"drop": ["ALL"]}},
    }  # fmt: skip
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
         "data": {"metrics_reader.py": READER_SCRIPT.read_text()}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                  "spec": {"serviceAccountName": name, "terminationGracePeriodSeconds": 1, "containers": [container],
                           "volumes": [{"name": "script", "configMap": {"name": name}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": port, "targetPort": "http"}]}},
    ]  # fmt: skip
    node = monitoring.stack_node()
    cluster.log(
        TAG, f"the metrics reader {namespace}/{name} (on {node}): how the suite reads /metrics and /status"
    )
    monitoring.apply(monitoring.pinned(objects, node=node))
    cluster.run(["kubectl", "-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=180s"])


def ensure_namespace(name: str) -> None:
    try:
        cluster.api().core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    except k8s.ApiException as error:
        if error.status != 409:
            raise


def helm(*args: str, timeout: float = 600.0) -> str:
    return cluster.run(
        [cluster.tool("helm"), "--kubeconfig", str(cluster.KUBECONFIG), *args], timeout=timeout
    )


def install(*, control_planes: int, with_monitoring: bool) -> None:
    ensure_namespace(cluster.RELEASE_NAMESPACE)  # (the bundles are no longer made there first)
    common = ["--namespace", cluster.RELEASE_NAMESPACE, "--wait", "--timeout", "5m"]
    masters = f"config.minMasters={control_planes}"
    target = cluster.gate_target()
    if cluster.minor(target) != cluster.minor(cluster.versions()["KIND_NEW_RELEASE"]):
        common += ["--set", f"upgradeReadiness.config.targetVersion=v{target}"]
        cluster.log(TAG, f"upgrade-readiness judges against v{target}, where the scenario's removed API goes")
    cluster.log(
        TAG, f"helm upgrade --install {cluster.RELEASE}: every controller, minMasters {control_planes}"
    )
    monitored = ["-f", str(monitoring.VALUES)] if with_monitoring else []
    helm(
        "upgrade", "--install", cluster.RELEASE, str(cluster.CHART), "-f", str(VALUES), *monitored,
        "--set", masters, *common,
    )  # fmt: skip
    cluster.log(
        TAG, f"helm upgrade --install {APISERVER_RELEASE}: leader-watchdog with versionSource apiserver"
    )
    only_watchdog = ["--set", "config.versionSource=apiserver"]
    if with_monitoring:  # scraped too; the rules and the inhibit rule come once, with release kuc
        only_watchdog += ["--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.interval=15s"]
    for entry in registry.CONTROLLERS:
        if entry.name != "leader-watchdog":
            only_watchdog += ["--set", f"{entry.values_key}.enabled=false"]
    helm(
        "upgrade", "--install", APISERVER_RELEASE, str(cluster.CHART), "-f", str(VALUES), "--set", masters,
        *only_watchdog, *common,
    )  # fmt: skip
    for release in (cluster.RELEASE, APISERVER_RELEASE):
        cluster.log(TAG, f"helm test {release}")
        helm("test", release, "--namespace", cluster.RELEASE_NAMESPACE, "--timeout", "3m")


def wait_agreed(*, version: str, timeout: float = 180.0) -> None:
    """Every installed controller's leading replica reports, in its metrics, the masters agreed on ``version``."""
    for release, controller in INSTALLED:

        def agreed(release: str = release, controller: str = controller) -> bool:
            return cluster.agreed_on(release, controller) == version

        cluster.eventually(
            agreed, timeout=timeout, what=f"{release} {controller} to report agreement on {version}"
        )
        cluster.log(TAG, f"{release} {controller}: masters agreed on {version} (its /metrics)")


def status() -> str:
    return cluster.run(
        [str(cluster.REPO / ".venv" / "bin" / "kube-upgrade-controllers"), "status",
         "--kubeconfig", str(cluster.KUBECONFIG), "--namespace", cluster.RELEASE_NAMESPACE],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args(argv)
    control_planes = len(cluster.node_names(control_planes=True))
    old = cluster.versions()["KIND_OLD_RELEASE"]
    load_image()
    with_monitoring = monitoring.enabled()
    if with_monitoring:
        monitoring.install(controller_image=controller_image())
    bundle_config_maps()
    marker_secret()
    metrics_reader()
    install(control_planes=control_planes, with_monitoring=with_monitoring)
    wait_agreed(version=old)
    if with_monitoring:
        monitoring.wait_scraped(watchdogs=2)
    print(status(), end="")
    cluster.log(TAG, f"the suite runs: `. .kind/env; kubectl -n {cluster.RELEASE_NAMESPACE} get pods`")
    return 0


if __name__ == "__main__":
    sys.exit(main())

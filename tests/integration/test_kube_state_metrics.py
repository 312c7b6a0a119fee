"""The project's kube-state-metrics build on the local control plane exports every series the kind stack's
kubernetes-mixin alerts read (e2e/monitoring/stack.py MIXIN_ALERTS), collecting only what the stack's does."""

from __future__ import annotations

import pathlib
import re

from controllers.kube import client, resources
from e2e import cluster, controlplane
from e2e.monitoring import stack
from tests import alerting, chart_tools, harness


def mixin_metrics() -> set[str]:
    return {name for _, _, expr, _ in stack.MIXIN_ALERTS for name in re.findall(r"\b(kube_[a-z_]+)\b", expr)}


async def test_kube_state_metrics_exports_what_the_mixin_alerts_read(
    kube: client.Kube, kubeconfig: str, namespace: str, nodes: cluster.Nodes, tmp_path: pathlib.Path
) -> None:
    await nodes.create("ksm-w1", version="v1.36.1")
    labels = {"app": "ksm"}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/c"}]},
    }
    spec = {"selector": {"matchLabels": labels}, "template": template}
    await kube.create(resources.DEPLOYMENTS.path(namespace=namespace),
                      {"metadata": {"name": "ksm"}, "spec": {**spec, "replicas": 1}})  # fmt: skip
    await kube.create(
        resources.DAEMONSETS.path(namespace=namespace), {"metadata": {"name": "ksm"}, "spec": spec}
    )
    await kube.create(
        resources.PODS.path(namespace=namespace), {"metadata": {"name": "ksm"}, "spec": template["spec"]}
    )
    port = controlplane.free_port()
    argv = [str(chart_tools.tool("kube-state-metrics")), f"--kubeconfig={kubeconfig}", "--host=127.0.0.1",
            f"--port={port}", "--telemetry-host=127.0.0.1", f"--telemetry-port={controlplane.free_port()}",
            f"--resources={','.join(stack.KSM_RESOURCES)}"]  # fmt: skip
    wanted = mixin_metrics()
    assert {"kube_node_status_condition", "kube_pod_status_phase", "kube_deployment_spec_replicas"} <= wanted
    with alerting.process("kube-state-metrics", argv, tmp_path):

        def exported() -> bool:
            code, text = harness.scrape(port)
            names = {
                line.split("{", 1)[0].split(" ", 1)[0]
                for line in text.splitlines()
                if line.startswith("kube_")
            }
            return code == 200 and wanted <= names and 'node="ksm-w1"' in text

        await harness.eventually(
            exported, timeout=60, interval=0.5, what=f"kube-state-metrics exporting {sorted(wanted)}"
        )

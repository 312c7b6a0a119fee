"""Talking to the e2e kind cluster (made by ``e2e/kind/cluster.sh up``) from Python.

Shared by ``deploy``, ``upgrade`` and the e2e suite (``e2e/suite/``): the cluster's kubeconfig and env file,
the official ``kubernetes`` client (as users' own tests use it), commands inside a node container, tools,
timestamped progress lines and polling with a deadline.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from controllers import registry
from e2e import controlplane

REPO = pathlib.Path(__file__).resolve().parents[2]
STATE = REPO / ".kind"
KUBECONFIG = STATE / "kubeconfig"
ENV_FILE = STATE / "env"
CLUSTER = os.environ.get("KIND_CLUSTER_NAME", "kuc-e2e")
RELEASE_NAMESPACE = "kube-upgrade"
RELEASE = "kuc"
CHART = REPO / "charts" / "kube-upgrade-controllers"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
# The in-cluster reader of the controllers' secure /metrics and /status (e2e/kind/metrics_reader.py).
READER_NAMESPACE, READER, READER_PORT = "kuc-e2e", "metrics-reader", 8080
CONTROLLERS = registry.EVERY_CLUSTER  # what the chart runs in a workload cluster (not the verdict relay)

T = TypeVar("T")
_started = time.monotonic()


def log(tag: str, message: str) -> None:
    """One progress line: wall clock and seconds since this process started, like the e2e shell scripts."""
    print(
        f"[{tag} {time.strftime('%H:%M:%S')} +{time.monotonic() - _started:.0f}s] {message}",
        file=sys.stderr,
        flush=True,
    )


def versions() -> dict[str, str]:
    """The pins of ``e2e/versions.env``."""
    return controlplane.read_versions()


def minor(release: str) -> tuple[int, int]:
    """(1, 37) of "v1.37.2" or "1.37"."""
    major, minor_, *_ = release.lstrip("v").split(".")
    return int(major), int(minor_)


def gate_target() -> str:
    """The minor upgrade-readiness judges against in the scenario: the new release's, unless the scenario's
    removed API (KIND_REMOVED_API) is removed only later (the v1.35 -> v1.36 pair): then that minor, so
    that its client is a blocker (e2e/kind/deploy.py sets it as targetVersion)."""
    pins = versions()
    target = max(minor(pins["KIND_NEW_RELEASE"]), minor(pins["KIND_REMOVED_API_IN"]))
    return f"{target[0]}.{target[1]}"


def env() -> dict[str, str]:
    """This process's environment plus what ``.kind/env`` exports (KUBECONFIG, PATH with kubectl and kind)."""
    if not ENV_FILE.exists():
        raise RuntimeError(f"{ENV_FILE.relative_to(REPO)} does not exist: run `make kind-up` first")
    merged = dict(os.environ)
    for line in ENV_FILE.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            (value,) = shlex.split(value) or [""]
            merged[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    return merged


def run(argv: list[str], *, check: bool = True, timeout: float = 600.0, input: bytes | None = None) -> str:
    """A command with the cluster's environment; its stdout. On failure the error carries its stderr."""
    environment = env()
    if argv[0] == "kind" and environment.get("KUC_KIND_DOCKER_SHIM"):
        # kind execs `docker ... --privileged`, which this engine refuses: the shim adjusts (cluster.sh says why).
        environment["PATH"] = f"{environment['KUC_KIND_DOCKER_SHIM']}:{environment['PATH']}"
    result = subprocess.run(
        argv, env=environment, capture_output=True, timeout=timeout, input=input, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
    return result.stdout.decode()


def tool(name: str) -> str:
    """A cached tool built by ``e2e/build-tool.sh`` (helm, kind)."""
    return subprocess.run(
        [str(REPO / "e2e" / "build-tool.sh"), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def node_exec(node: str, command: str, *, timeout: float = 600.0, input: bytes | None = None) -> str:
    """A shell command inside a node container (``docker exec``)."""
    return run(
        ["docker", "exec", *(["-i"] if input else []), node, "sh", "-c", command],
        timeout=timeout,
        input=input,
    )


@functools.cache
def pause_image() -> str:
    """The pause image every node has, for pods that must never pull: the sandbox image of the nodes'
    containerd, which is the old release's (a rolling upgrade adds the new release's, never removes it)."""
    node = node_names(control_planes=False)[0]
    line = node_exec(node, 'grep -o \'sandbox_image = "[^"]*"\' /etc/containerd/config.toml')
    return line.split('"')[1]


@dataclasses.dataclass(frozen=True)
class Api:
    """The official client's API groups for the e2e cluster."""

    core: k8s.CoreV1Api
    apps: k8s.AppsV1Api
    coordination: k8s.CoordinationV1Api
    custom: k8s.CustomObjectsApi
    extensions: k8s.ApiextensionsV1Api
    discovery: k8s.DiscoveryV1Api
    raw: k8s.ApiClient


@functools.cache
def api() -> Api:
    raw = k8s_config.new_client_from_config(config_file=str(KUBECONFIG))
    return Api(
        core=k8s.CoreV1Api(raw),
        apps=k8s.AppsV1Api(raw),
        coordination=k8s.CoordinationV1Api(raw),
        custom=k8s.CustomObjectsApi(raw),
        extensions=k8s.ApiextensionsV1Api(raw),
        discovery=k8s.DiscoveryV1Api(raw),
        raw=raw,
    )


def eventually(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 1.0) -> T:
    """Polls ``check`` until it returns something other than None/False; fails naming ``what``. API errors
    while polling (an apiserver restarting during an upgrade) count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result is not None and result is not False:
                return result
        except (k8s.ApiException, OSError) as error:  # the apiserver restarts during an upgrade
            last_error = error
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------ nodes


def node_names(*, control_planes: bool) -> list[str]:
    """Names of the control-plane Nodes (or of the workers), sorted as kind names them."""
    nodes = api().core.list_node().items
    return sorted(
        n.metadata.name for n in nodes if (CONTROL_PLANE_LABEL in (n.metadata.labels or {})) == control_planes
    )


def kubelet_versions() -> dict[str, str]:
    return {n.metadata.name: n.status.node_info.kubelet_version for n in api().core.list_node().items}


def ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def apiserver_versions() -> dict[str, str]:
    """The image tag of each control plane's kube-apiserver mirror pod, by node."""
    pods = api().core.list_namespaced_pod("kube-system", label_selector="component=kube-apiserver").items
    return {p.spec.node_name: p.spec.containers[0].image.rsplit(":", 1)[1] for p in pods}


# ---------------------------------------------------------------------------------------------- metrics

Samples = dict[str, float]


def controller_pods(release: str, controller: str) -> list[Any]:
    """The running pods of one controller of a release (the chart's selector labels)."""
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component={controller}"
    pods = api().core.list_namespaced_pod(RELEASE_NAMESPACE, label_selector=selector).items
    return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


def events(*, since: float, namespace: str = "") -> list[tuple[float, dict[str, Any]]]:
    """Events (events.k8s.io) at or after ``since`` (epoch seconds), in ``namespace`` or every one, oldest
    first, each with its time. Read as JSON: the official client's Event model rejects Events without an
    eventTime (core/v1-style ones)."""
    scope = ["-n", namespace] if namespace else ["-A"]
    items = json.loads(run(["kubectl", "get", "events.events.k8s.io", *scope, "-o", "json"]))["items"]
    found = []
    for event in items:
        stamp = (
            event.get("eventTime")
            or event.get("deprecatedLastTimestamp")
            or event["metadata"]["creationTimestamp"]
        )
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        if when >= since:
            found.append((when, event))
    return sorted(found, key=lambda pair: pair[0])


def pod_get(pod: str, path: str, *, port: int = 8080) -> str:
    """``path`` (``metrics``, ``status``) of a controller pod of the release namespace, read as an authorized
    client in the cluster reads it (the chart serves them over HTTPS to a bearer token RBAC allows: the
    apiserver's pod proxy cannot carry one): through the metrics reader (``e2e/kind/metrics_reader.py``, its
    ServiceAccount bound by the chart's ``metrics.readers``), reached by the apiserver's service proxy. A
    failed read raises ApiException, as an API call does."""
    ip = api().core.read_namespaced_pod(pod, RELEASE_NAMESPACE).status.pod_ip
    if not ip:
        raise k8s.ApiException(reason=f"pod {pod} has no IP yet")
    proxy = f"/api/v1/namespaces/{READER_NAMESPACE}/services/{READER}:{READER_PORT}/proxy/{ip}/{port}/{path}"
    try:
        return run(["kubectl", "get", "--raw", proxy], timeout=60)
    except RuntimeError as error:  # its stderr: the controller's answer (401, 403, 503) or the proxy's
        raise k8s.ApiException(reason=str(error)) from error


def pod_metrics(pod: str, *, port: int = 8080) -> Samples:
    """A controller pod's /metrics (:func:`pod_get`): ``{'name{labels}': value}``."""
    text = pod_get(pod, "metrics", port=port)
    samples: Samples = {}
    for line in str(text).splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def leader_metrics(release: str, controller: str) -> Samples | None:
    """The metrics of the replica that leads (``<prefix>_leader`` 1; a replica waiting for the Lease does not
    follow the masters), or None while none leads."""
    prefix = controller.replace("-", "_")
    for pod in controller_pods(release, controller):
        samples = pod_metrics(pod.metadata.name)
        if sample(samples, f"{prefix}_leader") == 1:
            return samples
    return None


def agreed_on(release: str, controller: str) -> str | None:
    """The version the leading replica says the masters agree on; None while they do not (or none leads)."""
    samples = leader_metrics(release, controller)
    prefix = controller.replace("-", "_")
    if samples is None or sample(samples, f"{prefix}_masters_agreed") != 1:
        return None
    for series, value in samples.items():
        if series.startswith(f"{prefix}_agreed_version_info{{") and value == 1:
            return labels_of(series)["version"]
    return None


def labels_of(series: str) -> dict[str, str]:
    _, _, rest = series.partition("{")
    return {
        key: value.strip('"')
        for key, value in (part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
    }


def sample(samples: Mapping[str, float], name: str, **labels: str) -> float | None:
    """One series' value; labels given must match, others are ignored."""
    for series, value in samples.items():
        base, _, rest = series.partition("{")
        if base != name:
            continue
        found = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
        if all(found.get(key, "").strip('"') == want for key, want in labels.items()):
            return value
    return None

"""Cluster API and the other upgrade drivers, as the upgrade gate's tests and proof meet them.

The Cluster API CRDs are read at test time from the module zip of the pinned release
(``sigs.k8s.io/cluster-api@$CAPI_VERSION``, downloaded once into the Go module cache by ``go mod download``,
as e2e/build-tool.sh does for every tool): nothing of it is copied into this repository. The
system-upgrade-controller's Plan and Kamaji's TenantControlPlane get minimal CRDs of their own here: only
their version fields, the rest kept as given.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import subprocess
from collections.abc import Sequence
from typing import Any

import yaml

from e2e import controlplane

# The CRD files of the module that the gate's tests and the proof need, by their path in the module.
CORE = "core/config/crd/bases"
KUBEADM_CONTROL_PLANE = "controlplane/kubeadm/config/crd/bases"
# What Cluster API's contract wants on a provider's CRD (its envtest labels the CRDs it loads so).
CONTRACT_LABEL = "cluster.x-k8s.io/v1beta2"


def version() -> str:
    return controlplane.read_versions()["CAPI_VERSION"]


@functools.cache
def module_dir(release: str | None = None) -> pathlib.Path:
    """The module's directory in the Go module cache (downloaded first when missing)."""
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"sigs.k8s.io/cluster-api@{release or version()}"],
        check=True, capture_output=True, text=True, env=env, timeout=600,
    ).stdout  # fmt: skip
    return pathlib.Path(json.loads(out)["Dir"])


def crds(*files: str, release: str | None = None) -> list[dict[str, Any]]:
    """The CRDs in ``files`` (paths in the module), labelled for Cluster API's contract."""
    found = []
    for name in files:
        for doc in yaml.safe_load_all((module_dir(release) / name).read_text()):
            if doc:
                doc["metadata"].setdefault("labels", {})[CONTRACT_LABEL] = "v1beta2"
                found.append(doc)
    return found


def gated_crds() -> list[dict[str, Any]]:
    """Cluster and KubeadmControlPlane (the module's), Plan and TenantControlPlane (minimal)."""
    return [
        *crds(f"{CORE}/cluster.x-k8s.io_clusters.yaml"),
        *crds(f"{KUBEADM_CONTROL_PLANE}/controlplane.cluster.x-k8s.io_kubeadmcontrolplanes.yaml"),
        minimal_crd("upgrade.cattle.io", "v1", "Plan", "plans", ["spec", "version"]),
        minimal_crd("kamaji.clastix.io", "v1alpha1", "TenantControlPlane", "tenantcontrolplanes",
                    ["spec", "kubernetes", "version"]),
    ]  # fmt: skip


def minimal_crd(group: str, api_version: str, kind: str, plural: str, field: Sequence[str]) -> dict[str, Any]:
    """A namespaced CRD whose only declared field is the version string at ``field``."""
    schema: dict[str, Any] = {"type": "string"}
    for name in reversed(field):
        schema = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {name: schema},
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"plural": plural, "kind": kind, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": "Namespaced",
            "versions": [
                {"name": api_version, "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
            ],
        },
    }

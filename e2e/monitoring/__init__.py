"""The Prometheus stack of the tests and the kind scenario: the Prometheus Operator's CRDs, from its module.

The CRDs are read from the Operator's module at the pinned version (``PROMETHEUS_OPERATOR_VERSION`` in
``e2e/versions.env``), fetched by ``go mod download`` into the Go module cache like every other source this
project builds from; nothing of it is copied into the repository.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import subprocess
import tempfile
from typing import Any

import yaml

from e2e import controlplane

OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"


@functools.cache
def operator_module() -> pathlib.Path:
    """The Operator's module source at the pinned version (downloaded into the Go module cache if missing)."""
    version = controlplane.read_versions()["PROMETHEUS_OPERATOR_VERSION"]
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{OPERATOR_MODULE}@{version}"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
        cwd=tempfile.gettempdir(),  # outside any module
    )
    return pathlib.Path(json.loads(done.stdout)["Dir"])


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads a bare ``=`` (a matchType enum value in the CRDs) as the "value" tag: it is a string."""


def _value(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:value", _value)


def crd(plural: str) -> dict[str, Any]:
    """The Operator's CustomResourceDefinition of ``plural`` (``alertmanagerconfigs``, ``servicemonitors``)."""
    path = operator_module() / "example" / "prometheus-operator-crd" / f"monitoring.coreos.com_{plural}.yaml"
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader
    return loaded

"""KUBEBUILDER_ASSETS (what controller-runtime's setup-envtest downloads): the local control plane runs the
etcd and kube-apiserver found there instead of building them."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from e2e import controlplane


@pytest.fixture
def assets(tmp_path: pathlib.Path, control_plane: controlplane.ControlPlane) -> pathlib.Path:
    """A setup-envtest-like directory: etcd and kube-apiserver (here: links to the cached ones)."""
    directory = tmp_path / "k8s" / "assets"
    directory.mkdir(parents=True)
    for binary in (control_plane.etcd_bin, control_plane.apiserver_bin):
        (directory / binary.name).symlink_to(binary.resolve())
    return directory


def test_build_tool_takes_the_assets_and_builds_nothing(assets: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """With an empty cache and no module proxy, only the assets can answer."""
    env = {**os.environ, "KUBEBUILDER_ASSETS": str(assets), "KUC_CACHE_DIR": str(tmp_path / "empty"),
           "GOPROXY": "off"}  # fmt: skip
    for tool in ("etcd", "kube-apiserver"):
        done = subprocess.run(
            [str(controlplane.BUILD_TOOL), tool],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert done.stdout.strip() == str(assets / tool)
        assert "KUBEBUILDER_ASSETS" in done.stderr
    assert not (tmp_path / "empty").exists()
    # A release asked for by name (a kind node image's) is never taken from the assets.
    done = subprocess.run(
        [str(controlplane.BUILD_TOOL), "kube-apiserver", "v1.0.0"], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and str(assets) not in done.stdout


def test_the_control_plane_runs_the_assets(assets: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    with controlplane.running() as plane:
        assert (plane.etcd_bin, plane.apiserver_bin) == (assets / "etcd", assets / "kube-apiserver")
        version = subprocess.run(
            [str(plane.etcdctl_bin), f"--endpoints={plane.etcd_endpoint}", "endpoint", "health"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert "is healthy" in version.stdout + version.stderr
        assert plane.kube_version == controlplane.apiserver_version(assets / "kube-apiserver")
        assert plane.apiserver is not None and plane.apiserver.poll() is None

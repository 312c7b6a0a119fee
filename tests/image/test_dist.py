"""`make dist`'s files used as a user would: the wheel installed into a fresh virtualenv and as a uv tool gives
working ``kube-upgrade-controllers`` and ``kubectl-upgrade`` commands; the packaged chart passes ``helm lint``
and a server-side ``helm install --dry-run`` against the real apiserver; the image archive holds the image;
the krew plugin's archive is the one its manifest names, and its launcher runs the wheel.

Installs are offline: the dependencies come from the wheelhouse ``make image`` filled (build/wheelhouse/deps),
the same locked wheels the image holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tomllib
import uuid
import zipfile

import pytest
import yaml

from e2e import containers, controlplane
from tests import chart_tools as ct

REPO = controlplane.REPO
WHEELHOUSE = REPO / "build" / "wheelhouse" / "deps"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
WHEEL = f"kube_upgrade_controllers-{VERSION}-py3-none-any.whl"


def run(*argv: str | pathlib.Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, argv))}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """``e2e/dist.sh`` (what ``make dist`` runs) into a directory of the test, with a file URL as the
    release's download location (the krew launcher fetches the wheel from there)."""
    containers.require_image()
    assert WHEELHOUSE.is_dir(), "no build/wheelhouse/deps: run `make image`"
    out = tmp_path_factory.mktemp("release") / "dist"
    run(REPO / "e2e" / "dist.sh", out, env={**os.environ, "RELEASE_URL": out.as_uri()})
    return out


def offline(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "UV_NO_INDEX": "1", "UV_FIND_LINKS": str(WHEELHOUSE), **env}


def test_dist_holds_every_file_with_its_checksum(dist: pathlib.Path) -> None:
    names = {path.name for path in dist.iterdir()}
    expected = {WHEEL, f"kube_upgrade_controllers-{VERSION}.tar.gz", f"kube-upgrade-controllers-{VERSION}.tgz",
                f"kube-upgrade-controllers-{VERSION}.image.tar", f"kubectl-upgrade-{VERSION}.tar.gz"}  # fmt: skip
    assert expected <= names and {"SHA256SUMS", "krew"} <= names
    lines = (line.split("  ", 1) for line in (dist / "SHA256SUMS").read_text().splitlines())
    sums = {name: digest for digest, name in lines}
    assert set(sums) == expected
    for name, digest in sums.items():
        assert hashlib.sha256((dist / name).read_bytes()).hexdigest() == digest, name


def test_the_wheel_carries_the_license_it_declares(dist: pathlib.Path) -> None:
    with zipfile.ZipFile(dist / WHEEL) as wheel:
        metadata = wheel.read(f"kube_upgrade_controllers-{VERSION}.dist-info/METADATA").decode()
        license_text = wheel.read(f"kube_upgrade_controllers-{VERSION}.dist-info/licenses/LICENSE").decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert license_text == (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in license_text
    with tarfile.open(dist / f"kube_upgrade_controllers-{VERSION}.tar.gz") as sdist:
        assert f"kube_upgrade_controllers-{VERSION}/LICENSE" in sdist.getnames()


def test_the_wheel_in_a_fresh_virtualenv_gives_both_commands(
    dist: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", "--no-index", "--find-links", WHEELHOUSE, dist / WHEEL)
    assert (
        run(venv / "bin" / "kube-upgrade-controllers", "--version") == f"kube-upgrade-controllers {VERSION}\n"
    )
    shown = run(venv / "bin" / "kubectl-upgrade", "readiness", "--help")
    assert shown.startswith("usage: kubectl upgrade readiness") and "exit codes:" in shown


def test_the_wheel_as_a_uv_tool_gives_both_commands(dist: pathlib.Path, tmp_path: pathlib.Path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH (make installs it)"
    env = offline({"UV_TOOL_DIR": str(tmp_path / "tools"), "UV_TOOL_BIN_DIR": str(tmp_path / "bin")})
    run(uv, "tool", "install", "--quiet", dist / WHEEL, env=env)
    assert run(tmp_path / "bin" / "kubectl-upgrade", "--version") == f"kubectl upgrade {VERSION}\n"
    assert "agreement" in run(tmp_path / "bin" / "kube-upgrade-controllers", "--help")


def test_the_krew_manifest_names_the_plugin_archive_whose_launcher_runs_the_wheel(
    dist: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    manifest = yaml.safe_load((dist / "krew" / "upgrade.yaml").read_text())
    assert (manifest["kind"], manifest["metadata"]["name"], manifest["spec"]["version"]) == (
        "Plugin", "upgrade", f"v{VERSION}"
    )  # fmt: skip
    (platform,) = manifest["spec"]["platforms"]
    archive = dist / f"kubectl-upgrade-{VERSION}.tar.gz"
    assert platform["uri"] == f"{dist.as_uri()}/{archive.name}" and platform["bin"] == "kubectl-upgrade"
    assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    with tarfile.open(archive) as plugin:
        assert sorted(plugin.getnames()) == ["LICENSE", "kubectl-upgrade"]
        assert plugin.getmember("kubectl-upgrade").mode == 0o755
        plugin.extractall(tmp_path / "plugin", filter="data")
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH (make installs it)"
    path = f"{tmp_path / 'plugin'}{os.pathsep}{pathlib.Path(uv).parent}{os.pathsep}/usr/bin:/bin"
    env = offline({"PATH": path, "UV_TOOL_DIR": str(tmp_path / "tools")})
    assert (
        run(tmp_path / "plugin" / "kubectl-upgrade", "--version", env=env) == f"kubectl upgrade {VERSION}\n"
    )


def test_the_packaged_chart_lints_and_installs_dry_run(
    dist: pathlib.Path, control_plane: controlplane.ControlPlane
) -> None:
    chart = dist / f"kube-upgrade-controllers-{VERSION}.tgz"
    ct.helm("lint", "--strict", chart)
    release, namespace = f"dist-{uuid.uuid4().hex[:6]}", f"dist-{uuid.uuid4().hex[:6]}"
    shown = ct.helm("install", release, chart, "--namespace", namespace, "--create-namespace", "--dry-run=server",
                    "--kubeconfig", control_plane.kubeconfig).stdout  # fmt: skip
    assert "STATUS: pending-install" in shown
    assert f"kube-upgrade-controllers readiness --release {release} -n {namespace}" in shown  # NOTES.txt


def test_the_image_archive_holds_the_image(dist: pathlib.Path) -> None:
    with tarfile.open(dist / f"kube-upgrade-controllers-{VERSION}.image.tar") as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        (image,) = json.load(member)
    assert f"kube-upgrade-controllers:{VERSION}" in image["RepoTags"]

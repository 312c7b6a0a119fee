"""The real image (``make image``), run as the chart runs it, against the real control plane.

``make test`` builds the image before pytest; without it these tests fail with "run `make image`".
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import uuid
from typing import Any

import pytest

from controllers.kube import client, resources
from e2e import cluster, containers, controlplane

NODES = resources.NODES
TAINT_KEY = "upgrade.kube-upgrade-controllers.io/outdated"


@pytest.fixture(scope="module")
def image() -> str:
    return containers.require_image()


@pytest.fixture
def run(control_plane: controlplane.ControlPlane, tmp_path: pathlib.Path, image: str) -> containers.Run:
    return containers.Run(
        kubeconfig=containers.write_inline_kubeconfig(control_plane, tmp_path / "kubeconfig")
    )


@pytest.mark.parametrize("script", containers.console_scripts())
def test_every_console_script_answers_help_read_only_as_nonroot(image: str, script: str) -> None:
    argv = ["docker", "run", "--rm", *containers.RESTRICTED, containers.IMAGE, script, "--help"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    shown = script.replace("kubectl-", "kubectl ", 1)  # the plug-in names itself as kubectl runs it
    assert result.stdout.startswith(f"usage: {shown} "), result.stdout[:200]
    assert result.stderr == ""


def test_the_image_declares_a_numeric_non_root_user(image: str) -> None:
    config = json.loads(containers.inspect(image, "{{json .Config}}"))
    assert config["User"] == "65532:65532"  # numeric: runAsNonRoot can verify it
    id_output = subprocess.run(
        ["docker", "run", "--rm", containers.IMAGE, "id", "-u"], capture_output=True, text=True, check=True
    )
    assert id_output.stdout.strip() == "65532"


def test_only_the_locked_runtime_set_is_installed(image: str) -> None:
    """The image's virtualenv holds exactly uv.lock's runtime packages (at their locked versions) and the
    project: no pip, no development tools."""
    listing = subprocess.run(
        ["docker", "run", "--rm", containers.IMAGE, "python3", "-c", LIST_DISTRIBUTIONS],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {normalise(requirement) for requirement in json.loads(listing.stdout)}
    exported = subprocess.run(
        [
            "uv",
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-hashes",
            "--format",
            "requirements.txt",
        ],
        cwd=controlplane.REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    locked = {
        normalise(line.split(";")[0].strip())
        for line in exported.stdout.splitlines()
        if line and not line.startswith(("#", " "))
    }
    assert installed == {*locked, normalise("kube-upgrade-controllers==0.1.0")}


LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted(f'{d.metadata[\"Name\"]}=={d.version}' for d in m.distributions())))"
)


def normalise(requirement: str) -> str:
    """``Name==version`` with the name normalised as PEP 503 does."""
    name, version = requirement.split("==")
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


async def test_node_tainter_from_the_image_acts_like_the_one_from_the_virtualenv(
    kube: client.Kube, nodes: cluster.Nodes, namespace: str, kubeconfig: str, run: containers.Run
) -> None:
    """The same ``--once`` decision and the same taints, whether node-tainter runs from the image (read-only
    root, uid 65532, host network) or from the virtualenv; and the container writes nothing."""
    await nodes.create_many([f"img-master-{i}" for i in range(3)], version="v1.36.2", master=True)
    await nodes.create("img-old", version="v1.35.4")
    await nodes.create("img-new", version="v1.36.2")
    env = {"NODE_TAINTER_NAMESPACE": namespace, "NODE_TAINTER_MIN_MASTERS": "3"}

    once = ("node-tainter", "--once", "--kubeconfig", containers.KUBECONFIG_IN_CONTAINER)
    env["NODE_TAINTER_RELEASE"] = "from-image"

    # As the chart runs it (read-only root, uid 65532, a tmpfs on /tmp): it decides without writing.
    dry = run(*once, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert await our_taints(kube) == {}

    # For real, with a writable root this time: `docker diff` shows that it wrote nothing there.
    name = f"kuc-image-test-{uuid.uuid4().hex[:8]}"
    try:
        ran = dataclasses.replace(run, restricted=False)(*once, name=name, env=env)
        assert ran.returncode == 0, ran.stderr
        assert containers.changed_paths(name, ignore=[containers.KUBECONFIG_IN_CONTAINER]) == []
    finally:
        containers.remove(name)
    from_image = json.loads(ran.stdout)
    assert decision(json.loads(dry.stdout)) == decision(from_image)
    taints_from_image = await our_taints(kube)
    assert taints_from_image == {
        "img-old": [{"key": TAINT_KEY, "value": "v1.35.4", "effect": "PreferNoSchedule"}]
    }

    await kube.patch(NODES.path(name="img-old"), {"spec": {"taints": None}})
    from_venv = run_from_virtualenv(kubeconfig, {**env, "NODE_TAINTER_RELEASE": "from-venv"})
    assert await our_taints(kube) == taints_from_image
    assert decision(from_image) == decision(from_venv) == {("img-old", "taint")}


def run_from_virtualenv(kubeconfig: str, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "controllers.node_tainter", "--once", "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def decision(report: dict[str, Any]) -> set[tuple[str, str]]:
    assert report["agreed"] and report["version"] == "v1.36.2" and report["failed"] == []
    return {(change["node"], change["action"]) for change in report["changes"]}


async def our_taints(kube: client.Kube) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    async for page in kube.list_pages(NODES.path()):
        for node in page["items"]:
            mine = [t for t in node.get("spec", {}).get("taints") or [] if t["key"] == TAINT_KEY]
            if mine:
                found[node["metadata"]["name"]] = mine
    return found

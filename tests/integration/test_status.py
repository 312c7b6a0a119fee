"""``kube-upgrade-controllers status`` against the real fixture: the table from real state ConfigMaps."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys

import pytest

from controllers import registry
from controllers.kube import client, state

SCRIPT = pathlib.Path(sys.executable).parent / "kube-upgrade-controllers"


async def status(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), "status", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=150)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def write_state(kube: client.Kube, namespace: str, controller: str, **data: str) -> None:
    name = state.state_name(release="kuc", controller=controller)
    current = await state.read(kube, namespace=namespace, name=name)
    await state.update(kube, current, data, controller=controller)


async def test_status_shows_each_controller_state(kube: client.Kube, kubeconfig: str, namespace: str) -> None:
    await write_state(kube, namespace, "node-tainter", version="v1.36.3", phase="done", progress="40/40")
    await write_state(
        kube, namespace, "uso-runner", version="v1.35.2", phase="failed", progress="3/57",
        lastError="widgets.example.com: 503 Service Unavailable",
    )  # fmt: skip
    # An unrelated ConfigMap named like a state but without the labels is not shown, nor one with the labels
    # that is no state: the chart's config ConfigMap of a controller carries them too.
    await kube.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": "kuc-addon-updater-state"}, "data": {"phase": "fake"}},
    )
    labels = {state.PART_OF_LABEL: state.PART_OF, state.CONTROLLER_LABEL: "node-tainter"}
    await kube.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {
            "metadata": {"name": "kuc-kube-upgrade-controllers-node-tainter", "labels": labels},
            "data": {"config.yaml": "{}"},
        },
    )

    code, out, err = await status("--kubeconfig", kubeconfig, "--namespace", namespace, "-o", "wide")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("CONTROLLER")
    rows = {line.split()[0]: line for line in lines[1:]}
    assert list(rows) == list(registry.EVERY_CLUSTER)
    assert "no state" in rows["addon-updater"] and "fake" not in out
    assert (
        len(lines) == 1 + len(registry.EVERY_CLUSTER)
        and "kuc-kube-upgrade-controllers-node-tainter " not in out
    )
    assert rows["node-tainter"].split()[1:6] == [
        namespace,
        "kuc-node-tainter-state",
        "v1.36.3",
        "done",
        "40/40",
    ]
    assert rows["uso-runner"].endswith("widgets.example.com: 503 Service Unavailable")

    code, out, err = await status("--kubeconfig", kubeconfig, "--namespace", namespace, "--output", "json")
    assert code == 0, err
    by_controller = {item["controller"]: item for item in json.loads(out)}
    assert by_controller["uso-runner"]["progress"] == "3/57"
    assert by_controller["node-tainter"]["updatedAt"]  # written by state.update
    assert by_controller["leader-watchdog"]["phase"] == "no state"


@pytest.fixture
def unauthenticated_kubeconfig(kubeconfig: str, tmp_path: pathlib.Path) -> str:
    """The fixture's kubeconfig without its client certificate: every request is 401/403."""
    broken = tmp_path / "kubeconfig"
    broken.write_text(pathlib.Path(kubeconfig).read_text().replace("client-certificate", "x-unused"))
    return str(broken)


async def test_status_reports_an_api_error(unauthenticated_kubeconfig: str) -> None:
    code, out, err = await status("--kubeconfig", unauthenticated_kubeconfig, "--namespace", "default")
    assert code == 3  # could not check
    assert err.startswith("kube-upgrade-controllers status: permission missing at https://") and out == ""

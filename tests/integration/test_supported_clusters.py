"""A cluster without master Nodes, as EKS, GKE and AKS are (docs/supported-clusters.md): on the real apiserver,
with a master selector no Node matches. The controllers that act on an agreement hold still, upgrade-readiness
has no target until it is given one, and the watchdog's apiserver check calls the apiserver itself a stale
master (a critical finding) while its worker heartbeats check does not."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
import uuid

import pytest

from controllers.kube import client, resources
from e2e import cluster

BIN = pathlib.Path(sys.executable).parent
TAINT_KEY = "upgrade.kube-upgrade-controllers.io/outdated"  # node-tainter's


@pytest.fixture
async def managed(nodes: cluster.Nodes) -> tuple[list[str], str]:
    """Workers, and a master selector no Node matches: a managed control plane as the suite sees it."""
    label = f"managed-{uuid.uuid4().hex[:6]}"
    workers = [f"{label}-w{i}" for i in range(2)]
    for name in workers:
        await nodes.create(name, version="v1.35.0")
    return workers, f"--master-selectors={cluster.CONTROL_PLANE},{label}"


async def run(script: str, *argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(BIN / script), *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def once(kubeconfig: str, namespace: str, selector: str) -> list[str]:
    return ["--once", f"--kubeconfig={kubeconfig}", f"--namespace={namespace}", selector,
            "--metrics-bind-address=0", "--health-probe-bind-address=0"]  # fmt: skip


async def test_the_controllers_that_act_on_an_agreement_hold_still(
    kube: client.Kube, kubeconfig: str, namespace: str, managed: tuple[list[str], str]
) -> None:
    workers, selector = managed
    code, out, _ = await run("kube-upgrade-controllers", "agreement", "--kubeconfig", kubeconfig, selector)
    assert code == 1 and out.startswith("masters do NOT agree: 0 master(s) found, at least 1 required")
    for script in ("node-tainter", "uso-runner"):
        code, out, err = await run(script, *once(kubeconfig, namespace, selector))
        assert code == 1, (script, err)
        assert "0 master(s) found" in out.splitlines()[-1], (script, out)
    for name in workers:
        node = await kube.get(resources.NODES.path(name=name))
        assert TAINT_KEY not in {t["key"] for t in node["spec"].get("taints") or []}, node["spec"]


async def test_upgrade_readiness_needs_the_target_minor(
    kubeconfig: str, namespace: str, managed: tuple[list[str], str]
) -> None:
    _, selector = managed
    argv = ["readiness", "--kubeconfig", kubeconfig, "-n", namespace, "--checks=kubelet-skew", selector]
    code, out, _ = await run("kube-upgrade-controllers", *argv, "-o", "json")
    assert code == 1
    document = json.loads(out)
    assert document["target"] == "" and document["targetReason"] == "no master reports a parseable version"
    code, out, err = await run("kube-upgrade-controllers", *argv, "--target-version", "v1.37")
    assert code == 0, err  # the workers at 1.35 are within the skew policy of 1.37
    assert out.startswith("Upgradeable to 1.37 (--target-version 1.37)")


async def test_the_watchdog_needs_only_its_worker_checks(
    kubeconfig: str, namespace: str, managed: tuple[list[str], str]
) -> None:
    _, selector = managed
    base = [*once(kubeconfig, namespace, selector), "--dry-run"]
    code, out, _ = await run("leader-watchdog", *base, "--checks=apiservers")
    assert code == 1  # critical: the apiserver itself is on no master Node
    findings = json.loads(out.splitlines()[-1])["findings"]
    assert {f["check"] for f in findings} == {"stale-apiserver"}
    assert all("(masters: none)" in f["evidence"] for f in findings)
    code, out, err = await run("leader-watchdog", *base, "--checks=heartbeats")
    assert code == 0, err
    assert not [f for f in json.loads(out.splitlines()[-1])["findings"] if f["severity"] == "critical"]

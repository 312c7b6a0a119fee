"""``kube-upgrade-controllers run``: several controllers in one process, each with its own config, state,
Lease and metrics, behind one client and one HTTP server (a real process on the real control plane)."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import uuid

from controllers.kube import client, election, resources
from controllers.node_tainter import logic as tainter_logic
from controllers.structs import leases
from e2e import cluster
from tests import harness

COMMAND = str(pathlib.Path(sys.executable).parent / "kube-upgrade-controllers")
METRICS = ("leader", "masters_agreed")


def env(tmp_path: pathlib.Path, label: str) -> dict[str, str]:
    """Each controller's own settings: node-tainter's from its config file, the watchdog's from its env."""
    tainter_config = tmp_path / "node-tainter.yaml"
    tainter_config.write_text("taintKey: example.com/combined\nconcurrency: 2\n")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NODE_TAINTER_", "LEADER_WATCHDOG_"))},
        "NODE_TAINTER_CONFIG": str(tainter_config),
        "LEADER_WATCHDOG_CHECKS": "leaders",
        "LEADER_WATCHDOG_LEADER_LEASES": f"kube-system/{label}-scheduler",
    }


async def test_two_controllers_in_one_process(
    kubeconfig: str, kube: client.Kube, namespace: str, nodes: cluster.Nodes, tmp_path: pathlib.Path
) -> None:
    label = f"combined-{uuid.uuid4().hex[:6]}"
    await nodes.create(f"{label}-m0", version="v1.36.1", master=True, labels={label: ""})
    await nodes.create(f"{label}-w0", version="v1.35.2")
    common = [
        f"--kubeconfig={kubeconfig}", f"--namespace={namespace}", f"--master-selectors={cluster.CONTROL_PLANE},{label}",
        "--settle-seconds=0", "--leader-elect", "--lease-duration-seconds=4", "--renew-deadline-seconds=3",
        "--retry-period-seconds=0.5", "--no-metrics-secure",
    ]  # fmt: skip
    with harness.serve(
        COMMAND, "run", "node-tainter", "leader-watchdog", *common, env=env(tmp_path, label)
    ) as (
        process,
        port,
    ):
        await harness.eventually(lambda: harness.scrape(port, "/readyz")[0] == 200, what="/readyz")

        def leading_and_agreed() -> bool:  # one server, every controller's metrics
            text = harness.scrape(port)[1]
            names = [
                f"{prefix}_{metric}" for prefix in ("node_tainter", "leader_watchdog") for metric in METRICS
            ]
            return all(harness.sample(text, name) == 1 for name in names)

        await harness.eventually(leading_and_agreed, what="both controllers leading, the masters agreed")

        # node-tainter acts with the options of its own config file.
        async def tainted() -> bool:
            node = await kube.get(resources.NODES.path(name=f"{label}-w0"))
            return any(t["key"] == "example.com/combined" for t in node["spec"].get("taints") or [])

        await harness.eventually(tainted, what="the worker tainted under the configured key")
        status = json.loads(harness.scrape(port, "/status")[1])
        assert set(status) == {"node-tainter", "leader-watchdog"}
        assert json.loads(harness.scrape(port, "/status/node-tainter")[1])["agreed"] is True
        # The watchdog has its own options too: only its configured (missing) leader Lease is checked.
        checked = [finding["object"] for finding in status["leader-watchdog"]["findings"]]
        assert checked == [f"Lease kube-system/{label}-scheduler"]

        # Each controller leads through its own Lease and writes its own state.
        release = "kube-upgrade-controllers"
        for name in ("node-tainter", "leader-watchdog"):
            lease = await election.get(kube, namespace=namespace, name=f"{release}-{name}")
            assert lease is not None and leases.holder(lease)
        state = await kube.get(
            resources.CONFIGMAPS.path(namespace=namespace, name=f"{release}-node-tainter-state")
        )
        assert state["data"]["taint"] == f"example.com/combined:{tainter_logic.EFFECTS[0]}"

        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    for name in ("node-tainter", "leader-watchdog"):  # both released at once
        lease = await election.get(kube, namespace=namespace, name=f"{release}-{name}")
        assert lease is not None and leases.holder(lease) == ""


async def test_once_runs_each_controller_once_and_exits_with_the_worst_code(
    kubeconfig: str, namespace: str, nodes: cluster.Nodes, tmp_path: pathlib.Path
) -> None:
    label = f"combined-{uuid.uuid4().hex[:6]}"
    selectors = f"--master-selectors={cluster.CONTROL_PLANE},{label}"
    await nodes.create(f"{label}-m0", version="v1.36.1", master=True, labels={label: ""})
    await nodes.create(f"{label}-m1", version="v1.35.2", master=True, labels={label: ""})

    def once(*names: str) -> subprocess.CompletedProcess[str]:
        argv = [
            COMMAND,
            "run",
            *names,
            "--once",
            f"--kubeconfig={kubeconfig}",
            f"--namespace={namespace}",
            selectors,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env(tmp_path, label))

    # The masters disagree: node-tainter cannot act (1); the watchdog reports the missing Lease, a warning (0).
    disagreeing = once("node-tainter", "leader-watchdog")
    assert disagreeing.returncode == 1, disagreeing.stderr
    reports = [json.loads(line) for line in disagreeing.stdout.splitlines()]
    assert reports[0]["agreed"] is False and "masters disagree" in reports[0]["reason"]
    assert [f["check"] for f in reports[1]["findings"]] == ["leader-missing"]
    assert once("leader-watchdog").returncode == 0
    assert once("no-such-controller").returncode == 2


def test_run_help_offers_only_what_run_accepts() -> None:
    """Each controller reads its own config file from <CONTROLLER>_CONFIG: ``run`` has no --config, in its
    help or on its command line."""
    shown = subprocess.run([COMMAND, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    assert "--kubeconfig" in shown.stdout and "--leader-elect" in shown.stdout
    assert "--config" not in shown.stdout
    refused = subprocess.run(
        [COMMAND, "run", "--config=x.yaml", "--kubeconfig=/nonexistent"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "--config=x.yaml" in refused.stderr

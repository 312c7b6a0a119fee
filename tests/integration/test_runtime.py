"""The shared runtime as real processes: leader election, /metrics and probes, SIGTERM, --once, bad config."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid

import pytest

from controllers.kube import client, election, resources
from controllers.structs import leases, times
from e2e import cluster
from tests import harness

LEASE_DURATION = 4.0
RETRY_PERIOD = 0.5


def sample_controller(*args: str, kubeconfig: str) -> contextlib.AbstractContextManager[harness.Served]:
    """Plain HTTP (--no-metrics-secure): these tests read its metrics; test_metrics_secure covers the default."""
    return harness.serve(
        sys.executable,
        "-m",
        "tests.sample_controller",
        "--kubeconfig",
        kubeconfig,
        "--no-metrics-secure",
        *args,
    )


async def test_two_replicas_one_leader_and_fast_takeover_after_kill_9(
    kubeconfig: str, kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    label = f"runtime-{uuid.uuid4().hex[:8]}"
    await nodes.create(f"{label}-m0", version="v1.36.0", master=True, labels={label: ""})
    flags = (
        "--leader-elect", f"--namespace={namespace}", f"--lease-duration-seconds={LEASE_DURATION}",
        "--renew-deadline-seconds=3", f"--retry-period-seconds={RETRY_PERIOD}", "--settle-seconds=0",
        f"--master-selectors={cluster.CONTROL_PLANE},{label}",
    )  # fmt: skip
    with (
        sample_controller(*flags, kubeconfig=kubeconfig) as (first, first_port),
        sample_controller(*flags, kubeconfig=kubeconfig) as (second, second_port),
    ):

        def leaders() -> list[int]:
            return [
                port
                for port in (first_port, second_port)
                if harness.sample(harness.scrape(port)[1], "sample_controller_leader") == 1
            ]

        await harness.eventually(lambda: len(leaders()) == 1, timeout=30)
        await asyncio.sleep(2 * RETRY_PERIOD)
        assert len(leaders()) == 1  # still exactly one
        leader_port = leaders()[0]
        leader, follower, follower_port = (
            (first, second, second_port) if leader_port == first_port else (second, first, first_port)
        )
        _, text = harness.scrape(leader_port)
        assert harness.sample(text, "sample_controller_masters") == 1
        assert harness.sample(text, "sample_controller_masters_agreed") == 1
        assert 'sample_controller_agreed_version_info{version="v1.36.0"} 1.0' in text
        assert harness.scrape(follower_port, "/readyz")[0] == 200
        lease = await election.get(
            kube, namespace=namespace, name="kube-upgrade-controllers-sample-controller"
        )
        assert lease is not None
        assert leases.holder(lease)

        os.kill(leader.pid, signal.SIGKILL)
        takeover = await harness.eventually(
            lambda: harness.sample(harness.scrape(follower_port)[1], "sample_controller_leader") == 1,
            timeout=30,
        )
        print(
            f"\ntakeover after kill -9: {takeover:.2f} s (lease {LEASE_DURATION} s + retry {RETRY_PERIOD} s)"
        )
        assert takeover <= LEASE_DURATION + RETRY_PERIOD + 1.0  # one second for the scrape and slow CI
        assert follower.poll() is None
        state = await kube.get(
            resources.CONFIGMAPS.path(
                namespace=namespace, name="kube-upgrade-controllers-sample-controller-state"
            )
        )
        assert state["data"]["version"] == "v1.36.0"


async def test_a_leader_whose_lease_is_taken_goes_back_to_standby_and_leads_again(
    kubeconfig: str, kube: client.Kube, namespace: str
) -> None:
    """Losing leadership is not a crash: the replica stops its work, stays up as a standby in the same
    process, and takes the Lease again once it is free."""
    flags = (
        "--leader-elect", f"--namespace={namespace}", "--lease-duration-seconds=3",
        "--renew-deadline-seconds=2", "--retry-period-seconds=0.3",
    )  # fmt: skip
    name = "kube-upgrade-controllers-sample-controller"
    path = resources.LEASES.path(namespace=namespace, name=name)

    def metric(port: int, sample: str) -> float | None:
        return harness.sample(harness.scrape(port)[1], sample)

    with sample_controller(*flags, kubeconfig=kubeconfig) as (process, port):
        await harness.eventually(lambda: metric(port, "sample_controller_leader") == 1, timeout=30)
        # Another replica takes the Lease (as after a renewal that came too late): a long claim of its own.
        lease = await kube.get(path)
        lease["spec"].update(
            {"holderIdentity": "intruder_1", "leaseDurationSeconds": 3600, "renewTime": times.micro_time()}
        )
        await kube.replace(path, lease)
        await harness.eventually(lambda: metric(port, "sample_controller_leader") == 0, timeout=30)
        assert metric(port, "sample_controller_leadership_lost_total") == 1
        assert harness.scrape(port, "/healthz")[0] == 200
        assert harness.scrape(port, "/readyz")[0] == 200  # a standby is ready
        assert process.poll() is None
        # The intruder goes away: the same process leads again.
        await election.release(kube, namespace=namespace, name=name, identity="intruder_1")
        await harness.eventually(lambda: metric(port, "sample_controller_leader") == 1, timeout=30)
        assert process.poll() is None
        assert metric(port, "sample_controller_restarts_total") == 0


async def test_sigterm_releases_the_lease_at_once(kubeconfig: str, kube: client.Kube, namespace: str) -> None:
    flags = (
        "--leader-elect",
        f"--namespace={namespace}",
        "--lease-duration-seconds=60",
        "--retry-period-seconds=0.5",
    )
    with sample_controller(*flags, kubeconfig=kubeconfig) as (process, port):
        await harness.eventually(
            lambda: harness.sample(harness.scrape(port)[1], "sample_controller_leader") == 1, timeout=30
        )
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0
    lease = await election.get(kube, namespace=namespace, name="kube-upgrade-controllers-sample-controller")
    assert lease is not None
    assert leases.holder(lease) == ""  # released: a successor need not wait 60 s


async def test_once_and_dry_run_exit_codes(kubeconfig: str, nodes: cluster.Nodes) -> None:
    label = f"runtime-{uuid.uuid4().hex[:8]}"
    selector = f"--master-selectors={cluster.CONTROL_PLANE},{label}"
    await nodes.create(f"{label}-m0", version="v1.36.0", master=True, labels={label: ""})
    await nodes.create(f"{label}-m1", version="v1.35.0", master=True, labels={label: ""})

    def once(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [
            sys.executable,
            "-m",
            "tests.sample_controller",
            "--kubeconfig",
            kubeconfig,
            "--once",
            selector,
            *extra,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    disagreeing = await asyncio.to_thread(once)
    assert disagreeing.returncode == 1
    assert "masters disagree" in disagreeing.stdout
    await nodes.set_status(f"{label}-m1", version="v1.36.0")
    assert (await asyncio.to_thread(once, "--dry-run")).returncode == 0


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--min-masters=0"], {}, "--min-masters"),
        (["--settle-seconds=soon"], {}, "--settle-seconds"),
        (["--version-source=etcd"], {}, "--version-source"),
        (["--master-selectors=a in (b)"], {}, "--master-selectors"),
        ([], {"SAMPLE_CONTROLLER_LEADER_ELECT": "maybe"}, "SAMPLE_CONTROLLER_LEADER_ELECT"),
        (["--no-such-flag"], {}, "--no-such-flag"),
        # Leader election timings client-go refuses: two leaders at once would become possible.
        (["--lease-duration-seconds=10", "--renew-deadline-seconds=10"], {}, "must be greater than --renew"),
        ([], {"SAMPLE_CONTROLLER_RENEW_DEADLINE_SECONDS": "20"}, "must be greater than --renew-deadline"),
        (["--renew-deadline-seconds=2", "--retry-period-seconds=2"], {}, "x 1.2"),
    ],
)
def test_bad_config_exits_2_naming_it_before_any_api_call(
    argv: list[str], env: dict[str, str], named: str
) -> None:
    # The kubeconfig points nowhere: exit 2 proves the check comes before any API call.
    result = subprocess.run(
        [sys.executable, "-m", "tests.sample_controller", "--kubeconfig", "/nonexistent/kubeconfig", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 2
    assert named in result.stderr


def test_help_lists_every_flag_with_its_env_var() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.sample_controller", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for flag, env in (
        ("--kubeconfig", "SAMPLE_CONTROLLER_KUBECONFIG"),
        ("--settle-seconds", "SAMPLE_CONTROLLER_SETTLE_SECONDS"),
        ("--leader-elect", "SAMPLE_CONTROLLER_LEADER_ELECT"),
        ("--workers", "SAMPLE_CONTROLLER_WORKERS"),
    ):
        assert flag in result.stdout
        assert env in result.stdout.replace("\n", "").replace(" ", "")

"""The one-shot commands as a pipeline runs them, against the real apiserver: each exit code (0 ready or
agreed, 1 blocked or not agreed, 2 usage or configuration, 3 could not check), each output format, a
missing kubeconfig and an unreachable, unauthenticated or forbidding apiserver (one line, the right code,
within seconds), and the acknowledgements of a release installed by helm found where the chart put them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pathlib
import shutil
import sys
import time
import uuid
from typing import Any

import pytest
import yaml

from controllers.cli import ack, releases
from controllers.kube import client, resources
from controllers.upgrade_readiness import logic
from e2e import cluster, controlplane
from tests import chart_tools as ct

BIN = pathlib.Path(sys.executable).parent
FORMATS = ("table", "wide", "json", "yaml", "markdown")
MASTER, IN_SKEW, OUT_OF_SKEW = "v1.36.3", "v1.35.0", "v1.32.1"  # the target 1.37: 4 minors below it blocks
QUICK = 15.0  # seconds a failure may take to be reported, Python's start included (on 2 busy cores)


@dataclasses.dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    seconds: float

    def document(self, fmt: str) -> Any:
        return json.loads(self.out) if fmt == "json" else yaml.safe_load(self.out)


async def cli(*argv: str, script: str = "kube-upgrade-controllers", env: dict[str, str] | None = None) -> Ran:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        str(BIN / script), *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode(), time.monotonic() - started)


@pytest.fixture
def run_label() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def masters(nodes: cluster.Nodes, run_label: str) -> list[str]:
    """This test's masters (only they match its selector) and a worker inside the skew policy."""
    names = [f"{run_label}-m{i}" for i in range(2)]
    for name in names:
        await nodes.create(name, version=MASTER, master=True, labels={run_label: ""})
    await nodes.create(f"{run_label}-w0", version=IN_SKEW)
    return names


def selector(run_label: str) -> str:
    return f"--master-selectors={cluster.CONTROL_PLANE},{run_label}"


def readiness_argv(kubeconfig: str, namespace: str, run_label: str) -> list[str]:
    """``readiness`` of the kubelet-skew check alone, against this test's masters."""
    return [
        "readiness",
        "--kubeconfig",
        kubeconfig,
        "-n",
        namespace,
        "--checks=kubelet-skew",
        selector(run_label),
    ]


def check_readiness(ran: Ran, fmt: str, *, upgradeable: bool, subject: str = "") -> None:
    assert ran.code == (0 if upgradeable else 1), (fmt, ran.out, ran.err)
    assert ran.err == ""
    if fmt in ("json", "yaml"):
        document = ran.document(fmt)
        assert document["upgradeable"] is upgradeable and document["target"] == "1.37"
        (check,) = document["checks"]
        assert check["status"] == ("pass" if upgradeable else "blocked")
        assert [f["subject"] for f in check["findings"]] == ([] if upgradeable else [subject])
        assert set(document["acknowledgementsConfigMap"]) == {"namespace", "name", "foundBy", "exists"}
        return
    verdict = "Upgradeable" if upgradeable else "NOT upgradeable"
    lines = [line for line in ran.out.splitlines() if line]  # markdown: a paragraph each
    assert lines[0] == f"{verdict} to 1.37 (the masters' minor 1.36 + 1)"
    assert lines[1].startswith("acknowledgements: ConfigMap ")
    if fmt == "markdown":
        assert "| CHECK | STATUS | FINDINGS | REASON |" in ran.out
        assert f"| kubelet-skew | {'pass' if upgradeable else 'blocked'} |" in ran.out
    else:
        assert "CHECK         STATUS" in ran.out
    if not upgradeable:
        assert subject in ran.out


async def test_readiness_exit_codes_in_every_format(
    kubeconfig: str, namespace: str, nodes: cluster.Nodes, masters: list[str], run_label: str
) -> None:
    argv = readiness_argv(kubeconfig, namespace, run_label)
    for fmt in FORMATS:
        check_readiness(await cli(*argv, "-o", fmt), fmt, upgradeable=True)
    old = f"{run_label}-w1"
    await nodes.create(old, version=OUT_OF_SKEW)
    for fmt in FORMATS:
        check_readiness(await cli(*argv, "-o", fmt), fmt, upgradeable=False, subject=f"Node {old}")
    # The same through the kubectl plugin's script (kubectl runs it for `kubectl upgrade readiness`).
    check_readiness(await cli(*argv, script="kubectl-upgrade"), "table", upgradeable=False, subject=old)


async def test_readiness_table_shows_a_few_findings_and_wide_all(
    kubeconfig: str, namespace: str, nodes: cluster.Nodes, masters: list[str], run_label: str
) -> None:
    old = [f"{run_label}-old{i}" for i in range(8)]
    await nodes.create_many(old, version=OUT_OF_SKEW)
    argv = readiness_argv(kubeconfig, namespace, run_label)
    brief, wide = await cli(*argv), await cli(*argv, "-o", "wide")
    assert brief.code == wide.code == 1
    assert sum(f"Node {name}" in brief.out for name in old) == 5 and "(+3 more)" in brief.out
    assert all(f"Node {name}" in wide.out for name in old) and "-o wide lists" not in wide.out


async def test_agreement_exit_codes_in_every_format(
    kubeconfig: str, masters: list[str], run_label: str
) -> None:
    argv = ["agreement", "--kubeconfig", kubeconfig, selector(run_label)]
    for fmt in ("table", "json", "yaml", "markdown"):
        agreed = await cli(*argv, "--min-masters=2", "-o", fmt)
        assert agreed.code == 0 and agreed.err == "", (fmt, agreed.err)
        short = await cli(*argv, "--min-masters=3", "-o", fmt)
        assert short.code == 1 and short.err == "", (fmt, short.err)
        if fmt in ("json", "yaml"):
            assert agreed.document(fmt)["agreed"] is True and agreed.document(fmt)["version"] == MASTER
            assert [m["name"] for m in agreed.document(fmt)["masters"]] == masters
            assert "at least 3 required" in short.document(fmt)["reason"]
        else:
            assert agreed.out.startswith(f"masters agree on {MASTER}")
            assert short.out.startswith("masters do NOT agree: 2 master(s) found, at least 3 required")
            assert all(name in agreed.out for name in masters)
    assert (await cli(*argv, "-o", "wide")).code == 2  # agreement has nothing more to show


async def test_status_in_every_format(kubeconfig: str, namespace: str) -> None:
    for fmt in FORMATS:
        ran = await cli("status", "--kubeconfig", kubeconfig, "-n", namespace, "-o", fmt)
        assert ran.code == 0 and ran.err == "", (fmt, ran.err)
        if fmt in ("json", "yaml"):
            assert {row["phase"] for row in ran.document(fmt)} == {"no state"}
        else:
            assert "CONTROLLER" in ran.out and ("STATE CONFIGMAP" in ran.out) == (fmt in ("wide", "markdown"))


# --- 2: usage and configuration -----------------------------------------------------------------------------


def one_line(ran: Ran, code: int, *needles: str) -> None:
    assert ran.code == code and ran.out == "", ran
    assert len(ran.err.splitlines()) == 1 and "Traceback" not in ran.err, ran.err
    assert all(needle in ran.err for needle in needles), ran.err
    assert ran.seconds < QUICK, ran.seconds


@pytest.mark.parametrize("command", ["readiness", "status", "agreement"])
async def test_a_missing_kubeconfig_is_one_line_and_exit_2(command: str, tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "kubeconfig")
    one_line(await cli(command, "--kubeconfig", missing), 2, f"kubeconfig {missing}: no such file")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": missing}
    one_line(await cli(command, env=env), 2, f"KUBECONFIG={missing}: no such file")
    del env["KUBECONFIG"]
    one_line(await cli(command, env=env), 2, "no kubeconfig", str(tmp_path / ".kube" / "config"))


async def test_a_bad_kubeconfig_or_context_is_one_line_and_exit_2(
    kubeconfig: str, tmp_path: pathlib.Path
) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: [unclosed\n")
    one_line(await cli("status", "--kubeconfig", str(broken)), 2, f"kubeconfig {broken}:")
    one_line(await cli("status", "--kubeconfig", kubeconfig, "--context", "nope"), 2, "nope", kubeconfig)


async def test_usage_errors_are_exit_2(kubeconfig: str) -> None:
    one_line(
        await cli("readiness", "--kubeconfig", kubeconfig, "--output", "csv"), 2, "invalid choice: 'csv'"
    )
    one_line(await cli("readiness", "--kubeconfig", kubeconfig, "--target-version=soon"), 2, "'soon'")
    one_line(
        await cli("agreement", "--kubeconfig", kubeconfig, "--master-selectors", "a in (b"), 2, "selector"
    )


# --- 3: could not check -------------------------------------------------------------------------------------


def kubeconfig_with(
    path: pathlib.Path, base: str, *, server: str | None = None, token: str | None = None
) -> str:
    config = yaml.safe_load(pathlib.Path(base).read_text())
    if server:
        config["clusters"][0]["cluster"]["server"] = server
    if token:
        config["users"][0]["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize("command", ["readiness", "status", "agreement"])
async def test_an_unreachable_apiserver_is_one_line_and_exit_3(
    command: str, kubeconfig: str, tmp_path: pathlib.Path
) -> None:
    port = controlplane.free_port()  # nothing listens there
    dead = kubeconfig_with(tmp_path / "dead", kubeconfig, server=f"https://127.0.0.1:{port}")
    one_line(await cli(command, "--kubeconfig", dead), 3, f"cannot reach https://127.0.0.1:{port}", dead)


async def test_refused_credentials_and_a_missing_permission_are_exit_3(
    kubeconfig: str, control_plane: controlplane.ControlPlane, tmp_path: pathlib.Path
) -> None:
    bogus = kubeconfig_with(tmp_path / "bogus", kubeconfig, token="not-a-token")
    one_line(await cli("readiness", "--kubeconfig", bogus), 3, "refused the credentials: 401", bogus)
    nobody = str(control_plane.user_kubeconfig(f"nobody-{uuid.uuid4().hex[:6]}"))  # no RBAC at all
    for command in ("readiness", "status", "agreement"):
        one_line(await cli(command, "--kubeconfig", nobody), 3, "permission missing at https://", "forbidden")
    debug = await cli("status", "--kubeconfig", nobody, "--log-level", "debug")
    assert debug.code == 3 and "Traceback" in debug.err  # only when asked for


# --- the release's acknowledgements -------------------------------------------------------------------------


async def acknowledge(kube: client.Kube, *, namespace: str, name: str, check: str, target: str) -> None:
    """Acknowledge ``check`` for the ``target`` minor in the ConfigMap (the chart's, or a new one), in
    upgrade-readiness's own format, written as ``readiness ack`` writes it."""
    parsed = logic.parse_target(target)
    assert parsed is not None
    key = logic.ack_key(target=parsed, check=check)
    value = logic.ack_value(reason="CHG-1: the old node pool goes")
    assert await ack.write(kube, namespace=namespace, name=name, changes={key: value})


def helm(kubeconfig: str, *args: str) -> None:
    ct.helm(*args, "--kubeconfig", kubeconfig, timeout=300)


async def test_readiness_uses_the_acknowledgements_of_the_release_helm_installed(
    kube: client.Kube, kubeconfig: str, nodes: cluster.Nodes, masters: list[str], run_label: str
) -> None:
    suffix = uuid.uuid4().hex[:6]
    release, other, namespace = f"up-{suffix}", f"other-{suffix}", f"kube-upgrade-{suffix}"
    await asyncio.to_thread(
        helm, kubeconfig, "install", release, str(ct.CHART), "-n", namespace, "--create-namespace"
    )
    prefix = releases.chart_prefix(
        release
    )  # the chart's name for its objects, as NOTES.txt names the release
    assert await kube.get(resources.CONFIGMAPS.path(namespace=namespace, name=f"{prefix}-upgrade-readiness"))
    acks = f"{prefix}-upgrade-readiness-acks"
    await acknowledge(kube, namespace=namespace, name=acks, check="kubelet-skew", target="v1.37")
    old = f"{run_label}-old"
    await nodes.create(old, version=OUT_OF_SKEW)

    base = [
        "readiness",
        "--kubeconfig",
        kubeconfig,
        "--checks=kubelet-skew",
        selector(run_label),
        "-o",
        "json",
    ]
    for chosen in (["--release", release], ["-n", namespace], ["--release", prefix, "-n", namespace]):
        ran = await cli(*base, *chosen)
        assert ran.code == 0, (chosen, ran.out, ran.err)  # blocked, but acknowledged
        document = ran.document("json")
        assert [c["status"] for c in document["checks"]] == ["acknowledged"]
        found = {"namespace": namespace, "name": acks, "exists": True}
        assert document["acknowledgementsConfigMap"] == {
            **found,
            "foundBy": f"release {release}",
        }
    table = await cli(*base[:-2], "--release", release)
    assert f"acknowledgements: ConfigMap {namespace}/{acks} (release {release})" in table.out

    # Named as NOTES prints it, in a namespace without the release: the chart's name there, which is absent.
    empty = f"empty-{suffix}"
    await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": empty}})
    missing = await cli(*base, "--release", release, "-n", empty)
    assert missing.code == 1, missing.err
    assert missing.document("json")["acknowledgementsConfigMap"] == {
        "namespace": empty, "name": acks, "exists": False,
        "foundBy": f"no upgrade-readiness of release {release} in namespace {empty}: the chart's name for it",
    }  # fmt: skip

    # A second release in the namespace: -n alone is ambiguous (exit 2); --release chooses.
    await asyncio.to_thread(helm, kubeconfig, "install", other, str(ct.CHART), "-n", namespace)
    one_line(await cli(*base, "-n", namespace), 2, "several releases of the chart", release, other)
    chosen_other = await cli(*base, "-n", namespace, "--release", other)
    assert chosen_other.code == 1, chosen_other.err  # its own (empty) acknowledgements: blocked
    assert chosen_other.document("json")["acknowledgementsConfigMap"] == {
        "namespace": namespace, "name": f"{releases.chart_prefix(other)}-upgrade-readiness-acks", "exists": True,
        "foundBy": f"release {other}",
    }  # fmt: skip
    for name in (release, other):
        await asyncio.to_thread(helm, kubeconfig, "uninstall", name, "-n", namespace)


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed: the plugin is run directly above"
)
async def test_kubectl_runs_the_plugin(kubeconfig: str, masters: list[str], run_label: str) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    process = await asyncio.create_subprocess_exec(
        "kubectl", "upgrade", "agreement", "--kubeconfig", kubeconfig, selector(run_label), "--min-masters=2",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert out.decode().startswith(f"masters agree on {MASTER}")

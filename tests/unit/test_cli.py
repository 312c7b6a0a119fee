"""The command line: every command's parser (its own options, --version, no abbreviations, the exit-code
table), the output formats, the kubeconfig lookup, and how a release's acknowledgements are recognised.
(The commands against a real apiserver: tests/integration/test_cli.py.)"""

from __future__ import annotations

import argparse
import json
import pathlib

import pytest
import yaml

from controllers import cli, registry
from controllers.cli import command, output, readiness, releases
from controllers.kube import client
from controllers.runtime import app, config, exits

ONE_SHOT = [each.name for each in cli.COMMANDS]


def run_main(capsys: pytest.CaptureFixture[str], *argv: str, prog: str = cli.PROG) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(argv), prog=prog)
    out, err = capsys.readouterr()
    assert isinstance(exited.value.code, int)
    return exited.value.code, out, err


@pytest.mark.parametrize("argv", [[], *([name] for name in ONE_SHOT)])
def test_every_command_answers_version_and_shows_the_exit_code_table(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, _ = run_main(capsys, *argv, "--version")
    assert code == 0 and out == f"{' '.join([cli.PROG, *argv])} {config.version()}\n"
    code, out, _ = run_main(capsys, *argv, "--help")
    assert code == 0 and exits.TABLE in out


def test_the_plugin_is_the_same_commands_named_as_kubectl_runs_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_main(capsys, "readiness", "--help", prog=cli.PLUGIN_PROG)
    assert code == 0 and out.startswith("usage: kubectl upgrade readiness")


def test_one_shot_commands_list_only_their_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_main(capsys, "readiness", "--help")
    for daemon_option in ("--leader-elect", "--metrics-bind-address", "--settle-seconds", "--once",
                          "--evaluate-interval-seconds", "--health-probe-bind-address", "--dry-run"):  # fmt: skip
        assert daemon_option not in out
    for own in ("-o {table,wide,json,yaml,markdown}", "--kubeconfig", "--context", "-n NAMESPACE", "--release",
                "--target-version", "--checks", "--strict", "--log-level"):  # fmt: skip
        assert own in out, own
    _, out, _ = run_main(capsys, "agreement", "--help")
    assert "-o {table,json,yaml,markdown}" in out and "--namespace" not in out and "--min-masters" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["readiness", "--target", "v1.37"], "unrecognized arguments: --target v1.37"),  # no abbreviations
        (["readiness", "--target-version", "soon"], "'soon' is not a minor such as v1.37"),
        (["readiness", "--checks", "kubelet-skew,nope"], "unknown check(s) nope"),
        (["status", "-o", "csv"], "invalid choice: 'csv'"),
        (["agreement", "--min-masters", "0"], "0 must be > 0"),
        (["agreement", "--master-selectors", "a in (b"], "--master-selectors"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_main(capsys, *argv)
    assert code == exits.USAGE and out == ""
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("name", registry.NAMES)
def test_every_controller_answers_version_not_an_abbreviation(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """`uso-runner --version` was read as `--version-source`; now no parser takes abbreviations."""
    controller = registry.find(name).controller
    with pytest.raises(SystemExit) as exited:
        app.main(controller, ["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"{name} {config.version()}\n"
    assert app.main(controller, ["--version-sou", "kubelet"]) == exits.USAGE
    with pytest.raises(SystemExit):
        app.main(controller, ["--help"])
    assert exits.TABLE in capsys.readouterr().out


def test_run_has_the_controllers_options_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "run", "--version")
    assert code == 0 and out == f"{cli.PROG} run {config.version()}\n"
    code, out, _ = run_main(capsys, "run", "--help")
    assert code == 0 and "--leader-elect" in out and exits.TABLE in out


# --- output formats -----------------------------------------------------------------------------------------

OUTCOME = output.Outcome(
    code=1,
    document={"verdict": "blocked", "items": [{"name": "a|b", "note": "ü"}]},
    brief=output.View(
        lines=("blocked",), tables=(output.Table(("NAME", "NOTE"), (("a|b", output.clip("x " * 50, 10)),)),)
    ),
    full=output.View(
        lines=("blocked",), tables=(output.Table(("NAME", "NOTE", "MORE"), (("a|b", "x " * 50, ""),)),)
    ),
)


def test_each_format_renders_the_same_outcome() -> None:
    assert json.loads(output.render(OUTCOME, "json")) == OUTCOME.document
    assert yaml.safe_load(output.render(OUTCOME, "yaml")) == OUTCOME.document
    assert output.render(OUTCOME, "table") == "blocked\n\nNAME  NOTE\na|b   x x x x x…"
    wide = output.render(OUTCOME, "wide").splitlines()
    assert wide[2].split() == ["NAME", "NOTE", "MORE"] and wide[3].endswith("x  -")  # empty cells show "-"
    assert output.render(OUTCOME, "markdown").splitlines() == [
        "blocked",
        "",
        "| NAME | NOTE | MORE |",
        "| --- | --- | --- |",
        "| a\\|b | " + " ".join(["x"] * 50) + " | - |",
    ]


def test_without_a_full_view_wide_shows_the_brief_one() -> None:
    brief = output.View(tables=(output.Table(("A",), (("1",),)),))
    assert output.render(output.Outcome(code=0, document=[], brief=brief), "wide") == "A\n1"


# --- the kubeconfig, as kubectl finds it --------------------------------------------------------------------


def test_kubeconfig_is_found_in_kubectls_order(tmp_path: pathlib.Path) -> None:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    given, listed = tmp_path / "given", tmp_path / "listed"
    given.write_text("{}")
    listed.write_text("{}")
    assert client.kubeconfig_source(str(given), environ={"KUBECONFIG": str(listed)}) == str(given)
    both = f"{tmp_path / 'absent'}:{listed}"
    assert client.kubeconfig_source(None, environ={"KUBECONFIG": both, "HOME": str(home)}) == both
    pod = {"HOME": str(home), "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert client.kubeconfig_source(None, environ=pod) == client.IN_CLUSTER
    (home / ".kube" / "config").write_text("{}")
    assert client.kubeconfig_source(None, environ=pod) == str(home / ".kube" / "config")


@pytest.mark.parametrize(
    ("flag", "environ", "message"),
    [
        ("/nowhere/kubeconfig", {}, "kubeconfig /nowhere/kubeconfig: no such file"),
        (None, {"KUBECONFIG": "/nowhere/a:/nowhere/b"}, "KUBECONFIG=/nowhere/a:/nowhere/b: no such file"),
        (
            None,
            {"HOME": "/nowhere"},
            "no kubeconfig: --kubeconfig not given, KUBECONFIG not set, no /nowhere/",
        ),
    ],
)
def test_a_missing_kubeconfig_is_named(flag: str | None, environ: dict[str, str], message: str) -> None:
    with pytest.raises(client.KubeconfigError, match="^" + message.replace(".", r"\.")):
        client.kubeconfig_source(flag, environ=environ)


def test_a_failure_names_what_failed() -> None:
    cluster = command.Cluster(kubeconfig="/nowhere")
    assert command.failure(client.KubeconfigError("kubeconfig /nowhere: no such file"), cluster=cluster) == (
        exits.USAGE, "kubeconfig /nowhere: no such file"
    )  # fmt: skip
    forbidden = client.ApiError(status=403, body={"reason": "Forbidden", "message": "nodes is forbidden"})
    assert command.failure(forbidden, cluster=cluster) == (
        exits.UNCHECKED, "permission missing at the apiserver (kubeconfig ?): nodes is forbidden"
    )  # fmt: skip
    code, message = command.failure(
        ExceptionGroup("tasks", [ConnectionRefusedError(111, "refused")]), cluster=cluster
    )
    assert code == exits.UNCHECKED and message.startswith("cannot reach the apiserver")
    code, message = command.failure(KeyError("bug"), cluster=cluster)
    assert (
        code == exits.UNCHECKED and "internal error: KeyError" in message and "--log-level debug" in message
    )


# --- which release's acknowledgements -----------------------------------------------------------------------


def config_map(
    text: object, *, namespace: str = "upgrades", instance: str | None = "up"
) -> dict[str, object]:
    labels = {releases.INSTANCE_LABEL: instance} if instance else {}
    return {
        "metadata": {"name": "x", "namespace": namespace, "labels": labels},
        "data": {"config.yaml": text},
    }


def test_a_release_is_read_from_its_config_and_only_strings_are_taken() -> None:
    found = releases.release_of(config_map("release: up-kube-upgrade-controllers\nnamespace: upgrades\n"))
    assert found == releases.ChartRelease(
        name="up", namespace="upgrades", prefix="up-kube-upgrade-controllers",
        acknowledgements="up-kube-upgrade-controllers-upgrade-readiness-acks",
    )  # fmt: skip
    named = releases.release_of(config_map("release: p\nacknowledgementsConfigMap: mine\n", instance=None))
    assert named is not None and (named.name, named.acknowledgements) == ("p", "mine")
    odd = releases.release_of(config_map("release: [1]\nnamespace: 7\nacknowledgementsConfigMap: {}\n"))
    assert odd == releases.ChartRelease(
        name="up", namespace="upgrades", prefix=config.BaseConfig().release,
        acknowledgements=f"{config.BaseConfig().release}-upgrade-readiness-acks",
    )  # fmt: skip
    for garbage in ("[unclosed", "- a list", 42, None):
        assert releases.release_of(config_map(garbage)) is None
    assert releases.release_of({"metadata": "no", "data": {"config.yaml": "{}"}}) is None
    assert releases.release_of({"data": ["no"]}) is None


def test_the_release_meant_is_chosen_by_its_name_or_prefix() -> None:
    a = releases.ChartRelease(
        name="a", namespace="x", prefix="a-kube-upgrade-controllers", acknowledgements=""
    )
    b = releases.ChartRelease(
        name="b", namespace="y", prefix="b-kube-upgrade-controllers", acknowledgements=""
    )
    assert releases.choose([a], release=None) is a
    assert releases.choose([a, b], release="b") is b
    assert releases.choose([a, b], release="a-kube-upgrade-controllers") is a
    assert releases.choose([a, b], release="c") is None
    assert releases.choose([], release=None) is None
    with pytest.raises(command.UsageError, match="several releases of the chart \\(a in x, b in y\\)"):
        releases.choose([a, b], release=None)


def test_the_charts_prefix_for_a_release_name() -> None:
    assert releases.chart_prefix("upgrades") == "upgrades-kube-upgrade-controllers"
    assert releases.chart_prefix("kube-upgrade-controllers") == "kube-upgrade-controllers"
    assert releases.chart_prefix("prod-kube-upgrade-controllers-eu") == "prod-kube-upgrade-controllers-eu"
    assert releases.chart_prefix("a-very-long-release-name-x") == "a-very-long-release-name-x-kube-upgrade"


def test_the_readiness_table_shows_a_few_findings_per_check_and_every_acknowledgement() -> None:
    findings = [{"subject": f"Node w{i}", "message": "kubelet v1.33.9 is 4 minors below 1.37 " + "x" * 100,
                 "severity": "blocker"} for i in range(readiness.SHOWN + 2)]  # fmt: skip
    document = {
        "upgradeable": False, "target": "1.37", "targetReason": "the masters' minor 1.36 + 1",
        "checks": [{"check": "kubelet-skew", "status": "blocked", "reason": "Node w0: " + "y" * 200,
                    "findings": findings}],
        "acknowledgements": [{"key": "ack-1.36-kubelet-skew", "state": "other-target", "until": "",
                              "reason": "old", "problem": "for 1.36, the target is 1.37"}],
    }  # fmt: skip
    brief = output.render(
        output.Outcome(code=1, document=document, brief=readiness.readiness_view(
            document, acknowledgements="acknowledgements: here", full=False)), "table"
    ).splitlines()  # fmt: skip
    assert brief[:2] == ["NOT upgradeable to 1.37 (the masters' minor 1.36 + 1)", "acknowledgements: here"]
    assert brief[4].endswith("…") and len(brief[4].split("  ")[-1].strip()) == readiness.REASON_WIDTH
    assert sum("Node w" in line for line in brief[6:]) == readiness.SHOWN
    assert "(+2 more)  -o wide lists every finding" in "\n".join(brief)
    assert brief[6].split()[:3] == ["CHECK", "SEVERITY", "SUBJECT"]
    assert brief[7].split()[:3] == ["kubelet-skew", "blocker", "Node"]
    assert brief[-1].split() == ["ack-1.36-kubelet-skew", "other-target", "-", "for", "1.36,", "the", "target",
                                 "is", "1.37"]  # fmt: skip
    full = readiness.readiness_view(document, acknowledgements="", full=True)
    assert (
        len(full.tables[1].rows) == readiness.SHOWN + 2
        and full.tables[0].rows[0][3] == "Node w0: " + "y" * 200
    )


def test_a_command_can_have_subcommands_each_with_its_own_run() -> None:
    """The plug-in point for ``readiness ack ...``: a child command is a Command of its own, chosen by name
    after its parent's, with its own options; without it, the parent runs."""

    async def nothing(args: argparse.Namespace, cluster: command.Cluster) -> output.Outcome:
        raise AssertionError("not run here")

    child = command.Command(
        name="ack", summary="s", description="d", run=nothing, options=(command.option("CHECK"),)
    )
    parent = command.Command(name="judge", summary="s", description="d", run=nothing, subcommands=(child,))
    parser = command.Parser(prog="p")
    parent.add_to(parser.add_subparsers())
    assert parser.parse_args(["judge", "-o", "json"]).command is parent
    chosen = parser.parse_args(["judge", "ack", "kubelet-skew", "-o", "yaml"])
    assert (chosen.command, chosen.CHECK, chosen.output, chosen.parser.prog) == (
        child,
        "kubelet-skew",
        "yaml",
        "p judge ack",
    )

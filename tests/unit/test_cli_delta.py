"""``kube-upgrade-controllers delta FROM TO``: the shipped release delta, printed (no cluster read)."""

from __future__ import annotations

import json

import pytest

from controllers import cli
from controllers.release_delta import catalog, model
from controllers.runtime import exits


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The exit code main returns, or the one argparse exits with (--help)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else -1
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_names_the_gates_the_next_minor_removes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "delta", "1.36", "1.37")
    assert (code, err) == (exits.OK, "")
    assert out.startswith("v1.36.3 → v1.37.2: 25 feature gate(s) removed")
    assert "no longer kubeadm.k8s.io/v1beta3" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    for gate in (
        "SidecarContainers",
        "JobSuccessPolicy",
        "SchedulerQueueingHints",
        "PodLifecycleSleepAction",
    ):
        assert rows[gate][:3] == ["removed", "all", "five"], gate
    assert rows["apiserver_storage_objects"] == ["hidden", "kube-apiserver", "apiserver_resource_objects"]


def test_json_is_the_shipped_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "delta", "v1.36", "v1.37", "-o", "json")
    assert code == exits.OK
    assert model.from_document(json.loads(out)) == catalog.delta("1.36", "1.37")


def test_across_minors_and_to_the_prerelease(capsys: pytest.CaptureFixture[str]) -> None:
    newest = model.minor_text(catalog.pairs()[-1][1])
    code, out, _ = run_main(capsys, "delta", "1.36", newest, "-o", "json")
    document = json.loads(out)
    assert code == exits.OK and document["from"] == "v1.36.3" and document["prerelease"] is True
    removed = {g["name"] for g in document["featureGates"]["removed"]}
    assert {"SidecarContainers", "SeparateTaintEvictionController", "NodeSwap", "KubeletTracing"} <= removed
    _, out, _ = run_main(capsys, "delta", "1.37", newest)
    assert out.splitlines()[0].startswith(f"v1.37.2 → {document['to']} ({document['to']} is a prerelease)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["1.37", "1.36"], "1.37 is not older than 1.36"),
        (["1.20", "1.37"], "no release delta from 1.20"),
        (["1.36", "latest"], "'latest' is not a minor"),
    ],
)
def test_minors_without_data_are_a_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_main(capsys, "delta", *argv)
    assert (code, out) == (exits.USAGE, "")
    assert message in err and len(err.strip().splitlines()) == 1


def test_help_names_the_minors_shipped_and_reads_no_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "delta", "--help")
    assert code == exits.OK
    assert "FROM" in out and "TO" in out and "--kubeconfig" not in out
    assert ", ".join(catalog.minors()) in " ".join(out.split())

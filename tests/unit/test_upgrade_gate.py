"""The gate's verdict (structs/gate.py) as upgrade-readiness writes it and the relay reads it back, and what
``readiness ack`` writes: the keys the controller reads, per minor, with an expiry, and revoked."""

from __future__ import annotations

import datetime
import json
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers import cli
from controllers.cli import ack, command
from controllers.structs import gate
from controllers.upgrade_readiness import checks, logic
from controllers.upgrade_readiness.checks import interface

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC).timestamp()
LATER = "2026-06-01T13:00:00Z"
TARGET = logic.parse_target("v1.38")


def report(*, blocked: bool, acknowledged: frozenset[str] = frozenset()) -> logic.Report:
    verdicts = [
        interface.Judgement(
            "kubelet-skew", (interface.Finding("kubelet-skew", "Node w1", "too old"),) if blocked else ()
        )
    ]
    return logic.evaluate(
        logic.TargetMinor(TARGET, "test"), verdicts, acknowledged=acknowledged, strict=False
    )


def test_the_verdict_says_what_blocks_and_how_to_acknowledge() -> None:
    published = logic.gate_verdict(report(blocked=True), (), acknowledge="ack it").data()
    assert published == {
        "format": "1",
        "upgradeable": "false",
        "target": "1.38",
        "reasons": "kubelet-skew: Node w1: too old",
        "acknowledged": "",
        "expires": "",
        "acknowledge": "ack it",
    }


def test_an_active_ack_makes_it_upgradeable_until_its_expiry() -> None:
    acks = logic.judge_acks({"ack-1.38-kubelet-skew": logic.ack_value(
        until=datetime.datetime.fromisoformat(LATER), reason="CHG-1")}, target=TARGET, now=NOW)  # fmt: skip
    judged = report(blocked=True, acknowledged=logic.waived_checks(acks))
    published = logic.gate_verdict(judged, acks, acknowledge="ack it")
    assert published.upgradeable and published.expires == datetime.datetime.fromisoformat(LATER).timestamp()
    assert published.data()["acknowledged"] == f"ack-1.38-kubelet-skew until {LATER} (CHG-1)"
    assert published.data()["expires"] == LATER
    # Who copies it (the relay) turns it at its expiry, when nobody judged since.
    assert gate.at(published, now=published.expires - 1) == published
    turned = gate.at(published, now=published.expires)
    assert not turned.upgradeable and turned.reasons.startswith(f"its acknowledgement expired at {LATER}")


def test_without_a_target_nothing_is_upgradeable_and_there_is_nothing_to_acknowledge() -> None:
    judged = logic.evaluate(logic.TargetMinor(None, "no master"), [], acknowledged=frozenset(), strict=False)
    published = logic.gate_verdict(judged, (), acknowledge="ack it").data()
    assert (
        published["upgradeable"] == "false" and published["target"] == "" and published["acknowledge"] == ""
    )
    assert published["reasons"] == "no target version: no master"


def test_a_verdict_reads_back_under_a_cluster_prefix() -> None:
    written = gate.GateVerdict(upgradeable=True, target="1.38", reasons="", expires=NOW, acknowledge="x")
    prefix = gate.cluster_prefix("prod-eu-1")
    assert prefix == "prod-eu-1."
    assert gate.read(written.data(prefix=prefix), prefix=prefix) == written
    assert isinstance(gate.read(written.data(), prefix=prefix), str)  # another cluster's keys: no verdict


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"format": "2"}, "not '1'"),
        ({"upgradeable": "True"}, "not 'true' or 'false'"),
        ({"target": "v1.38"}, "not a minor"),
        ({"target": ""}, "upgradeable without a target"),
        ({"expires": "tomorrow"}, "not an RFC 3339 time"),
        ({"reasons": 3}, "not a string"),
    ],
)
def test_a_verdict_that_cannot_be_read_is_refused_not_guessed(
    change: dict[str, object], problem: str
) -> None:
    data: dict[str, object] = {**gate.GateVerdict(upgradeable=True, target="1.38").data(), **change}
    found = gate.read(data)
    assert isinstance(found, str) and problem in found


VALUES = (
    st.sampled_from(["1", "true", "false", "1.38", LATER, "", "x" * 2000])
    | st.text(max_size=20)
    | st.integers()
)


@given(st.dictionaries(st.sampled_from(gate.KEYS), VALUES))
def test_reading_any_data_never_raises_and_keeps_text_bounded(data: dict[str, object]) -> None:
    found = gate.read(data)
    if isinstance(found, gate.GateVerdict):
        assert all(len(value) <= gate.MAX_TEXT for value in found.data().values())


def test_cluster_names_that_cannot_prefix_keys_are_refused() -> None:
    assert gate.cluster_prefix("Bad_Name") is None and gate.cluster_prefix("") is None


# --- readiness ack --------------------------------------------------------------------------------------


def plan(**kwargs: object) -> ack.Request:
    settings: dict[str, object] = {"target": "v1.38", "until": LATER, "names": [], "reason": "", "revoke": False,
                                   "now": NOW, **kwargs}  # fmt: skip
    return ack.plan(**settings)  # type: ignore[arg-type]


def test_an_ack_writes_one_key_per_check_for_the_one_minor_as_the_controller_reads_it() -> None:
    request = plan(names=["drain-blockers", "kubelet-skew"], reason="CHG-7")
    assert request.changes == {
        "ack-1.38-drain-blockers": json.dumps({"until": LATER, "reason": "CHG-7"}),
        "ack-1.38-kubelet-skew": json.dumps({"until": LATER, "reason": "CHG-7"}),
    }
    judged = logic.judge_acks(request.changes, target=TARGET, now=NOW)
    assert {a.state for a in judged} == {"active"}
    assert {
        a.state for a in logic.judge_acks(request.changes, target=logic.parse_target("v1.39"), now=NOW)
    } == {"other-target"}
    expiry = datetime.datetime.fromisoformat(LATER).timestamp()
    assert {a.state for a in logic.judge_acks(request.changes, target=TARGET, now=expiry)} == {"expired"}


def test_without_checks_every_check_is_acknowledged() -> None:
    assert sorted(plan().changes) == sorted(f"ack-1.38-{check}" for check in checks.TABLE.names)


def test_revoke_removes_the_keys() -> None:
    request = plan(until=None, revoke=True, names=["kubelet-skew"])
    assert request.revoke and request.changes == {"ack-1.38-kubelet-skew": None}


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"until": None}, "--until is required"),
        ({"until": "2026-06-01T13:00:00"}, "with a time zone"),
        ({"until": "2026-06-01"}, "with a time zone"),
        ({"until": "2026-06-01T11:00:00Z"}, "not in the future"),
        ({"target": "1.38.x"}, "not a minor"),
        ({"names": ["nope"]}, "unknown check(s) nope"),
        ({"revoke": True}, "--revoke takes no --until"),
        ({"reason": "x" * 5000}, "too long"),
    ],
)
def test_what_the_controller_could_not_read_is_refused_before_anything_is_written(
    kwargs: dict[str, object], problem: str
) -> None:
    with pytest.raises(command.UsageError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        plan(**kwargs)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["readiness", "ack", "--target", "v1.38"], "--until is required"),
        (["readiness", "ack", "--until", LATER], "the following arguments are required: --target"),
        (
            ["readiness", "ack", "--target", "v1.38", "--revoke", "--until", LATER],
            "--revoke takes no --until",
        ),
        (["readiness", "acknowledge", "--target", "v1.38"], "unrecognized arguments: acknowledge"),
    ],
)
def test_the_ack_command_refuses_bad_usage_in_one_line_before_connecting(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        sys.exit(cli.main([*argv, "--kubeconfig", "/nonexistent"]))
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1 and message in err, err

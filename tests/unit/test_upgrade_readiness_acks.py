"""Acknowledgements per target minor with an optional expiry (upgrade-readiness's logic.py): what
waives a check, for which minor, until when, and what is refused (and said) instead."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.agreement import version
from controllers.upgrade_readiness import checks, logic
from tests import strategies

TARGET = logic.parse_target("v1.38")
NEXT = logic.parse_target("v1.39")
NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC).timestamp()
LATER = "2026-06-01T13:00:00Z"  # an hour after NOW
EARLIER = "2026-06-01T11:00:00Z"


def judge(
    data: Mapping[str, object], *, target: version.Version | None = TARGET, now: float = NOW
) -> list[logic.Ack]:
    return list(logic.judge_acks(data, target=target, now=now))


def one(key: str, raw: object, **kwargs: object) -> logic.Ack:
    (ack,) = judge({key: raw}, **kwargs)  # type: ignore[arg-type]
    return ack


def test_an_ack_waives_its_check_for_its_minor_until_it_expires() -> None:
    ack = one("ack-1.38-drain-blockers", json.dumps({"until": LATER, "reason": "payments PDB, CHG-1234"}))
    assert (ack.state, ack.target, ack.check, ack.reason) == (
        "active",
        "1.38",
        "drain-blockers",
        "payments PDB, CHG-1234",
    )
    assert logic.waived_checks([ack]) == {"drain-blockers"}
    assert ack.as_json()["until"] == LATER
    assert "waives drain-blockers for 1.38 until 2026-06-01T13:00:00Z: payments PDB" in ack.note
    assert logic.next_ack_expiry([ack], now=NOW) == 3600.0


def test_an_expired_ack_waives_nothing_and_says_when_it_expired() -> None:
    ack = one("ack-1.38-drain-blockers", json.dumps({"until": EARLIER}))
    assert ack.state == "expired" and ack.problem == "expired at 2026-06-01T11:00:00Z"
    assert logic.waived_checks([ack]) == frozenset() and logic.next_ack_expiry([ack], now=NOW) is None


def test_expiry_is_the_exact_moment() -> None:
    raw = json.dumps({"until": LATER})
    moment = datetime.datetime.fromisoformat(LATER.replace("Z", "+00:00")).timestamp()
    assert one("ack-1.38-kubelet-skew", raw, now=moment - 0.001).state == "active"
    assert one("ack-1.38-kubelet-skew", raw, now=moment).state == "expired"


def test_an_ack_for_one_minor_never_waives_the_next() -> None:
    data = {"ack-1.38-drain-blockers": "{}"}
    assert judge(data)[0].state == "active"  # no expiry: for 1.38 only
    later = judge(data, target=NEXT)[0]
    assert later.state == "other-target" and later.problem == "for 1.38; the target is 1.39"
    assert logic.waived_checks([later]) == frozenset()
    assert judge(data, target=None)[0].state == "other-target"


def test_each_check_is_acknowledged_by_its_own_key() -> None:
    found = judge(
        {
            "ack-1.38-drain-blockers": "{}",
            "ack-1.38-removed-apis": '{"reason": "r"}',
            "ack-1.39-kubelet-skew": "{}",
        }
    )
    assert logic.waived_checks(found) == {"drain-blockers", "removed-apis"}
    assert logic.ack_counts(found) == {
        "active": 2,
        "expired": 0,
        "other-target": 1,
        "unknown": 0,
        "malformed": 0,
    }


@pytest.mark.parametrize(
    ("key", "raw", "state", "problem"),
    [
        ("ack-1.38-bogus", "{}", "unknown", "unknown check 'bogus'"),
        ("team-notes", "{}", "unknown", "not an acknowledgement key: write ack-1.38-<check>"),
        ("ack-1.38", "{}", "malformed", "not an acknowledgement key"),
        ("ack-v1.38-drain-blockers", "{}", "malformed", "not an acknowledgement key"),
        ("ack-1.38-drain-blockers", "true", "malformed", "not a JSON object"),
        ("ack-1.38-drain-blockers", "until: 2026-06-01", "malformed", "not a JSON object"),
        ("ack-1.38-drain-blockers", "[" * 20000, "malformed", "longer than 4096"),
        ("ack-1.38-drain-blockers", "[" * 2000, "malformed", "not a JSON object"),
        (
            "ack-1.38-drain-blockers",
            '{"untill": "2026-06-01T13:00:00Z"}',
            "malformed",
            "unknown field(s) 'untill'",
        ),
        ("ack-1.38-drain-blockers", '{"until": "2026-06-01T13:00:00"}', "malformed", "with a time zone"),
        ("ack-1.38-drain-blockers", '{"until": "2026-06-01"}', "malformed", "not an RFC 3339 time"),
        ("ack-1.38-drain-blockers", '{"until": "next week"}', "malformed", "not an RFC 3339 time"),
        ("ack-1.38-drain-blockers", '{"until": 1780000000}', "malformed", "not an RFC 3339 time"),
        ("ack-1.38-drain-blockers", '{"reason": ["a"]}', "malformed", "reason is not a string"),
    ],
)
def test_unknown_and_malformed_acks_waive_nothing_and_say_why(
    key: str, raw: str, state: str, problem: str
) -> None:
    ack = one(key, raw)
    assert ack.state == state and problem in ack.problem
    assert logic.waived_checks([ack]) == frozenset()
    assert ack.note.startswith(f"acknowledgement {key} is {state}: ")


def test_the_unscoped_old_key_is_refused_showing_the_new_form() -> None:
    ack = one("acknowledged", "drain-blockers, removed-apis")
    assert ack.state == "malformed" and logic.waived_checks([ack]) == frozenset()
    assert "ack-1.38-drain-blockers, ack-1.38-removed-apis" in ack.problem
    assert "every later minor" in ack.problem and '"until"' in ack.problem


def test_key_and_value_write_what_judge_reads() -> None:
    """The writer a command (readiness ack) uses: its output is read back as the same acknowledgement."""
    assert TARGET is not None
    name = logic.ack_key(target=TARGET, check="drain-blockers")
    until = datetime.datetime(2026, 6, 1, 15, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    raw = logic.ack_value(until=until, reason="CHG-1234 ünïcode")
    assert name == "ack-1.38-drain-blockers" and json.loads(raw) == {
        "until": LATER,
        "reason": "CHG-1234 ünïcode",
    }
    ack = one(name, raw)
    assert ack.state == "active" and ack.until == until.timestamp() and ack.reason == "CHG-1234 ünïcode"
    assert logic.ack_value() == "{}" and one(name, logic.ack_value()).until is None
    with pytest.raises(ValueError, match="time zone"):
        logic.ack_value(until=datetime.datetime(2026, 6, 1))  # naive: which zone is meant?


def test_next_expiry_is_the_first_active_one() -> None:
    found = judge({
        "ack-1.38-drain-blockers": json.dumps({"until": "2026-06-01T12:10:00Z"}),
        "ack-1.38-removed-apis": json.dumps({"until": LATER}),
        "ack-1.38-kubelet-skew": "{}",
        "ack-1.39-addon-bundle": json.dumps({"until": "2026-06-01T12:00:01Z"}),  # other target: not counted
    })  # fmt: skip
    assert logic.next_ack_expiry(found, now=NOW) == 600.0


_keys = st.one_of(
    st.builds("ack-{}-{}".format, strategies.minor_texts, st.sampled_from([*checks.TABLE.names, "x", ""])),
    st.sampled_from(["acknowledged", "ack-", "ack-1.38-", "other"]),
    st.text(max_size=12),
)
_values = st.one_of(
    strategies.garbage,
    strategies.json_texts,
    st.builds(
        lambda until, reason: json.dumps({"until": until, "reason": reason}),
        strategies.timestamps,
        st.text(max_size=8),
    ),
)


@strategies.PROPERTY
@given(
    data=st.dictionaries(_keys, _values, max_size=6),
    target=st.one_of(
        st.none(), st.builds(version.Version, st.integers(0, 2), st.integers(0, 40), st.just(0))
    ),
    now=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
)
def test_any_configmap_data_is_judged_without_raising(
    data: dict[str, object], target: version.Version | None, now: float
) -> None:
    found = logic.judge_acks(data, target=target, now=now)
    assert len(found) == len(data)
    assert sum(logic.ack_counts(found).values()) == len(data)
    for ack in found:
        assert (ack.state == "active") == (ack.problem == "")
        assert ack.state != "active" or (
            target is not None and ack.target == f"{target.major}.{target.minor}"
        )
        assert isinstance(ack.note, str) and ack.as_json()["key"] == ack.key
    expiry = logic.next_ack_expiry(found, now=now)
    assert expiry is None or expiry > 0

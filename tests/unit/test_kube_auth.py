"""The pure parts of the metrics filter: the bearer token of a header, the user of a TokenReview answer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.kube import auth
from tests import strategies


@pytest.mark.parametrize(
    ("header", "token"),
    [(None, ""), ("", ""), ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", ""), ("Bearer", "")],
)
def test_bearer_token(header: str | None, token: str) -> None:
    assert auth.bearer_token(header) == token


def test_reviewed_user_and_the_access_review_it_asks() -> None:
    answer = {
        "status": {
            "authenticated": True,
            "user": {"username": "system:serviceaccount:mon:prom", "uid": "u1", "groups": ["a", 1],
                     "extra": {"scope": ["x"]}},
        }
    }  # fmt: skip
    user = auth.reviewed_user(answer)
    assert user == auth.User(
        name="system:serviceaccount:mon:prom", uid="u1", groups=("a",), extra={"scope": ("x",)}
    )
    assert auth.access_review(user, path="/metrics")["spec"] == {
        "user": "system:serviceaccount:mon:prom",
        "uid": "u1",
        "groups": ["a"],
        "extra": {"scope": ["x"]},
        "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
    }
    assert auth.reviewed_user({"status": {"authenticated": False, "user": {"username": "x"}}}) is None
    assert auth.reviewed_user({"status": {"authenticated": "true", "user": {"username": "x"}}}) is None


@strategies.PROPERTY
@given(
    answer=strategies.holey(
        {
            "status": strategies.holey(
                {
                    "authenticated": st.booleans(),
                    "user": strategies.holey(
                        {
                            "username": strategies.names,
                            "uid": strategies.names,
                            "groups": strategies.items(strategies.names),
                            "extra": strategies.garbage,
                        }
                    ),
                }
            )
        }
    )
)
def test_reviewed_user_of_any_answer(answer: dict[str, Any]) -> None:
    """A garbled TokenReview answer is no user (a 401), never an exception."""
    user = auth.reviewed_user(answer)
    assert user is None or (user.name and answer["status"]["authenticated"] is True)

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


def allowed(user: str) -> auth.Decision:
    return auth.Decision("allowed", "allowed", user=user)


def test_the_decision_cache_stays_bounded_past_its_size_dropping_the_least_recently_used() -> None:
    """Past 1,024 live tokens the cache grew without bound (it only dropped expired entries): a flood of
    distinct tokens now costs reviews, never memory."""
    cache = auth.DecisionCache()
    hot = auth.cache_key(token="prometheus", path="/metrics")
    cache.put(hot, allowed("prometheus"), expires=100.0)
    for n in range(5 * auth.MAX_CACHED):
        cache.put(auth.cache_key(token=f"t{n}", path="/metrics"), allowed(f"u{n}"), expires=100.0)
        assert len(cache) <= auth.MAX_CACHED
        if n % 100 == 0:  # the scraper keeps coming: used recently, it is never the one dropped
            assert cache.get(hot, now=1.0) == allowed("prometheus")
    assert len(cache) == auth.MAX_CACHED
    assert cache.get(hot, now=1.0) is not None
    assert cache.get(auth.cache_key(token="t0", path="/metrics"), now=1.0) is None  # the oldest went first
    newest = auth.cache_key(token=f"t{5 * auth.MAX_CACHED - 1}", path="/metrics")
    assert cache.get(newest, now=1.0) == allowed(f"u{5 * auth.MAX_CACHED - 1}")


def test_a_cached_decision_expires() -> None:
    cache = auth.DecisionCache(size=2)
    key = auth.cache_key(token="a", path="/status")
    cache.put(key, allowed("a"), expires=10.0)
    assert cache.get(key, now=9.9) == allowed("a")
    assert cache.get(key, now=10.0) is None and len(cache) == 0
    assert auth.cache_key(token="a", path="/status") != auth.cache_key(token="a", path="/metrics")
    assert "a-secret-token" not in "".join(auth.cache_key(token="a-secret-token", path="/metrics"))

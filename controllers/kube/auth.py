"""Who may read ``/metrics`` and ``/status`` (``--metrics-secure``): the filter controller-runtime puts in
front of its metrics server. A bearer token is authenticated with a TokenReview, then its user is authorized
with a SubjectAccessReview for ``get`` on the request's path (a nonResourceURL). Decisions are cached briefly,
per token and path, so that a Prometheus scraping every 30 s costs the apiserver two requests a minute, not
two per scrape; a denial is cached for less time than an approval, so that a new RoleBinding works soon. The
cache holds at most 1,024 decisions, the least recently used dropped first: a flood of distinct tokens
(valid or not) costs reviews, never unbounded memory.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import aiohttp

from controllers.kube import retry
from controllers.kube.client import ApiError, Kube
from controllers.structs import fields

log = logging.getLogger(__name__)

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
ALLOWED_TTL = 60.0
DENIED_TTL = 10.0
MAX_CACHED = 1024

Verdict = Literal["allowed", "unauthenticated", "forbidden", "unavailable"]
# The HTTP status each verdict is answered with.
STATUS: Mapping[Verdict, int] = {"allowed": 200, "unauthenticated": 401, "forbidden": 403, "unavailable": 503}


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str  # for the answer's body and the log: never the token
    user: str = ""

    @property
    def status(self) -> int:
        return STATUS[self.verdict]


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """An authenticated user, as a TokenReview's status names it."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


def token_review(token: str) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}


def reviewed_user(answer: Mapping[str, Any]) -> User | None:
    """The user of an answered TokenReview; None when the token is not authenticated."""
    status = fields.mapping(answer.get("status"))
    user = fields.mapping(status.get("user"))
    name = user.get("username")
    if status.get("authenticated") is not True or not isinstance(name, str) or not name:
        return None
    extra = {
        str(key): tuple(fields.strings(values)) for key, values in fields.mapping(user.get("extra")).items()
    }
    uid = user.get("uid")
    return User(
        name=name,
        uid=uid if isinstance(uid, str) else "",
        groups=tuple(fields.strings(user.get("groups"))),
        extra=extra,
    )


def access_review(user: User, *, path: str) -> dict[str, Any]:
    """May ``user`` ``get`` the nonResourceURL ``path``?"""
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user.name,
            "uid": user.uid,
            "groups": list(user.groups),
            "extra": {key: list(values) for key, values in user.extra.items()},
            "nonResourceAttributes": {"path": path, "verb": "get"},
        },
    }


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ("" when there is none)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class DecisionCache:
    """Recent decisions by (token digest, path), each until it expires: at most ``size`` of them, the least
    recently used dropped first (controller-runtime's authorizer caches the same way, in an LRU)."""

    def __init__(self, *, size: int = MAX_CACHED) -> None:
        self._size = size
        self._entries: collections.OrderedDict[tuple[str, str], tuple[float, Decision]] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str], *, now: float) -> Decision | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, decision = entry
        if expires <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return decision

    def put(self, key: tuple[str, str], decision: Decision, *, expires: float) -> None:
        self._entries[key] = (expires, decision)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


def cache_key(*, token: str, path: str) -> tuple[str, str]:
    """What a decision is cached by: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest(), path


class Authorizer:
    """Decides, for one request's bearer token and path, as the apiserver's RBAC says."""

    def __init__(self, kube: Kube, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self._clock = clock
        self._cache = DecisionCache()

    async def decide(self, *, token: str, path: str) -> Decision:
        if not token:
            return Decision("unauthenticated", "no bearer token")
        key = cache_key(token=token, path=path)
        now = self._clock()
        cached = self._cache.get(key, now=now)
        if cached is not None:
            return cached
        try:
            decision = await self._review(token=token, path=path)
        except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as error:  # not cached: ask again
            log.warning("cannot review a token for %s: %s", path, retry.describe(error))
            return Decision("unavailable", f"cannot review the token now: {retry.describe(error)}")
        ttl = ALLOWED_TTL if decision.verdict == "allowed" else DENIED_TTL
        self._cache.put(key, decision, expires=now + ttl)
        return decision

    async def _review(self, *, token: str, path: str) -> Decision:
        user = reviewed_user(await self._kube.create(TOKEN_REVIEWS, token_review(token)))
        if user is None:
            return Decision("unauthenticated", "the token is not valid")
        answer = await self._kube.create(SUBJECT_ACCESS_REVIEWS, access_review(user, path=path))
        if fields.dig(answer, "status", "allowed") is True:
            return Decision("allowed", "allowed", user=user.name)
        return Decision("forbidden", f"{user.name} may not get {path}", user=user.name)

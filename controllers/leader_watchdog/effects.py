"""The watchdog's effects: its one reach beyond the Kubernetes API, Prometheus's HTTP API, for blind-alert-rules.

It reads the alerting rules Prometheus evaluates (``/api/v1/rules?type=alert``) and asks ``/api/v1/query``
how many series each of their selectors has now (``count(<selector>)``) and, for those with none, had in the
window before the upgrade began (``count(last_over_time(<selector>[<window>]))`` at that moment). Only the
selectors :mod:`controllers.structs.promql` rebuilds from tokens are sent, never a piece of a rule's text as
written. Answers are untrusted: bounded in size and time, validated; no redirect is followed (the bearer
token goes to the configured URL only), and the token is never logged.
"""

from __future__ import annotations

import asyncio
import json
import math
import pathlib
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp

from controllers.leader_watchdog.checks import blind_rules, interface
from controllers.structs import refs

MAX_RULES_BYTES = 16 * 1024 * 1024  # a large kube-prometheus-stack's rules answer is well under 2 MiB
MAX_QUERY_BYTES = 64 * 1024  # count() answers one sample
MAX_TOKEN_BYTES = 16 * 1024
CONCURRENCY = 4  # queries in flight at once: a courtesy to a shared Prometheus
MAX_PROBLEM = 300  # characters of an error kept


class PrometheusError(Exception):
    """Prometheus could not be asked, or answered what this client does not accept."""


# What a Prometheus that does not answer raises (reported, never a bug of the watchdog).
UNANSWERED = (PrometheusError, aiohttp.ClientError, TimeoutError, OSError)


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= MAX_PROBLEM else text[: MAX_PROBLEM - 1] + "…"


class Client:
    """One round's connection to Prometheus at ``url`` (``http://`` or ``https://``; a path prefix is kept:
    Thanos Querier and Mimir serve the API under one), verified with ``ca_file`` (empty: the system's CAs),
    with the bearer token in ``bearer_token_file`` (read at each round: a rotated token is used at once)."""

    def __init__(
        self, *, url: str, ca_file: str = "", bearer_token_file: str = "", timeout_seconds: float
    ) -> None:
        self.url = url.rstrip("/")
        self.ca_file = ca_file
        self.bearer_token_file = bearer_token_file
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        headers = {"Accept": "application/json"}
        if self.bearer_token_file:
            token = await asyncio.to_thread(_read_token, self.bearer_token_file)
            headers["Authorization"] = f"Bearer {token}"
        tls: ssl.SSLContext | bool = True
        if self.url.startswith("https://") and self.ca_file:
            tls = await asyncio.to_thread(ssl.create_default_context, cafile=self.ca_file)
        self.session = aiohttp.ClientSession(
            headers=headers, timeout=self.timeout, connector=aiohttp.TCPConnector(ssl=tls)
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def _api(self, path: str, *, data: Mapping[str, str] | None, limit: int) -> Any:
        """The ``data`` of a successful API answer; PrometheusError for any other."""
        assert self.session is not None, "use the client as an async context manager"
        request = self.session.post if data is not None else self.session.get
        async with request(f"{self.url}{path}", data=data, allow_redirects=False) as response:
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise PrometheusError(f"{path}: the answer is larger than {limit} bytes")
            status = response.status
        try:
            answer = (
                json.loads(body) if len(body) < 1024 * 1024 else await asyncio.to_thread(json.loads, body)
            )
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise PrometheusError(f"{path}: HTTP {status}, not a JSON object")
        if status != 200 or answer.get("status") != "success":
            error = answer.get("error") if isinstance(answer.get("error"), str) else ""
            raise PrometheusError(f"{path}: HTTP {status}: {error}"[:MAX_PROBLEM])
        return answer.get("data")

    async def alert_rules(self) -> tuple[tuple[interface.AlertRule, ...], tuple[str, ...]]:
        data = await self._api("/api/v1/rules?type=alert", data=None, limit=MAX_RULES_BYTES)
        return await asyncio.to_thread(blind_rules.alert_rules, data)

    async def count(self, query: str, *, at: float) -> int:
        """The value of ``count(...)`` at Unix time ``at``: 0 when the vector is empty."""
        data = await self._api(
            "/api/v1/query", data={"query": query, "time": f"{at:.3f}"}, limit=MAX_QUERY_BYTES
        )
        return _count(data)


def _read_token(path: str) -> str:
    with pathlib.Path(path).open("rb") as file:
        raw = file.read(MAX_TOKEN_BYTES + 1)
    if len(raw) > MAX_TOKEN_BYTES:
        raise PrometheusError(f"the bearer token file is larger than {MAX_TOKEN_BYTES} bytes")
    token = raw.decode("utf-8", "replace").strip()
    if not token or any(c in token for c in "\r\n\x00"):
        raise PrometheusError("the bearer token file holds no single-line token")
    return token


def _count(data: object) -> int:
    """A ``count(...)`` answer: a vector of at most one sample whose value is a whole number ≥ 0."""
    if (
        not isinstance(data, dict)
        or data.get("resultType") != "vector"
        or not isinstance(data.get("result"), list)
    ):
        raise PrometheusError("the query answer is not a vector")
    result = data["result"]
    if not result:
        return 0
    sample = result[0] if len(result) == 1 and isinstance(result[0], dict) else {}
    value = sample.get("value")
    try:
        number = float(value[1]) if isinstance(value, list) and len(value) == 2 else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number >= 0 and number == int(number)):
        raise PrometheusError("the count is not a whole number")
    return int(number)


async def probe(
    client: Client, *, began: float, window_seconds: float, now: float, ref: refs.ObjectRef
) -> interface.RulesProbe:
    """One round: the alerting rules, each selector's series now, and for those with none now their series
    within ``window_seconds`` before ``began``. A selector Prometheus refuses (e.g. one with no positive
    matcher) or does not answer is left out, with why; the rules not being readable raises (the caller keeps
    its last round)."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    problems: list[str] = []

    async def ask(selector: str, query: str, at: float) -> tuple[str, int | None]:
        async with semaphore:
            try:
                return selector, await client.count(query, at=at)
            except UNANSWERED as error:
                problems.append(f"{selector[: blind_rules.MAX_NAME]}: {describe(error)}")
                return selector, None

    async def counts(asked: Mapping[str, str], at: float) -> dict[str, int]:
        answered = await asyncio.gather(*(ask(s, q, at) for s, q in asked.items()))
        return {selector: count for selector, count in answered if count is not None}

    rules, unread = await client.alert_rules()
    problems.extend(unread)
    wanted, left_out = blind_rules.selectors(rules)
    problems.extend(left_out)
    series_now = await counts({s: f"count({s})" for s in wanted}, now)
    window = f"{math.ceil(window_seconds)}s"
    series_before = await counts(
        {s: f"count(last_over_time({s}[{window}]))" for s in blind_rules.silent(series_now)}, began
    )
    return interface.RulesProbe(
        began=began,
        window_seconds=window_seconds,
        at=now,
        rules=rules,
        now=series_now,
        before=series_before,
        problems=tuple(problems),
        ref=ref,
    )

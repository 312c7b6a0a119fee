"""The one Kubernetes client of a process: raw JSON over the ApiClient's HTTP session.

kubernetes_asyncio loads the configuration (kubeconfig, in-cluster service account, exec plugins, token
refresh) and owns the connection pool; requests go out as plain JSON so that lists of 20,000 objects are not
turned into generated model objects and PUT back exactly as they were read.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import yaml

from controllers.kube import retry
from controllers.kube.retry import ApiError as ApiError  # raised by every request; callers catch it here

if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s_client

JSON = dict[str, Any]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
PatchType = Literal["merge", "strategic", "json", "apply"]
QueryValue = str | int | bool
Query = Mapping[str, QueryValue]  # query parameters of a request

_PATCH_CONTENT_TYPES: dict[PatchType, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


class RateLimiter:
    """Client-side QPS limit shared by every request of one client (a token bucket with burst = qps)."""

    def __init__(self, *, qps: float) -> None:
        self.qps = qps
        self._tokens = qps
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.qps <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.qps, self._tokens + (now - self._updated) * self.qps)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.qps)


# A TCP connect to an apiserver takes milliseconds. The kubernetes Service keeps a removed master's address
# for a while after it is gone (its endpoint lease runs out, then kube-proxy syncs), and a connect to it gets
# no answer at all: give up soon and retry, likely on a live one (on a real kind cluster a 30 s limit made
# the watchdog see a master's removal 30 s late).
CONNECT_TIMEOUT = 5.0

# What Go's encoding/json escapes in strings besides the JSON minimum (its default, HTML-safe output).
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def encode(body: JSON | list[JSON]) -> bytes:
    """A request body as the apiserver itself writes JSON (Go's encoding/json): compact, UTF-8, ``<>&``
    escaped, keys in the order they were read. A ``RawExtension`` field, which the apiserver keeps as the bytes
    it was given and compares byte for byte where it is immutable (ControllerRevision ``data``), then goes back
    exactly as it came: with Python's default spacing, PUT-ing a ControllerRevision back unchanged is a 422."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    # Outside strings JSON has none of these characters, so translating the whole text only touches strings.
    return text.translate(_GO_ESCAPES).encode()


class Kube:
    """Async access to one cluster. Create with :func:`connect`; close with :meth:`close`."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        qps: float = 0.0,
        request_timeout: float = 60.0,
        fresh_connections: bool = False,
        policy: retry.RetryPolicy = retry.THROTTLED,
    ) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout
        self.policy = policy  # what a request retries by itself unless it says otherwise
        # Every request on a connection of its own, closed after the answer (no keep-alive): a client whose
        # calls must not wait on a connection to an apiserver that went away (leader election).
        self.fresh_connections = fresh_connections
        self._configuration = api_client.configuration
        self._host: str = str(self._configuration.host).rstrip("/")
        self._session: aiohttp.ClientSession = api_client.rest_client.pool_manager
        if self._session.trust_env and not _proxy_or_netrc_configured():
            # kubernetes_asyncio's session trusts the environment, so aiohttp looks up proxy variables and
            # ~/.netrc in a thread on every request; with neither present that is pure cost (half the CPU
            # of a small PUT), so look once here instead.
            self._session._trust_env = False
        self._limiter = RateLimiter(qps=qps)

    @property
    def host(self) -> str:
        return self._host

    async def close(self) -> None:
        await self.api_client.close()

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.fresh_connections:
            headers["Connection"] = "close"
        if content_type:
            headers["Content-Type"] = content_type
        auth = await self._configuration.auth_settings()
        for setting in auth.values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    async def request(
        self,
        method: Method,
        path: str,
        *,
        query: Query | None = None,
        body: JSON | str | None = None,
        content_type: str | None = None,
        request_timeout: float | None = None,
        policy: retry.RetryPolicy | None = None,
        on_error: Callable[[retry.Reason, BaseException], None] | None = None,
    ) -> JSON:
        """One API call; raises :class:`ApiError` on a non-2xx answer. ``policy`` says which failures are
        tried again (default: the client's, which tries 429s again as long as Retry-After asks);
        ``request_timeout`` bounds each try (default: the client's)."""
        url = self._url(path, query)
        timeout = aiohttp.ClientTimeout(
            total=request_timeout or self.request_timeout, sock_connect=CONNECT_TIMEOUT
        )
        data: bytes | None = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else encode(body)
            content_type = content_type or "application/json"

        async def attempt() -> JSON:
            await self._limiter.acquire()
            headers = await self._headers(content_type)
            async with self._session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=timeout,
            ) as response:
                raw = await response.read()
                if response.status < 400:
                    return json.loads(raw) if raw else {}
                raise _api_error(response.status, raw, response.headers.get("Retry-After"))

        return await retry.call(attempt, policy=policy or self.policy, on_error=on_error)

    async def get_text(self, path: str, *, base: str = "", request_timeout: float = 30.0) -> str:
        """GET a document that is not JSON (an apiserver's ``/metrics``) from this client's apiserver, or from
        ``base`` (``https://10.0.0.2:6443``: another apiserver of the cluster, same credentials and CA).
        Raises ApiError on a non-2xx answer (429 is tried again as Retry-After asks)."""
        url = (base.rstrip("/") or self._host) + path

        async def attempt() -> str:
            await self._limiter.acquire()
            headers = {**await self._headers(None), "Accept": "text/plain"}
            timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=CONNECT_TIMEOUT)
            async with self._session.get(url, headers=headers, timeout=timeout) as response:
                raw = await response.read()
                if response.status < 400:
                    return raw.decode(errors="replace")
                raise _api_error(response.status, raw, response.headers.get("Retry-After"))

        return await retry.call(attempt, policy=retry.THROTTLED)

    async def get(self, path: str, *, query: Query | None = None) -> JSON:
        return await self.request("GET", path, query=query)

    async def create(self, path: str, body: JSON, *, dry_run: bool = False) -> JSON:
        return await self.request("POST", path, body=body, query=_dry_run(dry_run))

    async def replace(self, path: str, body: JSON, *, dry_run: bool = False) -> JSON:
        return await self.request("PUT", path, body=body, query=_dry_run(dry_run))

    async def delete(self, path: str, *, query: Query | None = None) -> JSON:
        return await self.request("DELETE", path, query=query)

    async def patch(
        self,
        path: str,
        body: JSON | list[JSON],
        *,
        patch_type: PatchType = "merge",
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> JSON:
        query: dict[str, QueryValue] = dict(_dry_run(dry_run))
        if field_manager:
            query["fieldManager"] = field_manager
        if force:
            query["force"] = "true"
        return await self.request(
            "PATCH",
            path,
            body=encode(body).decode(),
            query=query,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )

    async def list_pages(
        self,
        path: str,
        *,
        query: Query | None = None,
        limit: int = 500,
        start: str = "",
        policy: retry.RetryPolicy = retry.THROTTLED,
        on_error: Callable[[retry.Reason, BaseException], None] | None = None,
    ) -> AsyncGenerator[JSON]:
        """Every page of a list (limit/continue), from the continue token ``start`` when given; ``policy``
        retries one page's request, so a retried page continues where the list was. On 410 for an expired
        continue token, resume from the token the 410 carries (``inconsistent`` continue), or restart the
        list when it carries none."""
        continue_token = start
        while True:
            page_query: dict[str, QueryValue] = {**(query or {}), "limit": limit}
            if continue_token:
                page_query["continue"] = continue_token
            try:
                page = await self.request("GET", path, query=page_query, policy=policy, on_error=on_error)
            except ApiError as error:
                if not (error.gone and continue_token):
                    raise
                # The 410 offers an "inconsistent continue" token that lists the rest at the newest
                # revision; without one, restart the list (objects are revisited, never skipped).
                continue_token = str(error.body.get("metadata", {}).get("continue", ""))
                continue
            yield page
            continue_token = page.get("metadata", {}).get("continue", "")
            if not continue_token:
                return

    async def list_items(self, path: str, *, query: Query | None = None) -> list[JSON]:
        """Every item of a list, all pages."""
        return [item async for page in self.list_pages(path, query=query) for item in page.get("items") or []]

    async def stream_lines(
        self, path: str, *, query: Query, inactivity_timeout: float
    ) -> AsyncGenerator[JSON]:
        """Decoded JSON lines of one streaming (watch) request (aclose() it to end the request early)."""
        url = self._url(path, query)
        headers = await self._headers(None)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, sock_read=inactivity_timeout
        )
        async with self._session.get(url, headers=headers, timeout=timeout) as response:
            if response.status >= 400:
                raise _api_error(response.status, await response.read(), response.headers.get("Retry-After"))
            try:
                async for line in response.content:
                    if line.strip():
                        yield json.loads(line)
            except (GeneratorExit, asyncio.CancelledError):
                # Left mid-stream (closed or cancelled): the connection cannot be reused, so drop it now.
                # A graceful TLS close would need the event loop to keep running after its owner is done.
                if response.connection is not None and response.connection.transport is not None:
                    response.connection.transport.abort()
                raise

    def _url(self, path: str, query: Query | None) -> str:
        url = self._host + path
        if query:
            url += "?" + urllib.parse.urlencode({k: _query_value(v) for k, v in query.items()})
        return url


def _named(source: str) -> str:
    return source if source == IN_CLUSTER else f"kubeconfig {source}"


def _proxy_or_netrc_configured() -> bool:
    """Whether any proxy variable or a netrc file is there for aiohttp's ``trust_env`` to use."""
    return bool(urllib.request.getproxies()) or aiohttp.helpers.netrc_from_env() is not None


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dry_run(dry_run: bool) -> dict[str, QueryValue]:
    return {"dryRun": "All"} if dry_run else {}


def _api_error(status: int, raw: bytes, retry_after: str | None) -> ApiError:
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            body = {"message": str(body)}
    except ValueError:
        body = {"message": raw[:500].decode(errors="replace")}
    seconds = None
    with contextlib.suppress(ValueError):
        seconds = float(retry_after or "")  # absent or an HTTP date: the policy's own backoff
    return ApiError(status=status, body=body, retry_after=seconds)


def _kubernetes_asyncio() -> tuple[Any, Any]:
    """kubernetes_asyncio's ``client`` and ``config`` modules, without the ~900 generated API and model
    modules that importing ``kubernetes_asyncio.client`` pulls in (about 35 MiB of a controller's resident
    memory) and that this client never uses, since it sends and reads raw JSON. The three packages are
    registered without running their ``__init__``; their submodules import as usual, and anything else asked
    of them runs the real ``__init__`` then (nothing here does)."""
    if "kubernetes_asyncio.client" not in sys.modules:
        root = _unloaded_package("kubernetes_asyncio", None)
        package = _unloaded_package("kubernetes_asyncio.client", root.__path__)
        _unloaded_package("kubernetes_asyncio.client.models", package.__path__)
        package.Configuration = importlib.import_module(
            "kubernetes_asyncio.client.configuration"
        ).Configuration
        package.ApiClient = importlib.import_module("kubernetes_asyncio.client.api_client").ApiClient
    return sys.modules["kubernetes_asyncio.client"], importlib.import_module("kubernetes_asyncio.config")


def _unloaded_package(name: str, path: Any) -> Any:
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def load_on_use(attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        if importlib.machinery.PathFinder.find_spec(f"{name}.{attribute}", module.__path__):
            return importlib.import_module(f"{name}.{attribute}")
        del module.__getattr__
        loader.exec_module(module)
        return getattr(module, attribute)

    module.__getattr__ = load_on_use  # type: ignore[method-assign]
    sys.modules[name] = module
    return module


class KubeconfigError(ValueError):
    """No usable client configuration: the message names the kubeconfig (or the in-cluster config) and what
    is wrong with it. A configuration error of the caller, not a failure of the cluster."""


IN_CLUSTER = "in-cluster config"


def kubeconfig_source(kubeconfig: str | None, *, environ: Mapping[str, str] | None = None) -> str:
    """Where the client configuration comes from, in kubectl's order: ``kubeconfig`` (it must exist), else
    ``$KUBECONFIG`` (a ``:``-separated list; the files that exist are merged), else ``~/.kube/config``, else
    :data:`IN_CLUSTER` inside a pod. Returns the path (or list) to load, or IN_CLUSTER; raises
    :class:`KubeconfigError` naming what was looked for."""
    environ = os.environ if environ is None else environ
    if kubeconfig:
        if not os.path.isfile(os.path.expanduser(kubeconfig)):
            raise KubeconfigError(f"kubeconfig {kubeconfig}: no such file")
        return kubeconfig
    listed = environ.get("KUBECONFIG", "")
    if listed:
        if not any(os.path.isfile(os.path.expanduser(path)) for path in listed.split(os.pathsep) if path):
            raise KubeconfigError(f"KUBECONFIG={listed}: no such file")
        return listed
    default = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".kube", "config")
    if os.path.isfile(default):
        return default
    if "KUBERNETES_SERVICE_HOST" in environ:
        return IN_CLUSTER
    raise KubeconfigError(
        f"no kubeconfig: --kubeconfig not given, KUBECONFIG not set, no {default}, and not inside a pod"
    )


async def connect(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    qps: float = 0.0,
    request_timeout: float = 60.0,
    fresh_connections: bool = False,
    policy: retry.RetryPolicy = retry.THROTTLED,
) -> Kube:
    """A client configured as :func:`kubeconfig_source` finds (``context``: a kubeconfig context other than
    its current one). Raises :class:`KubeconfigError` when there is none or it cannot be loaded."""
    k8s_client, k8s_config = _kubernetes_asyncio()
    configuration = k8s_client.Configuration()
    source = kubeconfig_source(kubeconfig)
    try:
        if source == IN_CLUSTER:
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            await k8s_config.load_kube_config(
                config_file=source, context=context, client_configuration=configuration, persist_config=False
            )
    except k8s_config.ConfigException as error:
        raise KubeconfigError(f"{_named(source)}: {error}") from error
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as error:
        # unreadable, not YAML, YAML of the wrong shape, a broken certificate
        raise KubeconfigError(f"{_named(source)}: {str(error) or type(error).__name__}") from error
    # Bounded concurrency is the callers' business; let the pool hold what they ask for.
    configuration.connection_pool_maxsize = 64
    return Kube(
        k8s_client.ApiClient(configuration),
        qps=qps,
        request_timeout=request_timeout,
        fresh_connections=fresh_connections,
        policy=policy,
    )

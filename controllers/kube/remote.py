"""A client for another cluster, from a kubeconfig that someone else wrote: Cluster API's ``<cluster>-kubeconfig``
Secret, which the verdict relay reads to ask each workload cluster for its verdict.

Only what such a kubeconfig needs is taken, inline: the server, its CA, and a client certificate or a bearer
token. Exec plugins, auth providers, file paths, proxies and ``insecure-skip-tls-verify`` are refused: running a
command, reading a local file or sending credentials through a host named by whoever may write that Secret
would hand them this process. Errors name what is wrong, never a value (the kubeconfig holds credentials).
The private key exists on disk only while the TLS context loads it (in memory-backed ``/dev/shm`` where there
is one), as Python's ``ssl`` loads a key only from a file.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import pathlib
import tempfile
import urllib.parse
from collections.abc import Mapping
from typing import Any

import yaml

from controllers.kube import client, retry

MAX_KUBECONFIG_BYTES = 64 * 1024
# What a kubeconfig may say of its cluster and user; anything else there is refused, not ignored.
CLUSTER_FIELDS = frozenset({"server", "certificate-authority-data"})
USER_FIELDS = frozenset({"client-certificate-data", "client-key-data", "token"})
SHARED_MEMORY = pathlib.Path("/dev/shm")


class RemoteConfigError(ValueError):
    """The kubeconfig cannot be used; the message says why without quoting it."""


@dataclasses.dataclass(frozen=True, repr=False)
class Inline:
    """A parsed kubeconfig's server and credentials (never printed: no repr)."""

    server: str
    ca: bytes
    cert: bytes = b""
    key: bytes = b""
    token: str = ""


def _named(items: object, name: object, what: str) -> Mapping[str, Any]:
    if not isinstance(items, list):
        raise RemoteConfigError(f"its {what}s are not a list")
    for item in items:
        if isinstance(item, Mapping) and item.get("name") == name and isinstance(item.get(what), Mapping):
            found: Mapping[str, Any] = item[what]
            return found
    raise RemoteConfigError(f"its current context names a {what} it does not hold")


def _decoded(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise RemoteConfigError(f"{field} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteConfigError(f"{field} is not base64") from None


def parse(text: bytes) -> Inline:
    """The server and inline credentials of the kubeconfig ``text`` (its current context)."""
    if len(text) > MAX_KUBECONFIG_BYTES:
        raise RemoteConfigError(f"it is larger than {MAX_KUBECONFIG_BYTES} bytes")
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        raise RemoteConfigError("it is not YAML") from None  # the parser quotes the text: not passed on
    if not isinstance(loaded, Mapping):
        raise RemoteConfigError("it is not a kubeconfig (no mapping)")
    context = _named(loaded.get("contexts"), loaded.get("current-context"), "context")
    cluster = _named(loaded.get("clusters"), context.get("cluster"), "cluster")
    user = _named(loaded.get("users"), context.get("user"), "user")
    for fields, known, what in ((cluster, CLUSTER_FIELDS, "cluster"), (user, USER_FIELDS, "user")):
        unknown = sorted(str(name) for name in fields if name not in known)
        if (
            unknown
        ):  # exec, auth-provider, file paths, proxy-url, insecure-skip-tls-verify, tls-server-name...
            raise RemoteConfigError(
                f"its {what} uses {', '.join(unknown)}: only inline credentials are taken"
            )
    server = cluster.get("server")
    parsed = urllib.parse.urlsplit(server) if isinstance(server, str) else None
    if parsed is None or parsed.scheme != "https" or not parsed.hostname:
        raise RemoteConfigError("its server is not an https:// URL")
    if "certificate-authority-data" not in cluster:
        raise RemoteConfigError("it has no certificate-authority-data (the server could not be verified)")
    ca = _decoded(cluster["certificate-authority-data"], "certificate-authority-data")
    token = user.get("token", "")
    if not isinstance(token, str):
        raise RemoteConfigError("its token is not a string")
    cert = (
        _decoded(user["client-certificate-data"], "client-certificate-data")
        if "client-certificate-data" in user
        else b""
    )
    key = _decoded(user["client-key-data"], "client-key-data") if "client-key-data" in user else b""
    if bool(cert) != bool(key):
        raise RemoteConfigError(
            "it has a client certificate without its key, or a key without its certificate"
        )
    if not cert and not token:
        raise RemoteConfigError("it has neither a client certificate nor a token")
    return Inline(server=server.rstrip("/"), ca=ca, cert=cert, key=key, token=token)  # type: ignore[union-attr]


def connect(inline: Inline, *, request_timeout: float) -> client.Kube:
    """A client for ``inline``'s cluster: requests are tried once (the caller decides when to ask again)."""
    k8s_client, _ = client._kubernetes_asyncio()  # loaded lazily, as connect() loads it
    configuration = k8s_client.Configuration()
    configuration.host = inline.server
    if inline.token:
        configuration.api_key["BearerToken"] = f"Bearer {inline.token}"
    scratch = SHARED_MEMORY if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK) else None
    # The TLS context is built when the ApiClient is (kubernetes_asyncio's RESTClientObject loads the files
    # then); the files go as soon as it exists.
    with tempfile.TemporaryDirectory(prefix="remote-", dir=scratch) as directory:
        files = {"ca.crt": inline.ca, "tls.crt": inline.cert, "tls.key": inline.key}
        for name, content in files.items():
            path = pathlib.Path(directory, name)
            path.touch(mode=0o600)
            path.write_bytes(content)
        configuration.ssl_ca_cert = str(pathlib.Path(directory, "ca.crt"))
        if inline.cert:
            configuration.cert_file = str(pathlib.Path(directory, "tls.crt"))
            configuration.key_file = str(pathlib.Path(directory, "tls.key"))
        try:
            api_client = k8s_client.ApiClient(configuration)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError: a bad certificate or key
            raise RemoteConfigError(f"its certificates cannot be loaded ({type(error).__name__})") from None
    return client.Kube(api_client, request_timeout=request_timeout, policy=retry.ONCE)

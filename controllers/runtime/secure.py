"""``--metrics-secure`` (the default): HTTPS on the metrics address, and only authorized readers of
``/metrics`` and ``/status`` (controller-runtime's ``WithAuthenticationAndAuthorization`` filter, as kubebuilder
v4 scaffolds it, on by default there too).

The certificate is the mounted one (``--metrics-cert-dir`` with ``tls.crt`` and ``tls.key``, e.g. from
cert-manager) or, without one, a self-signed one made at start and kept in memory only (Prometheus then
scrapes with ``insecureSkipVerify``, as kubebuilder's default ServiceMonitor does). ``/healthz`` and ``/readyz``
stay open: the kubelet's probes carry no token (the probe address serves nothing else: runtime/server.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import pathlib
import socket
import ssl
import tempfile

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controllers.kube import auth

log = logging.getLogger(__name__)

PROBE_PATHS = frozenset({"/healthz", "/readyz"})
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
SELF_SIGNED_DAYS = 365


@dataclasses.dataclass(frozen=True)
class Serving:
    """How the metrics address is served with --metrics-secure."""

    address: str  # the metrics bind address: HTTPS there, probes only on any other
    context: ssl.SSLContext
    guard: Middleware


def self_signed(*, hosts: tuple[str, ...]) -> tuple[bytes, bytes]:
    """A PEM certificate and its key for ``hosts`` (valid from an hour ago, for a year)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host) for host in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def tls_context(*, cert_dir: str) -> ssl.SSLContext:
    """A server context with the certificate in ``cert_dir``, or a self-signed one when that is empty."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_dir:
        directory = pathlib.Path(cert_dir)
        context.load_cert_chain(directory / CERT_FILE, directory / KEY_FILE)
        return context
    certificate, key = self_signed(hosts=(socket.gethostname(), "localhost"))
    # ssl loads a chain only from files: write them where nobody else can read, and remove them at once.
    with tempfile.TemporaryDirectory(prefix="metrics-tls-") as scratch:
        cert_path, key_path = pathlib.Path(scratch, CERT_FILE), pathlib.Path(scratch, KEY_FILE)
        cert_path.write_bytes(certificate)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        context.load_cert_chain(cert_path, key_path)
    log.info("serving metrics over HTTPS with a self-signed certificate made at start")
    return context


def guard(authorizer: auth.Authorizer) -> Middleware:
    """Probes pass; every other path needs a token allowed to ``get`` it (401 without a valid token, 403
    when its user may not, 503 when the apiserver cannot say)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PROBE_PATHS:
            return await handler(request)
        decision = await authorizer.decide(
            token=auth.bearer_token(request.headers.get("Authorization")), path=request.path
        )
        if decision.verdict == "allowed":
            return await handler(request)
        if decision.verdict == "unauthenticated":
            raise web.HTTPUnauthorized(text=decision.reason, headers={"WWW-Authenticate": "Bearer"})
        if decision.verdict == "forbidden":
            raise web.HTTPForbidden(text=decision.reason)
        raise web.HTTPServiceUnavailable(text=decision.reason, headers={"Retry-After": "5"})

    return middleware


def serving(*, address: str, cert_dir: str, authorizer: auth.Authorizer) -> Serving:
    return Serving(address=address, context=tls_context(cert_dir=cert_dir), guard=guard(authorizer))

"""--metrics-secure (the default) on the real control plane: HTTPS, then TokenReview + SubjectAccessReview on
/metrics and /status (401 without a valid token, 403 for a user RBAC does not let read, 200 for one it does);
the probes stay open, and the probe address serves nothing else (with or without --metrics-secure)."""

from __future__ import annotations

import contextlib
import pathlib
import ssl
import sys
from collections.abc import Iterator

from controllers.kube import auth, client
from controllers.runtime import secure
from e2e import cluster, controlplane
from tests import harness

SERVICE_ACCOUNTS = cluster.SERVICEACCOUNTS
CLUSTER_ROLE_BINDINGS = cluster.CLUSTER_ROLE_BINDINGS


async def service_account_token(kube: client.Kube, *, namespace: str, name: str) -> str:
    """A new ServiceAccount's token (TokenRequest), the way a Prometheus pod gets its projected token."""
    await kube.create(SERVICE_ACCOUNTS.path(namespace=namespace), {"metadata": {"name": name}})
    return await cluster.service_account_token(kube, namespace=namespace, name=name)


grant_metrics_reader = cluster.grant_metrics_reader


def unverified() -> ssl.SSLContext:
    """What a Prometheus with ``insecureSkipVerify`` does with the self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@contextlib.contextmanager
def secure_sample(*args: str, kubeconfig: str) -> Iterator[tuple[int, int]]:
    """The sample controller as it starts by default (--metrics-secure): (HTTPS metrics port, plain probe
    port)."""
    probe_port = controlplane.free_port()
    argv = (sys.executable, "-m", "tests.sample_controller", "--kubeconfig", kubeconfig, *args)
    with harness.serve(*argv, probe_port=probe_port) as (_, port):
        yield port, probe_port


async def test_metrics_and_status_need_a_token_allowed_to_read_them(
    kubeconfig: str, kube: client.Kube, namespace: str
) -> None:
    reader = await service_account_token(kube, namespace=namespace, name="reader")
    stranger = await service_account_token(kube, namespace=namespace, name="stranger")
    await grant_metrics_reader(kube, namespace=namespace, account="reader")
    tls = unverified()
    with secure_sample("--settle-seconds=0", kubeconfig=kubeconfig) as (port, probe_port):
        await harness.eventually(lambda: harness.scrape(probe_port, "/readyz")[0] == 200, timeout=30)
        status, body = harness.scrape(port, tls=tls, token=reader)
        assert status == 200 and "sample_controller_" in body
        assert harness.scrape(port, "/status", tls=tls, token=reader)[0] == 200
        assert harness.scrape(port, "/metrics", tls=tls) == (401, "no bearer token")
        assert harness.scrape(port, "/metrics", tls=tls, token="not-a-token") == (
            401,
            "the token is not valid",
        )
        status, body = harness.scrape(port, "/metrics", tls=tls, token=stranger)
        assert status == 403 and f"system:serviceaccount:{namespace}:stranger may not get /metrics" in body
        assert harness.scrape(port, "/status", tls=tls, token=stranger)[0] == 403
        # Probes carry no token: open on both addresses. The plain one serves nothing else.
        assert harness.scrape(port, "/healthz", tls=tls)[0] == 200
        assert harness.scrape(probe_port, "/readyz")[0] == 200
        assert harness.scrape(probe_port, "/metrics", token=reader)[0] == 404
        assert harness.scrape(port, "/metrics", token=reader)[0] != 200  # plain HTTP to the TLS port


async def test_without_secure_the_probe_address_serves_only_probes(kubeconfig: str) -> None:
    """So that a NetworkPolicy may admit everyone to the probe port and only scrapers to the metrics port."""
    probe_port = controlplane.free_port()
    argv = (sys.executable, "-m", "tests.sample_controller", "--kubeconfig", kubeconfig, "--settle-seconds=0",
            "--no-metrics-secure")  # fmt: skip
    with harness.serve(*argv, probe_port=probe_port) as (_, port):
        await harness.eventually(lambda: harness.scrape(probe_port, "/readyz")[0] == 200, timeout=30)
        assert harness.scrape(probe_port, "/healthz")[0] == 200
        assert harness.scrape(probe_port, "/metrics")[0] == 404
        assert harness.scrape(probe_port, "/status")[0] == 404
        assert harness.scrape(port, "/metrics")[0] == 200
        assert harness.scrape(port, "/status")[0] == 200


async def test_a_mounted_certificate_is_served(
    kubeconfig: str, kube: client.Kube, tmp_path: pathlib.Path
) -> None:
    certificate, key = secure.self_signed(hosts=("localhost",))
    (tmp_path / "tls.crt").write_bytes(certificate)
    (tmp_path / "tls.key").write_bytes(key)
    verified = ssl.create_default_context(cadata=certificate.decode())
    verified.check_hostname = False  # the client connects to 127.0.0.1; the name is localhost
    with secure_sample(f"--metrics-cert-dir={tmp_path}", kubeconfig=kubeconfig) as (port, _):
        await harness.eventually(lambda: harness.scrape(port, "/healthz", tls=verified)[0] == 200, timeout=30)
        assert harness.scrape(port, "/metrics", tls=verified)[0] == 401


async def test_decisions_are_cached_briefly(kube: client.Kube, namespace: str) -> None:
    """An approval holds for ALLOWED_TTL, then RBAC is asked again (a removed binding then denies)."""
    token = await service_account_token(kube, namespace=namespace, name="reader")
    binding = await grant_metrics_reader(kube, namespace=namespace, account="reader")
    now = [0.0]
    authorizer = auth.Authorizer(kube, clock=lambda: now[0])
    assert (await authorizer.decide(token=token, path="/metrics")).status == 200
    await kube.delete(CLUSTER_ROLE_BINDINGS.path(name=binding))
    assert (await authorizer.decide(token=token, path="/metrics")).status == 200  # cached
    now[0] += auth.ALLOWED_TTL + 1
    # The apiserver's RBAC follows the deletion through its own informer: eventually.
    await harness.eventually(lambda: _denied(authorizer, token=token, now=now), timeout=30)


async def _denied(authorizer: auth.Authorizer, *, token: str, now: list[float]) -> bool:
    now[0] += auth.DENIED_TTL + 1
    return (await authorizer.decide(token=token, path="/metrics")).status == 403

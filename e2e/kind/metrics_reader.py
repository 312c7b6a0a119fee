"""The kind scenario's reader of the controllers' secure ``/metrics`` and ``/status``: a client in the cluster.

    python metrics_reader.py [PORT]     # default 8080 on every address (in its pod)

The controllers serve ``/metrics`` and ``/status`` over HTTPS to a bearer token that RBAC lets get them (the
chart's default, ``metrics.secure``). The apiserver's pod proxy cannot carry a token (it drops the
Authorization header once it has authenticated the caller), so the suite reads through this pod instead, as a
Prometheus in the cluster would: ``GET /<pod IP>/<port>/<path>`` fetches ``https://<pod IP>:<port>/<path>``
with this pod's ServiceAccount token (bound to the chart's metrics-reader ClusterRole by ``metrics.readers``,
``e2e/kind/values.yaml``) and answers with the controller's status and body. The certificate is the
controller's self-signed one (not verified, as the chart's ServiceMonitor does). It runs in the controller
image from a ConfigMap, so it needs nothing but the standard library and aiohttp; the suite reaches it through
the apiserver's service proxy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import pathlib
import ssl
import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

TOKEN = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
UNVERIFIED = ssl.create_default_context()
UNVERIFIED.check_hostname = False
UNVERIFIED.verify_mode = ssl.CERT_NONE
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)


async def read(request: web.Request) -> web.Response:
    address, port, path = request.match_info["ip"], request.match_info["port"], request.match_info["path"]
    try:
        host = ipaddress.ip_address(address)  # pod IPs only: no name to resolve, no URL to smuggle
    except ValueError:
        raise web.HTTPBadRequest(text=f"not an IP address: {address!r}") from None
    if not port.isdigit():
        raise web.HTTPBadRequest(text=f"not a port: {port!r}")
    url = f"https://{f'[{host}]' if host.version == 6 else host}:{port}/{path}"
    token = await asyncio.to_thread(TOKEN.read_text)  # read each time: the kubelet rotates it
    headers = {"Authorization": f"Bearer {token.strip()}"}
    try:
        async with request.app[SESSION].get(url, headers=headers, ssl=UNVERIFIED) as answer:
            body = await answer.read()
            return web.Response(status=answer.status, body=body, content_type=answer.content_type)
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise web.HTTPBadGateway(text=f"{url}: {type(error).__name__}: {error}") from error


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def session(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    yield
    await app[SESSION].close()


def app() -> web.Application:
    application = web.Application()
    application.cleanup_ctx.append(session)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/{ip}/{port}/{path:.*}", read)
    return application


if __name__ == "__main__":
    web.run_app(app(), port=int(sys.argv[1]) if len(sys.argv) > 1 else 8080, access_log=None)

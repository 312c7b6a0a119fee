"""Alertmanager's webhook receiver in the kind scenario: records every notification for the suite to read.

    python recorder.py [PORT [HOST]]      # default 8080 on every address (in its pod)

POST /notify takes Alertmanager's webhook payload and keeps it with the time it arrived; GET /notifications
returns them all, in order, as ``[{"received": <unix time>, "payload": {...}}]``. It runs in the
controller image (Python with aiohttp) from a ConfigMap, so it needs nothing but the standard library and
aiohttp. In memory only: the scenario reads it while it runs.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from aiohttp import web

NOTIFICATIONS: web.AppKey[list[dict[str, Any]]] = web.AppKey("notifications", list)


async def notify(request: web.Request) -> web.Response:
    request.app[NOTIFICATIONS].append({"received": time.time(), "payload": await request.json()})
    return web.Response()


async def notifications(request: web.Request) -> web.Response:
    return web.json_response(request.app[NOTIFICATIONS])


def app() -> web.Application:
    application = web.Application()
    application[NOTIFICATIONS] = []
    application.router.add_post("/notify", notify)
    application.router.add_get("/notifications", notifications)
    return application


if __name__ == "__main__":
    args = sys.argv[1:]
    web.run_app(app(), port=int(args[0]) if args else 8080, host=args[1] if len(args) > 1 else "0.0.0.0")

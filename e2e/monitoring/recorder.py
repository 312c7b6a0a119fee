"""Alertmanager's webhook receiver in the kind scenario: records every notification for the suite to read.

    python recorder.py [PORT [HOST [JOURNAL]]]     # default 8080 on every address (in its pod), no journal

POST /notify takes Alertmanager's webhook payload and keeps it with the time it arrived; GET /notifications
returns them all, in order, as ``[{"received": <unix time>, "payload": {...}}]``. It runs in the
controller image (Python with aiohttp) from a ConfigMap, so it needs nothing but the standard library and
aiohttp. With a JOURNAL file (the kind scenario: on an emptyDir) each notification is also appended to it as
one JSON line and read back at start, so that a restarted container forgets nothing; without one, in memory.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

from aiohttp import web

NOTIFICATIONS: web.AppKey[list[dict[str, Any]]] = web.AppKey("notifications", list)
JOURNAL: web.AppKey[pathlib.Path | None] = web.AppKey("journal")


async def notify(request: web.Request) -> web.Response:
    entry = {"received": time.time(), "payload": await request.json()}
    request.app[NOTIFICATIONS].append(entry)
    journal = request.app[JOURNAL]
    if journal is not None:
        with journal.open("a") as out:
            out.write(json.dumps(entry) + "\n")
    return web.Response()


async def notifications(request: web.Request) -> web.Response:
    return web.json_response(request.app[NOTIFICATIONS])


def app(*, journal: pathlib.Path | None = None) -> web.Application:
    application = web.Application()
    kept = journal.read_text().splitlines() if journal is not None and journal.exists() else []
    application[NOTIFICATIONS] = [json.loads(line) for line in kept if line.strip()]
    application[JOURNAL] = journal
    application.router.add_post("/notify", notify)
    application.router.add_get("/notifications", notifications)
    return application


if __name__ == "__main__":
    args = sys.argv[1:]
    web.run_app(
        app(journal=pathlib.Path(args[2]) if len(args) > 2 else None),
        port=int(args[0]) if args else 8080,
        host=args[1] if len(args) > 1 else "0.0.0.0",
    )

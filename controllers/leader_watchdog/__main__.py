"""``leader-watchdog``: the console script (``python -m controllers.leader_watchdog``)."""

from __future__ import annotations

import sys

from controllers.leader_watchdog import controller
from controllers.runtime import app


def run() -> None:
    sys.exit(app.main(controller.LeaderWatchdog))


if __name__ == "__main__":
    run()

"""``verdict-relay``: the console-script entry point (everything else lives in the package)."""

from __future__ import annotations

import sys

from controllers.runtime import app
from controllers.verdict_relay import controller


def run() -> None:
    sys.exit(app.main(controller.VerdictRelay))


if __name__ == "__main__":
    run()

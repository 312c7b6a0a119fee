"""``node-tainter``: the console-script entry point (everything else lives in the package)."""

from __future__ import annotations

import sys

from controllers.node_tainter import controller
from controllers.runtime import app


def run() -> None:
    sys.exit(app.main(controller.NodeTainter))


if __name__ == "__main__":
    run()

"""``addon-updater``: the console script."""

from __future__ import annotations

import sys

from controllers.addon_updater import controller
from controllers.runtime import app


def run() -> None:
    sys.exit(app.main(controller.AddonUpdater))


if __name__ == "__main__":
    run()

"""``upgrade-readiness``: the console-script entry point (everything else lives in the package)."""

from __future__ import annotations

import sys

from controllers.runtime import app
from controllers.upgrade_readiness import controller


def run() -> None:
    sys.exit(app.main(controller.UpgradeReadiness))


if __name__ == "__main__":
    run()

"""Console script ``uso-runner`` (also ``python -m controllers.uso_runner``)."""

from __future__ import annotations

import sys

from controllers.runtime import app
from controllers.uso_runner import controller


def run() -> None:
    sys.exit(app.main(controller.UsoRunner))


if __name__ == "__main__":
    run()

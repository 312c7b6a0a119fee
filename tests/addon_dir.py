"""What a reader of the addon directory (kube-addon-manager) sees: every file, read through one handle."""

from __future__ import annotations

import os
import pathlib


def listing(target: pathlib.Path) -> dict[str, str]:
    """The files the target shows now (name → text), read through one directory handle, so that a switch
    between two generations shows up as one or the other, never a mix."""
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = {}
        for name in sorted(os.listdir(fd)):
            with os.fdopen(os.open(name, os.O_RDONLY, dir_fd=fd)) as handle:
                result[name] = handle.read()
        return result
    finally:
        os.close(fd)

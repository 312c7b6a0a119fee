"""The ``directory`` target (kube-addon-manager mode): the addon directory switches atomically.

The target path is a symlink to a sibling generation directory ``..<minor>_<digest>``. A switch writes the new
generation completely (files fsynced), points a temporary symlink at it and renames that over the target:
rename(2) is atomic, so a reader that resolves the target once per pass (opens the directory, or its real
path) sees either the old or the new bundle, never a mix. The previous generation is kept until the next
switch so that a reader still inside it can finish. This is the scheme of the kubelet's atomic writer for
ConfigMap volumes.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
import time
from collections.abc import Iterable

from controllers.addon_updater import logic
from controllers.bundles import model


def current_generation(target: pathlib.Path) -> str | None:
    """The generation directory name the target points to (None: not a symlink to a generation)."""
    try:
        name = pathlib.Path(os.readlink(target)).name
    except OSError:
        return None
    return name if logic.parse_generation(name) is not None else None


def install(target: pathlib.Path, *, files: Iterable[model.BundleFile], minor: str, digest: str) -> str:
    """Make ``target`` show exactly ``files``; returns the generation directory name. Idempotent."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    generation = logic.generation_name(minor=minor, digest=digest)
    previous = current_generation(target)
    if previous == generation:
        return generation
    if not (parent / generation).is_dir():
        # Same name, same digest, same content: a generation once written completely is reused.
        staging = parent / f"..staging-{secrets.token_hex(6)}"
        staging.mkdir()
        try:
            for file in files:
                _write_synced(staging / file.name, file.text)
            _fsync_dir(staging)
            os.rename(staging, parent / generation)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _adopt_real_directory(target)
    link = parent / f"..link-{secrets.token_hex(6)}"
    os.symlink(generation, link)
    try:
        os.replace(link, target)
    except BaseException:
        with contextlib.suppress(OSError):
            link.unlink()
        raise
    _fsync_dir(parent)
    keep = {generation, *([previous] if previous else [])}
    for stale in logic.stale_generations(os.listdir(parent), keep=keep):
        shutil.rmtree(parent / stale, ignore_errors=True)
    return generation


def _adopt_real_directory(target: pathlib.Path) -> None:
    """A target that is still a plain directory (the first switch) is moved aside, since a directory cannot
    be replaced by a symlink in one rename. Readers see no directory for that instant, never a mix."""
    if target.is_dir() and not target.is_symlink():
        os.rename(target, target.parent / f"..adopted-{target.name}-{int(time.time())}")


def _write_synced(path: pathlib.Path, text: str) -> None:
    with path.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""``python -m hack.release_delta generate|verify``: the release delta from each minor's own source.

generate  find each minor's newest release from 1.33 on (``go list -m -versions k8s.io/kubernetes``), read
          each one's source with ``scan`` (a Go program of ours: go/parser and go/types over the modules the
          go command downloads through its configured proxy), and write one file per consecutive pair into
          controllers/release_delta/data (stale pair files are removed).
verify    read again the releases the committed files name and compare what would be written, byte for byte
          (exit 1 on a difference; a newer release on the proxy is reported, not a failure).

Go must be installed; the go command's own settings (GOPROXY, GOMODCACHE, GOFLAGS, ...) apply. A minor
whose go.mod asks for a newer Go makes the go command fetch that toolchain (GOTOOLCHAIN=auto) to download it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import cast

from controllers.release_delta import model
from hack.release_delta import derive

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCANNER = pathlib.Path(__file__).resolve().parent / "scan"
DATA = ROOT / "controllers" / "release_delta" / "data"
FIRST_MINOR = (1, 33)
MODULE = "k8s.io/kubernetes"


def _go(*args: str, cwd: pathlib.Path) -> str:
    # GOTOOLCHAIN=auto: a go command older than the scanner's go.mod asks fetches the Go it needs.
    env = {**os.environ, "GOWORK": "off", "GO111MODULE": "on", "GOTOOLCHAIN": "auto"}
    try:
        done = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        sys.exit("release-delta: the go command is needed")
    if done.returncode != 0:
        sys.exit(f"release-delta: go {' '.join(args)} failed:\n{done.stderr.strip()}")
    return done.stdout


def available_versions(workdir: pathlib.Path) -> list[str]:
    return _go("list", "-m", "-versions", MODULE, cwd=workdir).split()[1:]


def build_scanner(workdir: pathlib.Path) -> pathlib.Path:
    binary = workdir / "scan"
    _go("build", "-o", str(binary), ".", cwd=SCANNER)
    return binary


def read_release(scanner: pathlib.Path, version: str, *, workdir: pathlib.Path) -> derive.Facts:
    started = time.monotonic()
    env = {**os.environ, "GOWORK": "off"}
    done = subprocess.run(
        [str(scanner), "-version", version], cwd=workdir, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"release-delta: reading {version} failed:\n{done.stderr.strip()}")
    print(f"release-delta: read {version} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return cast(derive.Facts, json.loads(done.stdout))


def render(versions: Sequence[str], *, workdir: pathlib.Path) -> dict[str, str]:
    """File name → text, for each consecutive pair of ``versions``."""
    scanner = build_scanner(workdir)
    facts = [read_release(scanner, version, workdir=workdir) for version in versions]
    files = {}
    for old, new in itertools.pairwise(facts):
        delta = derive.derive(old, new)
        files[f"{delta.source.minor}-{delta.target.minor}.json"] = model.dumps(delta)
    return files


def committed_versions() -> list[str]:
    """The releases the committed pair files were generated from, in order."""
    versions: set[str] = set()
    for path in DATA.glob("*.json"):
        try:
            delta = model.loads(path.read_text(encoding="utf-8"))
        except model.DeltaError as error:
            sys.exit(
                f"release-delta: {path.relative_to(ROOT)}: {error} (`make release-delta` writes it anew)"
            )
        versions.update((delta.source.version, delta.target.version))
    return sorted(versions, key=lambda v: model.parse_minor(model.Release(v).minor))


def generate() -> int:
    with tempfile.TemporaryDirectory(prefix="release-delta-") as tmp:
        workdir = pathlib.Path(tmp)
        versions = derive.newest_per_minor(available_versions(workdir), first=FIRST_MINOR)
        if len(versions) < 2:
            sys.exit(f"release-delta: fewer than two minors of {MODULE} from 1.33 on: {versions}")
        print(f"release-delta: releases {' '.join(versions)}", file=sys.stderr)
        files = render(versions, workdir=workdir)
    DATA.mkdir(parents=True, exist_ok=True)
    for stale in {p.name for p in DATA.glob("*.json")} - set(files):
        (DATA / stale).unlink()
    for name, text in files.items():
        (DATA / name).write_text(text, encoding="utf-8")
    print(f"release-delta: wrote {', '.join(sorted(files))} into {DATA.relative_to(ROOT)}", file=sys.stderr)
    return 0


def verify() -> int:
    versions = committed_versions()
    if len(versions) < 2:
        sys.exit(f"release-delta: no committed release delta in {DATA.relative_to(ROOT)}")
    with tempfile.TemporaryDirectory(prefix="release-delta-") as tmp:
        workdir = pathlib.Path(tmp)
        files = render(versions, workdir=workdir)
        newest = derive.newest_per_minor(available_versions(workdir), first=FIRST_MINOR)
    committed = {p.name: p.read_bytes() for p in DATA.glob("*.json")}
    differ = sorted(
        name for name in set(files) | set(committed) if committed.get(name) != files.get(name, "").encode()
    )
    if newest != versions:
        print(
            f"release-delta: the proxy has newer releases ({' '.join(newest)}); `make release-delta` regenerates",
            file=sys.stderr,
        )
    if differ:
        print(
            f"release-delta: regenerating {' '.join(versions)} differs in: {', '.join(differ)}",
            file=sys.stderr,
        )
        return 1
    print(
        f"release-delta: {len(files)} files regenerate byte for byte from {' '.join(versions)}",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.release_delta", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("generate", "verify"))
    args = parser.parse_args(argv)
    return generate() if args.command == "generate" else verify()


if __name__ == "__main__":
    sys.exit(main())

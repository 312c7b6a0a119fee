"""The directory target on a local filesystem: atomic switches, generations kept, adoption of a plain dir.

Also the control experiment: the same concurrent reader DOES catch a writer that updates files in place, so
the atomicity check of the integration test can fail.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import threading
from collections.abc import Callable

from controllers.addon_updater import logic
from controllers.addon_updater.effects import directory
from controllers.bundles import model
from tests import addon_dir


def files_of(tag: str, names: tuple[str, ...]) -> tuple[model.BundleFile, ...]:
    return tuple(model.BundleFile(name=n, text=f"# bundle {tag}\n" + "x: 1\n" * 200) for n in names)


A = files_of("a", ("coredns.yaml", "crd.yaml", "only-in-a.yaml"))
B = files_of("b", ("coredns.yaml", "crd.yaml", "only-in-b.yaml", "pdb.yaml"))
EXPECTED = {"a": {f.name: f.text for f in A}, "b": {f.name: f.text for f in B}}


def hammer(
    target: pathlib.Path, switch: Callable[[int], None], rounds: int
) -> tuple[int, list[dict[str, str]]]:
    """Switch ``rounds`` times while another thread reads; returns (consistent reads, mixed reads)."""
    stop = threading.Event()
    good = 0
    mixed: list[dict[str, str]] = []

    def read() -> None:
        nonlocal good
        while not stop.is_set():
            try:
                seen = addon_dir.listing(target)
            except FileNotFoundError:
                continue
            if seen in EXPECTED.values():
                good += 1
            else:
                mixed.append(seen)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(rounds):
            switch(i)
    finally:
        stop.set()
        thread.join()
    return good, mixed


def test_symlink_swap_never_shows_a_mix(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "addons"

    def switch(i: int) -> None:
        files, minor, digest = (A, "1.35", "a" * 64) if i % 2 else (B, "1.36", "b" * 64)
        directory.install(target, files=files, minor=minor, digest=digest)

    good, mixed = hammer(target, switch, rounds=300)
    assert mixed == []
    assert good > 0


def test_control_in_place_writer_is_caught(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "addons"
    target.mkdir()

    def switch(i: int) -> None:
        for old in target.iterdir():
            old.unlink()
        for file in A if i % 2 else B:
            (target / file.name).write_text(file.text)

    _, mixed = hammer(target, switch, rounds=300)
    assert mixed, "the reader should see half-written directories of an in-place writer"


def test_install_is_idempotent_keeps_previous_and_adopts_a_plain_directory(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "addons"
    target.mkdir()
    (target / "legacy.yaml").write_text("kind: ConfigMap\n")
    first = directory.install(target, files=A, minor="1.35", digest="a" * 64)
    assert first == "..1.35_aaaaaaaaaaaa"
    assert directory.current_generation(target) == first
    assert addon_dir.listing(target) == EXPECTED["a"]
    adopted = [p for p in tmp_path.iterdir() if p.name.startswith("..adopted-addons-")]
    assert len(adopted) == 1 and (adopted[0] / "legacy.yaml").exists()

    assert directory.install(target, files=A, minor="1.35", digest="a" * 64) == first
    second = directory.install(target, files=B, minor="1.36", digest="b" * 64)
    third = directory.install(target, files=A, minor="1.37", digest="c" * 64)
    generations = sorted(p.name for p in tmp_path.iterdir() if logic.parse_generation(p.name))
    assert generations == sorted([second, third])  # current and previous only
    assert os.readlink(target) == third
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("..staging-", "..link-"))]


def test_current_generation_of_other_things(tmp_path: pathlib.Path) -> None:
    assert directory.current_generation(tmp_path / "missing") is None
    (tmp_path / "plain").mkdir()
    assert directory.current_generation(tmp_path / "plain") is None
    os.symlink("elsewhere", tmp_path / "link")
    assert directory.current_generation(tmp_path / "link") is None
    shutil.rmtree(tmp_path / "plain")

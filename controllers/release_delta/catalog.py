"""The shipped release deltas (``data/<from>-<to>.json``, one per consecutive minor pair, written by
``make release-delta``): the only place that reads them, through importlib.resources."""

from __future__ import annotations

import functools
import importlib.resources

from controllers.release_delta import model

PACKAGE = "controllers.release_delta"


@functools.cache
def pairs() -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """The (from, to) minors with a shipped delta, in order."""
    found = []
    for entry in importlib.resources.files(PACKAGE).joinpath("data").iterdir():
        stem, dot, suffix = entry.name.partition(".json")
        if not dot or suffix or "-" not in stem:
            continue
        source, _, target = stem.partition("-")
        found.append((model.parse_minor(source), model.parse_minor(target)))
    return tuple(sorted(found))


@functools.cache
def pair(source: tuple[int, int], target: tuple[int, int]) -> model.Delta:
    name = f"{model.minor_text(source)}-{model.minor_text(target)}.json"
    text = importlib.resources.files(PACKAGE).joinpath("data", name).read_text(encoding="utf-8")
    return model.loads(text)


def minors() -> tuple[str, ...]:
    """Every minor a delta starts or ends at."""
    return tuple(model.minor_text(m) for m in sorted({m for p in pairs() for m in p}))


def delta(source: str, target: str) -> model.Delta:
    """The delta from minor ``source`` to minor ``target`` (``1.35``, ``v1.37``): one shipped pair, or the
    union of the consecutive pairs between them. :class:`model.DeltaError` when they are not minors, not
    ascending, or the shipped data does not reach from one to the other."""
    start, end = model.parse_minor(source), model.parse_minor(target)
    if start >= end:
        raise model.DeltaError(f"{source} is not older than {target}")
    steps = dict(pairs())
    chain, at = [], start
    while at < end:
        if at not in steps:
            known = ", ".join(minors()) or "none"
            raise model.DeltaError(
                f"no release delta from {model.minor_text(at)} (minors with data: {known}; `make release-delta` "
                "regenerates from the newest releases)"
            )
        chain.append((at, steps[at]))
        at = steps[at]
    if at != end:
        raise model.DeltaError(f"{target} is not a minor with data (minors: {', '.join(minors())})")
    return model.combine([pair(s, t) for s, t in chain])

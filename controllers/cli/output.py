"""What a command shows, in each ``-o`` format: the document (json, yaml) and the view (table, wide, markdown).

A command builds its :class:`Outcome` once; :func:`render` turns it into the format asked for. ``table`` is
the brief view (long cells cut, long lists shortened), ``wide`` and ``markdown`` the full one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, Literal

import yaml

Format = Literal["table", "wide", "json", "yaml", "markdown"]
FORMATS: tuple[Format, ...] = ("table", "json", "yaml", "markdown")
WITH_WIDE: tuple[Format, ...] = ("table", "wide", "json", "yaml", "markdown")
MISSING = "-"


@dataclasses.dataclass(frozen=True, slots=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class View:
    """Lines of text (a verdict, where things were found), then tables."""

    lines: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What a command found: its exit code, its document (``-o json|yaml``), its brief view (``-o table``)
    and its full view (``-o wide|markdown``; the brief one when there is no more to show)."""

    code: int
    document: Any
    brief: View
    full: View | None = None


def render(outcome: Outcome, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(outcome.document, indent=2, ensure_ascii=False)
    if fmt == "yaml":
        return yaml.safe_dump(outcome.document, sort_keys=False, allow_unicode=True).rstrip("\n")
    view = outcome.brief if fmt == "table" else outcome.full or outcome.brief
    if fmt == "markdown":
        return "\n\n".join([*view.lines, *(_markdown(table) for table in view.tables)])
    return "\n\n".join(part for part in ("\n".join(view.lines), *map(_text, view.tables)) if part)


def clip(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _cells(row: Sequence[str]) -> list[str]:
    return [" ".join(cell.split()) or MISSING for cell in row]


def _text(table: Table) -> str:
    lines = [list(table.columns), *(_cells(row) for row in table.rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(table.columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _markdown(table: Table) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    rows = [line(table.columns), line(["---"] * len(table.columns))]
    return "\n".join(rows + [line(_cells(row)) for row in table.rows])

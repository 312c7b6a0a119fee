"""The one way an error becomes text that leaves the process (a log line, an Event, a state field, ``/status``).

No Secret value, and no value of any object's ``data``, ``stringData`` or ``binaryData``, may leave that way.
Two sources quote such values: the apiserver's messages (a 422 names the rejected value; server-side apply's
"failed to create typed patch object" prints it) and YAML parser errors (PyYAML quotes the offending line).
:func:`describe` is the single function that turns an error into text: it keeps what helps (the status, the
reason, the fields named, where a YAML error is) and withholds what may carry a value. Errors whose messages
this package builds itself from redacted parts derive from :class:`Redacted` and are shown as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import yaml

from controllers.structs import fields

# The fields of an object whose values are never shown (Secrets, ConfigMaps, and any kind that has them).
VALUE_FIELDS = ("data", "stringData", "binaryData")
WITHHELD = "…"


class Redacted(Exception):
    """An error whose message was built from redacted parts only (never from a value of a bundle or an
    apiserver message): :func:`describe` shows it whole."""


@runtime_checkable
class ApiAnswer(Protocol):
    """A non-2xx answer of the apiserver (``controllers.kube.retry.ApiError``)."""

    status: int
    reason: str
    body: dict[str, Any]


def holds_values(body: Mapping[str, Any] | None) -> bool:
    """Whether the object carries ``data``/``stringData``/``binaryData`` values (whatever its kind)."""
    return body is not None and any(body.get(field) for field in VALUE_FIELDS)


def describe(error: BaseException, *, sent: Mapping[str, Any] | None = None) -> str:
    """``error`` as text that holds no value of an object.

    - An apiserver answer: its status and reason; with ``sent`` (the object of the request, ``{}`` when
      it sent none) also its message, unless that object holds ``data``/``stringData``/``binaryData``: then
      only the fields the apiserver named (``details.causes[].field``), never its message.
    - A YAML error: where it is (line, column) and what the parser found, without the quoted source line.
    - A :class:`Redacted` error: its message. An OS error: its kind and text.
    - Anything else: its type only.
    """
    if isinstance(error, Redacted):
        return str(error)
    if isinstance(error, ApiAnswer) and isinstance(error.status, int):
        return _api_answer(error, sent=sent)
    if isinstance(error, yaml.MarkedYAMLError):
        return _yaml_error(error)
    if isinstance(error, yaml.reader.ReaderError):
        return f"a character YAML does not allow at position {error.position}"
    if isinstance(error, yaml.YAMLError):
        return type(error).__name__
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error.strerror}" if error.strerror else type(error).__name__
    return type(error).__name__


def _api_answer(error: ApiAnswer, *, sent: Mapping[str, Any] | None) -> str:
    head = f"{error.status} {error.reason}".strip()
    if sent is None:
        return head
    body = fields.mapping(error.body)
    if not holds_values(sent):
        message = body.get("message")
        return f"{head}: {message}" if isinstance(message, str) and message else head
    causes = fields.mappings(fields.dig(body, "details", "causes"))
    named = sorted({str(c["field"]) for c in causes if isinstance(c.get("field"), str) and c["field"]})
    where = f" at {', '.join(named)}" if named else ""
    return f"{head}{where} (the apiserver's message is withheld: the object holds data values)"


def _yaml_error(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    said = ", ".join(withhold_quoted(part) for part in (error.context, error.problem) if part)
    return f"{where}{said or type(error).__name__}"


# A quoted part of a parser's message: a token name (<block end>) or one character ('\t') is kept; anything
# longer may be a piece of a value and is withheld.
_QUOTED = re.compile(r"'([^'\n]*)'|\"([^\"\n]*)\"")


def withhold_quoted(text: str) -> str:
    """``text`` with every quoted part longer than one character (and not a ``<token>`` name) withheld."""

    def keep(match: re.Match[str]) -> str:
        inner = match[1] if match[1] is not None else match[2]
        if len(inner) <= 1 or re.fullmatch(r"<[a-z ]+>", inner):
            return match[0]
        return f"'{WITHHELD}'"

    return " ".join(_QUOTED.sub(keep, text).split())

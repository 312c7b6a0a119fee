"""Which metric names a PromQL expression selects (pure; the expression is untrusted input).

Not a PromQL parser: a tokenizer and the few rules that tell a metric name from everything else an
identifier can be in PromQL — function and aggregation names (followed by ``(``, an aggregation also by
``by``/``without``), keywords (``by``, ``on``, ``offset``, ``and``, ...), label names (inside ``{}`` and in
the label lists of ``by (...)``, ``on (...)``, ``group_left (...)``), strings and numbers. Selectors by
``{__name__="x"}`` and the quoted names of ``{"x.y"}`` count too; ``{__name__=~"a|b"}`` counts when the
regex is a list of names (``a|b``, or ``(a|b)_total``: one group with a common prefix and suffix), and is
reported as not understood otherwise (an untrusted regex is
never run). Never raises; inputs beyond :data:`MAX_EXPRESSION` characters are not read.

It also gives the expression's vector selectors, rebuilt from their tokens (``name{label="value",...}``,
``{matchers}``; ranges, offsets and ``@`` left out): what the watchdog's blind-alert-rules check asks
Prometheus about, one well-formed selector each, never a piece of the untrusted text as it was written; and
whether it calls ``absent``/``absent_over_time`` (a rule written to fire when series are missing).
"""

from __future__ import annotations

import dataclasses
import re

MAX_EXPRESSION = 64 * 1024
AGGREGATIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ]
)
LABEL_LISTS = frozenset(("by", "without", "on", "ignoring", "group_left", "group_right"))
KEYWORDS = frozenset(("bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"))
ABSENT = frozenset(("absent", "absent_over_time"))
_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<number>(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:[a-zA-Z]+\d*)*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@:;|])
    """,
    re.VERBOSE,
)
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_QUOTED_NAME = re.compile(r"^[^\x00-\x1f]{1,512}$")
NAME_REGEX = "a __name__ regex that is not a list of names"  # a problem for names only: its selector is whole


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """The metric names an expression selects, and what could not be read (``problem``; names found
    before it still count)."""

    names: frozenset[str]
    problem: str = ""
    selectors: frozenset[str] = frozenset()  # the vector selectors, rebuilt: 'up{job="kubelet"}'
    absent: bool = False  # it calls absent() or absent_over_time()


@dataclasses.dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, number, ident, op
    text: str


def _tokens(expr: str) -> tuple[list[_Token], str]:
    out: list[_Token] = []
    at = 0
    while at < len(expr):
        match = _TOKEN.match(expr, at)
        if match is None:
            return out, f"cannot read {expr[at : at + 20]!r} at character {at}"
        kind = match.lastgroup or ""
        if kind != "space":
            out.append(_Token(kind, match.group()))
        at = match.end()
    return out, ""


def _unquote(text: str) -> str:
    body = text[1:-1]
    if text[0] == "`":
        return body
    return re.sub(r"\\(.)", r"\1", body)


def metric_names(expr: object) -> Selection:
    """The metric names ``expr`` selects (see the module's docstring for what counts)."""
    if not isinstance(expr, str):
        return Selection(frozenset(), "the expression is not a string")
    if len(expr) > MAX_EXPRESSION:
        return Selection(frozenset(), f"the expression is longer than {MAX_EXPRESSION} characters")
    tokens, problem = _tokens(expr)
    names: set[str] = set()
    selectors: set[str] = set()
    problems = [problem] if problem else []
    absent = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.kind == "op" and token.text == "{":
            i, matchers = _matchers(tokens, i + 1, names, problems)
            if matchers:
                selectors.add("{" + ",".join(matchers) + "}")
            continue
        if token.kind == "op" and token.text == "[":  # a range or subquery: durations only
            i = _closing(tokens, i, "[", "]")
            continue
        if token.kind != "ident":
            i += 1
            continue
        word = token.text
        lower = word.lower()
        if lower in LABEL_LISTS:
            has_list = after is not None and after.text == "("
            i = _closing(tokens, i + 1, "(", ")") if has_list else i + 1  # a list of label names
            continue
        if lower in KEYWORDS or (
            lower in AGGREGATIONS and after is not None and after.text.lower() in LABEL_LISTS
        ):
            i += 1
            continue
        if after is not None and after.text == "(":  # a function or an aggregation
            absent = absent or lower in ABSENT
            i += 1
            continue
        names.add(word)
        i += 1
        labels: list[str] = []
        if after is not None and after.text == "{":
            i, labels = _matchers(tokens, i + 1, names, problems)
        selectors.add(word + ("{" + ",".join(labels) + "}" if labels else ""))
    return Selection(frozenset(names), "; ".join(problems), frozenset(selectors), absent)


def _closing(tokens: list[_Token], i: int, opening: str, closing: str) -> int:
    """The index after the bracket that closes the one at ``i``."""
    depth = 0
    while i < len(tokens):
        if tokens[i].kind == "op":
            if tokens[i].text == opening:
                depth += 1
            elif tokens[i].text == closing:
                depth -= 1
                if depth == 0:
                    return i + 1
        i += 1
    return i


def _matchers(tokens: list[_Token], i: int, names: set[str], problems: list[str]) -> tuple[int, list[str]]:
    """Reads label matchers up to the closing ``}``; adds the names ``__name__`` matchers select. Returns the
    index after the ``}`` and the matchers, each rebuilt from its tokens (``label="value"``)."""
    matchers: list[str] = []
    while i < len(tokens) and tokens[i].text != "}":
        token = tokens[i]
        operator = tokens[i + 1].text if i + 1 < len(tokens) else ""
        value = tokens[i + 2] if i + 2 < len(tokens) else None
        matcher = operator in ("=", "!=", "=~", "!~") and value is not None and value.kind == "string"
        if token.kind in ("ident", "string") and matcher and value is not None:
            label = _unquote(token.text) if token.kind == "string" else token.text
            if label == "__name__":
                _name_matcher(operator, _unquote(value.text), names, problems)
            matchers.append(
                f"{_quoted(label) if token.kind == 'string' else label}{operator}{_quoted(_unquote(value.text))}"
            )
            i += 3
            continue
        if token.kind == "string":  # {"metric.name", ...}: a quoted metric name
            name = _unquote(token.text)
            if _QUOTED_NAME.match(name):
                names.add(name)
                matchers.append(_quoted(name))
        i += 1
    return i + 1, matchers


def _quoted(text: str) -> str:
    """A PromQL double-quoted string of ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_GROUPED = re.compile(r"^([a-zA-Z0-9_:]*)\(([a-zA-Z0-9_:|]+)\)([a-zA-Z0-9_:]*)$")


def regex_names(value: str) -> list[str] | None:
    """The names a ``__name__=~`` regex matches when it is a list of them: ``a|b`` or one group of name parts
    with a common prefix and suffix, ``(addon_updater|uso_runner)_masters_agreed`` (PromQL anchors a regex at
    both ends, so these are exactly the names it matches); None for any other regex (never run)."""
    grouped = _GROUPED.match(value)
    if grouped:
        prefix, inner, suffix = grouped.groups()
        listed = [prefix + part + suffix for part in inner.split("|")]
    else:
        listed = value.split("|")
    return listed if all(_NAME.match(name) for name in listed) else None


def _name_matcher(operator: str, value: str, names: set[str], problems: list[str]) -> None:
    if operator == "=":
        names.add(value)
    elif operator == "=~":
        listed = regex_names(value)
        if listed is None:
            problems.append(f"{NAME_REGEX}: {value[:80]!r}")
        else:
            names.update(listed)
    # != and !~ select every other metric: nothing to name

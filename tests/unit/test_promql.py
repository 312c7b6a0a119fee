"""The PromQL metric-name extractor: what an alert rule selects, and nothing else; never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.structs import promql


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('apiserver_request_total{verb="LIST", code=~"5.."}', {"apiserver_request_total"}),
        ("rate(apiserver_request_total[5m])", {"apiserver_request_total"}),
        ("sum by (job, instance) (rate(a_total[5m])) / ignoring(code) group_left(x) b", {"a_total", "b"}),
        ("sum(rate(a_total[5m])) by (le)", {"a_total"}),
        ("SUM BY (le) (a)", {"a"}),
        (
            "histogram_quantile(0.99, sum by (le, verb) (rate(apiserver_request_duration_seconds_bucket[5m])))",
            {"apiserver_request_duration_seconds_bucket"},
        ),
        ("a and on(job) b unless c or d", {"a", "b", "c", "d"}),
        ("a > bool 5", {"a"}),
        ("a offset 1h30m", {"a"}),
        ("a @ start()", {"a"}),
        ("max_over_time(deriv(a[1h:5m])[1d:])", {"a"}),
        ('label_replace(up, "dst", "$1", "src", "(.*)")', {"up"}),
        ('count_values("version", build_info)', {"build_info"}),
        ("topk(5, sum without (pod) (x)) * on() group_right y", {"x", "y"}),
        ('{__name__="apiserver_storage_objects", resource="pods"}', {"apiserver_storage_objects"}),
        ('{__name__=~"a_total|b_total"}', {"a_total", "b_total"}),
        ('{"my.dotted.metric", job="x"}', {"my.dotted.metric"}),
        ("vector(1) + scalar(a) - 1e3 + 0x1f + Inf + NaN", {"a"}),
        ('absent(up{job="kubelet"} == 1)  # a comment naming not_a_metric', {"up"}),
        ("a_total # trailing comment\n + b_total", {"a_total", "b_total"}),
        ("kube:apiserver:rate5m", {"kube:apiserver:rate5m"}),
    ],
)
def test_names(expr: str, names: set[str]) -> None:
    selection = promql.metric_names(expr)
    assert selection.names == names
    assert selection.problem == ""


def test_a_regex_on_the_name_that_is_no_list_of_names_is_reported_not_run() -> None:
    selection = promql.metric_names('{__name__=~"(a+)+b"} + c')
    assert selection.names == {"c"}
    assert "not a list of names" in selection.problem


@pytest.mark.parametrize(
    ("regex", "names"),
    [
        ("a|b", ["a", "b"]),
        (
            "(addon_updater|uso_runner)_masters_agreed",
            ["addon_updater_masters_agreed", "uso_runner_masters_agreed"],
        ),
        ("kube_(pod|node)", ["kube_pod", "kube_node"]),
        ("(a|b)", ["a", "b"]),
        ("(_x|:y)", ["_x", ":y"]),
        ("a.*", None),
        ("(a|b)(c|d)", None),
        ("(1a|b)", None),  # 1a is no metric name
        ("x(a||b)", ["xa", "x", "xb"]),
        ("(|a)", None),  # "" is no metric name
        ("(a+)+b", None),
    ],
)
def test_a_name_regex_that_lists_names(regex: str, names: list[str] | None) -> None:
    assert promql.regex_names(regex) == names


def test_the_charts_own_rule_selects_by_a_grouped_list_of_names() -> None:
    expr = 'max by (cluster, namespace) ({__name__=~"(addon_updater|uso_runner)_masters_agreed"}) == 0'
    selection = promql.metric_names(expr)
    assert selection.names == {"addon_updater_masters_agreed", "uso_runner_masters_agreed"}
    assert selection.problem == ""


def test_negative_name_matchers_select_nothing_by_name() -> None:
    assert promql.metric_names('{__name__!="a", job="x"}').names == frozenset()


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        (None, "not a string"),
        (42, "not a string"),
        ("x" * (promql.MAX_EXPRESSION + 1), "longer than"),
        ('up{job="unterminated', "cannot read"),
        ("up $ 1", "cannot read"),
    ],
)
def test_bad_input_is_a_problem_not_an_exception(expr: object, problem: str) -> None:
    assert problem in promql.metric_names(expr).problem


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_read_without_an_exception(expr: str) -> None:
    selection = promql.metric_names(expr)
    for name in selection.names:
        assert name in expr or name.replace("\\", "") in expr.replace("\\", "")


_PIECES = st.sampled_from(
    ["sum", "by", "(", ")", "{", "}", "[5m]", "rate", "a_total", "b", ",", "job", "=", '"x"', "=~", "offset",
     "1h", "on", "group_left", "+", "and", "__name__", "@", "bool", "1", ":", "[", "]"]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(_PIECES, max_size=40))
def test_any_sequence_of_promql_tokens_is_read_without_an_exception(pieces: list[str]) -> None:
    assert promql.metric_names(" ".join(pieces)).names <= {piece.strip('"') for piece in pieces}


@pytest.mark.parametrize(
    ("expr", "selectors"),
    [
        ("up", {"up"}),
        ('sum(rate(apiserver_request_total{verb="LIST", code=~"5.."}[5m] offset 1h))',
         {'apiserver_request_total{verb="LIST",code=~"5.."}'}),
        ("max by (resource) (apiserver_storage_objects) > 1e5 and on(job) up", {"apiserver_storage_objects", "up"}),
        ('{__name__="a", job!="x"} / b{}', {'{__name__="a",job!="x"}', "b"}),
        ('{"my.dotted.metric", job="x"}', {'{"my.dotted.metric",job="x"}'}),
        (r'up{path=~"a\\.b\"c"}', {r'up{path=~"a\\.b\"c"}'}),
        ("a{job=`raw\\s`}", {'a{job="raw\\\\s"}'}),
    ],
)  # fmt: skip
def test_selectors_are_rebuilt_from_their_tokens(expr: str, selectors: set[str]) -> None:
    selection = promql.metric_names(expr)
    assert selection.selectors == selectors
    assert selection.problem == ""


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_every_selector_rebuilt_reads_back_as_itself(expr: str) -> None:
    """A rebuilt selector is well formed: read again, it is exactly one selector, itself."""
    for selector in promql.metric_names(expr).selectors:
        again = promql.metric_names(selector)
        assert again.selectors == {selector}, (expr, selector)


@pytest.mark.parametrize(
    ("expr", "absent"),
    [
        ('absent(up{job="kubelet"})', True),
        ("ABSENT_OVER_TIME(a[5m]) or b", True),
        ("absent_total > 0", False),
        ('up{absent="x"} # absent(y)', False),
    ],
)
def test_a_call_of_absent_is_told(expr: str, absent: bool) -> None:
    assert promql.metric_names(expr).absent is absent

"""Properties of the bundle loader: a variable's value never adds a document, a key or any structure (it is
a value, or the bundle is refused naming it); the substituted files read as exactly what is applied; any
text, however nested or aliased, is a bundle or a BundleError within the bounds (never a RecursionError)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from controllers.bundles import documents, model
from tests import strategies

HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
# Where a variable may stand: a plain, single- or double-quoted value, a block scalar, inside a flow
# collection, part of a longer plain value, a list item, a comment.
TEMPLATES = [
    "data:\n  v: ${EVIL}\n  w: x\n",
    "data:\n  v: '${EVIL}'\n  w: x\n",
    'data:\n  v: "${EVIL}"\n  w: x\n',
    "data:\n  v: |\n    ${EVIL}\n  w: x\n",
    "data:\n  v: >-\n    a ${EVIL} b\n  w: x\n",
    "data: {v: ${EVIL}, w: x}\n",
    "data:\n  v: prefix-${EVIL}-suffix\n  w: x\n",
    "items:\n- ${EVIL}\n- x\n",
    "# ${EVIL}\ndata:\n  w: x\n",
]
# Values made of what YAML gives meaning to, and of plain text.
YAML_TEXT = st.lists(
    st.sampled_from([*"ab1 \n\t-:#'\"[]{},&*!|>%@`?\\$", "---", "...", "\n---\n", ": ", "- "]),
    max_size=16,
).map("".join)


def shape(value: Any) -> Any:
    """The structure of parsed YAML: mappings with their keys, lists with their length, every scalar alike."""
    if isinstance(value, dict):
        return {str(key): shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return "scalar"


def load(template: str, value: str) -> documents.Loaded:
    bundle = model.Bundle(
        minor="1.36", source="test", files=(model.BundleFile(name="f.yaml", text=HEAD + template),)
    )
    return documents.load(bundle, variables={"EVIL": value, "OTHER": "x"})


def attempt(
    text: str, *, limits: documents.Limits = documents.LIMITS
) -> documents.Loaded | model.BundleError:
    """The loaded bundle of one file, or its BundleError (any other exception fails the test)."""
    bundle = model.Bundle(minor="1.36", source="test", files=(model.BundleFile(name="f.yaml", text=text),))
    try:
        return documents.load(bundle, variables={"EVIL": "x", "OTHER": "x"}, limits=limits)
    except model.BundleError as error:
        return error


def bodies(loaded: documents.Loaded) -> list[dict[str, Any]]:
    return [manifest.body for manifest in loaded.manifests]


@strategies.PROPERTY
@given(template=st.sampled_from(TEMPLATES), value=st.one_of(YAML_TEXT, st.text(max_size=12)))
def test_a_variable_is_a_value_or_the_bundle_is_refused_naming_it(template: str, value: str) -> None:
    expected = shape(bodies(load(template, "x")))
    bundle = model.Bundle(
        minor="1.36", source="test", files=(model.BundleFile(name="f.yaml", text=HEAD + template),)
    )
    try:
        loaded: documents.Loaded | model.BundleError = documents.load(
            bundle, variables={"EVIL": value, "OTHER": "x"}
        )
    except model.BundleError as error:
        loaded = error
    if isinstance(loaded, model.BundleError):
        event(f"refused: {loaded.reason}")
        assert loaded.reason == "variable", loaded
        assert "EVIL" in str(loaded) and "OTHER" not in str(loaded)
        return
    event("substituted")
    assert shape(bodies(loaded)) == expected
    # What the directory target writes reads as exactly what the apply target applies.
    (file,) = loaded.files
    again = documents.load(model.Bundle(minor="1.36", source="t", files=(file,)), variables={})
    assert bodies(again) == bodies(loaded)


@strategies.PROPERTY
@given(text=st.one_of(YAML_TEXT, st.text(max_size=40)).map(lambda t: HEAD + t))
def test_any_text_is_a_bundle_or_a_bundle_error(text: str) -> None:
    outcome = attempt(text)
    if isinstance(outcome, model.BundleError):
        event(outcome.reason)
        assert str(outcome).startswith("f.yaml")


def nested(depth: int, *, fan: int, alias: bool) -> str:
    """A document nested ``depth`` deep (flow sequences), each level ``fan`` times wide through an alias."""
    if not alias:
        return "a: " + "[" * depth + "x" + "]" * depth + "\n"
    lines = ["a: &l0 [x]"]
    for level in range(1, depth):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * fan)}]")
    return "\n".join(lines) + "\n"


LIMITS = documents.Limits(depth=10, nodes=500, aliases=40)


@strategies.PROPERTY
@given(depth=st.integers(1, 40), fan=st.integers(1, 6), alias=st.booleans())
def test_nesting_and_aliases_are_bounded(depth: int, fan: int, alias: bool) -> None:
    expanded = sum(fan**level for level in range(depth)) * 2 if alias else depth
    outcome = attempt(HEAD + nested(depth, fan=fan, alias=alias), limits=LIMITS)
    if isinstance(outcome, model.BundleError):
        event("refused")
        assert outcome.reason == "limit", outcome
        return
    event("loaded")
    assert depth <= LIMITS.depth and expanded <= 2 * LIMITS.nodes


@pytest.mark.parametrize("value", ["1\n---\nkind: ClusterRoleBinding", "x\n  injected: 1", "'", "a: b"])
def test_known_injections_are_refused(value: str) -> None:
    with pytest.raises(model.BundleError) as error:
        load(TEMPLATES[0], value)
    assert error.value.reason == "variable"

"""The one bundle loader (controllers/bundles/documents.py): variables substituted as values, hostile YAML
refused within its bounds (time and memory measured here), parser errors that quote no value."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import pytest

from controllers.bundles import documents, model

HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
SECRET_VALUE = "s3cr3t-Value-7f2b"


def bundle(**files: str) -> model.Bundle:
    return model.Bundle(
        minor="1.36", source="test", files=tuple(model.BundleFile(name=n, text=t) for n, t in files.items())
    )


def load(text: str, **variables: str) -> documents.Loaded:
    return documents.load(bundle(**{"f.yaml": text}), variables=variables)


def error_of(text: str, **variables: str) -> model.BundleError:
    with pytest.raises(model.BundleError) as error:
        load(text, **variables)
    return error.value


# --- variables are values ----------------------------------------------------------------------------------


def test_known_variables_escapes_and_other_dollars() -> None:
    text = HEAD + "data:\n  domain: ${DOMAIN}\n  literal: $${DOMAIN}\n  shell: $HOME ${not-a-name}\n"
    loaded = load(text, DOMAIN="cluster.local")
    assert loaded.manifests[0].body["data"] == {
        "domain": "cluster.local",
        "literal": "${DOMAIN}",
        "shell": "$HOME ${not-a-name}",
    }
    # The files as the directory target writes them: substituted text, comments kept.
    (file,) = loaded.files
    assert "domain: cluster.local\n  literal: ${DOMAIN}\n" in file.text


def test_unknown_variable_is_an_error_naming_it() -> None:
    error = error_of(HEAD + "data: {a: '${NOPE}', b: '${DOMAIN}', c: '${ALSO_NOPE}'}\n", DOMAIN="x")
    assert error.reason == "variable"
    assert str(error) == "f.yaml: unknown variable(s) ALSO_NOPE, NOPE (known: DOMAIN)"


def test_an_unknown_variable_in_a_comment_is_no_error_and_stays() -> None:
    loaded = load(HEAD + "# see ${WHATEVER}\ndata: {a: b}\n")
    assert "# see ${WHATEVER}" in loaded.files[0].text


def test_a_plain_scalar_is_typed_after_substitution_a_quoted_one_stays_a_string() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: ${N}\n"
    text += "  paused: ${FLAG}\n  note: '${N}'\n"
    body = load(text, N="2", FLAG="false").manifests[0].body
    assert body["spec"] == {"replicas": 2, "paused": False, "note": "2"}


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("plain", "x\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding"),
        ("plain", "x\nextra: key"),
        ("plain", "a: b"),
        ("plain", "[1, 2]"),
        ("single", "it's"),
        ("double", 'x", "injected": "y'),
        ("block", "x\nextra: key"),
        ("plain", "1 # a comment"),
    ],
)
def test_a_value_that_would_change_the_structure_is_refused_naming_it(where: str, value: str) -> None:
    template = {
        "plain": "data:\n  v: ${EVIL}\n",
        "single": "data:\n  v: '${EVIL}'\n",
        "double": 'data:\n  v: "${EVIL}"\n',
        "block": "data:\n  v: |\n    ${EVIL}\n",
    }[where]
    error = error_of(HEAD + template, EVIL=value, GOOD="fine")
    assert error.reason == "variable"
    assert "variable(s) EVIL would change the YAML structure" in str(error)
    assert "GOOD" not in str(error)


def test_billion_laughs_cannot_come_in_through_a_variable() -> None:
    error = error_of(HEAD + "data:\n  v: ${X}\n", X=laughs(levels=9))
    assert error.reason == "variable"


# --- parser bounds -----------------------------------------------------------------------------------------


def laughs(*, levels: int) -> str:
    """The billion laughs: 9 aliases on each of ``levels`` levels (10**9 strings at 9), 453 bytes."""
    lines = [HEAD.rstrip("\n"), "data:", "  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    previous = "a"
    for level in range(levels):
        name = chr(ord("b") + level)
        lines.append(f"  {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
        previous = name
    return "\n".join(lines) + "\n"


# Bundles built to exhaust the parser: each is refused by a bound of the structure (aliases, depth) while
# its node graph is still small, whatever the size of what it would expand to.
HOSTILE: dict[str, Callable[[], str]] = {
    "billion laughs": lambda: laughs(levels=9),
    "20,000 nested [": lambda: "a: " + "[" * 20_000 + "]" * 20_000 + "\n",
    "20,000 nested {": lambda: "a: " + "{b: " * 20_000 + "c" + "}" * 20_000 + "\n",
    "deep block nesting": lambda: "".join(f"{' ' * i}k{i}:\n" for i in range(200)) + " " * 200 + "v\n",
    "deep through aliases": lambda: "".join(
        f"a{i}: &a{i} [[[[[[[[[[[[[[[[{'*a' + str(i - 1) if i else 'x'}]]]]]]]]]]]]]]]]\n" for i in range(60)
    ),
    "a recursive alias": lambda: "a: &a [*a]\n",
    "5,000 aliases": lambda: "a: &a x\nb: [" + ", ".join(["*a"] * 5000) + "]\n",
    "5 MiB": lambda: "a: " + "x" * (5 * documents.MIB) + "\n",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_bundle_is_a_limit_error_within_a_second_and_a_few_mib(name: str) -> None:
    text = HOSTILE[name]()
    started = time.perf_counter()
    error = error_of(text)
    elapsed = time.perf_counter() - started
    assert error.reason == "limit", error
    assert str(error).startswith("f.yaml: ") and str(error).endswith("(limit)")
    assert elapsed < 1.0, f"{name}: {elapsed:.2f} s"
    tracemalloc.start()  # again, measuring memory (tracemalloc slows it down)
    try:
        error_of(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # What parsing allocated beyond the text itself (the 5 MiB text is the test's own).
    assert peak - 2 * len(text) < 4 * documents.MIB, f"{name}: peak {peak / documents.MIB:.1f} MiB"


# Bundles that are merely large stop at the node and document bounds as they are read, not once read whole.
# (Small bounds here keep the test fast; the default bounds and their cost: docs/addon-updater.md.)
@pytest.mark.parametrize(
    ("text", "limits", "complaint"),
    [
        (
            "a: [" + "1," * 1_000_000 + "1]\n",
            documents.Limits(nodes=2000, bytes=2**40),
            "more than 2000 nodes",
        ),
        ("a:\n" + "- 1\n" * 1_000_000, documents.Limits(nodes=2000, bytes=2**40), "more than 2000 nodes"),
        ("---\na: 1\n" * 1_000_000, documents.Limits(documents=100, bytes=2**40), "more than 100 documents"),
    ],
)
def test_a_large_bundle_stops_at_the_bound_as_it_is_read(
    text: str, limits: documents.Limits, complaint: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(model.BundleError) as error:
        documents.load(bundle(**{"f.yaml": text}), variables={}, limits=limits)
    assert error.value.reason == "limit" and complaint in str(error.value)
    assert time.perf_counter() - started < 1.0


def test_the_limits_hold_across_the_files_of_a_bundle() -> None:
    limits = documents.Limits(documents=3)
    files = {f"f{i}.yaml": HEAD.replace("name: c", f"name: c{i}") for i in range(4)}
    with pytest.raises(model.BundleError) as error:
        documents.load(bundle(**files), variables={}, limits=limits)
    assert error.value.reason == "limit" and "more than 3 documents" in str(error.value)


def test_a_realistic_bundle_is_well_inside_the_limits() -> None:
    # 200 Deployments of a few dozen nodes each, with a shared anchor: what a large add-on set looks like.
    deployment = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d{i}, namespace: n, labels: &l {{a: b}}}}\n"
        "spec:\n  template:\n    spec:\n      containers:\n"
        "      - {{name: c, image: 'registry.example/x:1', args: [--a, --b, --c], env: [{{name: A, value: b}}]}}\n"
        "  selector: {{matchLabels: *l}}\n"
    )
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n"
    text += "".join("---\n" + deployment.format(i=i) for i in range(200))
    assert len(load(text).manifests) == 201


# --- errors quote no value ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  password: '{SECRET_VALUE}\n",
        f'apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  password: "{SECRET_VALUE}\\q"\n',
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  password: {SECRET_VALUE}: x\n",
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{password: {SECRET_VALUE}\n",
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  password: !{SECRET_VALUE} x\n",
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  password: *{SECRET_VALUE}\n",
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata:\n  password: !!binary {SECRET_VALUE}\n",
    ],
)
def test_a_parse_error_in_a_secret_says_where_but_never_the_value(text: str) -> None:
    error = error_of(text)
    assert error.reason in ("parse", "invalid"), error
    assert SECRET_VALUE not in str(error) and SECRET_VALUE[:8] not in str(error)
    if error.reason == "parse":
        assert "line " in str(error), error

"""Reading bundles from a directory tree and from ConfigMap bodies (no cluster needed for these parts)."""

from __future__ import annotations

import pathlib

import pytest

from controllers.addon_updater import logic
from controllers.bundles import model, source


def test_directory_tree(tmp_path: pathlib.Path) -> None:
    for minor in ("1.35", "1.36", "latest"):
        (tmp_path / minor).mkdir()
    (tmp_path / "1.36" / "b.yaml").write_text("b")
    (tmp_path / "1.36" / "a.yml").write_text("a")
    (tmp_path / "1.36" / "README.md").write_text("not a bundle file")
    (tmp_path / "1.36" / ".hidden.yaml").write_text("editor swap file")
    (tmp_path / "1.36" / "nested").mkdir()
    assert sorted(source._directory_minors(tmp_path)) == ["1.35", "1.36"]
    bundle = source._directory_bundle(tmp_path, "1.36")
    assert [(f.name, f.text) for f in bundle.files] == [("a.yml", "a"), ("b.yaml", "b")]
    assert bundle.source == f"directory {tmp_path / '1.36'}"


def test_missing_directory_is_a_source_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(source.SourceError):
        source._directory_minors(tmp_path / "absent")


def configmap(name: str, minor: str, **data: str) -> logic.JSON:
    return {"metadata": {"name": name, "labels": {model.CONFIGMAP_MINOR_LABEL: minor}}, "data": data}


def test_configmaps_of_one_minor_make_one_bundle() -> None:
    items = [
        configmap("b-part", "1.36", **{"pdb.yaml": "p"}),
        configmap("a-part", "1.36", **{"coredns.yaml": "c", "notes.txt": "ignored"}),
        configmap("old", "1.35", **{"coredns.yaml": "old"}),
    ]
    bundle = source._configmap_bundle(items, minor="1.36", namespace="kube-system")
    assert [(f.name, f.text) for f in bundle.files] == [("coredns.yaml", "c"), ("pdb.yaml", "p")]
    assert bundle.source == "ConfigMap(s) kube-system/a-part, b-part"


def test_a_file_in_two_configmaps_is_an_error() -> None:
    items = [configmap("a", "1.36", **{"x.yaml": "1"}), configmap("b", "1.36", **{"x.yaml": "2"})]
    with pytest.raises(model.BundleError) as error:
        source._configmap_bundle(items, minor="1.36", namespace="ns")
    assert error.value.reason == "duplicate" and "x.yaml" in str(error.value)

"""docs/adding-a-controller.md, done: its example controller built in a copy of the repository, then run.

Every code block of the page names a file: ``file=PATH`` creates it, ``edit=PATH before="LINE"`` / ``after="LINE"``
inserts the block next to the first line equal to LINE, ``edit=PATH append`` appends it. The test applies them
to a copy of the repository (a git repository of its own, so that what the example touched can be counted),
runs ``make generate``'s generator, the registry and generated-file tests, import-linter and ``helm template``
there, then runs the example as a real process against the local apiserver until it has labelled Namespaces.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator

import yaml

from controllers.kube import client, resources
from controllers.kube import state as kstate
from controllers.runtime import config
from e2e import cluster
from tests import chart_tools as ct
from tests import harness

REPO = pathlib.Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "adding-a-controller.md"
BLOCK = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```\n", re.MULTILINE | re.DOTALL)
LABEL = "kube-upgrade-controllers.io/agreed-version"


def blocks() -> Iterator[tuple[dict[str, str], str]]:
    """Each code block of the page that names a file: its options and its text."""
    for match in BLOCK.finditer(DOC.read_text()):
        words = shlex.split(match["info"])[1:]
        options = dict(word.partition("=")[::2] for word in words)
        if "file" in options or "edit" in options:
            yield options, match["body"]


def apply(tree: pathlib.Path) -> None:
    for options, body in blocks():
        if "file" in options:
            path = tree / options["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            continue
        path = tree / options["edit"]
        text = path.read_text()
        if "append" in options:
            path.write_text(text + ("" if text.endswith("\n") else "\n") + body)
            continue
        line = options.get("before") or options["after"]
        lines = text.splitlines(keepends=True)
        at = next(i for i, each in enumerate(lines) if each.rstrip("\n") == line)
        lines.insert(at if "before" in options else at + 1, body)
        path.write_text("".join(lines))


def in_tree(tree: pathlib.Path) -> dict[str, str]:
    """The environment of a process that imports ``controllers`` and ``tests`` from ``tree``."""
    return {**os.environ, "PYTHONPATH": str(tree)}


def run(tree: pathlib.Path, *argv: str) -> str:
    done = subprocess.run(
        argv, cwd=tree, env=in_tree(tree), capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def copy_repository(tree: pathlib.Path) -> None:
    """The repository's tracked files (as they are now) in ``tree``, committed there."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in listed.decode().split("\0"):
        source = REPO / name
        if name and source.is_file() and not source.is_symlink():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes(source.read_bytes())
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"],
    ):
        subprocess.run(["git", *args], cwd=tree, check=True, capture_output=True)


async def test_the_example_controller_of_the_docs_builds_and_runs(
    tmp_path: pathlib.Path, kube: client.Kube, kubeconfig: str, nodes: cluster.Nodes
) -> None:
    tree = tmp_path / "repo"
    copy_repository(tree)
    apply(tree)
    python = sys.executable
    run(tree, python, "-m", "tests.registry_files")
    changed = run(tree, "git", "status", "--porcelain", "--untracked-files=all").splitlines()
    touched = sorted(line[3:] for line in changed)
    print(f"\nthe example touched {len(touched)} files: {', '.join(touched)}")
    assert len(touched) == 12, touched  # its 6 files, 3 edits, 3 generated (pyproject, _registry.tpl, schema)

    # What make test would check of it: the package's shape and the generated lists, the contracts.
    run(tree, python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/test_registry.py",
        "tests/unit/test_registry_files.py")  # fmt: skip
    assert "namespace_labeler" in run(tree, str(pathlib.Path(python).parent / "lint-imports"), "--verbose")
    rendered = run(tree, str(ct.tool("helm")), "template", "kuc", "charts/kube-upgrade-controllers")
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    role = ct.find(objects, "ClusterRole", "kuc-kube-upgrade-controllers-namespace-labeler")
    assert {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "verbs": ["get", "list", "watch", "patch"],
    } in role["rules"]
    deployment = ct.find(objects, "Deployment", "kuc-kube-upgrade-controllers-namespace-labeler")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"] == ["namespace-labeler"]

    # Run it: masters that agree, two Namespaces to label.
    label = f"example-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        await nodes.create(f"{label}-m{i}", version="v1.37.2", master=True, labels={label: ""})
    names = [f"{label}-{i}" for i in range(2)]
    for name in names:
        await kube.create(resources.NAMESPACES.path(), {"metadata": {"name": name, "labels": {label: ""}}})
    argv = [python, "-m", "controllers.namespace_labeler", "--kubeconfig", kubeconfig, "--namespace", names[0],
            f"--master-selectors={cluster.CONTROL_PLANE},{label}", "--settle-seconds=0", f"--selector={label}",
            "--no-metrics-secure"]  # fmt: skip
    with harness.serve(*argv, env=in_tree(tree), cwd=tree) as (process, port):

        async def labelled() -> bool:
            found = [await kube.get(resources.NAMESPACES.path(name=name)) for name in names]
            return all(ns["metadata"].get("labels", {}).get(LABEL) == "v1.37.2" for ns in found)

        await harness.eventually(labelled, timeout=60, interval=0.2, what="the Namespaces labelled")

        def done() -> bool:
            code, body = harness.scrape(port, "/status")
            return code == 200 and json.loads(body)["phase"] == "Done"

        await harness.eventually(done, timeout=30, interval=0.2, what="the status Done")
        status = json.loads(harness.scrape(port, "/status")[1])
        assert (status["version"], status["progress"]) == ("v1.37.2", "2/2 namespaces labelled")
        assert harness.sample(harness.scrape(port)[1], "namespace_labeler_unlabelled_namespaces") == 0
        process.terminate()
        assert process.wait(10) == 0
    name = kstate.state_name(release=config.BaseConfig().release, controller="namespace-labeler")
    saved = await kstate.read(kube, namespace=names[0], name=name)
    assert (saved.get("phase"), saved.get("version")) == ("Done", "v1.37.2")

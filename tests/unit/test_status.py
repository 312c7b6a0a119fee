"""The status table: rows from state ConfigMaps, placeholders for missing controllers, odd values."""

from __future__ import annotations

from controllers import registry
from controllers.cli import output, status
from controllers.kube import state


def make_state(name: str, namespace: str = "upgrades", **data: str) -> state.State:
    return state.State(namespace=namespace, name=name, data=data, resource_version="1")


def test_every_workload_cluster_controller_gets_a_row_in_a_fixed_order() -> None:
    rows = status.status_rows(
        [
            make_state("kuc-node-tainter-state", version="v1.36.3", phase="done", progress="12/12"),
            make_state("kuc-addon-updater-state", version="v1.36.3", phase="applied"),
        ]
    )
    assert [row.controller for row in rows] == list(registry.EVERY_CLUSTER)
    assert rows[0].phase == "applied"
    assert (rows[1].phase, rows[1].name) == ("no state", "")  # uso-runner wrote nothing yet
    assert (rows[2].version, rows[2].progress) == ("v1.36.3", "12/12")


def test_a_management_cluster_controller_shows_only_where_it_runs() -> None:
    relay = [name for name in registry.NAMES if name not in registry.EVERY_CLUSTER]
    assert relay == ["verdict-relay"]
    assert [row.controller for row in status.status_rows([])] == list(registry.EVERY_CLUSTER)
    rows = status.status_rows([make_state("kuc-verdict-relay-state", phase="Watching")])
    assert [row.controller for row in rows] == list(registry.NAMES)
    assert (rows[-1].name, rows[-1].phase) == ("kuc-verdict-relay-state", "Watching")


def test_controller_is_read_from_the_state_name_whatever_the_release() -> None:
    rows = status.status_rows(
        [
            make_state("prod-kube-upgrade-controllers-uso-runner-state", phase="migrating"),
            make_state("kube-upgrade-controllers-uso-runner-state", namespace="a", phase="done"),
            make_state("kuc-sample-controller-state", phase="x"),
        ]
    )
    uso = [row for row in rows if row.controller == "uso-runner"]
    assert [(row.namespace, row.phase) for row in uso] == [("a", "done"), ("upgrades", "migrating")]
    assert rows[-1].controller == "kuc-sample-controller"  # not a registry name: listed last, by its name


def table(rows: list[status.StatusRow], *, full: bool = False) -> str:
    view = status.status_view(rows, full=full)
    return output.render(output.Outcome(code=0, document=None, brief=view, full=view), "table")


def test_table_has_a_header_and_aligned_columns() -> None:
    rows = status.status_rows([make_state("kuc-leader-watchdog-state", version="v1.36.3", phase="watching")])
    lines = table(rows).splitlines()
    assert lines[0].split() == ["CONTROLLER", "NAMESPACE", "VERSION", "PHASE", "PROGRESS", "UPDATED", "LAST",
                                "ERROR"]  # fmt: skip
    assert len(lines) == 1 + len(registry.EVERY_CLUSTER)
    version_column = lines[0].index("VERSION")
    assert lines[4][version_column:].startswith("v1.36.3")
    assert lines[1].split()[:2] == ["addon-updater", "-"]  # missing values show as "-"
    wide = table(rows, full=True).splitlines()
    assert wide[0].split()[:4] == ["CONTROLLER", "NAMESPACE", "STATE", "CONFIGMAP"]
    assert wide[4].split()[:3] == ["leader-watchdog", "upgrades", "kuc-leader-watchdog-state"]


def test_a_multi_line_or_long_error_stays_on_one_line() -> None:
    error = "apply failed:\n  " + "x" * 300
    rows = status.status_rows([make_state("kuc-addon-updater-state", lastError=error)])
    brief = table(rows)
    assert len(brief.splitlines()) == 1 + len(registry.EVERY_CLUSTER)
    cell = brief.splitlines()[1].split("  ")[-1]
    assert cell.startswith("apply failed: xxx") and cell.endswith("…") and len(cell) == status.ERROR_WIDTH
    wide = table(rows, full=True)
    assert len(wide.splitlines()) == 1 + len(registry.EVERY_CLUSTER)
    assert wide.splitlines()[1].endswith("apply failed: " + "x" * 300)  # whole, still one line
    assert status.status_json(rows)[0]["lastError"] == error  # JSON keeps it as written


def test_json_output_has_every_key() -> None:
    rows = status.status_rows([])
    assert [item["controller"] for item in status.status_json(rows)] == list(registry.EVERY_CLUSTER)
    assert set(status.status_json(rows)[0]) == {
        "controller", "namespace", "name", "version", "phase", "progress", "updatedAt", "lastError"
    }  # fmt: skip

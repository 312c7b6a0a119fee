"""The `make demo` scenario as a test: every step of the timeline must happen, in order."""

from __future__ import annotations

import pathlib

from e2e import controlplane, demo

STEPS = [
    "cluster",
    "agree-old",
    "addon-old",
    "crd",
    "disagree",
    "master",
    "agree-new",
    "addon-new",
    "migrated",
    "tainted",
    "replaced",
    "untainted",
    "healthy",
    "inject",
    "stale-leader",
]


async def test_demo_scenario_shows_every_step(tmp_path: pathlib.Path) -> None:
    # A control plane of its own: the demo owns the whole cluster (uso-runner migrates everything stored).
    with controlplane.running() as plane:
        timeline = demo.Timeline(quiet=True)
        procs = await demo.run_scenario(plane, timeline, logs=tmp_path)
    seen = [step.key for step in timeline.steps]
    assert [key for key in seen if key in STEPS and key != "master"] == [s for s in STEPS if s != "master"]
    assert seen.count("master") == 3
    assert all(process.popen.returncode == 0 for process in procs.values()), {
        name: (process.popen.returncode, process.log.read_text()[-2000:]) for name, process in procs.items()
    }

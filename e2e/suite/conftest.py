"""The kind e2e suite (``make e2e``): one scenario on a real kind cluster, in stages that run in file order.

The cluster comes from ``make kind-up`` (``e2e/kind/cluster.sh`` + ``e2e/kind/deploy.py``); the suite talks to
it with the official ``kubernetes`` client. ``make e2e`` runs it with ``-x``: a stage that fails stops the
scenario, since every later stage builds on the ones before.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from e2e import containers
from e2e.kind import k8s


@dataclasses.dataclass
class Timeline:
    """What happened when, printed as it happens (``pytest -s``) and summed up at the end, like ``make demo``."""

    started: float = dataclasses.field(default_factory=time.monotonic)
    lines: list[str] = dataclasses.field(default_factory=list)
    reactions: dict[str, float] = dataclasses.field(default_factory=dict)
    facts: dict[str, str] = dataclasses.field(default_factory=dict)

    def mark(self, message: str) -> float:
        now = time.monotonic()
        line = f"[{now - self.started:7.1f}s] {message}"
        self.lines.append(line)
        print(line, flush=True)
        return now

    def summary(self) -> str:
        rows = [f"  {what:58} {seconds:6.1f} s" for what, seconds in self.reactions.items()]
        facts = [f"  {what:58} {value}" for what, value in self.facts.items()]
        return "\n".join(
            ["", "timeline:", *self.lines, "", "reactions (seconds after the trigger):", *rows, "", *facts]
        )


@dataclasses.dataclass
class MemorySampler:
    """The cluster's node containers' memory (as ``docker stats`` counts it), sampled in the background."""

    peak_mib: float = 0.0
    peak_after: str = ""
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def sample(self) -> float:
        selector = f"label=io.x-k8s.kind.cluster={k8s.CLUSTER}"
        ids = subprocess.run(
            ["docker", "ps", "-q", "--filter", selector], capture_output=True, text=True, check=False
        ).stdout.split()
        try:
            return sum(containers.memory_mib(*ids)) if ids else 0.0
        except subprocess.CalledProcessError:  # a node container stopped meanwhile: next sample
            return 0.0

    def run(self, timeline: Timeline) -> None:
        while not self.stop.wait(5.0):
            total = self.sample()
            if total > self.peak_mib:
                self.peak_mib, self.peak_after = total, timeline.lines[-1] if timeline.lines else "the start"


@pytest.fixture(scope="session")
def timeline() -> Iterator[Timeline]:
    if not k8s.KUBECONFIG.exists():
        pytest.fail("no kind cluster: run `make kind-up` first (or `make e2e`, which does)")
    line = Timeline()
    memory = MemorySampler()
    threading.Thread(target=memory.run, args=(line,), name="memory", daemon=True).start()
    yield line
    memory.stop.set()
    peak = f"{memory.peak_mib / 1024:.2f} GiB, after {memory.peak_after}"
    line.facts["the cluster's memory at its peak (docker stats, every node)"] = peak
    print(line.summary(), flush=True)

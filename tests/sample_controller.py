"""A minimal controller on the shared runtime, for testing the runtime itself as a real process.

It records each agreed version in its state ConfigMap; ``--once`` prints the agreement it sees.

    python -m tests.sample_controller --kubeconfig K [flags]
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from controllers.runtime import app, config, reconciler


@dataclasses.dataclass(frozen=True)
class SampleConfig(config.BaseConfig):
    greeting: str = config.option("hello", "A controller-specific option.")
    workers: int = config.option(4, "A positive integer option.", check=config.positive)


class Sample(reconciler.Reconciler[SampleConfig]):
    name = "sample-controller"
    description = "Records every agreed version in its state ConfigMap."
    config_type = SampleConfig

    def wakes(self) -> reconciler.Wakes:
        return reconciler.Wakes(agreement=True)

    async def sync(self) -> reconciler.Synced:
        agreement = self.ctx.agreements.current
        if agreement is None:
            return reconciler.Synced(ok=False)
        current = await self.ctx.read_state()
        seen = current.get("seen").split(",") if current.get("seen") else []
        if agreement.version.raw not in seen[-1:]:
            changes = {"version": agreement.version.raw, "seen": ",".join([*seen, agreement.version.raw])}
            await self.ctx.update_state(current, changes)
        return reconciler.Synced()

    def status(self) -> dict[str, Any]:
        observation = self.ctx.agreements.observation
        return {
            "agreed": bool(observation and observation.agreed),
            "reason": reconciler.no_agreement(self.ctx),
        }


if __name__ == "__main__":
    sys.exit(app.main(Sample))

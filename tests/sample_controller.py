"""A minimal controller on the shared runtime, for testing the runtime itself as a real process.

It records each agreed version in its state ConfigMap; ``--once`` prints the agreement it sees.

    python -m tests.sample_controller --kubeconfig K [flags]
"""

from __future__ import annotations

import dataclasses
import json
import sys

from controllers.runtime import app, config


@dataclasses.dataclass(frozen=True)
class SampleConfig(config.BaseConfig):
    greeting: str = config.option("hello", "A controller-specific option.")
    workers: int = config.option(4, "A positive integer option.", check=config.positive)


class Sample:
    name = "sample-controller"
    description = "Records every agreed version in its state ConfigMap."
    config_type = SampleConfig

    async def run(self, ctx: app.Context[SampleConfig]) -> None:
        ctx.health.ready = True
        async for agreement in ctx.agreements.changes():
            current = await ctx.read_state()
            seen = current.get("seen")
            await ctx.update_state(
                current,
                {"version": agreement.version.raw, "seen": f"{seen},{agreement.version.raw}".strip(",")},
            )

    async def once(self, ctx: app.Context[SampleConfig]) -> int:
        observation = await ctx.agreements.now()
        print(json.dumps({"agreed": observation.agreed, "reason": observation.reason}))
        return 0 if observation.agreed else 1


if __name__ == "__main__":
    sys.exit(app.main(Sample()))

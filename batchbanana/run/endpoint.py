"""Where a run sends and with which key: the endpoint (the built-in simulator started in
process for `simulate`, billing at the job's own prices) and the key from the environment."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from batchbanana.errors import UserError
from batchbanana.plan.job import SIMULATE, Job
from batchbanana.rules.pricing import price_rule


def price_function(job: Job) -> Callable[[str, str], float]:
    def price(model: str, image_size: str) -> float:
        rule = price_rule(job.price_book, job.pricing, model, image_size)
        return rule.estimate_usd(image_size) if rule else 0.0

    return price


@asynccontextmanager
async def endpoint_for(job: Job, endpoint: str) -> AsyncIterator[str]:
    if endpoint != SIMULATE:
        yield endpoint
        return
    from batchbanana.simulator import SimulatorConfig, run_simulator

    config = SimulatorConfig(price_usd=price_function(job), price_book=job.price_book)
    async with run_simulator(config) as simulator:
        yield simulator.url


def resolve_api_key(endpoint: str, api_key_env: str) -> str:
    """The key from the environment; a missing key is a user error unless simulating."""
    if endpoint == SIMULATE:
        return os.environ.get(api_key_env) or "simulated-key"
    key = os.environ.get(api_key_env, "").strip()
    if not key:
        raise UserError(
            f"the environment variable {api_key_env} is not set or empty;"
            f" HINT: export {api_key_env}=... (api_key_env in the manifest names the variable)"
        )
    if not all(33 <= ord(char) <= 126 for char in key):
        raise UserError(
            f"the key in {api_key_env} holds spaces, control or non-ASCII characters;"
            " HINT: copy it again without quotes or line breaks"
        )
    return key

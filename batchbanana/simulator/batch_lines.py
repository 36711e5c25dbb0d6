"""One request of a batch answered: the answer generateContent would give it (its directives
planned the same way), packaged as a line of the batch's output, with what it bills.

An HTTP error becomes an error line {"code", "message", "status"} (details dropped: the batch
output's JobError has no room for them); a 200 becomes a response line (refusals, blocks and
answers without an image included, as sync bills them). Directives that need a live connection:
`drop`, `cut` and `bad_json` become a 500 INTERNAL error line; `slow`, `trickle` and `gzip` are
ignored. The load limits (capacity, rpm) and latency do not apply to batch requests."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from batchbanana.simulator.answers import success_answer
from batchbanana.simulator.batch_input import BatchLine
from batchbanana.simulator.directives import plan_request, random_plan
from batchbanana.simulator.faults import fault_answer
from batchbanana.simulator.rules import ModelRule
from batchbanana.simulator.state import SimulatorState

_LIVE_ONLY_FAULTS = frozenset({"drop", "cut", "bad_json"})
_IGNORED_SHAPES = frozenset({"gzip"})
_HTML_STATUS = {502: "UNAVAILABLE", 503: "UNAVAILABLE"}
_INTERNAL = {
    "code": 500,
    "message": "An internal error has occurred. Please retry or report it.",
    "status": "INTERNAL",
}


@dataclass(slots=True)
class LineAnswer:
    """A batch request's answer: the GenerateContentResponse JSON, or an error object."""

    response: bytes | None = None
    error: dict[str, Any] | None = None
    price_usd: Decimal | None = None  # set for responses: they are billed


def _error_object(status: int, body: bytes, content_type: str) -> dict[str, Any]:
    if content_type == "application/json":
        error = json.loads(body)["error"]
        return {"code": error["code"], "message": error["message"], "status": error["status"]}
    reason = "Bad Gateway" if status == 502 else "Service Unavailable"
    return {"code": status, "message": reason, "status": _HTML_STATUS.get(status, "UNKNOWN")}


async def answer_line(
    state: SimulatorState, model: str, rule: ModelRule, line: BatchLine, key: str
) -> LineAnswer:
    """Plan and answer one batch request (counting it with its prompt, as a sync request)."""
    index = state.count_prompt(line.request.prompt)
    directives = line.directives
    plan = (
        plan_request(directives, index)
        if not directives.empty
        else random_plan(state.config, state.rng)
    )
    if plan.fault is not None:
        answer = fault_answer(plan.fault, plan, model, key)
        return LineAnswer(error=_error_object(answer.status, answer.body, answer.content_type))
    if plan.shapes & _LIVE_ONLY_FAULTS:
        return LineAnswer(error=dict(_INTERNAL))
    plan = dataclasses.replace(
        plan, shapes=plan.shapes - _IGNORED_SHAPES, slow_s=None, trickle_s=None
    )
    answer = await success_answer(state.images, model, rule, line.request, plan)
    price = state.batch_price(model, line.request.image_size or "1K", answer.output_images)
    return LineAnswer(response=answer.body, price_usd=price)


def encode_line(line: BatchLine, answer: LineAnswer, mode: str) -> list[bytes]:
    """The output line's pieces (the response is spliced in as bytes, never re-encoded):
    inline `{"response"|"error", "metadata"}`, file `{"key", "response"|"error"}`; ends in \\n."""
    ids = b""
    if mode == "file" and line.key is not None:
        ids = b'"key": ' + json.dumps(line.key).encode() + b", "
    tail = b"}\n"
    if mode == "inline" and line.metadata is not None:
        tail = b', "metadata": ' + json.dumps(line.metadata).encode() + tail
    if answer.response is not None:
        return [b"{" + ids + b'"response": ', answer.response, tail]
    return [b"{" + ids + b'"error": ' + json.dumps(answer.error).encode(), tail]

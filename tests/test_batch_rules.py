"""Batch mode's pure rules: states in both spellings, keys, the split into batches, the wire
shapes, the operation a get returns, and the poll's backoff."""

from __future__ import annotations

import json

from batchbanana.ledger.records import BatchLine, ResultLine, SentLine, parse_line
from batchbanana.ledger.replay import replay
from batchbanana.rules.batch import (
    BatchState,
    Member,
    batch_key,
    batch_state,
    batch_status,
    file_create_body,
    inline_create_body,
    inline_entry,
    poll_delay_s,
    request_key,
    request_line,
    split_batches,
    split_request_key,
)
from batchbanana.rules.outcomes import Outcome
from batchbanana.rules.pricing import PriceRule, book_rule


def test_both_state_spellings_read_the_same() -> None:
    assert batch_state("BATCH_STATE_RUNNING") is BatchState.RUNNING
    assert batch_state("JOB_STATE_SUCCEEDED") is BatchState.SUCCEEDED
    assert batch_state("JOB_STATE_CANCELLED") is BatchState.CANCELLED
    assert batch_state("expired") is BatchState.EXPIRED
    assert batch_state("BATCH_STATE_SOMETHING_NEW") is BatchState.UNKNOWN
    assert batch_state(None) is BatchState.UNKNOWN
    assert BatchState.EXPIRED.finished and not BatchState.PENDING.finished


def test_request_keys_split_back_into_item_and_attempt() -> None:
    assert split_request_key(request_key("otter-dogs-2", 7)) == ("otter-dogs-2", 7)
    assert split_request_key("no-attempt") is None
    assert split_request_key(3) is None


def test_batch_keys_are_unique_per_batch_and_short() -> None:
    first = batch_key("x" * 200, "r-20261207-120000-abcd", "gemini-3-pro-image-preview", "2K", 1)
    second = batch_key("x" * 200, "r-20261207-120000-abcd", "gemini-3-pro-image-preview", "2K", 2)
    other_size = batch_key(
        "x" * 200, "r-20261207-120000-abcd", "gemini-3-pro-image-preview", "4K", 1
    )
    assert len({first, second, other_size}) == 3
    assert len(first) < 128


def test_split_groups_by_model_and_size_and_goes_to_a_file_past_the_inline_limit() -> None:
    members = [Member(f"a#{n}", "m1", "1K", 1000) for n in range(5)]
    members += [Member(f"b#{n}", "m2", "1K", 1000) for n in range(3)]
    members += [Member(f"c#{n}", "m1", "2K", 1000) for n in range(2)]
    splits = split_batches(members, inline_limit=20_000)
    assert [(s.model, s.image_size, len(s.keys), s.inline) for s in splits] == [
        ("m1", "1K", 5, True),
        ("m2", "1K", 3, True),
        ("m1", "2K", 2, True),
    ]
    big = [Member(f"d#{n}", "m1", "4K", 6000) for n in range(10)]
    splits = split_batches(big, inline_limit=20_000, file_limit=25_000)
    assert all(not s.inline for s in splits)
    assert sum(len(s.keys) for s in splits) == 10
    assert all(s.body_bytes <= 25_000 for s in splits)
    assert [key for s in splits for key in s.keys] == [m.key for m in big]  # order kept


def test_wire_bodies_are_valid_json_with_camel_case_keys() -> None:
    body = b'{"contents":[{"parts":[{"text":"hi"}]}]}'
    inline = json.loads(
        inline_create_body("bb-key", "gemini-3-pro-image-preview", [inline_entry("a#1", body)])
    )
    batch = inline["batch"]
    assert batch["displayName"] == "bb-key"
    request = batch["inputConfig"]["requests"]["requests"][0]
    assert request["metadata"] == {"key": "a#1"}
    assert request["request"]["contents"][0]["parts"][0]["text"] == "hi"
    from_file = json.loads(file_create_body("bb-key", "m", "files/abc"))
    assert from_file["batch"]["inputConfig"] == {"fileName": "files/abc"}
    line = json.loads(request_line("a#1", body))
    assert line["key"] == "a#1" and line["request"]["contents"][0]["parts"][0]["text"] == "hi"


def test_an_operation_is_read_with_its_state_counts_and_output() -> None:
    operation = {
        "name": "batches/123",
        "metadata": {
            "displayName": "bb-key",
            "state": "BATCH_STATE_SUCCEEDED",
            "batchStats": {"requestCount": "4", "successfulRequestCount": "3",
                           "failedRequestCount": "1"},
            "output": {"responsesFile": "files/batch-123"},
        },
        "done": True,
    }  # fmt: skip
    status = batch_status(operation)
    assert status is not None
    assert status.state is BatchState.SUCCEEDED
    assert status.stats == {"requests": 4, "succeeded": 3, "failed": 1}
    assert status.responses_file == "files/batch-123"
    assert status.display_name == "bb-key"
    assert batch_status({"metadata": {}}) is None


def test_polls_back_off_from_the_first_wait_to_the_longest() -> None:
    waits = [poll_delay_s(n, 10, 60) for n in range(8)]
    assert waits[0] == 10
    assert waits == sorted(waits)
    assert waits[-1] == 60


def test_batch_prices_are_half_the_google_list_prices() -> None:
    rule = book_rule("google", "gemini-3-pro-image-preview", "4K")
    assert rule is not None
    assert rule.for_batch().estimate_usd("4K") == 0.12
    tokens = PriceRule(per_million_tokens_usd=30.0).for_batch()
    assert tokens.per_million_tokens_usd == 15.0


def test_batch_lines_round_trip_and_keep_batch_requests_out_of_dangling() -> None:
    line = BatchLine(batch_key="bb-1", name="batches/9", state="PENDING", model="m",
                     requests=2, input="inline")  # fmt: skip
    assert parse_line(line.to_json()) == line
    sent = SentLine(item="a", attempt=1, fingerprint="f", price_usd=0.12, model="m",
                    image_size="1K", spec=None, batch_key="bb-1")  # fmt: skip
    plain = SentLine(item="b", attempt=1, fingerprint="g", price_usd=0.12, model="m",
                     image_size="1K", spec=None)  # fmt: skip
    assert "batch_key" not in plain.to_json()
    state = replay([sent.to_json(), plain.to_json(), line.to_json()])
    assert state.dangling() == [("b", "g", 1, 0.12)]
    assert list(state.open_batches()) == ["bb-1"]
    assert state.batches["bb-1"].name == "batches/9"
    assert state.possibly_spent_usd == 0.24  # a batch's requests may still be billed
    result = ResultLine.for_attempt("a", 1, "f", Outcome.OK, 0.12, None, mode="batch",
                                    batch="batches/9")  # fmt: skip
    state = replay([sent.to_json(), line.to_json(), result.to_json()])
    assert state.open_batches() == {}
    assert state.spent_usd == 0.12
    assert result.to_json()["mode"] == "batch"

"""The typed ledger lines (ledger/records.py): what they write, and what they read back from any
line a ledger may hold. The format itself is pinned by test_ledger_format.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchbanana.ledger.fields import Spec, SpecImage
from batchbanana.ledger.records import JobLine, ResultLine, SentLine, parse_line
from batchbanana.rules.outcomes import BILLING, Billed, Outcome
from tests.test_fuzz import SCALARS, json_values
from tests.test_ledger_format import OLD_LINES

# The lines of OLD_LINES that today's version wrote (the later ones are older formats or garbage).
TODAYS_LINES = [line for line in OLD_LINES[4:] if line.startswith("{") and line.endswith("}")]
SPEC = {"prompt": "a cat", "model": "gemini-3-pro-image-preview", "image_size": "2K"}


@pytest.mark.parametrize("line", TODAYS_LINES, ids=lambda line: json.loads(line)["event"])
def test_a_line_read_and_written_again_is_the_same_text(line: str) -> None:
    """from_json then to_json gives back a line of today's format byte for byte."""
    parsed = parse_line(json.loads(line))
    assert parsed is not None
    assert json.dumps(parsed.to_json(), separators=(", ", ": ")) == line


@pytest.mark.parametrize("outcome", list(Outcome))
def test_a_result_is_billed_as_its_outcome_is(outcome: Outcome) -> None:
    """for_attempt takes `billed` from the outcome table; both are written as the contract's
    strings."""
    record = ResultLine.for_attempt("a", 1, "sha256:f", outcome, 0.09, SPEC).to_json()
    written = json.dumps(record, separators=(", ", ": "))
    assert f'"outcome": "{outcome.value}", "billed": "{BILLING[outcome].value}"' in written


def test_a_result_takes_its_request_from_the_spec_and_writes_extras_only_if_known() -> None:
    """The request's model, size and ratio come from the spec; text, ids, outputs and the retry
    delay are written only when given, after the contract's fields."""
    bare = ResultLine.for_attempt("a", 2, "sha256:f", Outcome.INTERRUPTED, 0.09, SPEC).to_json()
    assert (bare["model"], bare["image_size"], bare["aspect_ratio"]) == (
        "gemini-3-pro-image-preview",
        "2K",
        None,
    )
    assert list(bare)[-1] == "spec"
    full = ResultLine.for_attempt(
        "a", 3, "sha256:f", Outcome.OK, 0.09, None, text="t", outputs=["x.png", "x+2.png"]
    ).to_json()
    assert full["model"] is None
    assert list(full)[-3:] == ["spec", "text", "outputs"]
    assert full["outputs"] == ["x.png", "x+2.png"]


def test_fields_of_the_wrong_type_read_as_absent() -> None:
    """A value of the wrong JSON type is None; an unreadable outcome is "unknown", never "ok",
    and an unreadable billing mark is None (neither spent nor free)."""
    line = ResultLine.from_json(
        {
            "event": "result",
            "item": "a",
            "attempt": True,
            "fingerprint": 5,
            "outcome": ["ok"],
            "billed": "YES",
            "price_usd": 10**400,
            "latency_s": float("nan"),
            "outputs": ["a.png", 3],
            "spec": "a cat",
        }
    )
    assert line is not None
    assert (line.attempt, line.fingerprint, line.outcome, line.billed) == (
        None,
        None,
        "unknown",
        None,
    )
    assert (line.price_usd, line.latency_s, line.outputs, line.spec) == (
        None,
        None,
        ("a.png",),
        None,
    )
    # An attempt number written back as a float by another tool still closes its `sent` line.
    assert parse_line({"event": "sent", "item": "a", "attempt": 2.0}) == SentLine(
        item="a",
        attempt=2,
        fingerprint=None,
        price_usd=None,
        model=None,
        image_size=None,
        spec=None,
        ts=None,
    )
    assert ResultLine.from_json({"event": "result", "item": "a", "billed": "no"}) == ResultLine(
        item="a",
        attempt=None,
        fingerprint=None,
        outcome="unknown",
        billed=Billed.NO,
        price_usd=None,
        ts=None,
    )


def test_each_kind_reads_only_its_own_lines_and_only_with_an_item() -> None:
    """A line is read by its own class; a `sent` or `result` line without an item id is none."""
    sent = {"event": "sent", "item": "a"}
    assert isinstance(parse_line(sent), SentLine)
    assert ResultLine.from_json(sent) is None and JobLine.from_json(sent) is None
    assert parse_line({"event": "result", "item": 1}) is None
    assert parse_line({"event": "batch", "item": "a"}) is None
    assert parse_line({"event": ["job"]}) is None
    job = parse_line({"event": "job", "settings": [1]})
    assert isinstance(job, JobLine) and job.settings == {} and job.run_id is None


RECORD_KEYS = st.sampled_from(
    [
        "event", "ts", "item", "attempt", "fingerprint", "outcome", "billed", "price_usd",
        "http_status", "latency_s", "output", "outputs", "bytes", "usage", "spec", "settings",
        "retry_in_s", "text",
    ]
)  # fmt: skip
RECORD_VALUES = st.one_of(
    st.sampled_from(["job", "sent", "result", "a", "yes", "no", "unknown", "ok", 1]),
    SCALARS,
    json_values(max_leaves=4),
)


@settings(max_examples=300, deadline=None)
@given(record=st.dictionaries(RECORD_KEYS, RECORD_VALUES, max_size=10))
def test_any_record_reads_as_a_line_or_none_and_writes_as_json(record: dict[str, Any]) -> None:
    """parse_line never raises; what it reads writes back as JSON with its event first."""
    line = parse_line(record)
    if line is None:
        return
    written = line.to_json()
    assert next(iter(written)) == "event" and written["event"] == record["event"]
    json.dumps(written)


def test_a_spec_reads_its_request_and_marks_unreadable_images() -> None:
    """Spec fields of the wrong type are None; an image entry that is not an object, or whose
    digest is not text, is None (retry refuses it); images that are not a list are unreadable."""
    spec = Spec.from_json(
        {
            "prompt": "a cat",
            "model": 5,
            "response_modalities": ["IMAGE"],
            "images": [
                {"path": "a.png", "sha256": "ab", "mime_type": "image/png"},
                {"url": "https://x/y.png", "inline": True},
                "a.png",
                {"path": "b.png", "sha256": 12},
            ],
        }
    )
    assert (spec.prompt, spec.model, spec.response_modalities) == ("a cat", None, ("IMAGE",))
    assert spec.images == (
        SpecImage(url=None, path="a.png", sha256="ab", mime_type="image/png", inline=False),
        SpecImage(url="https://x/y.png", path=None, sha256=None, mime_type=None, inline=True),
        None,
        None,
    )
    assert Spec.from_json({"images": "a.png"}).images == (None,)
    assert Spec.from_json({"images": []}).images == ()
    assert Spec.from_json(None) == Spec()

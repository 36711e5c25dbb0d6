"""Grounding and thinking level before anything is sent (contract section 13): the model rules as a
table, the request shapes (those google-genai's own client sends, in camelCase), validation at
file:line, spec, fingerprint and ids, items_file columns and matrices."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types

from batchbanana.errors import UserError
from batchbanana.plan.build import load_job
from batchbanana.plan.job import fingerprint
from batchbanana.rules.models import check_generation
from batchbanana.rules.wire import build_request
from tests.conftest import RecordingServer, Seen

PRO = "gemini-3-pro-image-preview"
FLASH = "gemini-3.1-flash-image-preview"
OLD = "gemini-2.5-flash-image"


def _write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(UserError) as caught:
        load_job(path)
    return caught.value.problems


def _body(**fields: Any) -> dict[str, Any]:
    return build_request(
        model=fields.pop("model", FLASH),
        prompt="p",
        image_parts=[],
        image_size="1K",
        aspect_ratio=None,
        system_prompt=None,
        response_modalities=["TEXT", "IMAGE"],
        **fields,
    )


# --- the model rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "grounding", "thinking_level", "fields"),
    [
        pytest.param(PRO, "none", None, [], id="pro-plain"),
        pytest.param(PRO, "web", None, [], id="pro-web"),
        pytest.param("gemini-3-pro-image", "web", None, [], id="pro-ga-web"),
        pytest.param(PRO, "web+image", None, ["grounding"], id="pro-no-image-search"),
        pytest.param(PRO, "none", "high", ["thinking_level"], id="pro-no-thinking"),
        pytest.param(FLASH, "web", "minimal", [], id="flash-web-minimal"),
        pytest.param(FLASH, "web+image", "high", [], id="flash-web-image-high"),
        pytest.param("gemini-3.1-flash-image", "web+image", "high", [], id="flash-ga"),
        pytest.param(OLD, "none", None, [], id="old-plain"),
        pytest.param(OLD, "web", None, ["grounding"], id="old-no-search"),
        pytest.param(OLD, "web+image", "minimal", ["grounding", "thinking_level"], id="old-both"),
        pytest.param("my-model", "web+image", "high", [], id="unknown-model-unchecked"),
    ],
)
def test_which_models_ground_and_think(
    model: str, grounding: str, thinking_level: str | None, fields: list[str]
) -> None:
    """Nano Banana Pro searches the web; Nano Banana 2 also images, and takes a thinking level;
    Nano Banana (2.5) does neither; an unknown model is not checked."""
    found = check_generation(model, "1K", None, grounding, thinking_level)
    assert [name for name, _ in found] == fields
    assert all("HINT:" in message for _, message in found)


# --- the request -------------------------------------------------------------------------------


def test_no_grounding_and_no_thinking_level_leave_the_request_as_it_was() -> None:
    """The request of an item without them has no tools and no thinkingConfig."""
    body = _body()
    assert "tools" not in body and "thinkingConfig" not in body["generationConfig"]
    assert _body(grounding="none") == body


@pytest.mark.parametrize(
    ("grounding", "tool"),
    [
        pytest.param("web", {"googleSearch": {}}, id="web"),
        pytest.param(
            "web+image",
            {"googleSearch": {"searchTypes": {"webSearch": {}, "imageSearch": {}}}},
            id="web+image",
        ),
    ],
)
def test_grounding_sends_google_search_as_a_tool(grounding: str, tool: dict[str, Any]) -> None:
    """`web` is the bare googleSearch tool; `web+image` names both search types."""
    assert _body(grounding=grounding)["tools"] == [tool]


@pytest.mark.parametrize("level", ["minimal", "high"])
def test_thinking_level_goes_in_generation_config(level: str) -> None:
    """thinkingConfig.thinkingLevel, spelt as Google's enum (MINIMAL, HIGH)."""
    config = _body(thinking_level=level)["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingLevel": level.upper()}


def _camel(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {re.sub(r"_([a-z])", lambda m: m[1].upper(), k): _camel(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_camel(value) for value in obj]
    return obj


def test_the_request_is_what_google_genai_sends_in_camel_case(
    recording_server: RecordingServer,
) -> None:
    """google-genai's own client, given the same search types and thinking level, sends the same
    tool and thinkingConfig (it leaves some inner keys in snake_case, which API易 ignores: ours
    are camelCase only)."""
    bodies: list[dict[str, Any]] = []

    def reply(seen: Seen, body: bytes) -> tuple[int, dict[str, str], bytes]:
        bodies.append(json.loads(body))
        answer = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}]}
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()

    recording_server.reply = reply
    client = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url=recording_server.url, retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )
    searches = {
        "web": types.GoogleSearch(),
        "web+image": types.GoogleSearch(
            search_types=types.SearchTypes(
                web_search=types.WebSearch(), image_search=types.ImageSearch()
            )
        ),
    }
    for grounding, search in searches.items():
        for level in ("minimal", "high"):
            client.models.generate_content(
                model=FLASH,
                contents="p",
                config=types.GenerateContentConfig(
                    tools=[types.Tool(google_search=search)],
                    thinking_config=types.ThinkingConfig(
                        thinking_level=types.ThinkingLevel(level.upper())
                    ),
                ),
            )
            theirs = _camel(bodies[-1])
            ours = _body(grounding=grounding, thinking_level=level)
            assert ours["tools"] == theirs["tools"]
            assert (
                ours["generationConfig"]["thinkingConfig"]
                == (theirs["generationConfig"]["thinkingConfig"])
            )


# --- the manifest ------------------------------------------------------------------------------


def test_items_without_grounding_keep_their_fingerprints_and_ids(tmp_path: Path) -> None:
    """The values pinned before grounding existed: grounding none (written or not) changes
    nothing, so old ledgers resume and nothing is paid twice."""
    pinned = "sha256:9ae21d657011efc34d7a71aaa5884a713f8d4d73a63551a582229744ea0410d7"
    assert fingerprint(PRO, "a red fox", "1K", None, None, ("TEXT", "IMAGE"), ()) == pinned
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        grounding: none
        items:
          - prompt: "a red fox"
          - prompt: "a blue fox"
            image_size: 2K
            aspect_ratio: "16:9"
            repeat: 2
        """,
    )
    assert [(item.id, item.fingerprint) for item in load_job(path).items] == [
        ("9ae21d6570", pinned),
        ("3584c7a60d-1", "sha256:2e895aace731af7ff2e03dd9e24ac288009e0171e1a699aa24ae3ffebbe88723"),
        ("3584c7a60d-2", "sha256:2e895aace731af7ff2e03dd9e24ac288009e0171e1a699aa24ae3ffebbe88723"),
    ]
    assert all(
        "grounding" not in item.spec() and "thinking_level" not in item.spec()
        for item in load_job(path).items
    )


def test_grounding_and_thinking_level_are_in_the_spec_fingerprint_and_derived_id(
    tmp_path: Path,
) -> None:
    """Each is part of the request's meaning: new work, recorded for retry."""
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        model: {FLASH}
        items:
          - prompt: "a red fox"
          - prompt: "a red fox"
            grounding: web
          - prompt: "a red fox"
            grounding: web+image
          - prompt: "a red fox"
            thinking_level: high
          - prompt: "a red fox"
            grounding: web
            thinking_level: minimal
        """,
    )
    items = load_job(path).items
    assert len({item.fingerprint for item in items}) == 5
    assert len({item.id for item in items}) == 5 and not any("-" in item.id for item in items)
    assert [
        (item.spec().get("grounding"), item.spec().get("thinking_level")) for item in items
    ] == [
        (None, None),
        ("web", None),
        ("web+image", None),
        (None, "high"),
        ("web", "minimal"),
    ]


def test_top_level_grounding_applies_and_an_item_overrides_it(tmp_path: Path) -> None:
    """grounding and thinking_level are generation fields: set at the top, overridden per item."""
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        model: {FLASH}
        grounding: web
        thinking_level: high
        items:
          - id: a
            prompt: p
          - id: b
            prompt: p
            grounding: none
            thinking_level: minimal
        """,
    )
    assert [(i.id, i.grounding, i.thinking_level) for i in load_job(path).items] == [
        ("a", "web", "high"),
        ("b", "none", "minimal"),
    ]


def test_web_image_on_a_model_without_image_search_is_one_line_at_its_item(
    tmp_path: Path,
) -> None:
    """`web+image` on Nano Banana Pro and a thinking level on Nano Banana (2.5) are refused at
    file:line with the models that offer them; every problem in one pass."""
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        items:
          - id: pro
            prompt: p
            model: {PRO}
            grounding: web+image
          - id: old
            prompt: p
            model: {OLD}
            grounding: web
            thinking_level: high
        """,
    )
    assert _problems(path) == [
        f"{path}:4: item 'pro': grounding: web+image is not offered by {PRO} (grounding web"
        " only); HINT: use grounding: web, or a model that offers web+image:"
        " gemini-3.1-flash-image(-preview)",
        f"{path}:8: item 'old': grounding: web is not offered by {OLD} (it cannot search);"
        " HINT: leave grounding out, or use a model that grounds in Google Search:"
        " gemini-3-pro-image(-preview), gemini-3.1-flash-image(-preview)",
        f"{path}:8: item 'old': thinking_level: {OLD} takes no thinking level; HINT: leave"
        " thinking_level out, or use a model that takes one: gemini-3.1-flash-image(-preview)",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("grounding: Web", "grounding: 'Web': write 'web' (lowercase)", id="case"),
        pytest.param(
            "grounding: true", "grounding: True: write one of none, web, web+image", id="bool"
        ),
        pytest.param(
            "grounding: images",
            "grounding: 'images' is not allowed; input should be 'none', 'web' or 'web+image'",
            id="unknown",
        ),
        pytest.param(
            "thinking_level: HIGH", "thinking_level: 'HIGH': write 'high' (lowercase)", id="upper"
        ),
        pytest.param(
            "thinking_level: low",
            "thinking_level: 'low' is not allowed; input should be 'minimal' or 'high'",
            id="low",
        ),
    ],
)
def test_a_misspelt_value_is_refused_at_its_line(tmp_path: Path, line: str, expected: str) -> None:
    """A value the schema does not know says what to write, at the key's own line."""
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        model: {FLASH}
        items:
          - id: a
            prompt: p
            {line}
        """,
    )
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:7: item 'a': {expected}")


def test_items_file_columns_ground_and_think_per_row(tmp_path: Path) -> None:
    """`grounding` and `thinking_level` are items_file columns; an empty cell takes the default,
    and a row the model cannot serve is a problem at the file's line."""
    (tmp_path / "rows.csv").write_text(
        f"id,prompt,model,grounding,thinking_level\n"
        f"a,one,{FLASH},web+image,high\n"
        f"b,two,{FLASH},,\n"
        f"c,three,{PRO},web+image,\n"
    )
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        grounding: web
        items_file: rows.csv
        """,
    )
    (problem,) = _problems(path)
    assert problem.startswith("rows.csv:4: item 'c': grounding: web+image is not offered by")
    (tmp_path / "rows.csv").write_text(
        f"id,prompt,model,grounding,thinking_level\na,one,{FLASH},web+image,high\nb,two,{FLASH},,\n"
    )
    assert [(i.id, i.grounding, i.thinking_level) for i in load_job(path).items] == [
        ("a", "web+image", "high"),
        ("b", "web", None),
    ]


def test_a_matrix_varies_grounding_and_thinking_level_with_readable_ids(tmp_path: Path) -> None:
    """Each combination is its own item, labelled ground-... and think-..., and each is checked
    by the model rules, a problem naming its combination."""
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        model: {FLASH}
        items:
          - id: chart
            prompt: "today's weather in Paris as an infographic"
            matrix: {{grounding: [none, web, web+image], thinking_level: [minimal, high]}}
        """,
    )
    items = load_job(path).items
    assert [item.id for item in items] == [
        "chart-ground-none-think-minimal",
        "chart-ground-none-think-high",
        "chart-ground-web-think-minimal",
        "chart-ground-web-think-high",
        "chart-ground-web-image-think-minimal",
        "chart-ground-web-image-think-high",
    ]
    assert items[5].spec()["matrix"] == {"grounding": "web+image", "thinking_level": "high"}
    path.write_text(path.read_text().replace(f"model: {FLASH}", f"model: {PRO}"))
    assert _problems(path) == [
        f"{path}:5: item 'chart' (thinking_level=minimal): thinking_level: {PRO} takes no"
        " thinking level; HINT: leave thinking_level out, or use a model that takes one:"
        " gemini-3.1-flash-image(-preview)",
        f"{path}:5: item 'chart' (thinking_level=high): thinking_level: {PRO} takes no"
        " thinking level; HINT: leave thinking_level out, or use a model that takes one:"
        " gemini-3.1-flash-image(-preview)",
        f"{path}:5: item 'chart' (grounding=web+image): grounding: web+image is not offered by"
        f" {PRO} (grounding web only); HINT: use grounding: web, or a model that offers"
        " web+image: gemini-3.1-flash-image(-preview)",
    ]

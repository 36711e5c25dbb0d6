"""The simulator's grounding and thinking, as Google's: google-genai's own client sends the search
tool and a thinking level and reads the grounding metadata back; a model that lacks them answers
400 INVALID_ARGUMENT, unbilled."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from batchbanana.simulator import RunningSimulator

PRO = "gemini-3-pro-image-preview"
FLASH = "gemini-3.1-flash-image-preview"
OLD = "gemini-2.5-flash-image"
WEB_AND_IMAGE = types.GoogleSearch(
    search_types=types.SearchTypes(web_search=types.WebSearch(), image_search=types.ImageSearch())
)


def _client(simulator: RunningSimulator) -> genai.Client:
    return genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(
            base_url=simulator.url, retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )


def _post(simulator: RunningSimulator, model: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{simulator.url}/v1beta/models/{model}:generateContent",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "x-goog-api-key": "k"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_google_genai_reads_web_and_image_grounding_from_the_simulator(
    simulator: RunningSimulator,
) -> None:
    """Nano Banana 2 with web and image search answers an image and grounding metadata that
    google-genai's types read: queries from the prompt, web and image sources."""
    client = _client(simulator)
    response = client.models.generate_content(
        model=FLASH,
        contents="the weather in Paris today as an infographic",
        config=types.GenerateContentConfig(
            tools=[types.Tool(google_search=WEB_AND_IMAGE)],
            thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel.HIGH),
        ),
    )
    assert response.candidates
    candidate = response.candidates[0]
    assert candidate.content and any(part.inline_data for part in candidate.content.parts or [])
    metadata = candidate.grounding_metadata
    assert metadata is not None and metadata.web_search_queries
    assert "Paris" in metadata.web_search_queries[0]
    assert metadata.image_search_queries
    chunks = metadata.grounding_chunks or []
    webs = [chunk.web for chunk in chunks if chunk.web]
    images = [chunk.image for chunk in chunks if chunk.image]
    assert len(webs) == 2 and all(web.uri and web.uri.startswith("https://") for web in webs)
    assert len(images) == 1 and images[0].source_uri and images[0].image_uri
    assert response.usage_metadata and response.usage_metadata.thoughts_token_count
    assert simulator.bill()["billed_requests"] == 1


def test_web_search_alone_has_no_image_sources(simulator: RunningSimulator) -> None:
    """Nano Banana Pro with the bare googleSearch tool: web queries and sources only."""
    status, answer = _post(
        simulator,
        PRO,
        {"contents": [{"parts": [{"text": "a chart of Everest's height"}]}], "tools": [
            {"googleSearch": {}}]},
    )  # fmt: skip
    assert status == 200
    metadata = answer["candidates"][0]["groundingMetadata"]
    assert metadata["webSearchQueries"] and "imageSearchQueries" not in metadata
    assert all("web" in chunk for chunk in metadata["groundingChunks"])


def test_an_answer_without_the_tool_has_no_grounding(simulator: RunningSimulator) -> None:
    """No search tool, no groundingMetadata: nothing changes for an ungrounded request."""
    status, answer = _post(simulator, FLASH, {"contents": [{"parts": [{"text": "a fox"}]}]})
    assert status == 200 and "groundingMetadata" not in answer["candidates"][0]
    assert "thoughtsTokenCount" not in answer["usageMetadata"]


@pytest.mark.parametrize(
    ("model", "config", "message"),
    [
        pytest.param(
            OLD,
            types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())]),
            "Search grounding is not supported",
            id="old-model-search",
        ),
        pytest.param(
            PRO,
            types.GenerateContentConfig(tools=[types.Tool(google_search=WEB_AND_IMAGE)]),
            "Image search is not supported",
            id="pro-image-search",
        ),
        pytest.param(
            PRO,
            types.GenerateContentConfig(
                thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel.HIGH)
            ),
            "Thinking level is not supported",
            id="pro-thinking-level",
        ),
        pytest.param(
            OLD,
            types.GenerateContentConfig(
                thinking_config=types.ThinkingConfig(include_thoughts=True)
            ),
            "Thinking is not supported",
            id="old-model-thinking",
        ),
        pytest.param(
            FLASH,
            types.GenerateContentConfig(
                thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW)
            ),
            "Thinking level 'LOW' is not supported",
            id="flash-low",
        ),
    ],
)
def test_what_a_model_lacks_is_a_400_invalid_argument_and_not_billed(
    simulator: RunningSimulator, model: str, config: types.GenerateContentConfig, message: str
) -> None:
    """A search tool, an image search or a thinking setting the model does not offer is refused
    as Google refuses it, before the model runs."""
    client = _client(simulator)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=model, contents="a fox", config=config)
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert message in str(caught.value.message)
    assert simulator.bill()["billed_requests"] == 0


def test_keys_in_either_spelling_and_other_tools(simulator: RunningSimulator) -> None:
    """snake_case keys are read as Google reads them; a tool image models lack, or an unknown
    search type, is a 400."""
    snake = {
        "contents": [{"parts": [{"text": "a fox"}]}],
        "tools": [{"google_search": {"search_types": {"web_search": {}, "image_search": {}}}}],
        "generation_config": {"thinking_config": {"thinking_level": "high"}},
    }
    status, answer = _post(simulator, FLASH, snake)
    assert status == 200 and answer["candidates"][0]["groundingMetadata"]["imageSearchQueries"]
    for tools in (
        [{"codeExecution": {}}],
        [{"googleSearch": {"searchTypes": {"videoSearch": {}}}}],
    ):
        body = {"contents": [{"parts": [{"text": "a fox"}]}], "tools": tools}
        status, answer = _post(simulator, FLASH, body)
        assert status == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"

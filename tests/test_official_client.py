"""The simulator speaks the wire format as Google does: Google's own client works against it."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors, types

from batchbanana.simulator import RunningSimulator
from tests.conftest import png_size


def client_for(simulator: RunningSimulator) -> genai.Client:
    """The official google-genai client pointed at the simulator, without its own retries."""
    return genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(
            base_url=simulator.url, retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )


def test_google_genai_client_gets_an_image_of_the_requested_shape(
    simulator: RunningSimulator,
) -> None:
    """generate_content through google-genai returns a 2K 16:9 PNG and the simulator bills it."""
    client = client_for(simulator)  # kept alive: a collected client closes its connection
    response = client.models.generate_content(
        model="gemini-3-pro-image-preview",
        contents=["a red fox in snow"],
        config=types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio="16:9", image_size="2K"),
        ),
    )
    assert response.candidates
    content = response.candidates[0].content
    assert content is not None and content.parts
    images = [part.inline_data for part in content.parts if part.inline_data]
    assert len(images) == 1 and images[0].mime_type == "image/png" and images[0].data
    width, height = png_size(images[0].data)
    assert width == 2048 and width / height == pytest.approx(16 / 9, rel=0.02)
    assert simulator.bill()["billed_requests"] == 1


def test_google_genai_client_sees_invalid_argument_for_a_size_the_model_lacks(
    simulator: RunningSimulator,
) -> None:
    """A 2K request to gemini-2.5-flash-image is a 400 INVALID_ARGUMENT, not billed."""
    client = client_for(simulator)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(
            model="gemini-2.5-flash-image",
            contents=["a bowl of ramen"],
            config=types.GenerateContentConfig(
                image_config=types.ImageConfig(image_size="2K"),
            ),
        )
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert simulator.bill()["billed_requests"] == 0

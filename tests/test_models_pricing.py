"""Model rules (contract section 4) and prices (contract section 5): what each model accepts,
and what each request costs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from batchbanana.errors import UserError
from batchbanana.plan.build import load_job
from batchbanana.rules.models import check_generation, rules_for
from batchbanana.rules.pricing import PriceRule, book_rule, price_rule
from batchbanana.rules.wire import build_request

PRO = ("gemini-3-pro-image-preview", "gemini-3-pro-image")
FLASH_31 = ("gemini-3.1-flash-image-preview", "gemini-3.1-flash-image")
FLASH_25 = ("gemini-2.5-flash-image",)
ALL_MODELS = PRO + FLASH_31 + FLASH_25

SIZES = ("512", "1K", "2K", "4K")
TEN = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
EXTRA = ("1:4", "4:1", "1:8", "8:1")

ALLOWED_SIZES: dict[str, frozenset[str]] = {
    **dict.fromkeys(PRO, frozenset({"1K", "2K", "4K"})),
    **dict.fromkeys(FLASH_31, frozenset({"512", "1K", "2K", "4K"})),
    **dict.fromkeys(FLASH_25, frozenset({"1K"})),
}
ALLOWED_RATIOS: dict[str, frozenset[str]] = {
    **dict.fromkeys(PRO, frozenset(TEN)),
    **dict.fromkeys(FLASH_31, frozenset(TEN + EXTRA)),
    **dict.fromkeys(FLASH_25, frozenset(TEN)),
}


def _size_rows() -> list[object]:
    return [
        pytest.param(model, size, size in ALLOWED_SIZES[model], id=f"{model}-{size}")
        for model in ALL_MODELS
        for size in SIZES
    ]


def _ratio_rows() -> list[object]:
    return [
        pytest.param(model, ratio, ratio in ALLOWED_RATIOS[model], id=f"{model}-{ratio}")
        for model in ALL_MODELS
        for ratio in TEN + EXTRA
    ]


# --- model rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "size", "allowed"), _size_rows())
def test_image_size_rules(model: str, size: str, allowed: bool) -> None:
    """Each model, under its -preview id and its alias, accepts exactly the sizes of section 4."""
    problems = check_generation(model, size, None)
    if allowed:
        assert problems == []
    else:
        assert [field for field, _ in problems] == ["image_size"]
        assert size in problems[0][1]
        assert model in problems[0][1]


@pytest.mark.parametrize(("model", "ratio", "allowed"), _ratio_rows())
def test_aspect_ratio_rules(model: str, ratio: str, allowed: bool) -> None:
    """Each model accepts the ten ratios; only 3.1 flash adds 1:4, 4:1, 1:8 and 8:1."""
    problems = check_generation(model, "1K", ratio)
    if allowed:
        assert problems == []
    else:
        assert [field for field, _ in problems] == ["aspect_ratio"]
        assert ratio in problems[0][1]


@pytest.mark.parametrize("model", [pytest.param(model, id=model) for model in ALL_MODELS])
def test_omitted_aspect_ratio_is_always_allowed(model: str) -> None:
    """Leaving the aspect ratio out (follow the input image) is fine for every model."""
    assert check_generation(model, "1K", None) == []


def test_flash_25_size_error_says_1k_only() -> None:
    """Asking gemini-2.5-flash-image for 4K says it offers 1K only."""
    [(field, message)] = check_generation("gemini-2.5-flash-image", "4K", None)
    assert field == "image_size"
    assert "1K only" in message


def test_bad_ratio_error_lists_the_offered_ratios() -> None:
    """A refused ratio's message names the ratios the model does offer."""
    [(_, message)] = check_generation("gemini-3-pro-image-preview", "1K", "1:8")
    assert all(ratio in message for ratio in TEN)


def test_unknown_model_sizes_are_not_checked() -> None:
    """An unknown model has no rules, so any size and ratio passes the model check."""
    assert rules_for("my-custom-model") is None
    assert check_generation("my-custom-model", "512", "8:1") == []


@pytest.mark.parametrize(
    ("model", "sends_size"),
    [pytest.param(model, model not in FLASH_25, id=model) for model in ALL_MODELS]
    + [pytest.param("my-custom-model", True, id="unknown-model")],
)
def test_image_size_is_left_out_only_for_flash_25(model: str, sends_size: bool) -> None:
    """build_request leaves imageSize out for gemini-2.5-flash-image only and sends it otherwise."""
    body = build_request(
        model=model,
        prompt="p",
        image_parts=[],
        image_size="1K",
        aspect_ratio="4:3",
        system_prompt=None,
        response_modalities=["TEXT", "IMAGE"],
    )
    image_config = body["generationConfig"].get("imageConfig", {})
    assert ("imageSize" in image_config) is sends_size
    if sends_size:
        assert image_config["imageSize"] == "1K"
    assert image_config["aspectRatio"] == "4:3"


def test_flash_25_without_ratio_sends_no_image_size() -> None:
    """gemini-2.5-flash-image with no aspect ratio still sends no imageSize."""
    body = build_request(
        model="gemini-2.5-flash-image",
        prompt="p",
        image_parts=[],
        image_size="1K",
        aspect_ratio=None,
        system_prompt=None,
        response_modalities=["TEXT", "IMAGE"],
    )
    assert "imageSize" not in body["generationConfig"].get("imageConfig", {})


# --- price books ------------------------------------------------------------------------------

APIYI = {
    **dict.fromkeys(PRO, 0.09),
    **dict.fromkeys(FLASH_31, 0.055),
    **dict.fromkeys(FLASH_25, 0.02),
}
GOOGLE = {
    **{(model, size): price for model in PRO for size, price in
       (("1K", 0.134), ("2K", 0.134), ("4K", 0.24))},
    **{(model, size): price for model in FLASH_31 for size, price in
       (("512", 0.045), ("1K", 0.067), ("2K", 0.101), ("4K", 0.151))},
    ("gemini-2.5-flash-image", "1K"): 0.039,
}  # fmt: skip


@pytest.mark.parametrize(
    ("model", "size", "price_usd"),
    [
        pytest.param(model, size, APIYI[model], id=f"{model}-{size}")
        for model in ALL_MODELS
        for size in sorted(ALLOWED_SIZES[model])
    ],
)
def test_apiyi_price_book(model: str, size: str, price_usd: float) -> None:
    """The apiyi book charges a fixed price per request, whatever the size."""
    rule = book_rule("apiyi", model, size)
    assert rule is not None
    assert rule.estimate_usd(size) == pytest.approx(price_usd, abs=1e-12)
    assert rule.actual_usd(size, {"totalTokenCount": 99_999}) == pytest.approx(price_usd, abs=1e-12)


@pytest.mark.parametrize(
    ("model", "size", "price_usd"),
    [
        pytest.param(model, size, price, id=f"{model}-{size}")
        for (model, size), price in GOOGLE.items()
    ],
)
def test_google_price_book(model: str, size: str, price_usd: float) -> None:
    """The google book charges Google's list price per output image, by size."""
    rule = book_rule("google", model, size)
    assert rule is not None
    assert rule.estimate_usd(size) == pytest.approx(price_usd, abs=1e-12)


def test_price_books_have_no_price_for_unknown_models() -> None:
    """Neither book prices a model it does not know."""
    assert book_rule("apiyi", "my-custom-model", "1K") is None
    assert book_rule("google", "my-custom-model", "1K") is None


# --- overrides and per-token prices -----------------------------------------------------------


def test_override_by_non_preview_name_prices_the_preview_model() -> None:
    """A `pricing` entry for gemini-3-pro-image also prices gemini-3-pro-image-preview."""
    overrides = {"gemini-3-pro-image": PriceRule(per_request_usd=0.2)}
    rule = price_rule("apiyi", overrides, "gemini-3-pro-image-preview", "1K")
    assert rule is not None
    assert rule.estimate_usd("1K") == 0.2


def test_override_leaves_other_models_at_book_price() -> None:
    """An override for one model does not change another model's price."""
    overrides = {"gemini-3-pro-image": PriceRule(per_request_usd=0.2)}
    rule = price_rule("apiyi", overrides, "gemini-3.1-flash-image-preview", "1K")
    assert rule is not None
    assert rule.estimate_usd("1K") == pytest.approx(0.055)


def test_per_million_tokens_price_uses_usage_metadata() -> None:
    """A per-million-token price is applied to the answer's usageMetadata token count."""
    rule = PriceRule(per_million_tokens_usd=30.0)
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 1290, "totalTokenCount": 1300}
    assert rule.actual_usd("1K", usage) == pytest.approx(30.0 * 1300 / 1e6)


def test_per_million_tokens_price_reads_snake_case_usage() -> None:
    """usage_metadata's total_token_count is read like its camelCase form."""
    rule = PriceRule(per_million_tokens_usd=120.0)
    assert rule.actual_usd("2K", {"total_token_count": 2000}) == pytest.approx(0.24)


def test_per_million_tokens_price_without_usage_falls_back_to_an_estimate() -> None:
    """With no usageMetadata a token-priced request still gets a positive price, never zero."""
    rule = PriceRule(per_million_tokens_usd=30.0)
    assert rule.actual_usd("1K", None) > 0
    assert rule.actual_usd("1K", None) == rule.estimate_usd("1K")


# --- the same rules through a manifest --------------------------------------------------------


def _job_price(tmp_path: Path, text: str, size: str | None = None) -> float:
    path = tmp_path / "job.yaml"
    path.write_text(textwrap.dedent(text))
    [item] = load_job(path).items
    return item.price.estimate_usd(size or item.image_size)


def test_manifest_non_preview_pricing_overrides_preview_model(tmp_path: Path) -> None:
    """A manifest `pricing` entry under the non-preview name prices the -preview model."""
    price = _job_price(
        tmp_path,
        """\
        version: 1
        model: gemini-3-pro-image-preview
        pricing:
          gemini-3-pro-image: {per_request_usd: 0.123}
        items:
          - prompt: a fox
        """,
    )
    assert price == 0.123


def test_manifest_preview_pricing_overrides_non_preview_model(tmp_path: Path) -> None:
    """A manifest `pricing` entry under the -preview name prices the non-preview alias too."""
    price = _job_price(
        tmp_path,
        """\
        version: 1
        model: gemini-3.1-flash-image
        pricing:
          gemini-3.1-flash-image-preview: {per_request_usd: 0.07}
        items:
          - prompt: a fox
        """,
    )
    assert price == 0.07


def test_manifest_price_book_google_prices_by_size(tmp_path: Path) -> None:
    """`price_book: google` prices a 4K pro item at $0.24."""
    price = _job_price(
        tmp_path,
        """\
        version: 1
        price_book: google
        model: gemini-3-pro-image-preview
        image_size: 4K
        items:
          - prompt: a fox
        """,
    )
    assert price == pytest.approx(0.24)


def test_manifest_default_price_book_is_apiyi(tmp_path: Path) -> None:
    """Without `price_book` a 4K pro item costs the apiyi $0.09 per request."""
    price = _job_price(
        tmp_path,
        """\
        version: 1
        model: gemini-3-pro-image-preview
        image_size: 4K
        items:
          - prompt: a fox
        """,
    )
    assert price == pytest.approx(0.09)


def test_manifest_per_million_tokens_pricing(tmp_path: Path) -> None:
    """A manifest per_million_tokens_usd entry prices an answer by its usageMetadata."""
    path = tmp_path / "job.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            model: gemini-3-pro-image-preview
            pricing:
              gemini-3-pro-image-preview: {per_million_tokens_usd: 120}
            items:
              - prompt: a fox
            """
        )
    )
    [item] = load_job(path).items
    assert item.price.actual_usd("1K", {"totalTokenCount": 1120}) == pytest.approx(0.1344)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("{}", id="neither"),
        pytest.param("{per_request_usd: 0.1, per_million_tokens_usd: 30}", id="both"),
        pytest.param("{per_request_usd: -1}", id="negative"),
    ],
)
def test_manifest_pricing_entry_needs_exactly_one_positive_price(
    tmp_path: Path, entry: str
) -> None:
    """A pricing entry takes per_request_usd or per_million_tokens_usd (one, not negative)."""
    path = tmp_path / "job.yaml"
    path.write_text(f"version: 1\npricing:\n  gemini-3-pro-image: {entry}\nitems:\n  - prompt: a\n")
    with pytest.raises(UserError) as caught:
        load_job(path)
    assert any(":3:" in problem and "pricing" in problem for problem in caught.value.problems)

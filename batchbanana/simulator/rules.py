"""The provider's own model rules and price books (contract sections 4, 5 and 13), written out
here again on purpose: a client bug cannot hide behind a shared helper."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

_TEN_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


@dataclass(frozen=True, slots=True)
class ModelRule:
    """What one model accepts: its image sizes and aspect ratios, its price family, the search
    types of the googleSearch tool it takes, and its thinking."""

    family: str  # the model id without "-preview": the key of the price books
    sizes: tuple[str, ...]  # empty: the model fails whenever imageSize is present
    ratios: tuple[str, ...]
    search: tuple[str, ...] = ()  # "web", "image": empty, the googleSearch tool is refused
    thinks: bool = False  # takes a thinkingConfig (includeThoughts) at all
    thinking_levels: tuple[str, ...] = ()  # the thinkingConfig.thinkingLevel values it takes


_PRO = ModelRule("gemini-3-pro-image", ("1K", "2K", "4K"), _TEN_RATIOS, ("web",), thinks=True)
_FLASH_31 = ModelRule(
    "gemini-3.1-flash-image",
    ("512", "1K", "2K", "4K"),
    (*_TEN_RATIOS, "1:4", "4:1", "1:8", "8:1"),
    ("web", "image"),
    thinks=True,
    thinking_levels=("MINIMAL", "HIGH"),
)
_FLASH_25 = ModelRule("gemini-2.5-flash-image", (), _TEN_RATIOS)

MODELS: Mapping[str, ModelRule] = {
    "gemini-3-pro-image-preview": _PRO,
    "gemini-3-pro-image": _PRO,
    "gemini-3.1-flash-image-preview": _FLASH_31,
    "gemini-3.1-flash-image": _FLASH_31,
    "gemini-2.5-flash-image": _FLASH_25,
}

LONG_SIDE_PX: Mapping[str, int] = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}
OUTPUT_TOKENS: Mapping[str, int] = {"512": 747, "1K": 1120, "2K": 1120, "4K": 2000}
INPUT_IMAGE_TOKENS = 258

# "*" is any size. apiyi bills per request; google per output image (the server multiplies).
PRICE_BOOKS: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "apiyi": {
        "gemini-3-pro-image": {"*": "0.09"},
        "gemini-3.1-flash-image": {"*": "0.055"},
        "gemini-2.5-flash-image": {"*": "0.02"},
    },
    "google": {
        "gemini-3-pro-image": {"1K": "0.134", "2K": "0.134", "4K": "0.24"},
        "gemini-3.1-flash-image": {"512": "0.045", "1K": "0.067", "2K": "0.101", "4K": "0.151"},
        "gemini-2.5-flash-image": {"*": "0.039"},
    },
}

MAX_IMAGE_BYTES = 7_000_000
MAX_IMAGES = 14
MAX_BODY_BYTES = 100_000_000  # a body of this size or more is refused


def book_price(book: str, model: str, image_size: str) -> Decimal:
    """The price of one billed request in a book (image_size is "1K" when the request had none)."""
    prices = PRICE_BOOKS[book][MODELS[model].family]
    return Decimal(prices.get(image_size, prices.get("*", "0")))

"""Price books and the price of one request (contract section 5). Pure arithmetic, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchbanana.rules.models import canonical_model

# API易 bills a fixed price per request, whatever the size.
APIYI_BOOK: dict[str, float] = {
    "gemini-3-pro-image": 0.09,
    "gemini-3.1-flash-image": 0.055,
    "gemini-2.5-flash-image": 0.02,
}

# Google's list prices per output image, by size.
GOOGLE_BOOK: dict[str, dict[str, float]] = {
    "gemini-3-pro-image": {"1K": 0.134, "2K": 0.134, "4K": 0.24},
    "gemini-3.1-flash-image": {"512": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151},
    "gemini-2.5-flash-image": {"1K": 0.039},
}

PRICE_BOOKS = ("apiyi", "google")
BATCH_DISCOUNT = 0.5  # Google's Batch API bills half the list price (contract section 10)

# Typical output tokens of one image, used to estimate token-priced requests before the answer.
TYPICAL_IMAGE_TOKENS: dict[str, int] = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}
INPUT_IMAGE_TOKENS = 1120  # an input image, generously
PROMPT_TOKENS_ALLOWANCE = 2000


@dataclass(frozen=True, slots=True)
class PriceRule:
    """How one model is priced: a fixed amount per request, per output image (Google's list
    prices), or per million tokens of usage."""

    per_request_usd: float | None = None
    per_million_tokens_usd: float | None = None
    per_image_usd: float | None = None

    def estimate_usd(self, image_size: str) -> float:
        """The price expected before the answer is known (one image for per-image prices)."""
        if self.per_request_usd is not None:
            return self.per_request_usd
        if self.per_image_usd is not None:
            return self.per_image_usd
        return self._tokens_usd(_typical_tokens(image_size))

    def ceiling_usd(self, image_size: str, input_images: int = 0) -> float:
        """The most a request is expected to cost, reserved against a budget before sending.

        Per-request prices are exact. A token-priced request is only known from its answer's
        usage, so the reservation allows for twice the typical output (an answer may carry two
        images), every input image and a long prompt.
        """
        if self.per_request_usd is not None:
            return self.per_request_usd
        if self.per_image_usd is not None:
            return self.per_image_usd  # the request's own price; a second image is rare
        tokens = (
            2 * _typical_tokens(image_size)
            + INPUT_IMAGE_TOKENS * input_images
            + PROMPT_TOKENS_ALLOWANCE
        )
        return self._tokens_usd(tokens)

    def actual_usd(
        self, image_size: str, usage: Mapping[str, Any] | None, images: int = 1
    ) -> float:
        """The price of an answered request: by its usage when priced per token; per output
        image (`images` of them, one at least: a billed answer without one still cost it)."""
        if self.per_image_usd is not None:
            return money(self.per_image_usd * max(1, images))
        if self.per_request_usd is not None or not usage:
            return self.estimate_usd(image_size)
        total = usage.get("totalTokenCount", usage.get("total_token_count"))
        if not isinstance(total, int | float) or isinstance(total, bool) or total < 0:
            return self.estimate_usd(image_size)
        return self._tokens_usd(float(total))

    def for_batch(self) -> PriceRule:
        """The same rule at batch prices: every rate halved (a `pricing` override is taken as
        the list price, as the price books are)."""

        def half(rate: float | None) -> float | None:
            return None if rate is None else round(rate * BATCH_DISCOUNT, 9)

        return PriceRule(
            per_request_usd=half(self.per_request_usd),
            per_million_tokens_usd=half(self.per_million_tokens_usd),
            per_image_usd=half(self.per_image_usd),
        )

    def _tokens_usd(self, tokens: float) -> float:
        return round((self.per_million_tokens_usd or 0.0) * tokens / 1e6, 6)


def _typical_tokens(image_size: str) -> int:
    return TYPICAL_IMAGE_TOKENS.get(image_size, TYPICAL_IMAGE_TOKENS["1K"])


def book_rule(book: str, model: str, image_size: str) -> PriceRule | None:
    """The price book's rule for a model and size, or None when the book has no price for it."""
    name = canonical_model(model)
    if book == "google":
        per_size = GOOGLE_BOOK.get(name)
        if per_size is None:
            return None
        price = per_size.get(image_size)
        return PriceRule(per_image_usd=price) if price is not None else None
    price = APIYI_BOOK.get(name)
    return PriceRule(per_request_usd=price) if price is not None else None


def price_rule(
    book: str, overrides: Mapping[str, PriceRule], model: str, image_size: str
) -> PriceRule | None:
    """The manifest's `pricing` entry for the model if any, else the price book's rule."""
    if model in overrides:
        return overrides[model]
    canonical = canonical_model(model)
    for name, rule in overrides.items():
        if canonical_model(name) == canonical:
            return rule
    return book_rule(book, model, image_size)


def money(amount: float) -> float:
    """Round a sum of prices so float noise never shows (a millionth of a dollar is kept)."""
    return round(amount + 0.0, 6)

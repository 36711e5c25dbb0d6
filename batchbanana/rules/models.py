"""What each Nano Banana model accepts: image sizes and aspect ratios (contract section 4).

Pure rules, checked before anything is sent, so a bad combination costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

TEN_RATIOS: tuple[str, ...] = (
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
)
EXTRA_FLASH_RATIOS: tuple[str, ...] = ("1:4", "4:1", "1:8", "8:1")
ALL_SIZES: tuple[str, ...] = ("512", "1K", "2K", "4K")


@dataclass(frozen=True, slots=True)
class ModelRules:
    """Sizes and ratios one model accepts; `sends_image_size` False: imageSize must be left out."""

    canonical: str
    sizes: tuple[str, ...]
    ratios: tuple[str, ...]
    sends_image_size: bool = True


_PRO = ModelRules("gemini-3-pro-image", ("1K", "2K", "4K"), TEN_RATIOS)
_FLASH_31 = ModelRules("gemini-3.1-flash-image", ALL_SIZES, TEN_RATIOS + EXTRA_FLASH_RATIOS)
_FLASH_25 = ModelRules("gemini-2.5-flash-image", ("1K",), TEN_RATIOS, sends_image_size=False)

KNOWN_MODELS: dict[str, ModelRules] = {
    "gemini-3-pro-image-preview": _PRO,
    "gemini-3-pro-image": _PRO,
    "gemini-3.1-flash-image-preview": _FLASH_31,
    "gemini-3.1-flash-image": _FLASH_31,
    "gemini-2.5-flash-image": _FLASH_25,
}


def rules_for(model: str) -> ModelRules | None:
    """The rules of a known model, or None for a model batchbanana does not know."""
    return KNOWN_MODELS.get(model)


def canonical_model(model: str) -> str:
    """The price-book name of a model (its non-preview id); unknown models map to themselves."""
    rules = rules_for(model)
    return rules.canonical if rules else model


def check_generation(
    model: str, image_size: str, aspect_ratio: str | None
) -> list[tuple[str, str]]:
    """Problems with a model/size/ratio combination as (field, message) pairs; empty when fine."""
    rules = rules_for(model)
    if rules is None:
        return []
    problems: list[tuple[str, str]] = []
    if image_size not in rules.sizes:
        offered = ", ".join(rules.sizes)
        only = " only" if len(rules.sizes) == 1 else ""
        problems.append(("image_size", f"{image_size} is not offered by {model} ({offered}{only})"))
    if aspect_ratio is not None and aspect_ratio not in rules.ratios:
        problems.append(
            (
                "aspect_ratio",
                f"{aspect_ratio!r} is not offered by {model}; use one of {', '.join(rules.ratios)}"
                " or leave it out to follow the last input image",
            )
        )
    return problems

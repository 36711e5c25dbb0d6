"""What each Nano Banana model accepts: image sizes and aspect ratios (contract section 4), Google
Search grounding and thinking levels (contract section 13).

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
# Grounding (contract section 13): none, Google web search, or web and image search.
NO_GROUNDING = "none"
GROUNDINGS: tuple[str, ...] = (NO_GROUNDING, "web", "web+image")
THINKING_LEVELS: tuple[str, ...] = ("minimal", "high")


@dataclass(frozen=True, slots=True)
class ModelRules:
    """Sizes and ratios one model accepts; `sends_image_size` False: imageSize must be left out;
    the grounding it offers besides none, and the thinking levels it takes (none: it takes no
    thinking level)."""

    canonical: str
    sizes: tuple[str, ...]
    ratios: tuple[str, ...]
    sends_image_size: bool = True
    grounding: tuple[str, ...] = ()
    thinking_levels: tuple[str, ...] = ()


# Nano Banana Pro grounds in web search; Nano Banana 2 also in image search, and takes a thinking
# level (minimal by default, or high); Nano Banana (2.5) offers neither.
_PRO = ModelRules("gemini-3-pro-image", ("1K", "2K", "4K"), TEN_RATIOS, grounding=("web",))
_FLASH_31 = ModelRules(
    "gemini-3.1-flash-image",
    ALL_SIZES,
    TEN_RATIOS + EXTRA_FLASH_RATIOS,
    grounding=("web", "web+image"),
    thinking_levels=THINKING_LEVELS,
)
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
    model: str,
    image_size: str,
    aspect_ratio: str | None,
    grounding: str = NO_GROUNDING,
    thinking_level: str | None = None,
) -> list[tuple[str, str]]:
    """Problems with a model/size/ratio/grounding/thinking combination as (field, message)
    pairs; empty when fine. An unknown model's fields are not checked."""
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
    if grounding != NO_GROUNDING and grounding not in rules.grounding:
        problems.append(("grounding", _grounding_problem(model, grounding, rules)))
    if thinking_level is not None and thinking_level not in rules.thinking_levels:
        problems.append(("thinking_level", _thinking_problem(model, thinking_level, rules)))
    return problems


def _offering(feature: str, wanted: str) -> str:
    """The models that offer a grounding or a thinking level: "gemini-3.1-flash-image(-preview)"."""
    names = {
        rules.canonical
        for rules in KNOWN_MODELS.values()
        if wanted in (rules.grounding if feature == "grounding" else rules.thinking_levels)
    }
    return ", ".join(f"{name}(-preview)" for name in sorted(names))


def _grounding_problem(model: str, grounding: str, rules: ModelRules) -> str:
    if not rules.grounding:
        return (
            f"{grounding} is not offered by {model} (it cannot search); HINT: leave grounding"
            f" out, or use a model that grounds in Google Search: {_offering('grounding', 'web')}"
        )
    offered = " and ".join(rules.grounding)
    return (
        f"{grounding} is not offered by {model} (grounding {offered} only); HINT: use"
        f" grounding: web, or a model that offers {grounding}: {_offering('grounding', grounding)}"
    )


def _thinking_problem(model: str, level: str, rules: ModelRules) -> str:
    if not rules.thinking_levels:
        return (
            f"{model} takes no thinking level; HINT: leave thinking_level out, or use a model that"
            f" takes one: {_offering('thinking', level) or _offering('thinking', 'high')}"
        )
    return f"{level} is not offered by {model} ({', '.join(rules.thinking_levels)})"

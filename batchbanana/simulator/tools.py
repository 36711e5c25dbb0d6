"""A request's Google Search tool and thinking config, read the way Google reads them (keys in
either case, enum values in any case), with the 400 INVALID_ARGUMENT Google answers for a tool, a
search type or a thinking setting the model does not offer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchbanana.simulator.reading import invalid_argument, pick, snake_case
from batchbanana.simulator.rules import ModelRule

_SEARCH_TYPES = {"web_search": "web", "image_search": "image"}
_SEARCH_KEYS = frozenset({"search_types", "time_range_filter"})
_THINKING_KEYS = frozenset({"thinking_level", "thinking_budget", "include_thoughts"})


def _unknown(key: str, where: str) -> Exception:
    return invalid_argument(
        f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
    )


def read_search(rule: ModelRule, model: str, body: Mapping[str, Any]) -> frozenset[str]:
    """The search types the request's googleSearch tool asks for ("web", "image"; none without
    the tool). Web search is what the tool does when it names no search type."""
    tools = pick(body, "tools")
    if tools is None:
        return frozenset()
    if not isinstance(tools, list):
        raise invalid_argument("tools must be a list of Tool objects")
    wanted: set[str] = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise invalid_argument(f"tools[{index}] must be an object")
        for key, value in tool.items():
            if snake_case(key) != "google_search":
                raise invalid_argument(f"tools[{index}].{key} is not supported by models/{model}")
            wanted |= _search_types(value, f"tools[{index}].google_search")
    if wanted and not rule.search:
        raise invalid_argument(f"Search grounding is not supported by models/{model}.")
    if not wanted <= set(rule.search):
        raise invalid_argument(
            f"Image search is not supported by models/{model}; HINT: search the web only"
            " (leave out searchTypes.imageSearch)"
        )
    return frozenset(wanted)


def _search_types(search: Any, where: str) -> set[str]:
    if search is None:
        return {"web"}
    if not isinstance(search, Mapping):
        raise invalid_argument(f"{where} must be an object")
    for key in search:
        if snake_case(key) not in _SEARCH_KEYS:
            raise _unknown(key, where)
    types = pick(search, "searchTypes")
    if types is None:
        return {"web"}
    if not isinstance(types, Mapping):
        raise invalid_argument(f"{where}.search_types must be an object")
    found = set()
    for key, value in types.items():
        kind = _SEARCH_TYPES.get(snake_case(key))
        if kind is None:
            raise _unknown(key, f"{where}.search_types")
        if value is not None and not isinstance(value, Mapping):
            raise invalid_argument(f"{where}.search_types.{snake_case(key)} must be an object")
        found.add(kind)
    return found or {"web"}


def read_thinking(rule: ModelRule, model: str, body: Mapping[str, Any]) -> str | None:
    """generationConfig.thinkingConfig.thinkingLevel as Google's enum spells it ("HIGH"), or
    None when the request sets no level."""
    gen = pick(body, "generationConfig")
    config = pick(gen, "thinkingConfig") if isinstance(gen, Mapping) else None
    if config is None:
        return None
    where = "generation_config.thinking_config"
    if not isinstance(config, Mapping):
        raise invalid_argument(f"{where} must be an object")
    for key in config:
        if snake_case(key) not in _THINKING_KEYS:
            raise _unknown(key, where)
    if not rule.thinks:
        raise invalid_argument(f"Thinking is not supported by models/{model}.")
    if pick(config, "thinkingBudget") is not None:
        raise invalid_argument(
            f"thinking_budget is not supported by models/{model}; HINT: use thinking_level"
        )
    include = pick(config, "includeThoughts")
    if include is not None and not isinstance(include, bool):
        raise invalid_argument(f"Invalid value at '{where}.include_thoughts' (TYPE_BOOL)")
    level = pick(config, "thinkingLevel")
    if level is None:
        return None
    if not rule.thinking_levels:
        raise invalid_argument(f"Thinking level is not supported by models/{model}.")
    if not isinstance(level, str) or level.upper() not in rule.thinking_levels:
        raise invalid_argument(
            f"Thinking level {level!r} is not supported by models/{model}; HINT: use one of"
            f" {', '.join(rule.thinking_levels)}"
        )
    return level.upper()

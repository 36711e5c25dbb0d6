"""An item's variants before ids and repeats (contract section 11): its variables (the top-level
`vars` are defaults, its own `vars` override them, its matrix's values override both), and for
each matrix combination (or the item alone) its prompt, system prompt and id with their
`{{name}}` placeholders filled; a problem for each placeholder that names no variable, or one
that has no value for this item.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from batchbanana.plan.checker import Checker
from batchbanana.plan.ids import value_label
from batchbanana.plan.manifest import ID_PATTERN, ITEM_KEYS, Manifest
from batchbanana.plan.matrix import Axis, Combination, combinations, item_axes
from batchbanana.plan.plain_rows import RawItem
from batchbanana.plan.templates import Template, parse_template
from batchbanana.plan.yaml_lines import Loc

Values = dict[str, str | None]


@dataclass(frozen=True, slots=True)
class Variant:
    """One request an item makes before repeats: its texts filled, its id's stem, and the
    matrix combination it is (empty without a matrix)."""

    prompt: str
    system_prompt: str | None
    id_stem: str | None  # the item's id with its placeholders filled; None: derived later
    combination: Combination = ()


@dataclass(frozen=True, slots=True)
class ItemVariants:
    """An item's variants; its matrix's axes; and what its ids are made from: the texts and the
    id with the matrix's variables left as placeholders (its meaning, the id its variants share),
    and the variables its id already shows (not added again to a combination's id)."""

    variants: tuple[Variant, ...]
    axes: tuple[Axis, ...]
    meaning_prompt: str
    meaning_system_prompt: str | None
    shared_id: str | None
    id_shows: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Texts:
    """An item's templates; the system prompt may be the top-level one."""

    prompt: Template
    system_prompt: Template | None
    id: Template | None

    def names(self) -> set[str]:
        """Every variable the texts use."""
        templates = (self.prompt, self.system_prompt, self.id)
        return {name for template in templates if template for name in template.names}


def item_variants(raw: RawItem, manifest: Manifest, checker: Checker) -> ItemVariants | None:
    """The item's variants, or None when a problem (added to `checker`) stops them."""
    plain = _plain(raw, manifest)
    if plain is not None:
        return plain
    texts = _texts(raw, manifest, checker)
    if texts is None:
        return None
    axes = item_axes(raw, manifest, texts.names(), checker)
    values = item_values(raw, manifest)
    from_matrix = frozenset(axis.name for axis in axes or () if not axis.is_field)
    if axes is None or not _names_known(raw, texts, values, from_matrix, checker):
        return None
    filled = {name: value for name, value in values.items() if value is not None}
    variants = []
    for combination in combinations(axes):
        chosen = {name: str(value) for name, value in combination if name in from_matrix}
        variant = _variant(raw, texts, {**filled, **chosen}, combination, checker)
        if variant is None:
            return None  # its problem is the same for every combination: said once
        variants.append(variant)
    labels = {name: value_label(value) for name, value in filled.items()}
    return ItemVariants(
        variants=tuple(variants),
        axes=axes,
        meaning_prompt=texts.prompt.fill(filled, keep=from_matrix),
        meaning_system_prompt=(
            texts.system_prompt.fill(filled, keep=from_matrix) if texts.system_prompt else None
        ),
        shared_id=texts.id.fill(labels, keep=from_matrix) if texts.id else None,
        id_shows=from_matrix & set(texts.id.names if texts.id else ()),
    )


def _plain(raw: RawItem, manifest: Manifest) -> ItemVariants | None:
    """The item itself when nothing varies it (no placeholder, no matrix): most items, read
    without the template machinery (a 100,000-row items_file plans in seconds)."""
    item = raw.item
    system_prompt = item.system_prompt if item.system_prompt is not None else manifest.system_prompt
    if item.matrix is not None or manifest.matrix is not None or "{{" in item.prompt:
        return None
    if (system_prompt and "{{" in system_prompt) or (item.id and "{{" in item.id):
        return None
    variant = Variant(item.prompt, system_prompt, item.id)
    return ItemVariants((variant,), (), item.prompt, system_prompt, item.id, frozenset())


def _variant(
    raw: RawItem,
    texts: _Texts,
    values: dict[str, str],
    combination: Combination,
    checker: Checker,
) -> Variant | None:
    """One combination's texts filled, or None (and a problem) when they cannot be."""
    prompt = texts.prompt.fill(values)
    if not prompt.strip():
        checker.add_item(raw, "prompt", "empty once its placeholders are filled")
        return None
    system_prompt = texts.system_prompt.fill(values) if texts.system_prompt else None
    id_stem = _filled_id(raw, texts.id, values, checker) if texts.id else None
    if texts.id and id_stem is None:
        return None
    return Variant(prompt, system_prompt, id_stem, combination)


def item_values(raw: RawItem, manifest: Manifest) -> Values:
    """The item's variables: the top-level defaults, overridden by its own non-null values."""
    values: Values = dict(manifest.vars)
    for name, value in (raw.item.vars or {}).items():
        if value is not None or name not in values:
            values[name] = value
    return values


def _texts(raw: RawItem, manifest: Manifest, checker: Checker) -> _Texts | None:
    """The item's prompt, system prompt and id parsed; a problem for each that cannot be."""
    item = raw.item
    parsed: dict[str, Template | None] = {"prompt": None, "system_prompt": None, "id": None}
    broken = False
    written = {"prompt": item.prompt, "system_prompt": item.system_prompt, "id": item.id}
    for field_name, text in written.items():
        if text is None:
            continue
        template = parse_template(text)
        if isinstance(template, str):
            checker.add_item(raw, field_name, template)
            broken = True
        else:
            parsed[field_name] = template
    if item.system_prompt is None and manifest.system_prompt is not None:
        # a broken top-level system prompt is reported once, at its own line (build.py)
        top = parse_template(manifest.system_prompt)
        parsed["system_prompt"] = top if isinstance(top, Template) else None
    prompt = parsed["prompt"]
    if broken or prompt is None:
        return None
    return _Texts(prompt, parsed["system_prompt"], parsed["id"])


def _names_known(
    raw: RawItem, texts: _Texts, values: Values, from_matrix: frozenset[str], checker: Checker
) -> bool:
    """True when every placeholder names a variable that has a value for this item (its own,
    a default, or each of its matrix's)."""
    ok = True
    own_system = raw.item.system_prompt is not None
    templates = {"prompt": texts.prompt, "system_prompt": texts.system_prompt, "id": texts.id}
    for field_name, template in templates.items():
        if template is None:
            continue
        where = "" if field_name != "system_prompt" or own_system else " (top-level system_prompt)"
        for name in template.names:
            if name in from_matrix:
                continue
            if name not in values:
                known = (*values, *from_matrix)
                checker.add_item(raw, field_name, unknown_placeholder(name, where, known))
                ok = False
            elif values[name] is None:
                checker.add_item(
                    raw,
                    field_name,
                    f"{{{{{name}}}}}{where} has no value for this item; HINT: give it in the"
                    f" item's vars (or the items_file's {name} column), or a default in the"
                    " top-level vars",
                )
                ok = False
    return ok


def unknown_placeholder(name: str, where: str, known: Iterable[str]) -> str:
    """The problem of a placeholder that names no variable, with the variables there are."""
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]}? " if close else ""
    listing = f"known variables: {', '.join(names)}" if names else "no variables are declared"
    return (
        f"{{{{{name}}}}}{where} is not a variable; HINT: {guess}{listing}; declare it under"
        f" `vars` (e.g. vars: {{{name}: ...}}), or write \\{{{{ for a literal '{{{{'"
    )


def _filled_id(
    raw: RawItem, template: Template, values: dict[str, str], checker: Checker
) -> str | None:
    """The item's id with its placeholders filled by their values as id labels, or None (and a
    problem) when that is not a valid id."""
    filled = template.fill({name: value_label(value) for name, value in values.items()})
    if ID_PATTERN.match(filled) or (len(filled) > 128 and ID_PATTERN.match(filled[:128])):
        return filled  # a long one is cut (with a hash) where its ids are made
    checker.add_item(
        raw,
        "id",
        f"{filled!r} (filled in) is not a valid id: letters, digits, '.', '_' and '-',"
        " starting with a letter or digit",
    )
    return None


def check_top_level(
    manifest: Manifest, line_of: Callable[[Loc], int | None], checker: Checker
) -> None:
    """The top-level `vars` and system prompt, each problem once at its own line."""
    for name in manifest.vars:
        if name in ITEM_KEYS:
            checker.add(
                line_of(("vars", name)),
                "",
                f"vars.{name}",
                f"{name!r} is an item field; name the variable differently",
            )
    if manifest.system_prompt is not None:
        template = parse_template(manifest.system_prompt)
        if isinstance(template, str):
            checker.add(line_of(("system_prompt",)), "", "system_prompt", template)

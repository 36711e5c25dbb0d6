"""Edit chains (contract section 11): an input image `item:<id>` is the first output image of item
`<id>` of the same job (`<id>.<ext>` in output_dir), so a job can make an image and then edit it.

The graph: which items an item uses (`bases`), checked before anything is sent (`check_chains`:
every reference names an item of the job, and no item uses its own output, directly or through
others), and an order in which every base comes before the items that use it (`chain_order`).

Fingerprints. A dependent's request holds its base's output bytes, so its fingerprint must hold
their sha256: regenerating the base makes its edits new work. Before the base is ok those bytes do
not exist, so an item is planned with a *pending* fingerprint, computed like any other over its
meaning with each reference standing as `item:<id>|pending` (and written `{"item": id, "pending":
true}` in its spec). A `blocked` line (the base is not ok) carries the pending fingerprint: blocked
is billed no, so the next `run` owes the item again whatever that line says. Once the bases are
ok, `resolve` reads their saved outputs and gives the item its real fingerprint, `chain_fingerprint`
= sha256 of the pending fingerprint and the digests of the outputs it uses; only that fingerprint
is ever written on a `sent` line. So, for resume:
- a base ok and an edit never sent (or last blocked, billed no): the edit's real fingerprint has no
  line yet, and `run` sends it;
- the same run again: same pending fingerprint, same output bytes, same real fingerprint, ok:
  nothing is sent;
- a base made again (its prompt edited, or `retry`): new bytes, a new real fingerprint, new work;
- `retry` rebuilds a blocked item from its pending fingerprint and spec alone, and arrives at the
  fingerprint `run` would compute, since the real one derives from the pending one and the bytes.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from batchbanana.plan.checker import Checker
from batchbanana.plan.inputs import ImageInput, ImageProblem, inspect_file
from batchbanana.plan.job import WorkItem
from batchbanana.plan.manifest import ID_PATTERN
from batchbanana.plan.problems import Problem
from batchbanana.plan.shape import Shape
from batchbanana.plan.workitems import WorkItems
from batchbanana.rules.media import body_size_problem, request_body_bytes

ITEM_PREFIX = "item:"


def reference_problem(reference: str, plain: bool) -> str | None:
    """Why an `item:<id>` image, as written, is not a reference; None when it is one."""
    target = reference[len(ITEM_PREFIX) :]
    if not plain:
        return f"write another item's output as a plain string: images: [{reference}]"
    if not ID_PATTERN.match(target):
        return (
            f"{reference!r}: {target!r} is not an item id; HINT: write item:<id>, the id of"
            " another item of this job"
        )
    return None


def bases(item: WorkItem) -> tuple[str, ...]:
    """The ids of the items whose output `item` uses and does not have yet, once each."""
    return uses(item.images)


def uses(images: Sequence[ImageInput]) -> tuple[str, ...]:
    """The ids of the items whose outputs these images are (not read yet), once each."""
    return tuple(dict.fromkeys(image.reference for image in images if image.kind == "item"))


def chain_order(items: Sequence[WorkItem]) -> list[WorkItem]:
    """The items, each after the items of `items` it uses (otherwise in their own order)."""
    by_id = {item.id: item for item in items}
    placed: set[str] = set()
    ordered: list[WorkItem] = []
    for item in items:
        stack = [(item, False)]
        while stack:
            current, expanded = stack.pop()
            if current.id in placed:
                continue
            if expanded:
                placed.add(current.id)
                ordered.append(current)
                continue
            stack.append((current, True))
            for base in reversed(bases(current)):
                if base in by_id and base not in placed and base != current.id:
                    stack.append((by_id[base], False))
    return ordered


def check_chains(items: WorkItems, unexpanded: set[str], checker: Checker) -> None:
    """Every `item:` reference names an item of the job other than itself, and no item uses its
    own output through others (a cycle); each problem is added to `checker` where it was written.
    `unexpanded`: the ids as written of the items that made no work item."""
    if not any(_refers(shape) for shape, _ in items.shape_counts()):
        return  # no item uses another's output (most jobs)
    ids = set(items.ids)
    # Items the manifest names but that did not expand (they have problems of their own): a
    # reference to them is not "unknown". An item a matrix expanded has no id of its own.
    combined = {item.variant_of: item.id for item in reversed(items) if item.variant_of}
    named = ids | (unexpanded - set(combined))
    found: dict[str, Problem] = {}

    def add(image: ImageInput, message: str) -> None:
        source, line, where, label = image.site or ("", None, "", "images")
        problem = Problem(source, line, where, f"{label}: {ITEM_PREFIX}{image.reference}", message)
        found.setdefault(problem.render(), problem)

    for item in items:
        for image in item.images:
            if image.kind != "item":
                continue
            if image.reference == item.id:
                add(image, "an item cannot use its own output")
            elif image.reference not in named:
                hint = _hint(image, ids, combined)
                add(image, f"no item of this job has the id {image.reference!r}{hint}")
    for cycle, image in _cycles(items):
        add(
            image,
            f"a cycle: {' -> '.join(cycle)} (each uses the next one's output); HINT: an item"
            " cannot use its own output, directly or through others",
        )
    checker.problems.extend(found.values())


def _refers(shape: Shape) -> bool:
    return any(image.kind == "item" for image in shape.images)


def _hint(image: ImageInput, ids: set[str], combined: dict[str, str]) -> str:
    target = image.reference
    if target in combined:
        return (
            f"; HINT: an item with a matrix has one id per combination: name one, such as"
            f" {ITEM_PREFIX}{combined[target]}"
        )
    if f"{target}-1" in ids:
        return (
            f"; HINT: an item with `repeat` has one id per variation: name one, such as"
            f" {ITEM_PREFIX}{target}-1"
        )
    close = difflib.get_close_matches(target, sorted(ids), n=1, cutoff=0.6)
    return f"; did you mean {ITEM_PREFIX}{close[0]}?" if close else ""


def _cycles(items: Sequence[WorkItem]) -> list[tuple[list[str], ImageInput]]:
    """Each cycle once (self-references aside), with the reference that closes it."""
    uses: dict[str, list[ImageInput]] = defaultdict(list)
    ids = {item.id for item in items}
    for item in items:
        uses[item.id] = [
            image
            for image in item.images
            if image.kind == "item" and image.reference in ids and image.reference != item.id
        ]
    state: dict[str, int] = {}  # 1 on the path, 2 done
    cycles: list[tuple[list[str], ImageInput]] = []
    for item in items:
        if item.id in state:
            continue
        path = [item.id]
        state[item.id] = 1
        stack = [iter(uses[item.id])]
        while stack:
            image = next(stack[-1], None)
            if image is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            target = image.reference
            if state.get(target) == 1:
                # told from the item holding the closing reference: b -> a -> b
                loop = path[path.index(target) :]
                cycles.append(([loop[-1], *loop[:-1], loop[-1]], image))
            elif target not in state:
                state[target] = 1
                path.append(target)
                stack.append(iter(uses[target]))
    return cycles


def chain_fingerprint(pending: str, used: Sequence[ImageInput]) -> str:
    """The real fingerprint of an item whose pending fingerprint is `pending`, once the outputs it
    uses are known: it holds their digests, so new bytes make new work."""
    meaning = {"pending": pending, "inputs": [image.meaning() for image in used]}
    canonical = json.dumps(meaning, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def resolve(
    item: WorkItem,
    output_of: Callable[[str], str | None],
    seen: dict[str, ImageInput] | None = None,
) -> WorkItem:
    """`item` with each `item:` reference made the saved output of that item (read, sniffed and
    checked like a local file), and its real fingerprint. `output_of(id)` is the output file of
    an item that is ok, or None. Raises ImageProblem saying why the item cannot be sent.

    `seen` keeps the outputs read so far (by path), so many edits of one base read it once."""
    seen = {} if seen is None else seen
    images: list[ImageInput] = []
    used: list[ImageInput] = []
    for image in item.images:
        if image.kind != "item":
            images.append(image)
            continue
        base = image.reference
        output = output_of(base)
        if output is None:
            raise ImageProblem(f"{ITEM_PREFIX}{base}: item '{base}' has no output to use")
        found = seen.get(output)
        if found is None:
            try:
                found = inspect_file(Path(output))
            except ImageProblem as exc:
                raise ImageProblem(
                    f"{ITEM_PREFIX}{base}: the output of item '{base}' cannot be sent as an input"
                    f" image: {exc}"
                ) from None
            seen[output] = found
        resolved = replace(found, from_item=base, site=image.site)
        images.append(resolved)
        used.append(resolved)
    too_large = body_size_problem(
        request_body_bytes(item.prompt, (image.encoded_size() for image in images))
    )
    if too_large:
        raise ImageProblem(f"with the outputs of the items it uses, {too_large}")
    return replace(
        item, images=tuple(images), fingerprint=chain_fingerprint(item.fingerprint, used)
    )

"""Collects the problems found while planning a job, placed in the file they come from, and
inspects each distinct local image once however many items use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batchbanana.plan.inputs import ImageInput, ImageProblem, inspect_file
from batchbanana.plan.plain_rows import RawItem
from batchbanana.plan.problems import Problem


@dataclass(slots=True)
class Checker:
    """The problems found so far, and the local images already inspected."""

    source: str
    problems: list[Problem] = field(default_factory=list)
    files: dict[Path, ImageInput | str] = field(default_factory=dict)

    def add(self, line: int | None, where: str, field_name: str, message: str) -> None:
        """A problem with the manifest itself."""
        self.problems.append(Problem(self.source, line, where, field_name, message))

    def add_item(self, raw: RawItem, field_name: str, message: str) -> None:
        """A problem with one item, placed in the file (manifest or items_file) it came from."""
        self.problems.append(Problem(raw.source, raw.line, raw.where, field_name, message))

    def image(self, path: Path) -> ImageInput | str:
        """The inspected image at `path`, or why it cannot be sent."""
        if path not in self.files:
            try:
                self.files[path] = inspect_file(path)
            except ImageProblem as exc:
                self.files[path] = str(exc)
        return self.files[path]

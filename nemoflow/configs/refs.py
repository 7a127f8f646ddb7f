"""Values that stand for files: inputs (``File``) and other steps' outputs and results."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol


class StepLike(Protocol):
    """What a reference needs of the step it points at (an experiment's ``StepHandle``)."""

    name: str
    experiment: Any


@dataclass(frozen=True)
class File:
    """An input file named in a config: the key hashes its content, not its mtime.

    A relative path is relative to the directory the build starts from. At run time the
    value resolves to the file's absolute path (a ``str``).
    """

    path: str

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", os.fspath(path))

    def __fspath__(self) -> str:
        return self.path


@dataclass(frozen=True, eq=False)
class StepOutput:
    """A file in another step's output folder; resolves to its real path at run time."""

    step: StepLike
    path: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StepOutput) and other.step.name == self.step.name and other.path == self.path

    def __hash__(self) -> int:
        return hash((self.step.name, self.path))

    def __repr__(self) -> str:
        return f"{self.step.name}.output({self.path!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> StepOutput:
        return self  # a reference names a step; copying a config must not copy the experiment


@dataclass(frozen=True, eq=False)
class StepResult:
    """Another step's return value; resolves to that value at run time."""

    step: StepLike

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StepResult) and other.step.name == self.step.name

    def __hash__(self) -> int:
        return hash(self.step.name)

    def __repr__(self) -> str:
        return f"{self.step.name}.result"

    def __deepcopy__(self, memo: dict[int, Any]) -> StepResult:
        return self


Reference = StepOutput | StepResult
PATH_LIKE_REFS = (File, StepOutput)

"""Errors the library raises; each ``__str__`` is the message a user reads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


def closest(word: object, choices: Iterable[str]) -> str | None:
    """The choice a mistyped word most likely meant, for a "did you mean" (pypa/build's ``_find_typo``).

    Args:
        word: what the user wrote (anything but text has no near miss).
        choices: the words that would have been right.
    """
    import difflib

    if not isinstance(word, str):
        return None
    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None


class SweepError(Exception):
    """Base of every error mlflow-sweep raises on purpose; ``exit_code`` is what the CLI returns."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a sweep file: a dotted key path, the reason and an optional hint."""

    path: str
    reason: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.reason}" + (f" ({self.hint})" if self.hint else "")


class ConfigError(SweepError):
    """A sweep file that cannot be used; lists every problem found."""

    exit_code = 2
    what = "sweep configuration"

    def __init__(self, file: str, problems: list[Problem] | tuple[Problem, ...], what: str | None = None) -> None:
        self.file = file
        self.problems = tuple(problems)
        if what is not None:
            self.what = what
        super().__init__(file, self.problems, what)

    def __str__(self) -> str:
        if len(self.problems) == 1 and not self.problems[0].path:
            return f"{self.file}: {self.problems[0]}"
        count = len(self.problems)
        head = f"{self.file}: invalid {self.what} ({count} problem{'s' * (count != 1)})"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


class PointError(ConfigError):
    """Points to enqueue that the sweep cannot run; lists every problem, each with its path."""

    what = "points"


class UsageError(SweepError):
    """Bad command-line arguments."""

    exit_code = 2


class LedgerError(SweepError):
    """The sweep's ledger cannot be read, locked or written."""


class TrackingError(SweepError):
    """The MLflow tracking store cannot give us what the sweep needs."""

"""One error hierarchy for the whole engine.

``SegmentError`` is the root. ``InputError`` covers bad input and bad usage: the CLI
turns it into a one-line ``Error: ...`` and exit code 2. ``OutputError`` (the disk filled, a
directory is not writable) is a one-line error with exit code 1. Anything else that escapes is
an internal failure, ours, not the user's: the CLI prints one line (exit 1) and the traceback
with ``--debug``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SegmentError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputError(SegmentError):
    """Bad input data, a bad spec or a bad option: the user can fix it."""


class OutputError(SegmentError):
    """The outputs could not be written (disk full, permissions); earlier outputs are intact."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix naming the closest choices, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

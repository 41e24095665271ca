"""One error hierarchy for the whole engine.

``SegmentError`` is the root. ``InputError`` covers bad input and bad usage: the CLI
turns it into a one-line ``Error: ...`` and exit code 2. ``OutputError`` (the disk filled, a
directory is not writable) is a one-line error with exit code 1. Anything else that escapes is
an internal failure (exit 1, traceback with ``--debug``).
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


class InternalError(SegmentError):
    """A failure that is our fault, not the user's."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix naming the closest choices, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"

"""Progress of the long stages: the small protocol the engine calls, a silent default, and the
progress bars of the command line.

A stage is a context manager that yields ``advance``; the engine calls ``advance(n)`` as work is
done (one feature column read, one Lloyd pass over every row, one output file written)::

    with progress.stage("reading", total=len(columns)) as advance:
        for column in columns:
            ...
            advance(1)

``total`` is None where the amount of work is not known in advance (Lloyd passes run until the
centres settle). ``engine.run``, ``sweep`` and ``predict`` take ``progress=`` like they take
``log=``: it is not a run option and is recorded nowhere. The default, ``SILENT``, does nothing.
``Bars`` draws click's progress bars on stderr; ``segment`` uses it only when stderr is a terminal
and ``--quiet`` is not given, so nothing reaches a pipe, a file or stdout.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Callable, Iterator
from typing import IO, ContextManager, Protocol

import click

#: ``advance(n)``: n more units of the stage's work are done.
Advance = Callable[[int], None]


class Progress(Protocol):
    def stage(self, label: str, total: int | None = None) -> ContextManager[Advance]:
        """A stage of ``total`` units of work (None: unknown), as a context that yields ``advance``."""
        ...


def ignore(_n: int = 1) -> None:
    """The ``advance`` of a silent stage."""


class Silent:
    """No progress shown (the default of the Python API)."""

    @contextlib.contextmanager
    def stage(self, label: str, total: int | None = None) -> Iterator[Advance]:
        yield ignore


SILENT = Silent()


class Bars:
    """One click progress bar per stage on ``file`` (stderr by default); ``echo`` writes a message
    line without tearing the bar that is being drawn."""

    def __init__(self, file: IO[str] | None = None) -> None:
        self.file = file if file is not None else sys.stderr
        self.bar = None

    @contextlib.contextmanager
    def stage(self, label: str, total: int | None = None) -> Iterator[Advance]:
        # An endless iterable where the total is unknown: click then draws a bar without a percentage.
        source = {"length": total} if total is not None else {"iterable": itertools.count()}
        with click.progressbar(**source, label=f"{label:<10}", file=self.file, show_pos=True,
                               show_percent=total is not None, show_eta=total is not None) as bar:
            self.bar = bar
            try:
                yield bar.update
                if total is None:  # done: the bar of unknown length is drawn full
                    bar.finished = True
                    bar.render_progress()
            finally:
                self.bar = None

    def echo(self, message: str) -> None:
        if self.bar is None:
            click.echo(message, file=self.file)
            return
        click.echo("\r\033[K" + message, file=self.file)  # clear the bar's line, then draw it again below
        self.bar._last_line = None  # click redraws only a line that changed, and this one did not
        self.bar.render_progress()


def for_terminal(quiet: bool, stream: IO[str] | None = None) -> Bars | Silent:
    """``Bars`` on ``stream`` (stderr) when it is a terminal and ``quiet`` is not set, else ``SILENT``."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return Bars(stream) if not quiet and isatty is not None and isatty() else SILENT

"""How the command-line tools report bad input (one line on stderr, exit code 2, nothing written) and end when
interrupted."""

import argparse
import signal
import sys
import textwrap
import threading
from contextlib import contextmanager


class UsageError(ValueError):
    """Bad input from the user (a value, a path, a file): reported in one line, exit code 2, nothing written."""


class Parser(argparse.ArgumentParser):
    """argparse with errors in one line (no usage dump) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def folder(text: str) -> str:
    """An argparse type for a folder option: '' (an unset variable in `--results "$DIR"`) is refused, not read as
    the default folder or as the current one."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; leave the option out for the default")
    return text


RECEIVED: list[int] = []  # the interrupting signals received within sigterm_as_interrupt, in order
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts_handled_by(handler):
    """Within the block, Ctrl-C and SIGTERM go to `handler` (a function, or signal.SIG_IGN); the handlers before are
    put back after it. Outside the main thread, which alone may set them, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in INTERRUPTS}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM (`kill`, `timeout`, a cancelled CI job) ends the command as Ctrl-C does: the same
    clean-up runs (temp files, folders it made, the gate's extracted baseline) and it says it was interrupted. Both
    are also recorded (RECEIVED, for check_interrupted): a KeyboardInterrupt raised while os.fork runs its hooks (a
    DataLoader starting its workers) is dropped by Python, and the command would go on; it is not printed either
    (a traceback of logging's fork hook), since check_interrupted raises it again, nor is the error of a DataLoader
    iterator the interrupt cut short while it started its workers (torch's __del__ then reads workers it never had)."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def interrupt(signum, frame):
        RECEIVED.append(signum)
        raise KeyboardInterrupt

    def unraisable(report) -> None:
        cut_short = getattr(report.object, "__qualname__", "") == "_MultiProcessingDataLoaderIter.__del__"
        if not (RECEIVED and (isinstance(report.exc_value, KeyboardInterrupt) or cut_short)):
            previous_hook(report)

    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    RECEIVED.clear()
    try:
        with interrupts_handled_by(interrupt):
            yield
    finally:
        sys.unraisablehook = previous_hook


def check_interrupted() -> None:
    """KeyboardInterrupt when an interrupt was received in this sigterm_as_interrupt block, raised or not: call before
    storing anything."""
    if RECEIVED:
        raise KeyboardInterrupt


def interrupts_ignored():
    """Within the block, Ctrl-C and SIGTERM are ignored: for what follows a stored result (the lines saying where it
    went), which an interrupt would turn into exit code 130 with the result stored all the same."""
    return interrupts_handled_by(signal.SIG_IGN)


def help_paragraphs(text: str, width: int = 79) -> str:
    """A docstring as --help text: each paragraph refilled to `width`, paragraphs kept apart, Markdown's backticks
    dropped. For a parser with argparse.RawDescriptionHelpFormatter (the default formatter runs paragraphs together)."""
    return "\n\n".join(textwrap.fill(" ".join(paragraph.replace("`", "").split()), width, break_on_hyphens=False)
                       for paragraph in text.strip().split("\n\n"))

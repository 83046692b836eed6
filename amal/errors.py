"""How the command-line tools report bad input (one line on stderr, exit code 2, nothing written) and end when
interrupted."""

import argparse
import signal
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


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM (`kill`, `timeout`, a cancelled CI job) ends the command as Ctrl-C does: the same
    clean-up runs (temp files, folders it made, the gate's extracted baseline) and it says it was interrupted."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def help_paragraphs(text: str, width: int = 79) -> str:
    """A docstring as --help text: each paragraph refilled to `width`, paragraphs kept apart, Markdown's backticks
    dropped. For a parser with argparse.RawDescriptionHelpFormatter (the default formatter runs paragraphs together)."""
    return "\n\n".join(textwrap.fill(" ".join(paragraph.replace("`", "").split()), width, break_on_hyphens=False)
                       for paragraph in text.strip().split("\n\n"))

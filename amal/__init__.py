"""amal: loss and wall-clock time of PyTorch training, measured, stored as parquet and reported."""

import signal
import sys


def _interrupted(kind, value, traceback) -> None:
    """A Ctrl-C no command handles (one while torch imports, seconds, before any main() runs): one line, not a
    traceback through the imports; Python still exits as interrupted (130). What a command must clean up, it
    cleans up itself, and says so; any other exception goes to Python's own hook."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, traceback)


def _terminated(signum, frame) -> None:
    """SIGTERM (`kill`, `timeout`, a cancelled CI job) before a command's main() takes it over: as Ctrl-C, not a
    silent exit 143 while torch imports."""
    raise KeyboardInterrupt


if sys.argv[:1] == ["-m"]:  # `python -m amal.<command>` (argv[0] is "-m" while the command's module is found)
    sys.excepthook = _interrupted
    signal.signal(signal.SIGTERM, _terminated)

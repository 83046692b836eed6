"""amal: loss and wall-clock time of PyTorch training, measured, stored as parquet and reported."""

import sys


def _interrupted_while_starting(kind, value, traceback) -> None:
    """Ctrl-C before a command's main() runs (while torch imports, seconds): one line, not an import traceback.
    Python still exits as interrupted (130); every main() handles Ctrl-C itself once it runs."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted while starting: nothing was done", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, traceback)


if sys.argv[:1] == ["-m"]:  # `python -m amal.<command>` (argv[0] is "-m" while the command's module is found)
    sys.excepthook = _interrupted_while_starting

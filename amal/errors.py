"""How the command-line tools report bad input: one line on stderr, exit code 2, nothing written."""

import argparse


class UsageError(ValueError):
    """Bad input from the user (a value, a path, a file): reported in one line, exit code 2, nothing written."""


class Parser(argparse.ArgumentParser):
    """argparse with errors in one line (no usage dump) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

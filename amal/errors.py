"""The one exception the command-line tools turn into a one-line message and exit code 2."""


class UsageError(ValueError):
    """Bad input from the user (a value, a path, a file): reported in one line, exit code 2, nothing written."""

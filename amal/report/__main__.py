"""`python -m amal.report`: see amal.report.cli."""

from amal.report.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

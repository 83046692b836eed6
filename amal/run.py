"""`python -m amal.run`: see amal.cli."""

from amal.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

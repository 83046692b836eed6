"""`python -m amal`: points to the commands."""

import argparse

from amal.errors import Parser

COMMANDS = """commands:
  python -m amal.run EXPERIMENT ...   run an experiment grid and store it (--help for the list)
  python -m amal.report               regenerate figures and the HTML/LaTeX report
  python -m amal.compare BASE CAND    compare two benchmark runs (regressed / improved / unchanged)
  python -m amal.gate --baseline REF  time REF and the working tree interleaved, then compare"""

parser = Parser(prog="python -m amal", description="amal: benchmark and report PyTorch training experiments.",
                epilog=COMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.parse_args()  # --help, or an unknown option: one line, exit 2
parser.print_help()

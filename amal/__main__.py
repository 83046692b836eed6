"""`python -m amal`: points to the three commands."""

print("amal: benchmark and report PyTorch training experiments.\n"
      "  python -m amal.run EXPERIMENT ...   run an experiment grid and store it (--help for the list)\n"
      "  python -m amal.report               regenerate figures and the HTML/LaTeX report\n"
      "  python -m amal.compare BASE CAND    performance regression gate")

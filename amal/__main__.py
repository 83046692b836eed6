"""`python -m amal`: points to the commands."""

print("amal: benchmark and report PyTorch training experiments.\n"
      "  python -m amal.run EXPERIMENT ...   run an experiment grid and store it (--help for the list)\n"
      "  python -m amal.report               regenerate figures and the HTML/LaTeX report\n"
      "  python -m amal.compare BASE CAND    compare two benchmark runs (regressed / improved / unchanged)\n"
      "  python -m amal.gate --baseline REF  time REF and the working tree interleaved, then compare")

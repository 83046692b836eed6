"""The regression gate's worker: a process (of several per checkout), timing that checkout's own benchmark cases.

It runs as `python -c <this file's text>` with its working directory and PYTHONPATH set to a checkout, so `amal`
below is that checkout's package (the baseline's cases are timed by the baseline's amal.timing). It reads one JSON
request per line on stdin and answers one JSON line on stdout; anything the cases print goes to stderr. Only the
standard library is imported before a request asks for amal, so an old checkout without amal.cases can say so.

Requests: hello; cases {profile, threads}; setup {name}; round; release; exit. `--wrap FILE` (a path) names a Python
file whose `wrap(fn, case)` replaces each case's round (bench/ uses it to plant slowdowns; the gate never does).
"""

import gc
import json
import os
import runpy
import signal
import sys


def handle(request: dict, state: dict) -> dict:
    """Answer one request; `state` keeps the cases, the wrapper and the round being timed."""
    op = request["op"]
    if op == "hello":
        try:
            import amal
        except ImportError as exc:
            return {"missing": f"{type(exc).__name__}: {exc}"}
        return {"amal_file": os.path.abspath(amal.__file__), "python": sys.executable}
    if op == "cases":
        try:
            from amal.cases import cases
            from amal.timing import measure, set_threads
        except ImportError as exc:
            return {"missing": f"{type(exc).__name__}: {exc}"}
        import torch

        set_threads(request.get("threads"))
        state["measure"] = measure
        state["cases"] = {case.name: case for case in cases(request["profile"])}
        return {"cuda": torch.cuda.is_available(), "threads": torch.get_num_threads(),
                "cases": [{"name": c.name, "group": c.group, "device": c.device, "params": c.params}
                          for c in state["cases"].values()]}
    if op == "setup":
        case = state["cases"][request["name"]]
        fn = case.setup()
        state["round"] = (state["wrap"](fn, case) if state["wrap"] else fn, case.device)
        return {"ok": True}
    if op == "round":
        fn, device = state["round"]
        return {"seconds": state["measure"](fn, rounds=1, warmup_rounds=0, device=device)[0]}
    if op == "release":
        state.pop("round", None)
        gc.collect()
        return {"ok": True}
    if op == "exit":
        return {"ok": True}
    return {"error": f"unknown request {op!r}"}


def checkout_only() -> None:
    """Drop the import finders of an editable install (`pip install -e .`): PYTHONPATH finds the checkout's amal
    first, but for a module the checkout lacks (amal.cases of an old baseline) such a finder would serve the
    installed tree's copy, mixing two versions in one worker."""
    sys.meta_path[:] = [finder for finder in sys.meta_path
                        if not getattr(finder, "__module__", "").startswith("__editable__")]


def serve(argv: list[str]) -> None:
    """Answer requests until 'exit' or the end of stdin. Ctrl-C is the gate's to handle (it reaches the whole process
    group): the worker finishes its request and exits when the gate says so or goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    checkout_only()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the cases' own prints must never corrupt the protocol: send fd 1 to stderr
    sys.stdout = sys.stderr
    state = {"wrap": runpy.run_path(argv[argv.index("--wrap") + 1])["wrap"] if "--wrap" in argv else None}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = handle(request, state)
        except Exception as exc:  # reported to the gate, which decides; the worker stays usable
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        protocol.write(json.dumps(reply, default=str) + "\n")
        if request["op"] == "exit":
            break


if __name__ == "__main__":
    serve(sys.argv)

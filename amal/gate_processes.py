"""The gate's worker processes as its parent sees them: one Worker per process (amal.gate_worker importing amal from
a checkout, spoken to in JSON lines over its stdin and stdout), a Side per checkout, and the CPUs they are pinned to."""

import json
import os
import select
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from amal import gate_worker
from amal.errors import UsageError

# the longest a worker may take to answer one request (a round, a set-up loading MNIST, the imports) before the gate
# calls it hung: minutes beyond any case's, so that a case that hangs stops the gate, naming it, not CI's time limit
REPLY_TIMEOUT_S = 600.0


def shared_cpus(threads: int | None) -> set[int] | None:
    """The CPUs all workers are pinned to: the last `threads` (default 1) this process may use; None off Linux."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return set(allowed[-(threads or 1):])


class WorkerDied(UsageError):
    """A worker process ended (a crash, a kill): the gate cannot go on (exit 2), whichever side it was on."""


class Worker:
    """One worker process (amal.gate_worker) importing amal from `checkout`; `request(op, ...)` -> its JSON reply."""

    def __init__(self, checkout: Path, label: str, wrap: Path | None = None, env: dict | None = None):
        self.checkout, self.label = Path(checkout).resolve(), label
        self.case = ""  # the case set up last: what a round times (for the messages)
        self.stderr = tempfile.TemporaryFile(mode="w+")
        pythonpath = os.pathsep.join(filter(None, [str(self.checkout), os.environ.get("PYTHONPATH")]))
        argv = [sys.executable, "-c", Path(gate_worker.__file__).read_text()] + (["--wrap", str(wrap)] if wrap else [])
        self.process = subprocess.Popen(argv, cwd=self.checkout, env={**os.environ, **(env or {}),
                                        "PYTHONPATH": pythonpath}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, text=True, bufsize=1)

    def pin(self, cpus: set[int] | None) -> None:
        """Run the worker on these CPUs only (None: wherever the scheduler puts it)."""
        if cpus:
            os.sched_setaffinity(self.process.pid, cpus)

    def request(self, op: str, **fields) -> dict:
        """Send one request and wait for its reply; UsageError when the worker died or answered an error."""
        return self.receive(op, **fields) if self.send(op, **fields) else self.died(op)

    def send(self, op: str, **fields) -> bool:
        """Write one request without waiting for the reply; False when the worker is gone."""
        if op == "setup":
            self.case = fields["name"]
        try:
            self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def receive(self, op: str, **fields) -> dict:
        """The reply to the request `op` sent last; UsageError when the worker died or answered an error."""
        try:
            if not select.select([self.process.stdout], [], [], REPLY_TIMEOUT_S)[0]:
                self.process.kill()  # (closing it would ask it to exit, and wait as long again)
                self.process.wait()
                raise WorkerDied(f"{self.label} worker gave no reply to {self.doing(op, fields)} within "
                                 f"{REPLY_TIMEOUT_S:g} s: stopped (a case that hangs?)")
            line = self.process.stdout.readline()
        except OSError:
            line = ""
        if not line:
            self.died(op)
        reply = json.loads(line)
        if "error" in reply:
            raise UsageError(f"{self.label}: {self.doing(op, fields)} failed: {reply['error']}")
        return reply

    def doing(self, op: str, fields: dict) -> str:
        """The request, for a message: "'setup' of lr-sweep/manual/cpu", "'round' of ...", "'cases'"."""
        case = fields.get("name") or (self.case if op in ("setup", "round", "release") else "")
        return f"{op!r} of {case}" if case else repr(op)

    def died(self, op: str):
        raise WorkerDied(f"{self.label} worker died during {op!r}: {self.last_error()}")

    def last_error(self) -> str:
        try:
            self.process.wait(timeout=1)  # a worker that just died: its exit code, not None
        except subprocess.TimeoutExpired:
            pass
        self.stderr.seek(0)
        lines = [line for line in self.stderr.read().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit code {self.process.returncode}"

    def close(self) -> None:
        """Ask the worker to exit, and kill it if it has not within 10 s (one busy in a request that hangs never
        reads the request: waiting for its reply would take REPLY_TIMEOUT_S)."""
        if self.process.poll() is None:
            self.send("exit")
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:
            self.process.stdin.close()  # flushes: a request a dead worker never read raises BrokenPipeError
        except OSError:
            pass
        self.process.stdout.close()
        self.stderr.close()


class Side:
    """The worker processes of one checkout. A request goes to all of them and the first one's reply stands for the
    side; rounds are asked of one process at a time."""

    OVERLAPPED = ("hello", "cases")  # the imports (torch: seconds), before pinning: all processes at once

    def __init__(self, workers: list[Worker]):
        self.workers = workers
        self.label, self.checkout = workers[0].label, workers[0].checkout

    def request(self, op: str, **fields) -> dict:
        """The first process's reply; UsageError (the first one) after every process answered, so that none is
        left with an unread reply, but WorkerDied at once (the gate stops: the others are closed, not waited for, a
        hang costing REPLY_TIMEOUT_S each). Other requests than OVERLAPPED go to one process after the other:
        set-ups sharing the pinned CPU would each run slower (one that calibrates against the clock, wrongly)."""
        sent = [worker.send(op, **fields) for worker in self.workers] if op in self.OVERLAPPED else None
        replies = []
        for i, worker in enumerate(self.workers):
            replies.append(reply(worker, sent[i] if sent else worker.send(op, **fields), op, fields))
            if isinstance(replies[-1], WorkerDied):
                raise replies[-1]
        errors = [answer for answer in replies if isinstance(answer, UsageError)]
        if errors:
            raise errors[0]
        return replies[0]

    def rounds(self) -> list:
        """One zero-argument callable per process: time one round there, return its seconds."""
        return [lambda worker=worker: worker.request("round")["seconds"] for worker in self.workers]

    def pin(self, cpus: set[int] | None) -> None:
        for worker in self.workers:
            worker.pin(cpus)


def reply(worker: Worker, sent: bool, op: str, fields: dict) -> dict | UsageError:
    """The worker's reply to `op` (sent: whether the request reached it), or the UsageError it raised, returned so
    that the other workers of its side are still read."""
    try:
        return worker.receive(op, **fields) if sent else worker.died(op)
    except UsageError as exc:
        return exc


def pin_sides(cpus: set[int] | None, *sides: Side) -> None:
    """Once their workers have imported torch, pin every worker to `cpus` (None: leave them where they are)."""
    for side in sides:
        side.pin(cpus)


def start_side(checkout: Path, label: str, processes: int, stack: ExitStack, **worker_options) -> Side:
    """`processes` workers of `checkout`, each closed when `stack` closes. Not pinned yet: their imports (torch,
    seconds each) may use every CPU; `Side.pin` before the timing."""
    workers = []
    for _ in range(processes):
        workers.append(Worker(checkout, label, **worker_options))
        stack.callback(workers[-1].close)
    return Side(workers)

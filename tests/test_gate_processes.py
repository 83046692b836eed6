import os
from pathlib import Path

import pytest

from amal.errors import UsageError
from amal.gate_processes import Side, shared_cpus


class ScriptedWorker:
    """Answers each request with the next of `replies` (a dict, or an error message raised as UsageError)."""

    def __init__(self, *replies):
        self.label, self.checkout, self.replies, self.sent = "w", Path("."), list(replies), []

    def send(self, op, **fields):
        self.sent.append(op)
        return True

    def receive(self, op, **fields):
        reply = self.replies.pop(0)
        if isinstance(reply, str):
            raise UsageError(reply)
        return reply


def test_a_side_reads_every_processs_reply_before_raising():
    """A set-up that fails in one process of three: the others' replies are read too, so that the next request
    (the release) gets its own replies, not the set-up's."""
    workers = [ScriptedWorker({"ok": 1}, {"ok": "released"}), ScriptedWorker("setup failed", {"ok": "released"}),
               ScriptedWorker({"ok": 1}, {"ok": "released"})]
    side = Side(workers)
    with pytest.raises(UsageError, match="setup failed"):
        side.request("setup", name="x")
    assert side.request("release") == {"ok": "released"}
    assert [w.sent for w in workers] == [["setup", "release"]] * 3 and not any(w.replies for w in workers)


def test_a_side_sets_up_one_process_at_a_time_but_imports_in_all_at_once():
    log = []

    class Logged(ScriptedWorker):
        def send(self, op, **fields):
            log.append(f"send {self.name}")
            return True

        def receive(self, op, **fields):
            log.append(f"receive {self.name}")
            return {"ok": True}

    workers = [Logged(), Logged()]
    workers[0].name, workers[1].name = "A1", "A2"
    side = Side(workers)
    side.request("cases", profile="quick")
    assert log == ["send A1", "send A2", "receive A1", "receive A2"]
    log.clear()
    side.request("setup", name="x")
    assert log == ["send A1", "receive A1", "send A2", "receive A2"]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_both_workers_share_one_allowed_cpu():
    cpus = shared_cpus(1)
    assert len(cpus) == 1 and cpus <= os.sched_getaffinity(0)

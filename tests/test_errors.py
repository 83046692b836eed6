import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from amal.errors import check_interrupted, help_paragraphs, interrupts_ignored, sigterm_as_interrupt


def test_sigterm_ends_the_block_as_ctrl_c_then_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as soon as the call returns
        finally:
            cleaned.append(True)  # what the command does on Ctrl-C runs
    assert cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupt_python_dropped_is_still_seen_before_storing(signum):
    """A KeyboardInterrupt raised in os.fork's hooks (a DataLoader starting its workers) is printed and dropped by
    Python; check_interrupted raises it again, and a fresh block starts without it."""
    with sigterm_as_interrupt():
        check_interrupted()  # nothing received yet
        try:
            os.kill(os.getpid(), signum)
        except KeyboardInterrupt:
            pass  # as Python's fork hooks do
        with pytest.raises(KeyboardInterrupt):
            check_interrupted()
    with sigterm_as_interrupt():
        check_interrupted()


def test_interrupts_are_ignored_once_the_result_is_stored_then_restored():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with interrupts_ignored():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)  # (the process would have ended here)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_help_paragraphs_refills_each_paragraph_apart():
    text = """First `code` line
    continues here.

    Second paragraph, hand-written and long enough to wrap somewhere."""
    assert help_paragraphs(text, width=30) == ("First code line continues\nhere.\n\nSecond paragraph, hand-written\n"
                                               "and long enough to wrap\nsomewhere.")


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("argv0", "where"), [("-m", "import"), ("-m", "main"), ("-c", "import")])
def test_an_unhandled_ctrl_c_in_a_command_is_one_line_not_a_traceback(argv0, where, tmp_path):
    """`python -m amal.run` hit by Ctrl-C while torch imports printed 14-54 lines of traceback. A program that
    imports amal keeps Python's own hook (argv[0] is "-m" only while the module of `python -m` is found)."""
    (tmp_path / "slow_module.py").write_text("raise KeyboardInterrupt\n")
    interrupt = "import slow_module" if where == "import" else "raise KeyboardInterrupt"
    code = (f"import sys; sys.argv[0] = {argv0!r}; import amal; "
            f"print(sys.excepthook is sys.__excepthook__, flush=True); {interrupt}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])})
    assert done.returncode in (130, -signal.SIGINT)  # interrupted, as Python ends on an unhandled Ctrl-C
    assert done.stdout == f"{argv0 != '-m'}\n"
    if argv0 == "-m":
        assert done.stderr == "interrupted\n"
    else:
        assert done.stderr.startswith("Traceback") and done.stderr.endswith("KeyboardInterrupt\n")

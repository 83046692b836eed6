import contextlib
import os
import signal
import subprocess
import sys
import types
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


def test_after_an_interrupt_only_its_own_unraisable_errors_are_dropped(monkeypatch):
    """Once interrupted: a KeyboardInterrupt Python could not raise, and the error of a DataLoader iterator cut short
    while starting its workers ('no attribute _workers' in its __del__), are not printed; anything else is."""
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

    def report(exc, obj):
        return types.SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=None, err_msg=None, object=obj)

    printed = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)  # what Python's own hook would print
    cut_short = report(AttributeError("_workers"), _MultiProcessingDataLoaderIter.__del__)
    with sigterm_as_interrupt():
        sys.unraisablehook(cut_short)  # not interrupted: printed
        assert printed == [cut_short]
        with contextlib.suppress(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        sys.unraisablehook(report(KeyboardInterrupt(), None))
        sys.unraisablehook(cut_short)
        assert printed == [cut_short]
        other = report(ValueError("other"), len)
        sys.unraisablehook(other)
        assert printed == [cut_short, other]
    assert sys.unraisablehook == printed.append


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


@pytest.mark.parametrize("argv0", ["-m", "-c"])
def test_sigterm_while_a_command_imports_is_an_interruption_too(argv0):
    """`timeout` hitting `python -m amal.run` in its first seconds (torch importing) ended it silently with 143. A
    program that imports amal keeps SIGTERM's default."""
    code = (f"import sys; sys.argv[0] = {argv0!r}; import amal, os, signal, time; "
            "os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if argv0 == "-m":
        assert done.returncode in (130, -signal.SIGINT) and done.stderr == "interrupted\n"
    else:
        assert done.returncode == -signal.SIGTERM and done.stderr == ""

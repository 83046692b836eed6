import os
import signal

import pytest

from amal.errors import help_paragraphs, sigterm_as_interrupt


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


def test_help_paragraphs_refills_each_paragraph_apart():
    text = """First `code` line
    continues here.

    Second paragraph, hand-written and long enough to wrap somewhere."""
    assert help_paragraphs(text, width=30) == ("First code line continues\nhere.\n\nSecond paragraph, hand-written\n"
                                               "and long enough to wrap\nsomewhere.")

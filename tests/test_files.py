import errno
import os
import subprocess
import sys
import time

import pytest

from amal import files
from amal.errors import UsageError


def test_unwritable_directory_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="not writable"):
        files.check_writable(blocker / "results")
    with pytest.raises(UsageError, match=f"results directory {blocker} is a file, not a folder"):
        files.check_writable(blocker)


def test_replace_all_writes_every_file_or_none(tmp_path, monkeypatch):
    """The second of three files cannot be written: the first, though written, is not renamed over the old one."""
    contents = {tmp_path / name: name.encode() for name in ("a.png", "b.png", "c.html")}
    for path in contents:
        path.write_text("old")
    written = files.staged

    def full_at_b(path, data):
        if path.name == "b.png":
            raise OSError(errno.ENOSPC, "No space left on device", str(path.with_name(files.temp_name(path))))
        return written(path, data)

    monkeypatch.setattr(files, "staged", full_at_b)
    with pytest.raises(OSError, match="No space left on device") as refused:
        files.replace_all(contents)
    assert refused.value.filename == str(tmp_path / "b.png")  # the file it was for, not its temp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.html"]  # no temp left
    assert all(path.read_text() == "old" for path in contents)
    monkeypatch.setattr(files, "staged", written)
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "elsewhere.html")
    assert files.replace_all({**contents, link: b"through"}) == [*contents, link]
    assert link.is_symlink() and (tmp_path / "elsewhere.html").read_bytes() == b"through"
    assert [path.read_bytes() for path in contents] == [b"a.png", b"b.png", b"c.html"]


def test_written_through_is_where_a_link_points_and_a_loop_is_an_error(tmp_path):
    plain, link, loop = tmp_path / "plain.pt", tmp_path / "link.pt", tmp_path / "loop.pt"
    link.symlink_to(tmp_path / "sub" / "target.pt")  # dangling: the target is written later
    loop.symlink_to(loop)
    assert files.written_through(plain) == plain and files.written_through(str(plain)) == plain
    assert files.written_through(link) == tmp_path.resolve() / "sub" / "target.pt"
    with pytest.raises((OSError, RuntimeError)):
        files.written_through(loop)


def test_temp_files_of_a_writer_killed_mid_write_are_removed(tmp_path):
    path = tmp_path / "c.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process that no longer exists: its pid names the leftover
    leftover = tmp_path / files.temp_name(path, dead.pid)
    leftover.write_bytes(b"half a checkpoint")
    fresh = tmp_path / files.temp_name(path, 10**30)  # no such process, but written a moment ago: maybe another host's
    fresh.write_bytes(b"being written elsewhere")
    alive = tmp_path / files.temp_name(path, os.getppid())  # a writer still running: left alone
    alive.write_bytes(b"being written")
    for old in (leftover, alive):
        os.utime(old, (time.time() - 120, time.time() - 120))
    files.atomic_write_bytes(path, b"checkpoint", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, fresh.name, "c.pt"])
    os.utime(fresh, (time.time() - 120, time.time() - 120))
    files.atomic_write_bytes(path, b"checkpoint", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "c.pt"])

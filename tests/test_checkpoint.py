import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from amal.checkpoint import (
    FORMAT,
    CheckpointFile,
    check_config,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from amal.errors import UsageError


class Touch:
    """Unpickling this runs Path(marker).touch(): the kind of code a checkpoint must never get to run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def draws(generator):
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)],
            torch.randperm(10, generator=generator).tolist())


def test_rng_states_restore_every_stream():
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    saved = rng_state(generator)
    first = draws(generator)
    set_rng_state(saved, generator)
    assert draws(generator) == first


def test_save_then_load_plain_dict(tmp_path):
    path = tmp_path / "c.pt"
    model = torch.nn.Linear(3, 2)
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": {}, "epoch": 4, "iteration": 40,
                           "config": {"hidden": (3,), "lr": 0.1}, "rng": rng_state()})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # the temp file was renamed, not left behind
    loaded = torch.load(path, weights_only=True)  # plain data: the safe loader reads it
    assert loaded["format"] == FORMAT and loaded["epoch"] == 4 and loaded["config"] == {"hidden": (3,), "lr": 0.1}
    assert torch.equal(load_checkpoint(path)["model"]["weight"], model.weight.detach())


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": Touch(marker)}, path)
    with pytest.raises(UsageError, match="pickled objects other than tensors") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", ["os.system", "subprocess.Popen", "builtins.exec"])
def test_the_usual_payloads_are_refused_as_code_and_never_run(tmp_path, payload):
    """os/posix functions are 'blocked' rather than 'unsupported' by torch's unpickler: the same refusal, one line."""
    import builtins
    import os
    import subprocess

    marker = tmp_path / "code-ran"
    call = {"os.system": (os.system, (f"touch {marker}",)),
            "subprocess.Popen": (subprocess.Popen, (["touch", str(marker)],)),
            "builtins.exec": (builtins.exec, (f"open({str(marker)!r}, 'w').close()",))}[payload]

    class Payload:
        def __reduce__(self):
            return call

    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": Payload()}, path)
    with pytest.raises(UsageError, match="pickled objects other than tensors") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_a_plain_pickle_is_refused_in_one_line_without_warnings(tmp_path, recwarn):
    import pickle

    marker = tmp_path / "code-ran"
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"format": FORMAT, "model": Touch(marker)}))
    with pytest.raises(UsageError, match="not a zip archive") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and not marker.exists() and len(recwarn) == 0


def test_a_file_damaged_on_disk_is_refused_by_its_checksums(tmp_path):
    """torch.load reads a flipped byte in a tensor's data without complaint; the zip's CRC-32 does not match."""
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"weight": torch.arange(4096, dtype=torch.float32)}, "optimizer": {},
                           "epoch": 1, "iteration": 1, "config": {}, "rng": rng_state()})
    data = bytearray(path.read_bytes())
    start = bytes(data).index(torch.arange(4096, dtype=torch.float32).numpy().tobytes()[:64])  # inside the tensor
    data[start + 1000] ^= 0xFF
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["epoch"] == 1  # torch alone would have used it
    with pytest.raises(UsageError, match=r"is corrupt: its member .* fails its checksum"):
        load_checkpoint(path)


def test_truncated_and_garbage_files_are_refused(tmp_path):
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "model": {"w": torch.ones(100)}}, buffer)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(buffer.getvalue()[:200])
    with pytest.raises(UsageError, match="is truncated, corrupt"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(UsageError, match="corrupt"):
        load_checkpoint(garbage)


def test_foreign_or_incomplete_dicts_are_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.ones(2)}, path)
    with pytest.raises(UsageError, match="not an amal checkpoint"):
        load_checkpoint(path)
    torch.save({"format": FORMAT, "model": {}}, path)
    with pytest.raises(UsageError, match="lacks optimizer, epoch, iteration, config, rng"):
        load_checkpoint(path)
    with pytest.raises(UsageError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format": FORMAT, "model": {}, "optimizer": {}, "epoch": "4", "iteration": 40, "config": [],
                "rng": {}}, path)
    with pytest.raises(UsageError, match="holds epoch, config of the wrong type"):
        load_checkpoint(path)
    for field, value in (("epoch", -3), ("iteration", -1), ("elapsed_s", "x"), ("elapsed_s", float("nan"))):
        torch.save({"format": FORMAT, "model": {}, "optimizer": {}, "epoch": 4, "iteration": 40, "config": {},
                    "rng": {}, field: value}, path)
        with pytest.raises(UsageError, match=f"holds {field} of the wrong type or value"):
            load_checkpoint(path)


def test_config_mismatch_names_the_field():
    check_config("c.pt", {"hidden": (64,), "lr": 0.1}, {"hidden": (64,), "lr": 0.1}, ("hidden", "lr"))
    with pytest.raises(UsageError, match=r"made with lr=0.1, this run asks for lr=0.01"):
        check_config("c.pt", {"hidden": (64,), "lr": 0.1}, {"hidden": (64,), "lr": 0.01}, ("hidden", "lr"))


def test_a_checkpoint_path_that_is_a_symlink_stays_one(tmp_path):
    """The file the link points to is replaced (atomically, as any checkpoint), the link kept."""
    (tmp_path / "shared").mkdir()
    target = tmp_path / "shared" / "ae.pt"
    link = tmp_path / "ae.pt"
    link.symlink_to(target)
    for epoch in (1, 2):
        save_checkpoint(link, {"format": FORMAT, "epoch": epoch})
    assert link.is_symlink() and link.resolve() == target
    assert torch.load(target, weights_only=True)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae.pt", "shared"]  # no temp file beside the link


def test_a_checkpoint_written_by_another_process_is_not_replaced(tmp_path):
    """Two runs given one path: each would replace the other's file in turn. The one that finds a version it did not
    write (or, fresh, any file) stops; the other's file is left. (Each version here differs in size: file_state
    tells versions apart by time and size, and the clock may not tick between two saves made microseconds apart.)"""
    def version(epoch: int) -> dict:
        return {"epoch": epoch, "pad": "x" * epoch}

    path = tmp_path / "c.pt"
    first, second = CheckpointFile(path, resume=False), CheckpointFile(path, resume=False)  # two fresh runs
    first.save(version(1))
    with pytest.raises(UsageError, match=r"c.pt was written by another process since this run started \(two runs "):
        second.save(version(1))
    first.save(version(2))  # its own version: replaced as every epoch
    resumed = CheckpointFile(path, resume=True)  # a run resuming from epoch 2
    first.save(version(3))
    with pytest.raises(UsageError, match="since this run started"):
        resumed.save(version(3))
    save_checkpoint(path, version(9))  # another writer after first's last save
    with pytest.raises(UsageError, match="since this run last wrote it"):
        first.save(version(4))
    assert torch.load(path, weights_only=True)["epoch"] == 9


def test_a_fresh_run_never_takes_a_file_it_did_not_write_for_its_own(tmp_path):
    """A file written after the run checked its path (while it loaded the data) is not this run's to replace."""
    path = tmp_path / "c.pt"
    run = CheckpointFile(path, resume=False)
    save_checkpoint(path, {"epoch": 7})
    with pytest.raises(UsageError, match="since this run started"):
        run.save({"epoch": 1})
    assert torch.load(path, weights_only=True)["epoch"] == 7

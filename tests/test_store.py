import errno
import os
import shutil
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amal import store
from amal.errors import UsageError

# a value for each column some experiment requires (store.REQUIRED)
FILLED = {"implementation": "manual", "seed": 0, "device": "cpu", "epochs": 3, "elapsed_s": 0.1, "host": "h",
          "cpu_model": "c", "num_threads": 1, "torch_version": "2.9", "timestamp_utc": "2026-11-27T10:00:00Z",
          "lr": 0.1, "batch_size": 16, "hidden": "64", "loss_fn": "bce", "epoch_s": 0.1, "samples_per_s": 10.0,
          "benchmark": "case", "round": 1, "round_s": 0.1, "diverged_epoch": None}


def _run(experiment="lr-sweep", n=3, **extra):
    """A whole run of `experiment`: n epochs and a value in every column the experiment requires."""
    run_id = store.new_run_id(experiment)
    required = {name: FILLED[name] for name in store.REQUIRED[experiment] if name not in ("epoch", "train_loss")}
    return pd.DataFrame({"run_id": run_id, "experiment": experiment, "epoch": range(1, n + 1),
                         "train_loss": [3.0, 2.0, 1.0][:n], **required, **extra})


def test_save_writes_one_file_with_the_full_schema(tmp_path):
    path = store.save(_run(lr=0.1), tmp_path)
    assert path.parent == tmp_path and path.suffix == ".parquet"
    table = pq.read_table(path)
    assert table.schema.equals(store.SCHEMA)
    df = table.to_pandas()
    assert df["train_loss"].tolist() == [3.0, 2.0, 1.0] and df["lr"].tolist() == [0.1] * 3
    assert df["batch_size"].isna().all()  # columns a run does not use are null
    assert os.listdir(tmp_path) == [path.name]  # no temp file left behind


def test_pandas_reads_every_run_of_every_experiment(tmp_path):
    store.save(_run("lr-sweep", lr=0.1), tmp_path)
    store.save(_run("batch-size", n=2, batch_size=16), tmp_path)
    artifacts = store.artifact_dir(tmp_path, "some-run")
    (artifacts / "image.png").write_bytes(b"\x89PNG not parquet")
    df = pd.read_parquet(tmp_path)
    assert len(df) == 5 and sorted(df["experiment"].unique()) == ["batch-size", "lr-sweep"]
    loaded, problems = store.load(tmp_path)
    assert len(loaded) == 5 and problems == []


def test_earlier_results_are_never_overwritten(tmp_path):
    df = _run()
    store.save(df, tmp_path)
    with pytest.raises(FileExistsError):
        store.save(df.assign(train_loss=0.0), tmp_path)
    assert pd.read_parquet(tmp_path)["train_loss"].tolist() == [3.0, 2.0, 1.0]


def test_a_file_system_without_hard_links_stores_runs_and_still_never_overwrites(tmp_path, monkeypatch):
    """vfat, exFAT and some network shares refuse link() (EPERM, EOPNOTSUPP): a run trained for an hour must be
    stored there all the same."""
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted", str(dst))

    monkeypatch.setattr(os, "link", no_links)
    df = _run()
    path = store.save(df, tmp_path)
    assert pd.read_parquet(path)["train_loss"].tolist() == [3.0, 2.0, 1.0]
    with pytest.raises(FileExistsError):
        store.save(df.assign(train_loss=0.0), tmp_path)
    assert pd.read_parquet(path)["train_loss"].tolist() == [3.0, 2.0, 1.0]
    assert os.listdir(tmp_path) == [path.name]  # no temp file left behind


def test_an_interruption_between_claiming_the_name_and_the_rename_leaves_no_empty_run_file(tmp_path, monkeypatch):
    """Without hard links the name is claimed empty first: left there, it would stop every later report."""
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted", str(dst))

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.save(_run(), tmp_path)
    assert os.listdir(tmp_path) == []


def test_other_link_errors_are_not_taken_for_a_missing_feature(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(OSError, match="No space left"):
        store.save(_run(), tmp_path)
    assert os.listdir(tmp_path) == []


def test_one_run_per_file(tmp_path):
    with pytest.raises(ValueError, match="one run per file"):
        store.save(pd.concat([_run(), _run()]), tmp_path)


def test_unknown_column_is_refused(tmp_path):
    with pytest.raises(KeyError, match="learning_rate"):
        store.save(_run(learning_rate=0.1), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_file_is_named_or_skipped(tmp_path):
    store.save(_run(), tmp_path)
    bad = tmp_path / "20990101T000000Z-lr-sweep-bad.parquet"
    bad.write_bytes(b"PAR1 truncated")
    with pytest.raises(UsageError, match="20990101T000000Z-lr-sweep-bad.parquet"):
        store.load(tmp_path)
    df, problems = store.load(tmp_path, skip_bad=True)
    assert len(df) == 3 and len(problems) == 1 and bad.name in problems[0]


def test_a_parquet_file_of_another_kind_is_named_not_read_as_a_run(tmp_path):
    store.save(_run(), tmp_path)
    pd.DataFrame({"price": [1.0, 2.0]}).to_parquet(tmp_path / "prices.parquet")
    with pytest.raises(UsageError, match=r"prices.parquet: not an amal run file \(no run_id, experiment column\)"):
        store.load(tmp_path)
    df, problems = store.load(tmp_path, skip_bad=True)
    assert len(df) == 3 and len(problems) == 1


def test_missing_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        store.load(tmp_path / "nope")


def test_empty_store_loads_as_empty_frame_with_columns(tmp_path):
    df, _ = store.load(tmp_path)
    assert df.empty and list(df.columns) == list(store.COLUMNS)


def test_run_ids_sort_by_time_and_are_unique():
    ids = {store.new_run_id("lr-sweep") for _ in range(50)}
    assert len(ids) == 50
    assert all(i[8] == "T" and i[15] == "Z" and "-lr-sweep-" in i for i in ids)
    # two runs started within one second: the later sorts later (it is the newer run a report shows)
    second = datetime(2026, 11, 28, 4, 11, 41, tzinfo=UTC)
    for _ in range(20):
        earlier, later = (store.new_run_id("lr-sweep", second + timedelta(milliseconds=ms)) for ms in (998, 999))
        assert earlier < later and earlier[:16] == later[:16]


def test_default_results_dir_follows_environment(monkeypatch):
    monkeypatch.setenv("AMAL_RESULTS", "/somewhere/else")
    assert str(store.default_results_dir()) == "/somewhere/else"
    monkeypatch.delenv("AMAL_RESULTS")
    assert str(store.default_results_dir()) == "results"
    monkeypatch.setenv("AMAL_RESULTS", "")  # AMAL_RESULTS= in a script: unset, not the current folder
    assert str(store.default_results_dir()) == "results"


def test_a_run_not_stored_leaves_no_artifact(tmp_path, monkeypatch):
    """A full disk at the parquet said "nothing was stored" but left _artifacts/<run>/reconstructions.png."""
    from amal import cli

    df = _run("autoencoder", device="cpu").drop(columns=["run_id", "experiment"])
    df.attrs["artifacts"] = {"recon_png": ("reconstructions.png", b"\x89PNG...")}

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        cli.store_run(df, "autoencoder", "", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_artifacts_are_written_and_referenced_by_their_column(tmp_path):
    df = _run("autoencoder", tag="reconstructions.png")
    out = store.save_artifacts(df, tmp_path, {"recon_png": ("reconstructions.png", b"\x89PNG...")})
    run_id = df["run_id"].iloc[0]
    assert out["recon_png"].unique().tolist() == [f"_artifacts/{run_id}/reconstructions.png"]
    assert out["tag"].unique().tolist() == ["reconstructions.png"]  # other cells are left alone
    assert (tmp_path / out["recon_png"].iloc[0]).read_bytes() == b"\x89PNG..."
    with pytest.raises(ValueError, match="plain file names"):
        store.save_artifacts(df, tmp_path, {"recon_png": ("../escape.png", b"")})


def test_a_run_file_rewritten_by_pandas_still_loads(tmp_path):
    """pandas writes strings as large_string: the store reads them as the schema's strings."""
    df = _run(n=1).assign(run_id="20260101T000000Z-lr-sweep-aaaaaa", diverged_epoch=pd.array([None], "Int64"))
    first = tmp_path / "20260101T000000Z-lr-sweep-aaaaaa.parquet"
    store.save(df, tmp_path)
    second = tmp_path / "20260102T000000Z-lr-sweep-bbbbbb.parquet"
    pa_table = pa.Table.from_pandas(df.assign(run_id="20260102T000000Z-lr-sweep-bbbbbb"), preserve_index=False)
    strings = (pa.string(), pa.large_string())  # (pandas 3 gives large_string already, pandas 2 string)
    pq.write_table(pa_table.cast(pa.schema([pa.field(field.name, pa.large_string() if field.type in strings
                                                     else field.type) for field in pa_table.schema])), second)
    loaded, problems = store.load(tmp_path)
    assert first.exists() and problems == [] and sorted(loaded["run_id"]) == [
        "20260101T000000Z-lr-sweep-aaaaaa", "20260102T000000Z-lr-sweep-bbbbbb"]


@pytest.mark.parametrize("damage", ["dropped", "nulled"])
def test_a_file_without_a_column_its_experiment_requires_is_named_not_read_with_holes(tmp_path, damage):
    """A run file cut down by another tool: the report would meet a run without a batch size (a traceback, or the
    run silently left out). Each experiment's required columns must be there, with values where not NULLABLE."""
    path = store.save(_run("batch-size"), tmp_path)
    table = pq.read_table(path)
    if damage == "dropped":
        table = table.drop(["batch_size", "elapsed_s"])
    else:
        table = table.set_column(table.schema.get_field_index("batch_size"), "batch_size", pa.nulls(3, pa.int64()))
    pq.write_table(table, path)
    lacking = {"dropped": "elapsed_s, batch_size", "nulled": "batch_size"}[damage]
    with pytest.raises(UsageError, match=rf"^{path}: not a whole amal run \(no values in {lacking}\)$"):
        store.load(tmp_path)
    assert store.load(tmp_path, skip_bad=True)[1] == [f"{path}: not a whole amal run (no values in {lacking})"]


def test_measurements_may_be_null_in_a_whole_run(tmp_path):
    """A batch-size run that diverged at its first epoch stores one row whose loss (NaN) is null."""
    store.save(_run("batch-size", n=1, train_loss=[float("nan")]), tmp_path)
    loaded, problems = store.load(tmp_path)
    assert problems == [] and loaded["train_loss"].isna().all()


def test_a_copied_run_file_is_refused_not_counted_twice(tmp_path):
    """A run file copied under another name (same run_id): its rows were read twice, the report counting 5 runs."""
    path = store.save(_run(n=2), tmp_path)
    copy = tmp_path / f"zz-{path.name}"
    shutil.copy(path, copy)
    run_id = pd.read_parquet(path)["run_id"].iloc[0]
    with pytest.raises(UsageError, match=f"^{copy}: run {run_id} is already in {path.name} \\(a copy\\?\\): keep one"):
        store.load(tmp_path)
    loaded, problems = store.load(tmp_path, skip_bad=True)
    assert len(loaded) == 2 and loaded["run_id"].nunique() == 1 and len(problems) == 1
    # a bad file of the same run read first (it sorts first) does not make the good one "a copy"
    copy.unlink()
    pq.write_table(pq.read_table(path).drop(["experiment"]), tmp_path / f"0-{path.name}")
    loaded, problems = store.load(tmp_path, skip_bad=True)
    assert len(loaded) == 2 and len(problems) == 1 and "no experiment column" in problems[0]

"""The notes under the report's sections (amal.report.notes), through the context that carries them."""

import re

import numpy as np
import pandas as pd

from amal.report.context import build_context
from amal.report.notes import differences


def sections(context):
    return {s["id"]: s for s in context["sections"]}


def test_sections_name_the_regression_runs_whose_threads_waited_for_a_cpu(fixture_df):
    """A run's cpu_wait is its training loop's (the same on each of its rows): lr-sweep names runs by lr,
    batch-size by implementation, batch size and seed; runs that waited less are not named, and not measured ones
    (NaN) are not counted."""
    df = fixture_df.copy()
    lr, batch = df["experiment"].eq("lr-sweep"), df["experiment"].eq("batch-size")
    df.loc[lr, "cpu_wait"] = np.where(df.loc[lr, "lr"] == df.loc[lr, "lr"].max(), 0.42, 0.01)
    slow = batch & df["implementation"].eq("tensor") & df["batch_size"].eq(16) & df["seed"].eq(1)
    df.loc[batch, "cpu_wait"] = np.where(slow[batch], 0.3, np.nan)
    built = build_context(df, "r")
    parts = sections(built)
    runs = df[lr].groupby("lr").ngroups
    assert parts["lr-sweep"]["notes"] == [
        f"In 1 of {runs} runs the threads waited for a CPU more than 15 % of the training loop's time (lr "
        f"{df.loc[lr, 'lr'].max():g}: 42 %): other processes were running on the same CPUs, so that run is slower "
        "than the machine is (rerun on an idle machine)."]  # its one thread: fewer cannot help
    assert parts["batch-size"]["notes"] == [
        "In 1 of 1 run the threads waited for a CPU more than 15 % of the training loop's time (tensor, batch size "
        "16, seed 1: 30 %): other processes were running on the same CPUs, so that run is slower than the machine "
        "is (rerun on an idle machine, or with --threads 1)."]
    fig3 = [f for f in parts["batch-size"]["figures"] if f["key"] == "fig3-batch-time"][0]
    assert fig3["caption"].endswith("; a ring marks a run other processes slowed (note below).")
    # the summary says so too: a reader of the summary alone would take those times for the machine's
    assert built["summary"][-1] == ("Other processes competed for the CPUs while some of these times were measured "
                                    "(TP1 and TP2: the notes name them): those times are slower than the machine is.")
    assert sections(build_context(fixture_df, "r"))["lr-sweep"]["notes"] == []
    assert not [line for line in build_context(fixture_df, "r")["summary"] if "competed" in line]


def test_a_section_says_which_runs_it_left_out(fixture_df, context):
    assert sections(context)["batch-size"]["notes"] == []
    old = fixture_df[fixture_df["experiment"] == "batch-size"]
    newer = old.assign(run_id="20261127T140000Z-batch-size-ffffff", lr=0.01)
    part = sections(build_context(pd.concat([fixture_df, newer]), "r"))["batch-size"]
    assert part["notes"] == ["1 batch-size run made with other settings (lr 0.001 instead of 0.01) is not shown: the "
                             "section compares runs made with the settings above, those of the newest run."]
    assert part["settings"] == ("device cpu, lr 0.01, normalize minmax, test size –, data source "
                                "mlxtend:boston_housing_data, epochs 20, num threads 2, host lab-cpu-1, "
                                "target loss 24.1")


def test_the_note_names_each_setting_that_differs_once_with_all_its_other_values(fixture_df):
    """Two older lr-sweeps, of 300 and 50 epochs, one of them also at another seed: each setting is named once, with
    every other value seen (the newer left-out run's first), and the note stays one sentence."""
    lr = fixture_df[fixture_df["experiment"] == "lr-sweep"]
    older = [lr.assign(run_id="20261127T080000Z-lr-sweep-111111", epochs=300),
             lr.assign(run_id="20261127T070000Z-lr-sweep-222222", epochs=50, seed=1.0)]
    part = sections(build_context(pd.concat([fixture_df, *older], ignore_index=True), "r"))["lr-sweep"]
    assert part["notes"] == ["2 lr-sweep runs made with other settings (epochs 300, 50 instead of 1,000; seed 1 "
                             "instead of 0) are not shown: the section compares runs made with the settings above, "
                             "those of the newest run."]


def test_an_autoencoder_configuration_with_a_slow_epoch_is_noted(fixture_df, context):
    """The CPU's batch 256 with its second epoch 5× slower (3.23 s instead of 0.645 s): epoch times 4.9× apart, the
    median epoch at 6,000 images/s, 12,000 images in 4.55 s over all epochs; the fixture's steady epochs get no note."""
    assert not [note for note in sections(context)["autoencoder"]["notes"] if note.startswith("Epoch times")]
    slow = ((fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")
            & (fixture_df["batch_size"] == 256) & (fixture_df["epoch"] == 2))
    df = fixture_df.assign(epoch_s=fixture_df["epoch_s"].where(~slow, fixture_df["epoch_s"] * 5),
                           samples_per_s=fixture_df["samples_per_s"].where(~slow, fixture_df["samples_per_s"] / 5))
    notes = sections(build_context(df, "r"))["autoencoder"]["notes"]
    assert [note for note in notes if note.startswith("Epoch times")] == [
        "Epoch times of cpu, dataloader, 784→256→64, bce, batch size 256 varied 4.9×: 6,000 images/s in the median "
        "epoch, 2,640 over all epochs together; the machine was probably busy (rerun on an idle machine, or with "
        "--threads 1)."]


def test_the_autoencoder_section_says_where_each_device_was_timed_and_what_it_left_out(fixture_df, context):
    assert sections(context)["autoencoder"]["settings"].endswith(
        "; cpu on lab-cpu-1 (AMD EPYC 7B13, 2 threads); cuda on gpu-node-1 (NVIDIA H100 80GB HBM3, 16 threads)")
    counted = fixture_df.assign(cpu_count=pd.array([4 if d == "cpu" else 32 for d in fixture_df["device"]],
                                                   dtype="Int64"))  # runs that recorded their CPUs say how many
    assert sections(build_context(counted, "r"))["autoencoder"]["settings"].endswith(
        "; cpu on lab-cpu-1 (AMD EPYC 7B13, 2 threads on 4 CPUs); cuda on gpu-node-1 (NVIDIA H100 80GB HBM3, 16 "
        "threads on 32 CPUs)")
    ae = fixture_df[(fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")]
    older = [ae.assign(run_id=f"20261127T10000{i}Z-autoencoder-00000{i}", num_threads=1, host=host, batch_size=32)
             for i, host in enumerate(["lab-cpu-1", "laptop"])]
    part = sections(build_context(pd.concat([fixture_df, *older], ignore_index=True), "r"))["autoencoder"]
    assert part["notes"] == ["2 cpu runs timed on another machine or thread count (host laptop instead of lab-cpu-1; "
                             "num threads 1 instead of 2) are not shown: the times of a device all come from the "
                             "machine of its newest run."]


def test_a_resumed_autoencoder_run_is_noted(fixture_df):
    ae = fixture_df[(fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")]
    ae = ae[ae["run_id"] == ae["run_id"].max()]  # one run, epochs 1–3

    def note(rows, resumed_from):
        run = rows.assign(run_id="20261127T140000Z-autoencoder-ffffff", resumed_from_epoch=float(resumed_from))
        notes = sections(build_context(pd.concat([fixture_df, run]), "r"))["autoencoder"]["notes"]
        return next(n for n in notes if n.startswith("Run 20261127T140000Z-autoencoder-ffffff"))

    earlier = ("timed on another machine or device, with other threads, workers or data path (resident or "
               "DataLoader), or before checkpoints carried their epochs (the resuming command said which); they belong "
               "to the run that measured them, if it was stored at all: an interrupted run stores no rows.")
    assert note(ae[ae["epoch"] > 1], 1) == ("Run 20261127T140000Z-autoencoder-ffffff resumed from a checkpoint at "
                                            f"epoch 1: its curves start at epoch 2. Its epoch 1 was {earlier}")
    assert note(ae, 2) == ("Run 20261127T140000Z-autoencoder-ffffff was resumed from a checkpoint at epoch 2; its "
                           "epochs 1–2 were measured before the resume, on the same machine and device with the same "
                           "threads, workers and data path, and come from the checkpoint.")
    # resumed twice, the second time with other threads: the checkpoint carried only the epochs since the first
    assert note(ae[ae["epoch"] > 1], 2) == (
        "Run 20261127T140000Z-autoencoder-ffffff resumed from a checkpoint at epoch 2: its epoch 2 was measured "
        "before the resume, on the same machine and device with the same threads, workers and data path, and comes "
        f"from the checkpoint. Its epoch 1 was {earlier}")


def test_settings_note_shows_zero_as_zero(fixture_df):
    lr = fixture_df[fixture_df["experiment"] == "lr-sweep"].dropna(axis=1, how="all")
    later = lr.assign(run_id="20261127T150000Z-lr-sweep-111111", epochs=lr["epochs"] * 2, seed=0)
    both = pd.concat([lr.assign(seed=0), later], ignore_index=True)  # seed int64, as in a one-experiment store
    assert "seed 0," in sections(build_context(both, "r"))["lr-sweep"]["settings"]


def test_a_diverged_autoencoder_run_is_named_and_still_drawn(tmp_path):
    from amal.cli import main as run_main
    from amal.report import figures

    results = str(tmp_path / "results")
    assert run_main(["autoencoder", "--quiet", "--device", "cpu", "--epochs", "3", "--hidden", "8", "--n-train", "128",
                     "--lr", "1e30", "--results", results]) == 0
    df = pd.read_parquet(results)
    ae = sections(build_context(df, results))["autoencoder"]
    [note] = [n for n in ae["notes"] if "diverged at epoch" in n]
    assert note == (f"Run {df['run_id'].iloc[0]} diverged at epoch 1 (training loss no longer finite) and stopped "
                    "there: its curves end before it.")
    assert "fig6c-ae-recon" not in [f["key"] for f in ae["figures"]]  # its grid is of a model of NaN weights
    pngs = figures.render(df, ["fig6a-ae-loss", "fig6b-ae-throughput"])
    assert all(png.startswith(b"\x89PNG") for png in pngs.values())


def test_a_diverged_run_is_named_at_the_epoch_it_stopped_and_why():
    """Every epoch of a diverged run is flagged: the note names the last, where it stopped (not the first flagged),
    and says whether its loss stopped being finite (stored as null) or exploded."""
    from amal.report.notes import diverged_notes

    rows = pd.DataFrame({"run_id": ["b"] * 3 + ["a"] * 2 + ["c", "d"], "epoch": [3, 1, 2, 1, 2, 1, 1],
                         "diverged": [True] * 5 + [False, True],
                         "train_loss": [None, 0.3, 0.2, 0.3, 8.83e7, 0.25, float("inf")]})  # (inf is stored as is)
    assert diverged_notes(rows) == [
        "Run a diverged at epoch 2 (training loss 8.83e+07: exploded) and stopped there: its curves end before it.",
        "Run b diverged at epoch 3 (training loss no longer finite) and stopped there: its curves end before it.",
        "Run d diverged at epoch 1 (training loss no longer finite) and stopped there: its curves end before it."]


def test_an_exploded_autoencoder_run_has_no_final_loss_in_the_report(tmp_path):
    """Its last epoch's losses are finite (BCE 2.3e6 at lr 1000) but no result: not the section's lowest final test
    loss, and not drawn (its curves end before the epoch it stopped at, as the note says)."""
    from amal.cli import main as run_main
    from amal.report import select

    results = str(tmp_path / "results")
    assert run_main(["autoencoder", "--quiet", "--device", "cpu", "--epochs", "3", "--hidden", "8", "--n-train", "128",
                     "--lr", "1000", "--results", results]) == 0
    df = pd.read_parquet(results)
    assert df["diverged"].all() and df["test_loss"].iloc[-1] > 1e6  # stored as measured
    ae = sections(build_context(df, results))["autoencoder"]
    assert not [f for f in ae["findings"] if f.startswith("Lowest final test loss")]
    [note] = [n for n in ae["notes"] if "diverged at epoch" in n]
    assert re.search(r"diverged at epoch 1 \(training loss \d\.\d\de\+0[6-9]: exploded\) and stopped there: its "
                     r"curves end before it\.$", note)
    assert select.stopped_losses_blanked(df)[["train_loss", "test_loss"]].isna().all().all()


def test_a_diverged_autoencoder_run_left_out_is_named_and_the_note_says_which_run_sets_the_settings(tmp_path):
    """A good run, then a diverging one with another lr: the good one is shown, and the note on runs made with
    other settings says the section's are those of the newest run that did not diverge, naming the one that did
    (once: not again in a note of its own)."""
    from amal.cli import main as run_main

    results = str(tmp_path / "results")
    for lr in ("0.001", "1e30"):
        assert run_main(["autoencoder", "--quiet", "--device", "cpu", "--epochs", "2", "--hidden", "8", "--n-train",
                         "128", "--lr", lr, "--results", results]) == 0
    df = pd.read_parquet(results)
    blown = df.loc[df["lr"] == 1e30, "run_id"].iloc[0]
    notes = sections(build_context(df, results))["autoencoder"]["notes"]
    assert notes[0].endswith("is not shown: the section compares runs made with the settings above, those of the "
                             f"newest run that did not diverge (run {blown}, made after it, diverged).")
    assert not [note for note in notes if "diverged at epoch" in note]  # named once, in the note above
    # made with the same settings on another machine, and diverged: not shown (the good run's machine is the
    # section's), and no settings note counts it, so a note of its own names it
    good = df[df["lr"] == 0.001]
    elsewhere = good.assign(run_id=good["run_id"].str.replace("T", "T9", n=1), host="other-host", diverged=True,
                            train_loss=float("nan"), diverged_epoch=1).head(1)
    notes = sections(build_context(pd.concat([good, elsewhere], ignore_index=True), results))["autoencoder"]["notes"]
    assert f"Run {elsewhere['run_id'].iloc[0]} diverged at epoch 1 (training loss no longer finite) and stopped " \
           "there: it is not shown." in notes


def test_an_empty_tag_reads_untagged_in_a_note():
    others = pd.DataFrame({"setting": ["tag", "tag", "epochs"], "value": ["gate baseline", "", 50],
                           "newest": ["gate candidate", "gate candidate", 1000]})
    assert differences(others) == ("tag gate baseline, '' (untagged) instead of gate candidate; "
                                   "epochs 50 instead of 1,000")


def test_settings_that_differ_past_three_digits_are_written_apart():
    """A rerun with the target loss 0.1 % higher: 'target loss 24.1 instead of 24.1' said nothing."""
    others = pd.DataFrame({"setting": ["target_loss", "lr", "lr"], "value": [24.108, 0.001, float("nan")],
                           "newest": [24.084, 0.01, 0.01]})
    assert differences(others) == "target loss 24.11 instead of 24.08; lr 0.001, – instead of 0.01"


def test_runs_with_dataloader_workers_get_a_note_on_their_start_up(fixture_df):
    assert not any("DataLoader worker" in n for n in sections(build_context(fixture_df, "r"))["autoencoder"]["notes"])
    ae = fixture_df["experiment"] == "autoencoder"
    notes = sections(build_context(fixture_df.assign(num_workers=fixture_df["num_workers"].mask(ae, 2)), "r"))[
        "autoencoder"]["notes"]
    assert [n for n in notes if "DataLoader worker" in n] == [
        "With 2 DataLoader workers, the workers start again each epoch (they are not persistent, so that the batches "
        "do not depend on their number): every epoch's time includes their start-up, a large share of a short epoch."]
    cpu = ae & (fixture_df["device"] == "cpu")
    crowded = fixture_df.assign(num_workers=fixture_df["num_workers"].mask(ae, 2),
                                cpu_count=pd.array([1 if c else 4 if a else None for c, a in zip(cpu, ae, strict=True)],
                                                   dtype="Int64"))
    [note] = [n for n in sections(build_context(crowded, "r"))["autoencoder"]["notes"] if "DataLoader worker" in n]
    cpu_runs = sorted(crowded.loc[cpu, "run_id"].unique())
    assert cpu_runs and note.endswith(
        " More workers than CPUs (" + "; ".join(f"run {run}: 2 workers on 1 CPU" for run in cpu_runs) + "): the "
        "workers and the training's threads competed for the CPUs, and every epoch's time includes it; fewer workers "
        "(or none: --num-workers 0) time the training alone.")  # the GPU's run had 4 CPUs: not named


def test_the_autoencoder_section_says_which_configuration_competed_for_the_cpu(fixture_df):
    cpu = (fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")
    busy = cpu & (fixture_df["batch_size"] == 64)
    df = fixture_df.assign(cpu_wait=np.where(busy, 0.34, np.where(cpu, 0.01, np.nan)))
    built = build_context(df, "r")
    assert "(TP3: the notes name them)" in built["summary"][-1]
    notes = sections(built)["autoencoder"]["notes"]
    assert [note for note in notes if "waited for a CPU" in note] == [
        "cpu, dataloader, 784→256→64, bce, batch size 64: its threads waited for a CPU 34 % of their time (median "
        "epoch): other processes were running on the same CPUs, so its throughput is too low, however steady its "
        "epochs (rerun on an idle machine, or with --threads 1)."]


def test_a_slow_epoch_whose_threads_waited_for_a_cpu_is_explained(fixture_df):
    """The CPU's batch 256 with its second epoch 5× slower and its threads waiting 48 % of it: not 'probably busy'
    but how many epochs other processes slowed, though the median epoch did not wait."""
    cpu = (fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")
    slow = cpu & (fixture_df["batch_size"] == 256) & (fixture_df["epoch"] == 2)
    df = fixture_df.assign(epoch_s=fixture_df["epoch_s"].where(~slow, fixture_df["epoch_s"] * 5),
                           samples_per_s=fixture_df["samples_per_s"].where(~slow, fixture_df["samples_per_s"] / 5),
                           cpu_wait=np.where(slow, 0.48, np.where(cpu, 0.01, np.nan)))
    notes = sections(build_context(df, "r"))["autoencoder"]["notes"]
    assert [note for note in notes if "batch size 256" in note] == [
        "Epoch times of cpu, dataloader, 784→256→64, bce, batch size 256 varied 4.9×: 6,000 images/s in the median "
        "epoch, 2,640 over all epochs together; its threads waited for a CPU (note below).",
        "cpu, dataloader, 784→256→64, bce, batch size 256: in 1 of its 3 epochs its threads waited for a CPU more "
        "than 15 % of their time (up to 48 %): other processes were running on the same CPUs then, so that epoch "
        "is slow and its throughput too low (rerun on an idle machine, or with --threads 1)."]


def test_the_bench_section_names_the_cases_whose_threads_waited_for_a_cpu(fixture_df):
    """A case's cpu_wait covers all its rounds (the same on each): one over 0.15 is named, of the cases measured."""
    bench = fixture_df["experiment"].eq("bench")
    slow = bench & fixture_df["benchmark"].eq("batch-size/tensor/bs16/cpu")
    df = fixture_df.assign(cpu_wait=np.where(slow, 0.27, np.where(bench, 0.002, np.nan)))
    built = build_context(df, "r")
    assert built["summary"][-1].startswith("Other processes competed for the CPUs while some of these times were "
                                           "measured (Benchmarks: the notes name them)")
    assert sections(built)["bench"]["notes"] == [
        "In 1 of 3 cases the threads waited for a CPU more than 15 % of the rounds' time (batch-size/tensor/bs16/"
        "cpu: 27 %): other processes were running on the same CPUs, so that case is slower than the machine is "
        "(rerun on an idle machine, or with --amal-threads 1)."]  # pytest bench's option
    assert sections(build_context(fixture_df, "r"))["bench"]["notes"] == []

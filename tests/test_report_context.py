
import pandas as pd

from amal.report.context import build_context
from amal.report.regression_sections import trained_by
from amal.report.section import HOW_TO


def sections(context):
    return {s["id"]: s for s in context["sections"]}


def test_header(context):
    assert context["source"] == "5 runs, 3,614 rows from tests/fixtures/results"
    assert set(sections(context)) == {"lr-sweep", "batch-size", "autoencoder", "bench"}


def test_lr_sweep_threshold_finding(context):
    lr = sections(context)["lr-sweep"]
    assert lr["findings"][0] == ("Gradient descent does not diverge up to lr = 0.26 and diverges from lr = 0.27: the "
                                 "observed threshold lies between 0.26 and 0.27; theory lr* = 2/λmax(H) = 0.2652 "
                                 "(inside the observed interval).")
    rows = lr["tables"][0]["rows"]
    assert rows[3][:3] == ["0.27", "diverged at epoch 196", "196"]
    assert [f["key"] for f in lr["figures"]] == ["fig1-lr-sweep"]


def test_batch_size_findings(context):
    findings = sections(context)["batch-size"]["findings"]
    assert findings[0] == ("Batch size 16 reaches the target loss (MSE ≤ 24.1, least-squares optimum 21.9) fastest: "
                           "4.17 ms (manual, mean of 2 seeds).")
    assert findings[1] == "Batch size 506 never reaches it within the epochs run."
    # batch size 1: manual 14.022 µs × 1.01, dataloader (42.002 + 8.01 + 15.01 + 6) µs × 1.01: ratio 5.064
    assert findings[2] == ("At batch size 1, manual is the fastest (14.2 µs per step); dataloader takes 5.06× as long "
                           "(in the instrumented pass behind the step-split figure, 59 % of its step goes to fetching "
                           "data).")
    assert [f["key"] for f in sections(context)["batch-size"]["figures"]] == [
        "fig2-batch-loss", "fig3-batch-time", "fig4-time-to-target", "fig5-overhead"]


def test_autoencoder_findings_and_recon_from_the_newest_run(context):
    ae = sections(context)["autoencoder"]
    assert ae["findings"][1].startswith("GPU speedup in throughput at batch size 256 (784→256→64, bce, dataloader): "
                                        "19.7× (95 % CI ")
    assert ae["findings"][1].endswith(" over the epochs of one run per device, run-to-run variation not included), "
                                      "NVIDIA H100 80GB HBM3 vs AMD EPYC 7B13.")
    throughput = {f["key"]: f["caption"] for f in ae["figures"]}["fig6b-ae-throughput"]
    assert ("one colour per model (data path, layers, loss; its configurations are shades of it in the loss figure), "
            "dashed with circles on the CPU, solid with squares on the GPU") in throughput
    recon = ae["figures"][-1]
    assert recon["source"] == "_artifacts/20261127T120000Z-autoencoder-4f5a6b/recon.png"
    assert recon["caption"].endswith("after 3 epochs (run 20261127T120000Z-autoencoder-4f5a6b: 784→256→64, bce, "
                                     "batch size 256, cuda).")
    assert ae["tables"][0]["columns"] == ["device", "data", "layers", "loss", "batch size", "images/s",
                                          "slowest–fastest epoch", "epochs (runs)", "host-to-device copy"]
    assert ae["tables"][0]["rows"][1] == ["cpu", "dataloader", "784→256→64", "bce", "256", "6,100", "6,000–6,200",
                                          "3 (1)", "–"]


def test_cpu_only_autoencoder_says_gpu_not_measured(fixture_df):
    cpu_only = fixture_df[~((fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cuda"))]
    ae = sections(build_context(cpu_only, "r"))["autoencoder"]
    assert ("GPU throughput not measured: no CUDA run in the store with the configuration of a CPU run."
            in ae["findings"])
    # one command per CPU configuration, with the settings the section's runs share, storing where the report reads
    command = "python -m amal.run autoencoder --device cuda --epochs 3 --batch-size {} --hidden 256,64 --loss bce " \
              "--n-train 4000 --num-workers 0 --results r"
    assert ae["commands"] == {"intro": "To compare the GPU with the CPU, run on a CUDA machine (the settings of the "
                                       "CPU runs shown):", "lines": [command.format(64), command.format(256)]}
    assert not any("cuda" in note for note in ae["notes"])
    assert sections(build_context(fixture_df, "r"))["autoencoder"]["commands"] is None  # measured: nothing to run


def test_bench_finding(context):
    assert sections(context)["bench"]["findings"] == [
        "batch-size, by implementation: batch-size/tensor/bs16/cpu is 3.24× faster than batch-size/dataloader/bs16/cpu "
        "(alike in every other setting; median round)."]


def test_bench_findings_compare_only_cases_that_differ_in_one_setting(fixture_df):
    """"fused/b506 is 1,540× faster than dataloader/b1" mixed the implementation with 506× fewer steps a round."""
    bench = fixture_df[fixture_df["experiment"] == "bench"]
    tensor = bench[bench["benchmark"] == "batch-size/tensor/bs16/cpu"]
    more = pd.concat([tensor.assign(benchmark="batch-size/tensor/bs506/cpu", batch_size=506,
                                    round_s=tensor["round_s"] / 20),
                      tensor.assign(benchmark="batch-size/fused/bs1/cpu", implementation="fused", batch_size=1,
                                    round_s=tensor["round_s"] * 40)])  # differs from every other case in two
    findings = sections(build_context(pd.concat([fixture_df, more], ignore_index=True), "r"))["bench"]["findings"]
    assert findings == [
        "batch-size, by implementation: batch-size/tensor/bs16/cpu is 3.24× faster than batch-size/dataloader/bs16/cpu "
        "(alike in every other setting; median round).",
        "batch-size, by batch size: batch-size/tensor/bs506/cpu is 20× faster than batch-size/tensor/bs16/cpu "
        "(alike in every other setting; median round)."]
    tie = bench.assign(round_s=0.01)  # equally fast: no "1× faster than" (nor a case compared with itself)
    assert sections(build_context(pd.concat([fixture_df[fixture_df["experiment"] != "bench"], tie],
                                            ignore_index=True), "r"))["bench"]["findings"] == []


def test_missing_sections_say_how_to_produce_them(fixture_df):
    only_lr = fixture_df[fixture_df["experiment"] == "lr-sweep"]
    parts = sections(build_context(only_lr, "r"))
    assert parts["lr-sweep"]["available"]
    for key in ("batch-size", "autoencoder", "bench"):
        assert not parts[key]["available"]
        assert parts[key]["missing"] == f"No {key} results in the store yet. To produce them, run:"
        assert parts[key]["how_to"] == HOW_TO[key] + " --results r"  # writes where the report reads
        assert parts[key]["figures"] == [] and parts[key]["findings"] == []
    default = sections(build_context(only_lr, "results"))  # said even for the default: $AMAL_RESULTS may differ
    assert default["bench"]["how_to"] == "pytest bench --benchmark-autosave --results results"
    assert sections(build_context(only_lr, "my results"))["bench"]["how_to"].endswith(" --results 'my results'")


def test_environment_table(context):
    env = context["environment"]
    assert len(env["rows"]) == 5
    assert env["columns"][3:6] == ["CPU", "CPUs", "threads"]
    gpu = [row for row in env["rows"] if row[0] == "20261127T120000Z-autoencoder-4f5a6b"][0]
    # the fixture's runs predate the CPU count: '–'
    assert gpu[2:7] == ["gpu-node-1", "Intel Xeon Platinum 8480+", "–", "16", "NVIDIA H100 80GB HBM3"]
    assert gpu[9:11] == ["b9cbe5a0c1d2", "2026-11-27 12:00 UTC"]
    assert {row[11] for row in env["rows"]} == {"synthetic fixture", "'' (untagged)"}  # as --tag '' selects it


def test_environment_table_gives_the_cpus_a_run_could_use(fixture_df):
    gpu_run = fixture_df["run_id"] == "20261127T120000Z-autoencoder-4f5a6b"
    counted = fixture_df.assign(cpu_count=pd.array([32 if gpu else None for gpu in gpu_run], dtype="Int64"))
    rows = {row[0]: row for row in build_context(counted, "r")["environment"]["rows"]}
    assert rows["20261127T120000Z-autoencoder-4f5a6b"][4:6] == ["32", "16"]  # 32 CPUs, 16 torch threads
    assert {row[4] for run, row in rows.items() if run != "20261127T120000Z-autoencoder-4f5a6b"} == {"–"}


def test_lowest_test_loss_is_found_per_loss_function(fixture_df):
    ae = fixture_df[(fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")]
    mse = ae.assign(run_id="20261127T140000Z-autoencoder-ffffff", loss_fn="mse", test_loss=ae["test_loss"] / 100)
    findings = sections(build_context(pd.concat([fixture_df, mse]), "r"))["autoencoder"]["findings"]
    lowest = [f for f in findings if f.startswith("Lowest final test loss")]
    assert [f.split(":")[0] for f in lowest] == ["Lowest final test loss (bce)", "Lowest final test loss (mse)"]


def test_fig6a_caption_names_the_loss_or_gives_each_its_panel(fixture_df, context):
    ae = fixture_df[(fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cpu")]
    captions = [{f["key"]: f["caption"] for f in sections(part)["autoencoder"]["figures"]}["fig6a-ae-loss"]
                for part in (context, build_context(pd.concat([fixture_df, ae.assign(
                    run_id="20261127T140000Z-autoencoder-ffffff", loss_fn="mse")]), "r"))]
    assert captions[0] == ("Train (solid) and test (dashed) BCE reconstruction loss per epoch for each configuration "
                           "(the mean over seeds where several were run), a shade of its model's colour in the "
                           "throughput figure.")
    assert captions[1].endswith(", one panel per loss function (BCE, MSE): their values are on different scales.")


def test_figure_titles_name_the_lab_report_figure_they_stand_for(context):
    """LaTeX numbers the figures itself: a title starting "Seed Fig. 2:" read "Figure 2: Seed Fig. 2: ..."."""
    titles = {f["key"]: f["title"] for s in context["sections"] for f in s["figures"]}
    assert titles["fig1-lr-sweep"] == "Training MSE per epoch for each learning rate (lab report Fig. 1)"
    assert titles["fig2-batch-loss"].endswith("(lab report Fig. 2)")
    assert titles["fig3-batch-time"].endswith("(lab report Fig. 3)")
    assert not [title for title in titles.values() if "fig." in title.lower().split("(")[0]]


def test_command_regenerates_the_report(fixture_df):
    assert build_context(fixture_df, "r")["command"] == "python -m amal.report"
    assert build_context(fixture_df, "r", "python -m amal.report --results r")["command"].endswith("--results r")


def test_environment_keeps_the_dirty_mark_of_a_commit(fixture_df):
    from amal.report.format import short_commit

    assert short_commit("247bcad4098c1f2e3d4c5b6a79887766554433221+dirty") == "247bcad4098c+dirty"
    assert short_commit("247bcad4098c1f2e3d4c5b6a79887766554433221") == "247bcad4098c"
    assert short_commit("") == "–"


def test_bench_section_sets_each_case_against_the_loop_timed_before_its_rounds(fixture_df, context):
    """Two fidelity cases, each round after a bare loop's: the range of median ratios, and a column for them."""
    assert "against a loop" not in sections(context)["bench"]["tables"][0]["columns"]  # none in the fixture
    bench = fixture_df[fixture_df["experiment"] == "bench"].iloc[:3]
    fidelity = pd.concat([bench.assign(benchmark=f"test_fidelity[{name}]", bench_group="fidelity", round_s=rounds,
                                       reference="bare PyTorch loop", reference_s=0.02)
                          for name, rounds in (("tensor", [0.0204, 0.021, 0.0202]), ("manual", [0.019, 0.0194, 0.02]))])
    part = sections(build_context(pd.concat([fixture_df, fidelity], ignore_index=True), "r"))["bench"]
    assert part["findings"][0] == (
        "fidelity: a round takes 0.97× (test_fidelity[manual]) to 1.02× (test_fidelity[tensor]) as long as a bare "
        "PyTorch loop doing the same work, timed just before it in the same process (median over the pairs of rounds).")
    (body,) = [t for t in part["tables"]]
    column = body["columns"].index("against a loop")
    cells = {row[0]: row[column] for row in body["rows"]}
    assert cells["test_fidelity[tensor]"] == "1.02× bare PyTorch loop"
    assert cells["lr-sweep/manual/cpu"] == "–"


def test_bench_section_shows_one_kind_of_run_and_counts_the_others(fixture_df):
    """A newer bench run with another thread count: the table shows its rounds only, a note counts the older one."""
    bench = fixture_df[fixture_df["experiment"] == "bench"]
    newer = bench.assign(run_id="20261127T150000Z-bench-111111", num_threads=1, round_s=bench["round_s"] * 3)
    part = sections(build_context(pd.concat([fixture_df, newer], ignore_index=True), "r"))["bench"]
    assert part["notes"] == ["1 bench run made with other settings (num threads 2 instead of 1) is not shown: the "
                             "section compares runs made with the settings above, those of the newest run."]
    assert part["settings"] == "profile quick, num threads 1, host lab-cpu-1, tag '' (untagged)"
    medians = {row[0]: row[4] for row in part["tables"][0]["rows"]}
    assert {row[0]: row[2] for row in part["tables"][0]["rows"]}["lr-sweep/manual/cpu"] == "100 epochs"
    assert medians["lr-sweep/manual/cpu"] == "36.3 ms"  # 3 × 12.1 ms: the newer run's rounds


def test_bench_cases_from_two_commits_are_named_and_not_compared_across(fixture_df):
    """One case rerun alone after a change (its run is the newest for that case): the table says which commit each
    case's rounds come from and the finding compares only cases of one commit."""
    bench = fixture_df[fixture_df["experiment"] == "bench"]
    rerun = bench[bench["benchmark"] == "batch-size/tensor/bs16/cpu"].assign(
        run_id="20261127T150000Z-bench-111111", git_commit="a10a9ea0" * 5, round_s=lambda d: d["round_s"] * 9)
    part = sections(build_context(pd.concat([fixture_df, rerun], ignore_index=True), "r"))["bench"]
    table = part["tables"][0]
    assert table["columns"][-1] == "commit" and table["align"] == "llrrrrrl"
    assert {row[0]: row[-1] for row in table["rows"]} == {
        "batch-size/dataloader/bs16/cpu": "b9cbe5a0c1d2", "batch-size/tensor/bs16/cpu": "a10a9ea0a10a",
        "lr-sweep/manual/cpu": "b9cbe5a0c1d2"}
    assert part["findings"] == []  # the two batch-size cases were timed at different commits
    assert part["notes"][-1].startswith("The cases come from runs at 2 commits (a10a9ea0a10a: 1 case, "
                                        "b9cbe5a0c1d2: 2 cases)")
    # one commit (the fixture): no commit column, the finding as before
    alone = sections(build_context(fixture_df, "r"))["bench"]
    assert alone["tables"][0]["columns"][-1] == "min" and len(alone["findings"]) == 1


def test_diverged_batch_size_runs_are_named_with_their_epoch(fixture_df):
    batch = fixture_df["experiment"] == "batch-size"
    stop = batch & (fixture_df["batch_size"] == 506) & (fixture_df["epoch"] > 7)
    df = fixture_df[~stop].copy()
    size_506 = (df["experiment"] == "batch-size") & (df["batch_size"] == 506)
    df.loc[size_506 & (df["epoch"] == 7), "train_loss"] = float("inf")
    df.loc[size_506, "diverged"] = True
    findings = sections(build_context(df, "r"))["batch-size"]["findings"]
    runs = df[size_506].groupby(["implementation", "seed"]).ngroups
    total = df[df["experiment"] == "batch-size"].groupby(["implementation", "batch_size", "seed"]).ngroups
    implementations = ", ".join(sorted(df.loc[size_506, "implementation"].unique()))
    assert findings[-1] == (f"{runs} of {total} runs diverged (training MSE non-finite or above 10⁶ × its start): "
                            "batch size 506 "
                            f"({implementations}) at epoch 7. Their curves stop there, and their times of 1000 epochs "
                            "are scaled from the epochs they ran.")
    fig3 = sections(build_context(df, "r"))["batch-size"]["figures"][1]
    assert "measured over 20 epochs" in fig3["caption"]  # the epochs asked for, not the longest run's


def test_no_run_reaching_the_target_is_not_said_of_every_seed_only(fixture_df):
    batch = fixture_df["experiment"] == "batch-size"
    never = fixture_df.copy()
    never.loc[batch, "target_loss"] = 1e-9  # out of reach: no epoch of any seed gets there
    never.loc[batch, ["time_to_target_s", "epoch_to_target"]] = None
    (finding, *_) = sections(build_context(never, "r"))["batch-size"]["findings"]
    assert finding == "No batch size reached the target loss (MSE ≤ 1.00e-09, least-squares optimum 21.9)."


def test_batch_size_runs_with_another_target_are_left_out(fixture_df):
    batch = fixture_df[fixture_df["experiment"] == "batch-size"]
    other = batch.assign(run_id="20261127T090000Z-batch-size-999999", target_loss=batch["target_loss"] * 3)
    part = sections(build_context(pd.concat([fixture_df, other], ignore_index=True), "r"))["batch-size"]
    assert part["notes"][0].startswith("1 batch-size run made with other settings (target loss 72.3 instead of 24.1) "
                                       "is not shown")


def test_lr_sweep_table_shows_the_test_loss_when_a_split_was_held_out(fixture_df):
    lr = fixture_df["experiment"] == "lr-sweep"
    assert sections(build_context(fixture_df, "r"))["lr-sweep"]["tables"][0]["columns"] == [
        "lr", "final training MSE", "epochs", "training time"]  # trained on every row: no test loss
    split = fixture_df.assign(test_loss=fixture_df["test_loss"].where(~lr, fixture_df["train_loss"] * 1.5))
    table = sections(build_context(split, "r"))["lr-sweep"]["tables"][0]
    assert table["columns"] == ["lr", "final training MSE", "final test MSE", "epochs", "training time"]
    assert table["rows"][0][1:3] == ["33.6", "50.4"]  # lr 0.01: 1.5 × its final training MSE
    assert table["rows"][3][1:3] == ["diverged at epoch 196", "–"]


def test_batch_size_captions_speak_of_seeds_only_when_there_are_several(fixture_df, context):
    several = {f["key"]: f["caption"] for f in sections(context)["batch-size"]["figures"]}
    assert "mean over seeds; band: lowest to highest seed" in several["fig2-batch-loss"]
    assert several["fig3-batch-time"].endswith("mean over seeds, error bars from the fastest to the slowest seed.")
    one = fixture_df[(fixture_df["experiment"] != "batch-size") | (fixture_df["seed"] == 0)]
    captions = {f["key"]: f["caption"] for f in sections(build_context(one, "r"))["batch-size"]["figures"]}
    assert captions["fig2-batch-loss"].endswith("line: one seed (0).")
    assert all("over seeds" not in text and "error bars" not in text for text in captions.values())
    # Fig. 2 and Fig. 4's left panel draw one implementation: their captions count its seeds, not the others'
    rows = fixture_df["experiment"].eq("batch-size")
    tensor = fixture_df["implementation"].eq("tensor")
    mixed = fixture_df[~rows | (tensor & fixture_df["seed"].eq(0)) | (~tensor & fixture_df["batch_size"].ne(506))]
    captions = {f["key"]: f["caption"] for f in sections(build_context(mixed, "r"))["batch-size"]["figures"]}
    assert "(tensor); line: one seed (0)." in captions["fig2-batch-loss"]  # its 3 batch sizes, on one seed
    assert "(tensor, one seed (0))" in captions["fig4-time-to-target"]
    assert captions["fig3-batch-time"].endswith("mean over seeds, error bars from the fastest to the slowest seed.")
    mixed = fixture_df[~rows | fixture_df["seed"].eq(0) | fixture_df["implementation"].eq("dataloader")]
    captions = {f["key"]: f["caption"] for f in sections(build_context(mixed, "r"))["batch-size"]["figures"]}
    assert "(dataloader); line: mean over seeds" in captions["fig2-batch-loss"]  # the one with two seeds
    assert "(dataloader, mean over seeds)" in captions["fig4-time-to-target"]


def test_the_batch_size_intro_names_only_the_implementations_shown(fixture_df):
    assert trained_by(["tensor"]) == "torch autograd and SGD (tensor)"
    assert trained_by(["fused", "tensor", "manual", "tensor"]) == (
        "torch autograd and SGD (tensor), the hand-written functions (manual) or the closed-form gradient in two "
        "torch operations (fused)")
    assert trained_by([]) == trained_by(["dataloader", "tensor", "manual", "fused"])  # an empty section: all
    intro = sections(build_context(fixture_df, "r"))["batch-size"]["intro"]
    shown = set(fixture_df.loc[fixture_df["experiment"] == "batch-size", "implementation"])
    assert intro.startswith(f"Linear regression on Boston Housing trained by {trained_by(shown)}; one epoch")

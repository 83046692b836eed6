import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from chromium import chromium_binary, inspect_page

from amal import store
from amal.report import select
from amal.report.cli import main, regenerate_command

FIGURE_KEYS = ["fig1-lr-sweep", "fig2-batch-loss", "fig3-batch-time", "fig4-time-to-target", "fig5-overhead",
               "fig6a-ae-loss", "fig6b-ae-throughput", "fig6c-ae-recon"]
needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None and shutil.which("latexmk") is None,
                               reason="no TeX engine (pdflatex/latexmk) on the PATH; CI installs texlive")
needs_chromium = pytest.mark.skipif(chromium_binary() is None,
                                    reason="no chromium on the PATH; CI installs the Debian package")


@pytest.fixture(scope="module")
def report(nasty_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["--results", str(nasty_store), "--out", str(out), "--no-run", "--format", "html,tex"]) == 0
    return out


def test_report_has_every_figure_group(report):
    html = (report / "report.html").read_text()
    tex = (report / "report.tex").read_text()
    for key in FIGURE_KEYS:
        assert f'<figure id="{key}">' in html
        assert f"figures/{key}.png" in tex
        assert (report / "figures" / f"{key}.png").read_bytes().startswith(b"\x89PNG")
    assert html.count('<img src="data:image/png;base64,') == len(FIGURE_KEYS)
    assert "http://" not in html and "https://" not in html  # self-contained: nothing fetched
    assert not [p.name for p in report.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_same_results_give_byte_identical_reports(nasty_store, report, tmp_path):
    """A second run, in another process (other hash seed), writes the same bytes."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-m", "amal.report", "--results", str(nasty_store), "--out",
                           str(tmp_path), "--no-run", "--format", "html,tex"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    for name in ["report.html", "report.tex", *(f"figures/{key}.png" for key in FIGURE_KEYS)]:
        assert (tmp_path / name).read_bytes() == (report / name).read_bytes(), name


@needs_chromium
def test_chromium_loads_the_report_without_errors_and_decodes_every_image(report):
    seen = inspect_page(report / "report.html")
    assert seen["console_errors"] == [] and seen["exceptions"] == [] and seen["log_errors"] == []
    assert seen["failed_requests"] == []
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"])
    assert len(seen["images"]) == len(FIGURE_KEYS)
    assert all(image["complete"] and image["width"] > 0 for image in seen["images"]), seen["images"]


# per column of the environment table: the most lines any of its cells is laid out on
CELL_LINES_JS = """Array.from(document.querySelectorAll('#environment th')).map((th, i) => [th.textContent,
    Math.max(...Array.from(document.querySelectorAll(`#environment tbody td:nth-child(${i + 1})`)).map(td => {
        const range = document.createRange(); range.selectNodeContents(td);
        return new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top))).size; }))])"""


@needs_chromium
def test_versions_commits_and_times_of_the_environment_table_are_not_broken_across_lines(report):
    """A 1280-pixel window: '2026-11-27 13:00 UTC' was cut at its hyphens and spaces into four lines."""
    lines = dict(inspect_page(report / "report.html", expression=CELL_LINES_JS)["value"])
    assert {column: lines[column] for column in ("experiment", "torch", "Python", "commit", "UTC time")} == {
        "experiment": 1, "torch": 1, "Python": 1, "commit": 1, "UTC time": 1}
    assert lines["tag"] > 1  # control: the hostile tag is long enough to wrap, so a line count above 1 is seen


@needs_chromium
def test_chromium_check_catches_errors_and_broken_images(tmp_path):
    """Control: the same check fails on a page with a console error and an image that does not decode."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><script>console.error("boom")</script>'
                    '<img src="data:image/png;base64,AAAA" alt="broken"></body></html>')
    seen = inspect_page(page)
    assert seen["console_errors"] and seen["images"] == [{"alt": "broken", "complete": True, "width": 0}]


def test_footer_gives_the_command_with_the_results_used(report, nasty_store, tmp_path):
    html = (report / "report.html").read_text()
    assert f"Regenerate with <code>python -m amal.report --results {nasty_store}</code>" in html
    assert regenerate_command(Path("results")) == "python -m amal.report --results results"
    assert regenerate_command(Path("my results")) == "python -m amal.report --results 'my results'"
    assert regenerate_command(Path("r"), ["a b"]) == "python -m amal.report --results r --tag 'a b'"


def test_a_format_not_rewritten_is_named_when_an_earlier_report_left_it(fixture_results, tmp_path, capsys):
    out = ["--results", str(fixture_results), "--out", str(tmp_path / "out"), "--no-run"]
    assert main([*out, "--format", "html"]) == 0
    assert "earlier report" not in capsys.readouterr().err
    assert main([*out, "--format", "tex"]) == 0
    assert "report.html there is an earlier report's (not rewritten: --format tex)" in capsys.readouterr().err


def test_an_html_only_report_leaves_the_figures_an_earlier_report_tex_uses(fixture_results, tmp_path, capsys):
    """report.tex includes figures/*.png: an HTML-only report from other results rewrote them under it."""
    out = tmp_path / "out"
    assert main(["--results", str(fixture_results), "--out", str(out), "--no-run", "--format", "tex"]) == 0
    figures = {png.name: png.read_bytes() for png in (out / "figures").glob("*.png")}
    lr_only = shutil.copytree(fixture_results, tmp_path / "lr-only")
    for run in lr_only.glob("*.parquet"):
        if "lr-sweep" not in run.name:
            run.unlink()
    capsys.readouterr()
    assert main(["--results", str(lr_only), "--out", str(out), "--no-run", "--format", "html"]) == 0
    assert {png.name: png.read_bytes() for png in (out / "figures").glob("*.png")} == figures
    assert ("report.tex there is an earlier report's (not rewritten: --format html); figures/, which it uses, left "
            "as they were too") in capsys.readouterr().err
    assert "data:image/png;base64," in (out / "report.html").read_text()  # the HTML has its own images


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_an_unreadable_stored_grid_is_named_in_its_place(fixture_results, tmp_path, capsys, damage):
    results = shutil.copytree(fixture_results, tmp_path / "results")
    grid = results / "_artifacts/20261127T120000Z-autoencoder-4f5a6b/recon.png"
    if damage == "truncated":
        grid.write_bytes(b"\x89PNG truncated")
    else:
        grid.unlink()
    assert main(["--results", str(results), "--out", str(tmp_path / "out"), "--no-run", "--format", "html"]) == 0
    said = {"truncated": "fig6c-ae-recon: the stored image is not a readable PNG; the report says so in its place",
            "deleted": f"fig6c-ae-recon: the stored image {grid} is missing; the report says so in its place"}
    assert said[damage] in capsys.readouterr().err
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Image _artifacts/20261127T120000Z-autoencoder-4f5a6b/recon.png is missing or not a readable PNG." in html
    assert not (tmp_path / "out" / "figures" / "fig6c-ae-recon.png").exists()


def test_an_output_path_that_is_a_file_is_named_as_one(fixture_results, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["--results", str(fixture_results), "--out", str(tmp_path / "afile"), "--no-run"]) == 2
    assert capsys.readouterr().err == (f"python -m amal.report: error: output directory {tmp_path / 'afile'} is a "
                                       "file, not a folder\n")


def test_missing_sections_give_the_command_to_produce_them(fixture_results, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    lr_sweep = next(fixture_results.glob("*-lr-sweep-*.parquet"))
    shutil.copy(lr_sweep, results / lr_sweep.name)
    assert main(["--results", str(results), "--out", str(tmp_path / "out"), "--no-run", "--format", "html,tex"]) == 0
    html = (tmp_path / "out" / "report.html").read_text()
    tex = (tmp_path / "out" / "report.tex").read_text()
    assert "No batch-size results in the store yet. To produce them, run:" in html
    assert ("<pre><code>python -m amal.run autoencoder --epochs 10 --batch-size 64 --device auto --results "
            f"{results}</code></pre>") in html
    assert r"\fitwidth{\small\texttt{pytest bench -{}-{}benchmark-{}autosave" in tex  # lines set whole
    assert '<figure id="fig1-lr-sweep">' in html and '<figure id="fig2-batch-loss">' not in html


def exit_code(argv) -> int:
    """main's return code, or the code argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def corrupt_store(fixture_results, tmp_path):
    results = shutil.copytree(fixture_results, tmp_path / "results")
    (results / "20261127T150000Z-lr-sweep-badbad.parquet").write_bytes(b"PAR1 not really parquet")
    return results


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "out-is-a-file", "bad-format", "bad-threads"])
def test_bad_input_exits_2_with_one_line_and_no_report(case, fixture_results, tmp_path, capsys):
    results, out = tmp_path / "results", tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("earlier report")
    args = ["--no-run"]
    if case == "empty":
        results.mkdir()
    elif case == "corrupt":
        results = corrupt_store(fixture_results, tmp_path)
    elif case == "out-is-a-file":
        results, out = fixture_results, tmp_path / "a-file"
        out.write_text("")
    elif case == "bad-format":
        results, args = fixture_results, ["--no-run", "--format", "html,docx"]
    elif case == "bad-threads":
        results, args = fixture_results, ["--no-run", "--threads", "0"]
    assert exit_code(["--results", str(results), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err
    if case == "corrupt":
        assert "20261127T150000Z-lr-sweep-badbad.parquet: unreadable parquet file" in err
    assert (tmp_path / "out" / "report.html").read_text() == "earlier report"
    assert not (tmp_path / "out" / "report.tex").exists()


@pytest.mark.parametrize("no_run", [[], ["--no-run"]])
def test_a_results_path_that_is_a_file_is_named_as_such(tmp_path, capsys, no_run):
    (tmp_path / "results").write_text("")
    assert main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"), *no_run]) == 2
    assert capsys.readouterr().err.endswith(f"results directory {tmp_path / 'results'} is a file, not a folder\n")
    assert not (tmp_path / "out").exists()


def test_a_failed_report_leaves_no_new_folder(tmp_path, capsys):
    out = tmp_path / "new" / "report"
    assert main(["--results", str(tmp_path / "missing"), "--out", str(out), "--no-run"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


@pytest.fixture
def torch_threads():
    """Restores torch's thread count, which --threads changes for the whole process."""
    import torch

    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


@pytest.mark.slow
def test_empty_store_runs_the_registered_quick_campaign_first(tmp_path, torch_threads):
    results, out = tmp_path / "results", tmp_path / "out"
    threads = 1 if torch_threads > 1 else 2  # not torch's count: shows that --threads was applied
    assert main(["--results", str(results), "--out", str(out), "--format", "html", "--quiet",
                 "--threads", str(threads)]) == 0
    df, _ = store.load(results)
    assert "lr-sweep" in set(df["experiment"])
    assert df["num_threads"].unique().tolist() == [threads]
    assert df["tag"].unique().tolist() == ["python -m amal.report --profile quick"]
    html = (out / "report.html").read_text()
    assert '<figure id="fig1-lr-sweep">' in html
    if "autoencoder" in set(df["experiment"]):  # the campaign stored its reconstruction grid, and the report shows it
        grids = df.loc[df["experiment"] == "autoencoder", "recon_png"]
        assert grids.notna().all() and all((results / path).is_file() for path in grids)
        assert '<figure id="fig6c-ae-recon">' in html


@pytest.fixture
def small_campaign(monkeypatch):
    """A quick campaign of a few seconds: one tiny run per experiment."""
    from amal.experiments import autoencoder, batch_size, lr_sweep

    small = {lr_sweep: lr_sweep.LrSweepConfig(lrs=(0.1,), epochs=3),
             batch_size: batch_size.BatchSizeConfig(batch_sizes=(506,), implementations=("fused",), epochs=2,
                                                    seeds=1, decomposition_steps=1),
             autoencoder: autoencoder.AutoencoderConfig(epochs=1, n_train=256, hidden=(16,), device="cpu")}
    for module, cfg in small.items():
        monkeypatch.setitem(module.PROFILES, "quick", cfg)


def test_the_campaign_runs_tiny_models_on_one_thread_and_records_it(tmp_path, small_campaign, torch_threads):
    """Without --threads, lr-sweep and batch-size run on 1 thread (threading only slows their 13-feature linear
    model, and makes its timings noisy), the autoencoder on torch's choice; each run records what it ran with."""
    import torch

    torch.set_num_threads(2)  # torch's choice here, whatever this machine's is: not 1, so the test can tell
    results = tmp_path / "results"
    assert main(["--results", str(results), "--out", str(tmp_path / "out"), "--format", "html", "--quiet"]) == 0
    df, _ = store.load(results)
    assert df.groupby("experiment")["num_threads"].unique().map(list).to_dict() == {
        "lr-sweep": [1], "batch-size": [1], "autoencoder": [2]}
    assert torch.get_num_threads() == 2  # torch's count is given back


@pytest.mark.slow
def test_an_interrupted_campaign_stores_nothing(tmp_path, monkeypatch, capsys):
    """Ctrl-C during the campaign's second experiment: the first one's run is not stored either (a rerun then
    runs the whole campaign instead of reporting a store with sections missing)."""
    from amal.experiments import batch_size

    def interrupted(cfg, progress=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_size, "run", interrupted)
    results = tmp_path / "results"
    assert main(["--results", str(results), "--out", str(tmp_path / "new" / "out"), "--quiet"]) == 130
    assert "interrupted: the report was not updated" in capsys.readouterr().err
    assert not results.exists() and not (tmp_path / "new").exists()  # nothing stored: no folder it made is left


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_a_campaign_cut_short_while_storing_takes_back_the_runs_it_stored(tmp_path, small_campaign, monkeypatch,
                                                                           capsys, failure):
    """Ctrl-C, or a full disk, after the campaign stored its first runs and before its last: those are removed with
    their artifacts (the autoencoder's grid), so that the store is as before, not a campaign with sections missing;
    a run another process stored there meanwhile is not the campaign's to remove."""
    from amal import cli as run_cli

    real_store_run, calls = run_cli.store_run, []

    def store_run(df, experiment, *args, **kwargs):  # cut short once the autoencoder, stored last, was written
        calls.append(experiment)
        stored = real_store_run(df, experiment, *args, **kwargs)
        if experiment == "autoencoder":
            assert (results / stored[0]["recon_png"].iloc[0]).is_file()
            shutil.copy(stored[1], other)  # another process stores a run in the same folder meanwhile
            raise failure(28, "No space left on device") if failure is OSError else failure
        return stored

    monkeypatch.setattr(run_cli, "store_run", store_run)
    results = tmp_path / "results"
    other = results / "20200101T000000Z-autoencoder-000000000.parquet"
    code = main(["--results", str(results), "--out", str(tmp_path / "out"), "--quiet"])
    assert calls == ["lr-sweep", "batch-size", "autoencoder"] and code == (130 if failure is KeyboardInterrupt else 1)
    assert "stored" not in capsys.readouterr().err
    assert [path for path in results.rglob("*") if path.is_file()] == [other]  # the other process's run stays


def test_figures_of_an_earlier_report_that_this_one_lacks_are_removed(fixture_results, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    lr_sweep = next(fixture_results.glob("*-lr-sweep-*.parquet"))
    shutil.copy(lr_sweep, results / lr_sweep.name)
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "fig2-batch-loss.png").write_bytes(b"a figure of other runs")
    (out / "figures" / "notes.txt").write_text("not ours")
    # HTML only: the report.tex already there may still use the other figures, so they stay
    assert main(["--results", str(results), "--out", str(out), "--no-run", "--format", "html"]) == 0
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["fig1-lr-sweep.png", "fig2-batch-loss.png",
                                                                    "notes.txt"]
    assert main(["--results", str(results), "--out", str(out), "--no-run", "--format", "html,tex"]) == 0
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["fig1-lr-sweep.png", "notes.txt"]


def test_help_says_which_runs_a_report_shows(capsys):
    """--help names the rule (newest run per configuration, a section's runs share its newest run's settings) and,
    per experiment, exactly the settings the report compares by."""
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the newest run of each configuration" in text
    assert "A section shows only runs made with the settings of its newest run" in text
    parts = re.split(r"\b(lr-sweep|batch-size|autoencoder|bench) ", text.split("Runs of a section share:", 1)[1])
    listed = {name: block.split(" (")[0].strip().split(", ") for name, block in
              zip(parts[1::2], parts[2::2], strict=True)}
    assert listed == {name: [column.replace("_", " ") for column in settings] for name, settings in (
        ("lr-sweep", select.LR_SWEEP_SETTINGS), ("batch-size", select.BATCH_SETTINGS),
        ("autoencoder", select.AUTOENCODER_SETTINGS), ("bench", select.BENCH_SETTINGS))}


def page_text(path: Path) -> str:
    """An HTML page's text, tags dropped, entities decoded, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", path.read_text())).split())


def test_tag_reports_only_the_runs_it_names(fixture_results, tmp_path):
    out = tmp_path / "out"
    assert main(["--results", str(fixture_results), "--out", str(out), "--no-run", "--format", "html",
                 "--tag", "synthetic fixture"]) == 0
    text = page_text(out / "report.html")
    assert f"1 run, 360 rows from {fixture_results} (tagged 'synthetic fixture'; 4 other runs stored)" in text
    assert f"Regenerate with python -m amal.report --results {fixture_results} --tag 'synthetic fixture'" in text
    assert sorted(p.stem for p in (out / "figures").iterdir()) == ["fig2-batch-loss", "fig3-batch-time",
                                                                    "fig4-time-to-target", "fig5-overhead"]
    # a missing section's command stores a run this report will show; pytest bench's runs are untagged
    assert ("No lr-sweep results tagged 'synthetic fixture' in the store. To produce them, run: python -m amal.run "
            f"lr-sweep --results {fixture_results} --tag 'synthetic fixture'") in text
    assert ("No bench results tagged 'synthetic fixture' in the store. To produce them, run (it stores them "
            "untagged: add --tag '' to this report's command to show them): pytest bench --benchmark-autosave "
            f"--results {fixture_results} ") in text
    assert main(["--results", str(fixture_results), "--out", str(out), "--no-run", "--format", "html",
                 "--tag", ""]) == 0  # the untagged runs: all but the batch-size run
    text = page_text(out / "report.html")
    assert "4 runs, " in text and "(tagged ''; 1 other run stored)" in text
    assert "No batch-size results tagged '' in the store" in text and "No lr-sweep results" not in text


def test_tag_that_no_run_carries_is_refused_in_one_line(fixture_results, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--results", str(fixture_results), "--out", str(out), "--no-run", "--tag", "lab 2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is tagged 'lab 2'; its tags: '', 'synthetic fixture'" in err
    assert not out.exists()


def test_a_campaign_run_with_tag_stores_its_runs_with_that_tag(tmp_path, small_campaign, torch_threads):
    results = tmp_path / "results"
    assert main(["--results", str(results), "--out", str(tmp_path / "out"), "--format", "html", "--quiet",
                 "--tag", "lab 2"]) == 0
    df, _ = store.load(results)
    assert set(df["experiment"]) == {"lr-sweep", "batch-size", "autoencoder"}
    assert df["tag"].unique().tolist() == ["lab 2"]


def test_a_full_disk_leaves_the_earlier_report_whole(fixture_results, tmp_path):
    """No space for report.html (a file size limit makes the kernel refuse the write, EFBIG, as a full disk does with
    ENOSPC): one line, exit 1, and not one figure of the earlier report replaced, no temp file left."""
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    earlier = {"report.html": "earlier html", "report.tex": "earlier tex", "figures/fig1-lr-sweep.png": "earlier"}
    for name, text in earlier.items():
        (out / name).write_text(text)
    limited = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "  # EFBIG, not a kill
               "resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000)); from amal.report.cli import main; "
               "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", limited, "--results", str(fixture_results), "--out", str(out),
                           "--no-run", "--format", "html,tex"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"python -m amal.report: error: File too large: {out / 'report.html'}; the report was not " \
                          "updated\n"
    assert {name: (out / name).read_text() for name in earlier} == earlier
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(["figures", *earlier])



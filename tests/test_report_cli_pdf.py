"""The PDF `python -m amal.report` writes: typeset by a real TeX engine and read back with poppler's tools."""

import re
import shutil
import subprocess
import unicodedata

import pandas as pd
import pytest

from amal import store
from amal.report.cli import main

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None and shutil.which("latexmk") is None,
                               reason="no TeX engine (pdflatex/latexmk) on the PATH; CI installs texlive")


@needs_tex
def test_pdflatex_compiles_the_report(nasty_store, tmp_path):
    (tmp_path / "report.log").write_text("the log of an earlier failed build")
    assert main(["--results", str(nasty_store), "--out", str(tmp_path), "--no-run", "--format", "tex,pdf"]) == 0
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    assert not (tmp_path / "report.log").exists()
    assert not (tmp_path / "report.html").exists()
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "report.pdf"), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "<script>console.error('injected')</script> 50% of $5 & #1 {a_b}" in text
        assert "Environment of the runs" in text  # the whole document was typeset, up to its last section
    if shutil.which("pdfinfo"):
        info = subprocess.run(["pdfinfo", str(tmp_path / "report.pdf")], capture_output=True, text=True,
                              check=True).stdout
        assert "Title:           amal: loss and wall-clock time of PyTorch training" in info


@needs_tex
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler's pdftotext")
def test_greek_tags_are_set_in_the_pdf_and_other_scripts_are_named(fixture_results, tmp_path, capsys):
    """pdflatex (T1, lmodern) has no glyph beyond Latin-1: the 24 Greek letters are set as math, anything else
    (archaic Greek ϝ and ͱ included: no command for them without more packages) is '?' and said so on stderr."""
    results = shutil.copytree(fixture_results, tmp_path / "results")
    bench = pd.read_parquet(results / "20261127T130000Z-bench-7c8d9e.parquet")
    store.save(bench.assign(run_id="20261127T140000Z-bench-999999", tag="αβ_Λ Ως 实验 ϝͱ"), results)
    assert main(["--results", str(results), "--out", str(tmp_path / "out"), "--no-run", "--format", "tex,pdf"]) == 0
    assert ("report.tex: 实 验 ϝ ͱ cannot be set by pdflatex and are written '?' (report.html keeps them)"
            in capsys.readouterr().err)
    assert r"$\alpha$$\beta$\_$\Lambda$ $\Omega$$\varsigma$ ?? ??" in (tmp_path / "out" / "report.tex").read_text()
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(tmp_path / "out" / "report.pdf"), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "αβ_Λ Ως ?? ??" in unicodedata.normalize("NFKC", text)  # (its Omega comes out as the ohm sign)


def test_pdf_floats_stay_in_their_section(fixture_results, tmp_path):
    """Figures and tables float to fill the pages, but each is set after its section's heading and before the next
    one (the template's \\floatbarrier)."""
    from amal.report.context import build_context
    from amal.store import load

    assert main(["--results", str(fixture_results), "--out", str(tmp_path), "--no-run", "--format", "pdf"]) == 0
    text = subprocess.run(["pdftotext", str(tmp_path / "report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    context = build_context(load(fixture_results)[0], str(fixture_results))
    headings = [text.index(s["title"][:30]) for s in context["sections"]] + [text.index("Environment of the runs")]
    assert headings == sorted(headings)
    counts = {"Figure": 0, "Table": 0}
    for index, section in enumerate(context["sections"]):
        for kind, items in (("Figure", section["figures"]), ("Table", section["tables"])):
            for _ in items:
                counts[kind] += 1
                place = text.index(f"{kind} {counts[kind]}:")
                assert headings[index] < place < headings[index + 1], (kind, counts[kind], section["id"])


def test_pdf_is_skipped_with_a_message_without_a_tex_engine(fixture_results, tmp_path, monkeypatch, capsys):
    """By default (every format) the PDF is skipped with a line; asked for by name, its absence is an error, before
    any work and with nothing written (it exited 0 having written no report at all for --format pdf)."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["--results", str(fixture_results), "--out", str(tmp_path / "out"), "--no-run"]) == 0
    assert "report.pdf skipped: no TeX engine (latexmk or pdflatex) on the PATH" in capsys.readouterr().err
    assert (tmp_path / "out" / "report.html").exists() and not (tmp_path / "out" / "report.pdf").exists()
    for chosen in ("pdf", "html,pdf"):
        assert main(["--results", str(fixture_results), "--out", str(tmp_path / chosen), "--no-run",
                     "--format", chosen]) == 2
        assert capsys.readouterr().err == ("python -m amal.report: error: --format pdf needs a TeX engine (latexmk "
                                           "or pdflatex) on the PATH; none found\n")
        assert not (tmp_path / chosen).exists()


def test_a_failing_tex_build_leaves_the_earlier_report_as_it_was(fixture_results, tmp_path, monkeypatch, capsys):
    """A TeX engine that fails without writing a log: one line, exit 1, no file of the earlier report replaced."""
    engines = tmp_path / "bin"
    engines.mkdir()
    (engines / "pdflatex").write_text("#!/bin/sh\necho '! Emergency stop.'\nexit 1\n")
    (engines / "pdflatex").chmod(0o755)
    monkeypatch.setenv("PATH", str(engines))
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    earlier = {"report.html": "earlier html", "report.tex": "earlier tex", "report.pdf": "earlier pdf",
               "figures/fig1-lr-sweep.png": "earlier figure"}
    for name, text in earlier.items():
        (out / name).write_text(text)
    assert main(["--results", str(fixture_results), "--out", str(out), "--no-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pdflatex failed (! Emergency stop.); no log written" in err
    assert {name: (out / name).read_text() for name in earlier} == earlier
    assert sorted(p.name for p in out.iterdir()) == ["figures", "report.html", "report.pdf", "report.tex"]


@needs_tex
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler's pdftotext")
@pytest.mark.parametrize("tagged", [False, True])
def test_no_text_runs_into_the_pdfs_right_margin(nasty_store, nasty_tag, tmp_path, tagged):
    """A long results path cut the header's command at the page edge, and a finding naming
    batch-size/dataloader/bs16/cpu ran 4 pt past it: commands go on lines of their own, shrunk where one word is
    wider than the text, and text may break after a slash."""
    results = shutil.copytree(nasty_store, tmp_path / "home" / "student" / "courses" / "deep-learning"
                              / "amal-practicals" / "results")
    out = tmp_path / "out"
    assert main(["--results", str(results), "--out", str(out), "--no-run", "--format", "pdf",
                 *(["--tag", nasty_tag] if tagged else [])]) == 0
    boxes = subprocess.run(["pdftotext", "-bbox", str(out / "report.pdf"), "-"], capture_output=True, text=True,
                           check=True).stdout
    width = float(re.search(r'<page width="([\d.]+)"', boxes).group(1))
    margin = 2.2 / 2.54 * 72  # report.tex: margin=2.2cm
    past = [(float(x), word) for x, word in re.findall(r'xMax="([\d.]+)"[^>]*>([^<]*)</word>', boxes)
            if float(x) > width - margin + 1]
    assert past == []
    text = subprocess.run(["pdftotext", str(out / "report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "amal-practicals/results" in text  # the whole path is there


@needs_tex
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler's pdftotext")
def test_thirty_gpu_commands_all_reach_the_pdf(fixture_results, tmp_path):
    """CPU runs of 30 autoencoder configurations and none on a GPU: the commands that would measure them were set in
    one box, which cannot break across pages; 19 of the 30 were printed, the rest ran off the page."""
    results = shutil.copytree(fixture_results, tmp_path / "results")
    ae = store.load(results)[0]
    ae = ae[(ae["experiment"] == "autoencoder") & (ae["device"] == "cpu")]
    for path in results.glob("*autoencoder*.parquet"):
        path.unlink()
    base = ae[ae["batch_size"] == ae["batch_size"].min()]
    for hidden in ("16", "32", "64", "128", "256"):
        for batch_size in (16, 32, 64, 128, 256, 512):
            run_id = f"20261127T110000Z-autoencoder-{hidden}x{batch_size}"
            store.save(base.assign(hidden=hidden, batch_size=batch_size, run_id=run_id), results)
    out = tmp_path / "out"
    assert main(["--results", str(results), "--out", str(out), "--no-run", "--format", "pdf"]) == 0
    text = subprocess.run(["pdftotext", str(out / "report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert text.count("python -m amal.run autoencoder --device cuda") == 30

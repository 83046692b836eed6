"""`python -m amal.report`: Figures, report.html, report.tex and report.pdf from the runs in the results store (which
of them: see below).

When the store holds no runs (and without --no-run) it first runs each registered experiment's quick (or --profile
full) campaign and stores it. A corrupt parquet file in the store stops the report (one line naming it, exit 2):
a report silently missing runs would mislead. Every output is written to a temp file and renamed.
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from amal import files, store
from amal.errors import Parser, UsageError, check_interrupted, folder, help_paragraphs, sigterm_as_interrupt
from amal.report.format import plural

FORMATS = ("html", "tex", "pdf")
PROG = "python -m amal.report"
# written out rather than built from amal.report.select (its scipy import would slow --help down); a test keeps the
# lists equal to select's *_SETTINGS
WHICH_RUNS = """\
which runs a report shows (of those --tag chooses):
  the newest run of each configuration (a configuration run again replaces
  its older run; a run all of whose trainings diverged counts as older than
  any that did not). A section shows only runs made with the settings of its
  newest run; a note under it counts the others and names the settings they
  differ in. Runs of a section share:
    lr-sweep     normalize, epochs, test size, seed, data source, num
                 threads, host
    batch-size   device, lr, normalize, test size, data source, epochs,
                 num threads, host, target loss
    autoencoder  lr, data source, n train, epochs, num workers (device, host
                 and threads may differ: CPU and GPU may be two machines;
                 a device's runs share the machine and threads of its
                 newest run)
    bench        profile, num threads, host, tag
"""


def formats(text: str) -> tuple[str, ...]:
    """'html,tex' -> ('html', 'tex'); unknown formats are refused."""
    chosen = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    unknown = [item for item in chosen if item not in FORMATS]
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"choose among {','.join(FORMATS)}, got {text!r}")
    return chosen


def build_parser() -> Parser:
    description = help_paragraphs(__doc__.split(":", 1)[1])  # the epilog's lines stay as written
    parser = Parser(prog=PROG, description=description, epilog=WHICH_RUNS,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=folder, default=None, metavar="DIR",
                        help="results directory (default: $AMAL_RESULTS or ./results)")
    parser.add_argument("--out", type=folder, default="reports", metavar="DIR",
                        help="where the report goes (default: %(default)s)")
    parser.add_argument("--profile", choices=("quick", "full"), default="quick",
                        help="campaign to run when the store is empty (default: %(default)s)")
    parser.add_argument("--no-run", action="store_true", help="never run experiments; report only what is stored")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads of the campaign run on an empty store (default: 1 for lr-sweep and "
                             "batch-size, whose tiny models only lose time to threading, torch's choice for the "
                             "autoencoder; recorded in the results)")
    parser.add_argument("--tag", action="append", default=None, metavar="TEXT",
                        help="report only the runs stored with this tag (python -m amal.run --tag; repeat for "
                             "several; '' for untagged runs, such as pytest bench's); the campaign's runs carry "
                             f"'{PROG} --profile quick' (or full), or the first --tag when it ran them. "
                             "Default: every run")
    parser.add_argument("--format", type=formats, default=None, metavar="FMT[,FMT...]",
                        help="any of html,tex,pdf (default: all, pdf where latexmk or pdflatex is on the PATH; pdf "
                             "asked for by name without one is an error)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def check_out_dir(out: str | Path) -> Path:
    """Create the output directory (and figures/) and prove it is writable; UsageError otherwise."""
    out = files.check_writable(out, "output directory")  # first: a file given as --out is named as such
    files.check_writable(out / "figures", "output directory")
    return out


def run_campaign(results: Path, profile: str, quiet: bool, threads: int | None = None, tag: str | None = None) -> None:
    """Run PROFILES[profile] of every registered experiment and store each run (the embedded default). `threads`:
    torch's CPU threads for every experiment; else each experiment's CAMPAIGN_THREADS (None: torch's choice).
    `tag`: stored with every row (default: the command that ran the campaign)."""
    from amal.cli import progress_bar, store_run
    from amal.environment import run_start
    from amal.experiments import EXPERIMENTS
    from amal.timing import set_threads

    files.check_writable(results)
    print(f"{results} holds no runs: running the {profile} campaign ({', '.join(EXPERIMENTS)}) first",
          file=sys.stderr)
    default = set_threads(None)
    done = []  # stored together at the end: an interrupted campaign leaves the store empty, not half filled
    try:
        for name, experiment in EXPERIMENTS.items():
            count = set_threads(threads or getattr(experiment, "CAMPAIGN_THREADS", None) or default)
            configs = experiment.PROFILES[profile]
            for cfg in configs if isinstance(configs, list | tuple) else [configs]:
                started = run_start()
                with progress_bar(experiment.units(cfg), name, quiet) as progress:
                    done.append((name, experiment.run(cfg, progress=progress), started, count))
        check_interrupted()  # one that Python dropped (in os.fork's hooks): the campaign is not stored
        before, stored = set(store.run_files(results)), []
        ours = tuple(f"{started:%Y%m%dT%H%M%SZ}-{name}-" for name, _, started, _ in done)  # how their ids begin
        try:  # all or nothing: an interrupt or a full disk between two runs takes back those already stored
            for name, df, started, count in done:
                set_threads(count)  # the run's environment columns record the threads it ran with
                stored.append(store_run(df, name, f"{PROG} --profile {profile}" if tag is None else tag, results,
                                        started))
        except BaseException:  # (also one stored as the interrupt came, before `stored` had it; no other's run)
            for path in set(store.run_files(results)) - before:
                if path.stem.startswith(ours):
                    path.unlink(missing_ok=True)
                    store.remove_artifacts(results, path.stem)
            raise
        for df, path in stored:
            print(f"stored {plural(len(df), 'row')} in {path}", file=sys.stderr)
    finally:
        set_threads(default)


def load_results(results: Path):
    """Every run of the store as one DataFrame; UsageError if there is none or a file is corrupt."""
    if not results.is_dir():
        raise UsageError(f"results directory {results} does not exist (run without --no-run to create it)")
    try:
        df, _ = store.load(results, skip_bad=False)
    except UsageError as exc:
        raise UsageError(f"{exc}; move or delete that file, then rerun") from exc
    if df.empty:
        raise UsageError(f"no runs in {results}: run without --no-run, or python -m amal.run EXPERIMENT first")
    return df


def stored_images(context: dict, results: Path) -> dict[str, tuple[bytes, str]]:
    """Images the runs stored themselves (reconstruction grids) with their figure's title, read from the store;
    missing ones are left out."""
    images = {}
    for section in context["sections"]:
        for fig in section["figures"]:
            path = results / fig["source"] if fig["source"] else None
            if path is not None and path.is_file():
                images[fig["key"]] = (path.read_bytes(), fig["title"])
    return images


def tex_engine() -> list[str] | None:
    """The command that turns report.tex into report.pdf, or None when no TeX engine is on the PATH."""
    if shutil.which("latexmk"):
        return ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "report.tex"]
    if shutil.which("pdflatex"):
        return ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "report.tex"]
    return None


def build_pdf(tex: str, images: dict[str, bytes], out: Path, engine: list[str], latest: str) -> bytes:
    """report.pdf's bytes, compiled in a hidden build folder inside `out` (its log copied to `out` if it fails)."""
    env = {**os.environ, "FORCE_SOURCE_DATE": "1"}  # the PDF's dates are the latest run's, not the build's
    if latest:
        env["SOURCE_DATE_EPOCH"] = str(int(datetime.fromisoformat(latest.replace("Z", "+00:00")).timestamp()))
    with tempfile.TemporaryDirectory(prefix=".pdf-build-", dir=out) as build:
        build = Path(build)
        (build / "figures").mkdir()
        (build / "report.tex").write_text(tex, encoding="utf-8")
        for key, png in images.items():
            (build / "figures" / f"{key}.png").write_bytes(png)
        for _ in range(1 if engine[0] == "latexmk" else 2):  # pdflatex twice: hyperref's outlines need a rerun
            done = subprocess.run(engine, cwd=build, capture_output=True, text=True, timeout=300, env=env)
            if done.returncode != 0:
                errors = [line for line in done.stdout.splitlines() if line.startswith("!") or ":error:" in line
                          or ".tex:" in line]
                where = "no log written"
                if (build / "report.log").is_file():
                    shutil.copyfile(build / "report.log", out / "report.log")
                    where = f"log in {out / 'report.log'}"
                raise RuntimeError(f"{engine[0]} failed ({errors[0] if errors else 'see the log'}); {where}; "
                                   "the earlier report was left as it was")
        return (build / "report.pdf").read_bytes()


def regenerate_command(results: Path, tags: list[str] | None = None) -> str:
    """The command line that writes this report's content again, with the --results it read (always: the default
    depends on $AMAL_RESULTS) and its --tag choice; --out and --format change where and in which formats, not what
    the report says (so a report written elsewhere is still byte for byte the same)."""
    return f"{PROG} --results {shlex.quote(str(results))}" + "".join(f" --tag {shlex.quote(tag)}" for tag in tags or [])


def select_tags(df, tags: list[str] | None, results: Path):
    """The rows of the runs tagged one of `tags` (all rows when None); UsageError naming the stored tags if none is."""
    from amal.report.select import tagged

    shown = tagged(df, tags)
    if shown.empty:
        stored = sorted(df["tag"].fillna("").unique())
        listed = ", ".join(repr(tag) for tag in stored[:8])
        listed += f" and {len(stored) - 8} more" if len(stored) > 8 else ""
        raise UsageError(f"no run in {results} is tagged {' or '.join(repr(tag) for tag in tags)}; its tags: {listed}")
    return shown


def make_report(df, results: Path, out: Path, chosen: tuple[str, ...], command: str = PROG,
                tags: list[str] | None = None, stored_runs: int | None = None) -> list[Path]:
    """Render everything in memory, then write figures, report.tex, report.html (each atomically), then the PDF.
    `df`: the runs to show (those tagged one of `tags`, of `stored_runs` runs in the store)."""
    from amal.report import figures, render
    from amal.report.context import build_context

    context = build_context(df, str(results), command, tags, stored_runs)
    keys = [fig["key"] for section in context["sections"] for fig in section["figures"]]
    stored = stored_images(context, results)
    images = {**figures.render(df, keys), **figures.render_grids(stored)}
    for key in stored.keys() - images.keys():
        print(f"{key}: the stored image is not a readable PNG; the report says so in its place", file=sys.stderr)
    for fig in (fig for section in context["sections"] for fig in section["figures"]):
        if fig["source"] and fig["key"] not in stored:
            print(f"{fig['key']}: the stored image {results / fig['source']} is missing; the report says so in its "
                  "place", file=sys.stderr)
    images = {key: images[key] for key in keys if key in images}  # report order
    html = render.render_html(context, images) if "html" in chosen else None
    tex = render.render_tex(context, images) if {"tex", "pdf"} & set(chosen) else None
    unset = render.unset_characters(context) if tex is not None else []
    if unset:  # (a tag's, typically)
        print(f"report.tex: {' '.join(unset[:8])}{' ...' if len(unset) > 8 else ''} cannot be set by pdflatex and "
              "are written '?' (report.html keeps them)", file=sys.stderr)
    pdf = None
    if "pdf" in chosen:  # first: a failing TeX build leaves every file of the earlier report as it was
        engine = tex_engine()
        if engine is None:
            print("report.pdf skipped: no TeX engine (latexmk or pdflatex) on the PATH", file=sys.stderr)
        else:
            pdf = build_pdf(tex, images, out, engine, df["timestamp_utc"].max())
    # an earlier report.tex not rewritten here includes figures/: they stay its own (the HTML embeds its images)
    kept = "tex" not in chosen and (out / "report.tex").is_file()
    outputs = {} if kept else {out / "figures" / f"{key}.png": png for key, png in images.items()}
    if "tex" in chosen:
        outputs[out / "report.tex"] = tex.encode("utf-8")
    if html is not None:
        outputs[out / "report.html"] = html.encode("utf-8")
    if pdf is not None:
        outputs[out / "report.pdf"] = pdf
    written = files.replace_all(outputs)  # all or none: a full disk leaves the earlier report whole
    for stale in (out / "figures").glob("fig*.png") if "tex" in chosen else []:  # an earlier report's figures;
        if stale.stem not in images:  # kept when report.tex is not rewritten: the one there may still use them
            stale.unlink()
    if pdf is not None:
        (out / "report.log").unlink(missing_ok=True)  # the log of an earlier failed build no longer applies
    return written


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    results = Path(args.results or store.default_results_dir())
    new_folders = sorted({*files.missing_folders(Path(args.out) / "figures"), *files.missing_folders(results)},
                         key=lambda folder: len(folder.parts), reverse=True)  # innermost first
    code = 1
    try:
        with sigterm_as_interrupt():
            code = report(args, results)
    finally:  # failed, or crashed: no empty folder left behind
        if code != 0:
            files.remove_empty(new_folders)
    return code


def report(args, results: Path) -> int:
    try:
        if args.threads is not None and args.threads < 1:
            raise UsageError(f"threads must be at least 1, got {args.threads}")
        if results.exists() and not results.is_dir():
            raise UsageError(f"results directory {results} is a file, not a folder")
        if args.format and "pdf" in args.format and tex_engine() is None:  # asked for: refused before any work
            raise UsageError("--format pdf needs a TeX engine (latexmk or pdflatex) on the PATH; none found")
        args.format = args.format or FORMATS
        out = check_out_dir(args.out)
        if not args.no_run and not store.run_files(results):
            run_campaign(results, args.profile, args.quiet, args.threads, args.tag[0] if args.tag else None)
        df = load_results(results)
        shown = select_tags(df, args.tag, results)
        written = make_report(shown, results, out, args.format, regenerate_command(results, args.tag), args.tag,
                              df["run_id"].nunique())
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a file system gone read-only: no file of the report was replaced
        print(f"{PROG}: error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}; the report was "
              "not updated", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the report was not updated", file=sys.stderr)
        return 130
    for path in written:
        if path.name.startswith("report."):
            print(f"wrote {path}")
    for earlier in (out / f"report.{fmt}" for fmt in FORMATS if fmt not in args.format):
        if earlier.is_file():
            uses = "; figures/, which it uses, left as they were too" if earlier.suffix == ".tex" else ""
            print(f"{earlier.name} there is an earlier report's (not rewritten: --format {','.join(args.format)})"
                  f"{uses}", file=sys.stderr)
    return 0

import shlex
import subprocess

import pytest

from amal.report import render
from amal.report.context import build_context

NASTY = r"<script>alert('x')</script> 50% of $5 & #1 {a_b} ~x^2 \end{document}"


def test_tex_escape_of_every_special_character():
    assert render.tex_escape(r"_ & % $ # { } ~ ^ \ ") == (
        r"\_ \& \% \$ \# \{ \} \textasciitilde{} \textasciicircum{} \textbackslash{} ")


def test_tex_escape_of_report_symbols_and_unknown_characters():
    assert render.tex_escape("19.7× ± λ_max ≤ 4 µs – é ✓ --x 'q'\n") == (
        r"19.7$\times$ $\pm$ $\lambda$\_max $\leq$ 4 $\mu$s -- é ? -{}-{}x \textquotesingle{}q\textquotesingle{} ")


def test_control_characters_are_spaces_in_latex():
    """C1 controls (U+0080-U+009F, e.g. NEL from a Windows-1252 tag read as Latin-1) stopped pdflatex like C0 ones."""
    assert render.tex_escape("a\x00b\x1fc\x7fd\x85e\x9ff\xa0g") == "a b c d e f\xa0g"
    assert render.unset_characters({"tag": "week\x85two"}) == []


def test_tex_template_escapes_every_value():
    env = render.tex_environment()
    template = env.from_string(r"\textbf{\VAR{tag}} \BLOCK{for x in items}[\VAR{x}]\BLOCK{endfor}")
    assert template.render(tag="a_b & c", items=["%", "{}"]) == r"\textbf{a\_b \& c} [\%][\{\}]"


def test_tex_path_accepts_only_report_figure_paths():
    assert render.tex_path("figures/fig1-lr-sweep.png") == "figures/fig1-lr-sweep.png"
    for bad in ("../x.png", "figures/a b.png", "/etc/passwd", "a}\\input{x"):
        with pytest.raises(ValueError):
            render.tex_path(bad)


def test_html_escapes_user_text(fixture_df):
    df = fixture_df.copy()
    df.loc[df["experiment"] == "bench", "tag"] = NASTY
    html = render.render_html(build_context(df, "r"), {})
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; 50% of $5 &amp; #1 {a_b}" in html


def test_html_right_aligns_the_numbers_of_every_table(context):
    """The environment table's counts (CPUs, threads) line up as the sections' numbers do."""
    html = render.render_html(context, {})
    environment = html[html.index('<section id="environment">'):]
    assert '<th class="r">CPUs</th><th class="r">threads</th>' in environment
    assert '<td class="r">16</td>' in environment and "<th>host</th>" in environment


def test_tex_escapes_user_text(fixture_df):
    df = fixture_df.copy()
    df.loc[df["experiment"] == "bench", "tag"] = NASTY
    tex = render.render_tex(build_context(df, "r"), {})
    assert (r"\textless{}script\textgreater{}alert(\textquotesingle{}x\textquotesingle{})"
            r"\textless{}/\allowbreak{}script\textgreater{} 50\% of \$5 \& \#1 "
            r"\{a\_b\} \textasciitilde{}x\textasciicircum{}2 \textbackslash{}end\{document\}") in tex
    assert tex.count(r"\end{document}") == 1


def test_missing_figure_is_named_not_fatal(fixture_df):
    context = build_context(fixture_df, "r")
    html = render.render_html(context, {})
    assert "Image _artifacts/20261127T120000Z-autoencoder-4f5a6b/recon.png is missing or not a readable PNG." in html
    assert "<img" not in html


def test_templates_found_in_a_checkout_and_in_an_installed_package(tmp_path):
    from amal.report.render import templates_dir

    package = tmp_path / "site" / "amal"
    (package / "_templates").mkdir(parents=True)
    assert templates_dir(package) == package / "_templates"  # installed: the copy inside the package
    (tmp_path / "site" / "templates").mkdir()
    (tmp_path / "site" / "templates" / "report.html.j2").write_text("")
    assert templates_dir(package) == tmp_path / "site" / "templates"  # checkout: the top-level folder


def test_commands_to_run_are_set_as_code_one_per_line(fixture_df):
    """The GPU commands of a CPU-only store: code lines (a break inside '--loss' made a copied command wrong)."""
    cpu_only = fixture_df[~((fixture_df["experiment"] == "autoencoder") & (fixture_df["device"] == "cuda"))]
    context = build_context(cpu_only, "r")
    html = render.render_html(context, {})
    assert ("shown):</p><pre><code>python -m amal.run autoencoder --device cuda --epochs 3 --batch-size 64 "
            "--hidden 256,64 --loss bce --n-train 4000 --num-workers 0 --results r\npython -m amal.run") in html
    tex = render.render_tex(context, {})
    # in the PDF each command is cut between words into lines that cannot wrap, each ending in a continuation, set
    # below the note's box (a box cannot break across pages), a paragraph a line
    assert (r"shown):}" "\n" r"{\setlength{\parskip}{0pt}\fitwidth{\small\texttt{python -{}m amal.run autoencoder "
            r"-{}-{}device cuda -{}-{}epochs 3 -{}-{}batch-{}size 64 \textbackslash{}}}\par\fitwidth{\small\texttt{"
            r"-{}-{}hidden 256,64") in tex


def test_shell_lines_cut_between_words_and_keep_quoted_words_whole():
    command = "python -m amal.run autoencoder --epochs 4 --tag 'a tag with spaces' --results /tmp/some/results"
    lines = render.shell_lines(command, width=40)
    assert lines == ["python -m amal.run autoencoder \\", "--epochs 4 --tag 'a tag with spaces' \\",
                     "--results /tmp/some/results"]  # an option and its value on one line
    assert all(len(line) <= 40 for line in lines)
    joined = subprocess.run(["bash", "-c", 'printf "%s\\n" ' + "\n".join(lines)], capture_output=True, text=True)
    assert joined.stdout.splitlines() == shlex.split(command)  # the shell reads the lines as the one command
    assert render.shell_lines("short") == ["short"]

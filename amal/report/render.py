"""Jinja2 environments for the two templates in templates/: HTML (autoescape on) and LaTeX (escape by default).

In the LaTeX environment every `\\VAR{...}` goes through `tex_escape` (set as `finalize`), so user text such as a run's
tag can never inject LaTeX; the only way out is `|tex_path`, for file names made by the report itself.
"""

import base64
import re
from pathlib import Path

import jinja2

PACKAGE = Path(__file__).resolve().parents[1]


def templates_dir(package: Path = PACKAGE) -> Path:
    """templates/ beside the package in a source checkout (editable install), else the copy installed inside it."""
    source = package.parent / "templates"
    return source if (source / "report.html.j2").is_file() else package / "_templates"


TEMPLATES = templates_dir()

TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", '"': r"\textquotedbl{}", "'": r"\textquotesingle{}", "`": r"\textasciigrave{}",
    "-": "-{}",  # no -- or --- ligature: user text keeps its hyphens
    # characters the report's own text uses that pdflatex's utf8 input does not know
    "×": r"$\times$", "±": r"$\pm$", "λ": r"$\lambda$", "µ": r"$\mu$", "μ": r"$\mu$", "≤": r"$\leq$",
    "≥": r"$\geq$", "≈": r"$\approx$", "·": r"$\cdot$", "−": "-", "–": "--", "—": "---", "…": r"\dots{}",
    "²": r"\textsuperscript{2}", "⁶": r"\textsuperscript{6}", "→": r"$\to$", "‖": r"$\|$",
}


class Tex(str):
    """Text that is already LaTeX (passes `finalize` unescaped)."""


def tex_char(char: str) -> str:
    """One character as LaTeX: specials escaped, Latin-1 as is, control characters as a space, anything else '?'."""
    if char in TEX_SPECIAL:
        return TEX_SPECIAL[char]
    if char == "\n" or char == "\t" or ord(char) < 32 or ord(char) == 127:
        return " "
    return char if ord(char) < 256 else "?"  # pdflatex has no glyph for it in T1 / lmodern


def tex_escape(value) -> str:
    """Any value as LaTeX text: `_ & % $ # { } ~ ^ \\` and friends become their escaped forms."""
    if isinstance(value, Tex):
        return value
    return Tex("".join(tex_char(c) for c in str(value)))


def tex_path(value: str) -> Tex:
    """A relative file path the report made (figures/fig1.png) for \\includegraphics; refuses anything else."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9/.-]*", value) or ".." in value:
        raise ValueError(f"not a safe figure path for LaTeX: {value!r}")
    return Tex(value)


def tex_columns(align: str) -> Tex:
    """A booktabs column spec from the table's alignment letters; a long last column wraps."""
    if not re.fullmatch(r"[lr]+", align):
        raise ValueError(f"bad alignment {align!r}")
    return Tex(align)


def html_environment(templates: Path = TEMPLATES) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(templates), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def tex_environment(templates: Path = TEMPLATES) -> jinja2.Environment:
    """LaTeX-friendly delimiters (\\BLOCK{}, \\VAR{}, \\#{}), since {{ }} and {% %} are common in LaTeX."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates), autoescape=False, undefined=jinja2.StrictUndefined,
        block_start_string=r"\BLOCK{", block_end_string="}", variable_start_string=r"\VAR{",
        variable_end_string="}", comment_start_string=r"\#{", comment_end_string="}",
        line_comment_prefix="%#", trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        finalize=tex_escape)
    env.globals["zip"] = zip
    env.filters["tex_path"] = tex_path
    env.filters["tex_columns"] = tex_columns
    return env


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI, so report.html is one self-contained file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(context: dict, images: dict[str, bytes], templates: Path = TEMPLATES) -> str:
    """report.html: the context laid out by report.html.j2, every image embedded."""
    uris = {key: data_uri(png) for key, png in images.items()}
    return html_environment(templates).get_template("report.html.j2").render(**context, images=uris)


def render_tex(context: dict, images: dict[str, bytes], templates: Path = TEMPLATES) -> str:
    """report.tex: the context laid out by report.tex.j2, figures included from figures/<key>.png."""
    return tex_environment(templates).get_template("report.tex.j2").render(**context, images=set(images))

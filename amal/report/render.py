"""Jinja2 environments for the two templates in templates/: HTML (autoescape on) and LaTeX (escape by default).

In the LaTeX environment every `\\VAR{...}` goes through `tex_escape` (set as `finalize`), so user text such as a run's
tag can never inject LaTeX; the only way out is `|tex_path`, for file names made by the report itself.
"""

import base64
import re
import unicodedata
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
    "/": r"/\allowbreak{}",  # a long name (batch-size/dataloader/bs16/cpu) may break after a slash, not overflow
    # characters the report's own text uses that pdflatex's utf8 input does not know
    "×": r"$\times$", "±": r"$\pm$", "λ": r"$\lambda$", "µ": r"$\mu$", "μ": r"$\mu$", "≤": r"$\leq$",
    "≥": r"$\geq$", "≈": r"$\approx$", "·": r"$\cdot$", "−": "-", "–": "--", "—": "---", "…": r"\dots{}",
    "²": r"\textsuperscript{2}", "⁶": r"\textsuperscript{6}", "→": r"$\to$", "‖": r"$\|$",
}


class Tex(str):
    """Text that is already LaTeX (passes `finalize` unescaped)."""


GREEK_CAPITALS = {"Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega"}
LATIN_LOOKING = {"Alpha": "A", "Beta": "B", "Epsilon": "E", "Zeta": "Z", "Eta": "H", "Iota": "I", "Kappa": "K",
                 "Mu": "M", "Nu": "N", "Omicron": "O", "Rho": "P", "Tau": "T", "Chi": "X"}


def greek(char: str) -> str | None:
    """A Greek letter as LaTeX ('α' -> '$\\alpha$'; a capital LaTeX has no command for as the Latin letter it is
    drawn as: 'Α' -> 'A'); None for any other character."""
    if not "\u0391" <= char <= "\u03c9":  # the 24 letters (archaic ones and variants have no command here)
        return None
    words = unicodedata.name(char, "").split()
    if words == ["GREEK", "SMALL", "LETTER", "FINAL", "SIGMA"]:
        return "$\\varsigma$"
    if len(words) != 4 or words[0] != "GREEK" or words[2] != "LETTER":
        return None
    letter = words[3].capitalize().replace("Lamda", "Lambda")  # (Unicode spells it LAMDA)
    if words[1] == "SMALL":
        return "o" if letter == "Omicron" else f"$\\{letter.lower()}$"
    if words[1] == "CAPITAL":
        return f"$\\{letter}$" if letter in GREEK_CAPITALS else LATIN_LOOKING.get(letter)
    return None


def tex_char(char: str) -> str:
    """One character as LaTeX: specials escaped, Latin-1 as is, Greek letters as math, control characters as a
    space, anything else '?' (pdflatex has no glyph for it in T1 / lmodern)."""
    if char in TEX_SPECIAL:
        return TEX_SPECIAL[char]
    if char == "\n" or char == "\t" or ord(char) < 32 or 127 <= ord(char) < 160:  # C0, DEL and C1 controls
        return " "
    return char if ord(char) < 256 else greek(char) or "?"


def unset_characters(value) -> list[str]:
    """The characters of a context (its strings, in dicts and lists) that report.tex writes as '?', in order."""
    if isinstance(value, dict):
        return list(dict.fromkeys(c for item in value.values() for c in unset_characters(item)))
    if isinstance(value, list | tuple):
        return list(dict.fromkeys(c for item in value for c in unset_characters(item)))
    if isinstance(value, str) and not isinstance(value, Tex):
        return [c for c in dict.fromkeys(value) if tex_char(c) == "?" and c != "?"]
    return []


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


SHELL_WORD = re.compile(r"""(?:'[^']*'|"[^"]*"|\S)+""")  # a shell word, its quoted parts (with spaces) whole


def shell_lines(command: str, width: int = 80) -> list[str]:
    """A shell command cut between words (an option with its value) into lines of at most `width` characters (a
    longer word stays whole), each but the last ending in ` \\`: pasted, the shell reads them as the one command. In
    the PDF a command left to wrap broke at any space, and its first line alone ran with other settings."""
    words, lines = SHELL_WORD.findall(command), [""]
    for i in range(len(words) - 1, 0, -1):  # an option and its value stay on one line
        if words[i - 1].startswith("--") and not words[i].startswith("-"):
            words[i - 1:i + 1] = [f"{words[i - 1]} {words[i]}"]
    for word in words:
        if lines[-1] and len(lines[-1]) + 1 + len(word) + 2 > width:
            lines.append("")
        lines[-1] += (" " if lines[-1] else "") + word
    return [line + " \\" for line in lines[:-1]] + lines[-1:]


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
    env.filters["shell_lines"] = shell_lines
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

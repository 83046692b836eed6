import re
from pathlib import Path

from amal import store

README = (Path(__file__).parents[1] / "README.md").read_text()
CI = (Path(__file__).parents[1] / ".ci" / "run").read_text()


def test_readme_documents_the_schema_as_the_store_defines_it():
    assert store.schema_markdown() in README


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    quick = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in quick.strip().splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].endswith("python -m amal.report")
    install, test = re.fullmatch(r".*pip install (.+?) && (.+)", commands[1]).groups()
    assert f"pip install -q {install}" in CI
    assert test in CI


def test_the_code_layout_names_every_module():
    """A module added (or a split) without its line in the README's layout table leaves a reader to find it."""
    layout = README.split("Code layout", 1)[1].split("\n\n", 2)[1]
    package = Path(__file__).parents[1] / "amal"
    modules = {path.name for path in package.rglob("*.py")} - {"__init__.py", "__main__.py", "run.py"}
    assert modules and not {name for name in modules if f"{name}`" not in layout}

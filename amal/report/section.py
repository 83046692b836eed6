"""The parts of a report section as plain text: a section (or, without results, what is missing and the command that
produces them), its tables and its figures."""

import pandas as pd

HOW_TO = {
    "lr-sweep": "python -m amal.run lr-sweep",
    # the quick campaign's grid (76 s on the 2-core VM); the defaults (1000 epochs, 3 seeds) take 15 times as long
    "batch-size": "python -m amal.run batch-size --batch-size 1,8,64,506 "
                  "--implementation dataloader,tensor,manual,fused --seeds 2 --epochs 100",
    "autoencoder": "python -m amal.run autoencoder --epochs 10 --batch-size 64 --device auto",
    "bench": "pytest bench --benchmark-autosave",
}


def table(caption: str, columns: list[str], rows: list[list[str]], align: str | None = None) -> dict:
    """A table as text: caption, header, rows of cells, and one alignment letter (l/r) per column."""
    return {"caption": caption, "columns": columns, "rows": rows, "align": align or "l" + "r" * (len(columns) - 1)}


def figure(key: str, title: str, caption: str, source: str | None = None) -> dict:
    """A figure: `key` names its PNG (figures/<key>.png); `source` is a stored image to show instead of a plot."""
    return {"key": key, "title": title, "caption": caption, "file": f"figures/{key}.png", "source": source}


def section(key: str, title: str, intro: str, rows: pd.DataFrame, **content) -> dict:
    """A report section; without rows it says what is missing and how to produce it."""
    base = {"id": key, "title": title, "intro": intro, "available": not rows.empty, "how_to": HOW_TO.get(key),
            "findings": [], "tables": [], "figures": [], "notes": [], "settings": "", "commands": None,
            "contended": False}  # contended: a note says other processes slowed some of its times
    if rows.empty:
        base["missing"] = f"No {key} results in the store yet. To produce them, run:"
        return base
    return {**base, **content}

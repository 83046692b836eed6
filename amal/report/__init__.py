"""The report, `python -m amal.report` (cli.py): figures (figures.py and autoencoder_figures.py, styled by
plotting.py), the text they come with (context.py, with regression_sections.py and autoencoder_section.py built of
section.py's parts, notes.py's notes, the rows select.py picks and autoencoder_stats.py's numbers), and the two
templates rendered by render.py."""

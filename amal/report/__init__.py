"""The report: figures (figures.py and autoencoder_figures.py, styled by plotting.py), the text they come with
(context.py, with notes.py's notes, from select.py's numbers), the two templates rendered by render.py, and the command
line (cli.py, `python -m amal.report`)."""

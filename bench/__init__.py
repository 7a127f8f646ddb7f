"""The nemoflow benchmark: W(N) built by nemoflow, Snakemake, plain luigi and doit (``python -m bench``)."""

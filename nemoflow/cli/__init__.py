"""The ``nemoflow`` command line."""

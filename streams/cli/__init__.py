"""The ``smi`` command line."""

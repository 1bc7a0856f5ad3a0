"""Subcommands of the ``clipapro`` CLI, one module each (see :mod:`clipapro.cli`)."""

"""batchlab: how batch size and learning rate shape neural-network training.

A plain package: functions take values and return values. It never imports snakemake and
never reads params.yaml itself; the workflow's adapters in workflow/scripts/ do the I/O.
"""

__version__ = "0.1.0"


class BatchlabError(Exception):
    """An error a user can act on; the command-line edge prints it as one line."""


class ConfigError(BatchlabError):
    """A config, a cell name or a recipe that is not understood: the message names the key."""

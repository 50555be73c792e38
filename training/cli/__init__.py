"""The ``precision-gym`` command line (``python -m training.cli``).

:mod:`training.cli.main` builds the parser from the command modules (each registers its
subcommand with ``add_parser(subparsers)``); :mod:`training.cli.common` holds what they share.
Nothing in the library imports :mod:`training.cli.main`. This package module stays light: it
re-exports the shared helpers under their old ``training.cli`` names and imports no command.
"""

from __future__ import annotations

from training.cli.common import (
    SIMULATED_BANNER,
    add_workers_args,
    env_kwarg_names,
    load_policy,
    make_env,
)

__all__ = ["SIMULATED_BANNER", "add_workers_args", "env_kwarg_names", "load_policy", "make_env"]

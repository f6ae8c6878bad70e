"""The `competition` command line.

Thin: parse, call a service, print. Start-up imports only Typer and this package's errors;
each command imports what it uses, so `competition --help` loads no numpy, MLflow or
TensorFlow, and scoring a CSV loads no mesh or deep-learning library.

One module per area (competitions, scoring, submitting, training, serving, people, rules);
each adds its commands to `root.app` when imported here. A task adds its own commands under
its name through the entry point group `competition.commands` (`plugins.add_task_commands`),
e.g. `competition landmarks patches`.

Exit codes: 0 done; 2 refused (a malformed file, an invalid or failed submission, a rule, a
usage error: one line on stderr, never a traceback); 1 an internal error; 130 interrupted.
`--json` changes what is printed, never the exit code.
"""

from __future__ import annotations

import importlib
import os
import sys

from competition.errors import CompetitionError
from competition.interfaces.cli.helptext import readable
from competition.interfaces.cli.output import err, escape
from competition.interfaces.cli.plugins import add_task_commands
from competition.interfaces.cli.root import app

__all__ = ["app", "main"]

# Imported in this order, each adds its commands to `app`: `--help` lists them so.
for _area in ("competitions", "scoring", "submitting", "remote", "training", "serving",
              "people", "rules"):
    importlib.import_module(f"competition.interfaces.cli.{_area}")
add_task_commands(app)
readable(app)  # flags without <bool>, arguments as DIRECTORY, docstrings unwrapped


def main() -> None:
    """Entry point: user errors become one clear line and exit code 2, never a traceback.
    Usage errors are click's own (its message and exit code 2)."""
    try:
        app()
    except CompetitionError as e:
        err("[red]error:[/]", escape(str(e)), soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err("interrupted")
        sys.exit(130)
    except Exception as e:
        if os.environ.get("COMPETITION_DEBUG"):
            raise
        err("[red]internal error:[/]", escape(f"{type(e).__name__}: {e}"),
            "(set COMPETITION_DEBUG=1 for the traceback, and please report it)")
        sys.exit(1)

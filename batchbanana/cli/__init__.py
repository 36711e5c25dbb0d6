"""The command line: parse options, call the pipeline, render results, map errors to exit codes.

No rules live here. User mistakes become one line each on stderr and exit 2, never a traceback.
commands.py holds the group and its commands, simulate.py the `simulate` command and its many
options, retry.py `retry` (a ledger, a folder, a shard), exits.py how a command ends. Nothing
else in the package imports the CLI.
"""

from batchbanana.cli.commands import entry, main

__all__ = ["entry", "main"]

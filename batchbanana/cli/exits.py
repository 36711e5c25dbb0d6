"""How a command ends: a UserError becomes its lines on stderr and exit 2, Ctrl-C (or SIGTERM
outside the run's own handling) exit 130, and never a traceback for a user mistake."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from batchbanana.errors import UserError
from batchbanana.run.runner import EXIT_USAGE
from batchbanana.run.settings import EXIT_INTERRUPTED

F = TypeVar("F", bound=Callable[..., Any])


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def user_errors(command: F) -> F:
    """Turn a UserError into its lines on stderr and exit 2."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # SIGTERM outside the run's own handling (validation, downloads) stops like Ctrl-C.
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            if len(exc.problems) > 1:
                click.echo(f"batchbanana: {len(exc.problems)} problems; nothing was sent", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("batchbanana: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]

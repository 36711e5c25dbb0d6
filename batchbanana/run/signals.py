"""Ctrl-C and SIGTERM during a run: the first stops sending and lets requests in flight finish
(they are paid for), the next ones abort them (contract section 1)."""

from __future__ import annotations

import signal
from collections.abc import Callable

import anyio


async def watch_stop_signals(on_signal: Callable[[str, bool], None]) -> None:
    """Call `on_signal(name, again)` for each SIGINT or SIGTERM until cancelled; `again` is
    False for the first one."""
    seen = False
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            on_signal(signal.Signals(signum).name, seen)
            seen = True

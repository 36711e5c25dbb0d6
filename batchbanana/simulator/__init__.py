"""The provider stand-in: a local Gemini generateContent server that injects faults and bills.

It speaks the wire format of contract section 3 the way Google does (section 7) and shares no code
with the client on purpose: it is the other side of the wire, so its model rules, price books and
parsers are written out here again, and a client bug cannot hide behind a shared helper.

config -> rules -> directives -> images -> requests -> answers -> server: each module uses only
those before it.
"""

from batchbanana.simulator.config import SimulatorConfig, describe_price_book
from batchbanana.simulator.directives import (
    Directive,
    DirectiveError,
    Directives,
    Plan,
    parse_directives,
    plan_request,
)
from batchbanana.simulator.images import (
    encode_jpeg,
    encode_png,
    image_dimensions,
    pad_png,
    png_size,
)
from batchbanana.simulator.requests import sniff_mime
from batchbanana.simulator.rules import book_price
from batchbanana.simulator.server import (
    RunningSimulator,
    create_app,
    run_simulator,
    serve,
    simulator_in_thread,
)

__all__ = [
    "Directive",
    "DirectiveError",
    "Directives",
    "Plan",
    "RunningSimulator",
    "SimulatorConfig",
    "book_price",
    "create_app",
    "describe_price_book",
    "encode_jpeg",
    "encode_png",
    "image_dimensions",
    "pad_png",
    "parse_directives",
    "plan_request",
    "png_size",
    "run_simulator",
    "serve",
    "simulator_in_thread",
    "sniff_mime",
]

"""The provider stand-in: a local Gemini server (generateContent, and the Batch and Files APIs of
contract section 10) that injects faults and bills.

It speaks the wire format of contract section 3 the way Google does (section 7) and shares no code
with the client on purpose: it is the other side of the wire, so its model rules, price books and
parsers are written out here again, and a client bug cannot hide behind a shared helper.

rules -> config -> directives -> images -> requests -> answers -> state -> handlers -> files ->
file_handlers -> batch_input -> batch_lines -> batches -> operations -> batch_work ->
batch_handlers -> app -> server: each module uses only those before it. Exported here: what the
runner, the CLI and the tests use.
"""

from batchbanana.simulator.config import SimulatorConfig
from batchbanana.simulator.directives import (
    Directive,
    DirectiveError,
    Directives,
    Plan,
    parse_directives,
    plan_request,
)
from batchbanana.simulator.images import encode_png
from batchbanana.simulator.server import (
    RunningSimulator,
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
    "encode_png",
    "parse_directives",
    "plan_request",
    "run_simulator",
    "serve",
    "simulator_in_thread",
]

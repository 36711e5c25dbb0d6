"""A relay for tests that need to read request bodies: a RecordingServer that passes each request
on to the real simulator and answers with what it answered, keeping every body it relayed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from batchbanana.simulator import RunningSimulator
from tests.conftest import RecordingServer, Seen


class Relay:
    """Every generateContent body that went through, parsed, with the model of each."""

    def __init__(self, recorder: RecordingServer, simulator: RunningSimulator) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.models: list[str] = []
        self._simulator = simulator
        recorder.reply = self._reply

    def _reply(self, seen: Seen, body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.bodies.append(json.loads(body))
        self.models.append(seen.target.rsplit("/", 1)[-1].split(":")[0])
        forwarded = urllib.request.Request(
            self._simulator.url + seen.target,
            data=body,
            headers={"Content-Type": "application/json", "x-goog-api-key": "relayed"},
        )
        try:
            with urllib.request.urlopen(forwarded, timeout=30) as answer:
                return answer.status, {"Content-Type": "application/json"}, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, {"Content-Type": "application/json"}, error.read()

    def sent(self) -> list[tuple[str, int | None]]:
        """(user text, generationConfig.seed) of each relayed request, sorted."""
        pairs = [
            (body["contents"][0]["parts"][-1]["text"], body["generationConfig"].get("seed"))
            for body in self.bodies
        ]
        return sorted(pairs, key=lambda pair: (pair[0], pair[1] if pair[1] is not None else -1))

"""Which attempts qualify for the provider's failed-generation refund (contract section 13). Pure.

API易 refunds "failed generations not caused by the input". A claim is an attempt that was billed
(`yes`) or may have been (`unknown`) and failed on the provider's side: a timeout, a cut-off or
undecodable answer (`bad_response`), a server error or dropped connection after sending
(`server_error`), or a 200 without an image (`no_image`) whose finish reason is not one the input
causes. Never a refusal or block (`refused`: the input), an `ok` (delivered), a `write_error` (our
disk), nor any other outcome: `interrupted` (our process stopped it) included, since the contract's
list is exact; unbilled outcomes cost nothing to claim back.
"""

from __future__ import annotations

from batchbanana.rules.outcomes import REFUSAL_REASONS, Billed, Outcome

CLAIMABLE_OUTCOMES = frozenset(
    {Outcome.TIMEOUT, Outcome.BAD_RESPONSE, Outcome.SERVER_ERROR, Outcome.NO_IMAGE}
)
CLAIMABLE_BILLING = frozenset({Billed.YES, Billed.UNKNOWN})
# Finish reasons of an answer without an image that the input causes: the safety stops refused
# already counts, and the content-policy ones a no_image can carry (the prompt asked for a
# protected work, RECITATION, or a language the model does not take, LANGUAGE).
INPUT_CAUSED_REASONS = REFUSAL_REASONS | {"RECITATION", "IMAGE_RECITATION", "LANGUAGE"}


def qualifies(outcome: str, billed: str, finish_reason: str | None) -> bool:
    """True when an attempt with this outcome, billing mark and finish reason can be claimed."""
    if billed not in CLAIMABLE_BILLING or outcome not in CLAIMABLE_OUTCOMES:
        return False
    if outcome == Outcome.NO_IMAGE and finish_reason is not None:
        return finish_reason.strip().upper() not in INPUT_CAUSED_REASONS
    return True

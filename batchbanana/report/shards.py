"""`plan --shards N`: how a job splits into N shards (contract section 12): each shard's items
and estimated cost, its share of the budget, what the ledgers already hold of it, and the edits
whose base another shard makes."""

from __future__ import annotations

from batchbanana.ledger.owed import Decision
from batchbanana.plan.chains import bases
from batchbanana.plan.job import Job
from batchbanana.rules.pricing import money
from batchbanana.rules.shards import shard_of


def describe_shards(job: Job, count: int, decision: Decision | None) -> list[str]:
    """The per-shard table `plan --shards N` prints (`decision`: what the ledgers say, if any)."""
    shard_ids = {item.id: shard_of(item.id, count) for item in job.items}
    items = [0] * count
    cost = [0.0] * count
    for item in job.items:
        items[shard_ids[item.id]] += 1
        cost[shard_ids[item.id]] += item.price.estimate_usd(item.image_size)
    done, owed = [0] * count, [0] * count
    if decision is not None:
        for item in decision.done:
            done[shard_ids[item.id]] += 1
        for item in decision.to_send:
            owed[shard_ids[item.id]] += 1
    share = None if job.budget_usd is None else job.budget_usd / count
    lines = [
        "",
        f"shards: {count} (`run --shard K/{count}`, ledger ledger.shard-K-of-{count}.jsonl"
        " beside the job's)",
        f"{'shard':>7} {'items':>9} {'estimate':>11} {'budget':>11}"
        + (f" {'ok':>9} {'to send':>9}" if decision is not None else ""),
    ]
    for index in range(count):
        budget = "-" if share is None else f"${share:.4f}"
        ledger = f" {done[index]:>9} {owed[index]:>9}" if decision is not None else ""
        lines.append(
            f"{f'{index}/{count}':>7} {items[index]:>9} {f'${money(cost[index]):.4f}':>11}"
            f" {budget:>11}{ledger}"
        )
    crossing = sum(
        1
        for item in job.items
        if item.images and any(shard_ids.get(base) != shard_ids[item.id] for base in bases(item))
    )
    if crossing:
        lines.append(
            f"{crossing} item(s) use the output of an item in another shard: a shard sends such"
            " an item once that item is ok in some ledger of the folder (else it is blocked,"
            " not billed, and a later run sends it)"
        )
    return lines

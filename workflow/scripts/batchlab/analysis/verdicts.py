"""Verdicts on the original post's claims, decided by paired comparisons over seeds.

One function per claim (batchlab.analysis.claims_training, batchlab.analysis.claims_lr; what they share in
batchlab.analysis.verdict_tools), each a plain function of the aggregated tables (pandas frames as
aggregate writes them); each returns a record with the claim, its verdict, the numbers behind it,
the evidence in words and what its test can and cannot show. Best learning rates are chosen on
the validation set; the confirmatory comparisons between settings read the test set, which the
choice never saw. No verdict pools cells of different learning rates as replicates.
"""

from __future__ import annotations

from batchlab.analysis.claims_lr import equal_updates, lr_follows_batch, solution2_helps
from batchlab.analysis.claims_optimizers import optimizer_verdicts
from batchlab.analysis.claims_training import epoch_time, gradient_direction, late_blowup, oscillation


def paired_verdicts(cells, epochs, probes, best, config, exponent: dict | None = None, optimizers: dict | None = None) -> list[dict]:
    """The claims decided by paired comparisons over seeds, in the report's order; `optimizers`:
    the optimizer comparison (batchlab.analysis.claims_optimizers), one claim per optimizer beside the first."""
    found = [
        oscillation(cells, best),
        epoch_time(epochs, best),
        gradient_direction(cells, best),
        late_blowup(cells, probes, config),
        lr_follows_batch(best, exponent),
        equal_updates(cells, best, config),
        solution2_helps(cells, best, config),
        *optimizer_verdicts(optimizers),
    ]
    return [v for v in found if v is not None]


# the groups of cells each verdict reads: in a partial report a verdict waits until they are done
NEEDS = {
    "oscillation": {"grid"},
    "epoch_time": {"grid"},
    "gradient": {"grid"},
    "late_blowup": {"grid"},
    "lr_follows_batch": {"grid"},
    "local_minima": {"grid", "equal_updates"},
    "solution2": {"grid", "solution2"},
    "optimizer_rule": {"grid", "optimizers"},  # keys optimizer_rule:<name>
    "optimizer_b_crit": {"grid", "optimizers"},  # keys optimizer_b_crit:<name>
}


def waiting_for(verdicts: list[dict], missing: dict[str, int]) -> list[dict]:
    """The verdicts of a partial study: one whose groups still miss cells ({group: how many})
    waits for them instead of deciding on part of its data."""
    out = []
    for v in verdicts:
        short = {g: missing[g] for g in sorted(NEEDS.get(v["key"].split(":")[0], {"grid"})) if missing.get(g)}
        if short:
            left = ", ".join(f"{n} {g} cell(s)" for g, n in short.items())
            v = {**v, "verdict": "waiting", "headline": f"waits for {left}", "evidence": f"Not decided yet: {left} still to finish."}
        out.append(v)
    return out

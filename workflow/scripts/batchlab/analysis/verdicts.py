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
from batchlab.analysis.claims_training import (
    gradient_direction,
    largest_reaching,
    late_blowup,
    oscillation,
    time_to_target,
)
from batchlab.analysis.family import decide_family, read_at_near_optimal
from batchlab.analysis.gradient import direction_verdict


def paired_verdicts(cells, epochs, best, config, response, law, optimizers: dict | None = None, target_acc: float = 0.95, corrected: bool = True, gradient=None) -> list[dict]:
    """The claims, in the report's order, each read at every near-optimal lr of the batch sizes
    it compares (response: batchlab.analysis.lr_response.response_table) and decided together
    (batchlab.analysis.family); `optimizers`: the optimizer comparison
    (batchlab.analysis.claims_optimizers), one claim per optimizer beside the first; corrected:
    with Holm's correction over the family (False: each hypothesis at 5% alone); gradient: the
    gradient at shared weights (batchlab.train.shared_weights), which the gradient-direction
    claim reads where the study measured it."""
    near = {int(r.batch_size): list(r.near_optimal) for r in response.itertuples()} if len(response) else {}
    sizes = sorted(int(b) for b in best["batch_size"])
    ends = [sizes[0], sizes[-1]] if sizes else []
    eq = config.get("equal_updates") or {}
    sol = config.get("solution2") or {}

    reaching = largest_reaching(cells, best)

    def at_near(verdict, reads):
        return read_at_near_optimal(verdict, best, near, reads)

    found = [
        at_near(lambda b: oscillation(cells, b), ends),
        at_near(lambda b: time_to_target(cells, b, target_acc, reaching), [sizes[0], reaching] if reaching else []),
        direction_verdict(gradient, sizes[-1]) if gradient is not None and len(gradient) and sizes else at_near(lambda b: gradient_direction(cells, b), sizes[-1:]),
        late_blowup(cells, epochs, config),
        lr_follows_batch(cells, response, law),
        at_near(lambda b: equal_updates(cells, b, config), [int(eq.get("reference_batch_size", 0))]),
        at_near(lambda b: solution2_helps(cells, b, config), [int(sol.get("batch_size", 0))]),
        *optimizer_verdicts(optimizers),
    ]
    return decide_family([v for v in found if v is not None], corrected=corrected)


# the groups of cells each verdict reads: in a partial report a verdict waits until they are done
NEEDS = {
    "oscillation": {"grid"},
    "time_to_target": {"grid"},
    "gradient": {"grid"},
    "late_blowup": {"grid", "late_blowup"},
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

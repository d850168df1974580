"""What changed since the last committed version of the study: params and headline metrics."""

from __future__ import annotations

from batchlab.report.fmt import fmt_pct
from batchlab.report.inputs import Inputs
from batchlab.report.page import Section


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    out = {}
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def changes_since(previous: dict | None, current: dict) -> list[str]:
    """Sentences on what changed since an earlier version of the study.

    previous/current: {"label", "params", "metrics"}; previous is None when no earlier version
    is recorded (results/summary/metrics.json is committed to git at every version).
    """
    if previous is None:
        return ["No earlier version of the study is recorded in this repository's history."]
    label = previous["label"]
    old_p, new_p = flatten(previous["params"]), flatten(current["params"])
    out = []
    changed = [k for k in sorted(set(old_p) | set(new_p)) if old_p.get(k) != new_p.get(k)]
    if changed:
        out.append(
            f"Params changed since {label}: "
            + "; ".join(f"{k}: {old_p.get(k, '(unset)')} → {new_p.get(k, '(unset)')}" for k in changed)
            + "."
        )
    else:
        out.append(f"No params changed since {label}.")
    old_m, new_m = previous["metrics"] or {}, current["metrics"] or {}
    for key in ("cells", "seed_runs", "diverged_runs", "collapsed_runs"):
        if old_m.get(key) != new_m.get(key):
            out.append(f"{key.replace('_', ' ').capitalize()}: {old_m.get(key)} → {new_m.get(key)}.")
    batches = sorted({int(k[2:]) for k in set(old_m) | set(new_m) if k.startswith("bs") and k[2:].isdigit()})
    moves = []
    for b in batches:
        old, new = old_m.get(f"bs{b}") or {}, new_m.get(f"bs{b}") or {}
        # test accuracy at the selected lr (older metrics called it best_test_acc)
        o_acc, n_acc = old.get("test_acc", old.get("best_test_acc")), new.get("test_acc", new.get("best_test_acc"))
        if o_acc == n_acc and old.get("best_lr") == new.get("best_lr"):
            continue
        text = f"batch {b}: {fmt_pct(o_acc) if o_acc is not None else 'absent'} → {fmt_pct(n_acc) if n_acc is not None else 'absent'}"
        if o_acc is not None and n_acc is not None:
            text += f" ({100 * (n_acc - o_acc):+.1f} points)"
        if old.get("best_lr") != new.get("best_lr"):
            text += f", best lr {old.get('best_lr')} → {new.get('best_lr')}"
        moves.append(text)
    if moves:
        out.append("Test accuracy at the best lr of each batch size since " + label + ": " + "; ".join(moves) + ".")
    elif old_m == new_m:
        out.append(f"The headline metrics are the same as at {label}.")
    return out


def section(study: Inputs) -> Section:
    return Section(
        "changes",
        "Changes since the last version",
        "This version against the last committed one (git history of the params file and"
        " results/summary/metrics.json; for a DVC experiment, its baseline commit).",
        findings=changes_since(study.previous, {"params": study.config, "metrics": study.metrics}),
    )

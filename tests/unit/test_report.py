"""Report content: findings are computed from the numbers, charts compile, the page is offline."""

import datetime as dt
import html
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import vl_convert as vlc

from batchlab.analysis.aggregate import best_learning_rates, by_setting, cells_table
from batchlab.analysis.cell_summary import summarize_cell
from batchlab.analysis.curves import downsample_curve, seed_bands
from batchlab.analysis.rows import nearest
from batchlab.analysis.stats import spearman, trend
from batchlab.analysis.summaries import all_summaries, failures, oscillation_trend
from batchlab.report import Inputs, Section, build_sections, render_html, vega_bundle
from batchlab.report import findings as report_findings
from batchlab.report.fmt import ci_text, mark

BATCHES = [1, 4, 16, 64]
LRS = [0.01, 0.04, 0.16]


def study(oscillation_sign=-1, best=lambda b: 0.01 * b**0.5, diverge=(), seeds=(0,)):
    """A synthetic study whose oscillation trend and best lr are known."""
    rows, epochs, curves = [], [], []
    for b, lr, seed in ((b, lr, seed) for b in BATCHES for lr in LRS for seed in seeds):
        ipe = -(-600 // b)
        rng = np.random.default_rng(1000 * b + seed)
        noise = (1.0 / np.sqrt(b)) if oscillation_sign < 0 else 0.05 * np.sqrt(b)
        losses = np.abs(np.linspace(2.3, 0.2, 3 * ipe) + noise * rng.standard_normal(3 * ipe))
        acc = 0.95 - abs(np.log(lr) - np.log(nearest(LRS, best(b)))) * 0.1 + 0.001 * seed
        status = "diverged" if (b, lr) in diverge else "ok"
        stopped = diverge[(b, lr)] if status == "diverged" else None
        metrics = {
            "cell": f"bs{b}_lr{lr}",
            "batch_size": b,
            "lr": lr,
            "seed": seed,
            "status": status,
            "stopped_step": stopped,
            "iterations_per_epoch": ipe,
            "final_train_loss": 0.2,
            "final_train_acc": acc,
            # the model's loss on the fixed subset: a trend plus a zigzag whose size follows the
            # oscillation trend of the study
            "track": [[i, 1.0 - 0.01 * i + noise * 0.1 * (-1) ** i * (1 + 0.01 * seed)] for i in range(20)],
            "final_val_loss": 0.3,
            "final_val_acc": 0.1 if status == "diverged" else acc,
            "final_test_loss": 0.3,
            "final_test_acc": 0.1 if status == "diverged" else acc - 0.01,
            "selection_set": "validation",
            "device": "cpu",
        }
        ep = pd.DataFrame(
            {
                "epoch": [1, 2, 3],
                "seconds": [6.0 / b * (1 + 0.01 * seed)] * 3,
                "samples_per_s": [100.0 * b] * 3,
                "ms_per_step": [10.0] * 3,
                "val_acc": [acc - 0.1, acc - 0.05, acc],
                "test_acc": [acc - 0.11, acc - 0.06, acc - 0.01],
                "train_loss": [0.5, 0.3, 0.2],
                "test_loss": [0.5, 0.4, 0.3],
            }
        )
        rows.append(summarize_cell(metrics, ep, losses, 64, 0.5))
        keys = {"batch_size": b, "lr": lr, "seed": seed}
        epochs.append(ep.assign(**keys))
        curves.append(downsample_curve(losses, b, ipe, 64, 100).assign(**keys))
    cells = cells_table(rows)
    settings = by_setting(cells)
    return cells, settings, best_learning_rates(settings), pd.concat(epochs), pd.concat(curves)


CONFIG = {
    "train": {"epochs": 3, "divergence_loss": 1000.0},
    "report": {"reference_lr": 0.04, "smooth_samples": 64, "loss_target": 0.5, "title": "T", "target_val_acc": 0.9,
               "noise_smoothing_probes": 4},
    "measure": {"sharpness_subset": 512, "sharpness_iterations": 12, "train_eval_size": 10000, "noise_batch": 2048,
                "noise_micro_batches": 4, "probe_every_samples": 20000},
}
STAMP = {
    "batchlab": "0.1.0",
    "git_commit": "abc123",
    "git_dirty": True,
    "params_hash": "feedbeef",
    "data_md5": {"t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"},
    "packages": {"torch": "2.14.1"},
    "devices": ["cpu"],
    "host": "h",
    "date": dt.datetime(2026, 1, 2).strftime("%Y-%m-%d %H:%M:%S UTC"),
}


def test_oscillation_sentence_follows_the_data():
    _, settings, _, _, _ = study(oscillation_sign=-1)
    [falling] = report_findings.oscillation(oscillation_trend(settings, 0.04))
    assert "falls steadily as batch size grows" in falling
    first = settings[(settings.batch_size == 1) & (settings.lr == 0.04)]["oscillation"].iloc[0]
    assert f"{first:.3g} at batch 1" in falling
    _, settings, _, _, _ = study(oscillation_sign=+1)
    [rising] = report_findings.oscillation(oscillation_trend(settings, 0.04))
    assert "does not fall steadily" in rising


def test_the_lr_law_and_trends_are_described_from_their_numbers():
    from batchlab.analysis.claims_lr import law_text
    from batchlab.analysis.lr_law import lr_law

    table = pd.DataFrame({"batch_size": [1, 4, 16, 64], "lr_opt": [0.003, 0.012, 0.045, 0.15], "window_edge": [None] * 4, "seeds_used": [10] * 4})
    text = law_text(lr_law(table, np.zeros((0, 4))))
    assert "saturating law lr_max" in text and "B_noise" in text and "preferred: " in text and "AICc weights" in text
    assert "no interval: too few seeds" in text  # no bootstrap replicates given
    assert "no law fitted (2 batch size(s)" in law_text(lr_law(table.iloc[:2], np.zeros((0, 2))))
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert trend([1, 2], [5.0, 3.0]) == {"rho": -1.0, "basis": "two batch sizes"}
    assert trend([1, 2, 4], [1.0, 2.0, 3.0])["rho"] == pytest.approx(1.0)


def inputs(cells, settings, best, epochs, curves, config=None, **kw):
    """What the report reads, with aggregate's summaries computed from the synthetic study."""
    config = config or CONFIG
    targets = kw.pop("targets", pd.DataFrame({"batch_size": pd.Series(dtype=int)}))
    analysis = kw.pop("analysis", {})
    analysis = {**analysis, "summaries": all_summaries(cells, settings, best, targets, None, curves, config)}
    return Inputs(cells=cells, settings=settings, best_lr=best, epochs=epochs, curves=curves, config=config, analysis=analysis, targets=targets, **kw)


def test_best_lr_and_edge_sentences():
    _, settings, best, _, _ = study(best=lambda b: 0.01 * b)
    fitted = {
        "lr_opt": [0.012, 0.05, 0.16, 0.16], "lr_opt_lo": [0.009, 0.03, math.nan, math.nan], "lr_opt_hi": [0.016, 0.07, math.nan, math.nan],
        "no_interval": [None, None, "the optimum lies at the highest end of the window", "the optimum lies at the highest end of the window"],
        "window_edge": [float("nan"), float("nan"), "highest", "highest"], "near_optimal": [[0.01, 0.02], [0.04], [0.16], [0.16]],
    }  # fmt: skip
    best = best.assign(**{k: v[: len(best)] for k, v in fitted.items()})
    study_inputs = inputs(*study(best=lambda b: 0.01 * b))
    study_inputs.best_lr, study_inputs.settings = best, settings
    text = " ".join(report_findings.best_lrs(study_inputs))
    assert "nan" not in text
    assert text.count("Window edge") == 2
    assert "batch 1: best 0.01, fitted 0.012 [0.009, 0.016]; near-optimal 0.01, 0.02" in text
    assert "(no interval: the optimum lies at the highest end of the window)" in text
    assert "Window edge: at batch 16 the fitted optimum lies at the highest stable lr of its window" in text


def test_divergence_sentences_say_when():
    cells, _, _, _, _ = study(diverge={(1, 0.16): 1700, (4, 0.16): 3})
    [diverged, collapsed] = report_findings.failures(failures(cells, 3))
    assert diverged.startswith("2 seed runs diverged")
    assert "batch 1 at lr 0.16 (seed 0) at iteration 1,700, epoch 3 of 3 (late)" in diverged
    assert "batch 4 at lr 0.16 (seed 0) at iteration 3, epoch 1 of 3 (early)" in diverged
    assert collapsed == "No cell collapsed to chance level."


def test_page_is_self_contained_and_every_chart_compiles():
    cells, settings, best, epochs, curves = study(diverge={(1, 0.16): 1700})
    sections = build_sections(inputs(cells, settings, best, epochs, curves, bands=seed_bands(curves)))
    page = render_html("T", sections, STAMP, vega_bundle())
    for section in ("findings", "loss-curves", "oscillation", "speed", "lr-grid", "convergence", "version"):
        assert f'<section id="{section}">' in page
    assert not re.search(r"<script[^>]+src=", page) and "cdn.jsdelivr" not in page
    assert "abc123" in page and "feedbeef" in page and "(uncommitted changes)" in page
    assert "27ae3e4e09519cfbb04c329615203637" in page
    specs = json.loads(re.search(r"const SPECS = (.*?);\n", page).group(1).replace("<\\/", "</"))
    assert len(specs) == sum(len(s.charts) for s in sections) >= 8
    for chart_id, spec in specs.items():
        svg = vlc.vegalite_to_svg(spec)
        assert svg.count("<path") + svg.count("<rect") > 10, chart_id


def test_changes_since_names_params_and_metric_moves():
    from batchlab.report.changes import changes_since

    old = {
        "label": "commit abc (HEAD)",
        "params": {"grid": {"learning_rates": [0.1]}, "train": {"epochs": 3}},
        "metrics": {"cells": 2, "bs64": {"best_lr": 0.1, "best_test_acc": 0.95}},
    }
    new = {
        "params": {"grid": {"learning_rates": [0.1, 0.3]}, "train": {"epochs": 3}},
        "metrics": {"cells": 4, "bs64": {"best_lr": 0.3, "best_test_acc": 0.97}},
    }
    text = " ".join(changes_since(old, new))
    assert "Params changed since commit abc (HEAD): grid.learning_rates: [0.1] → [0.1, 0.3]." in text
    assert "train.epochs" not in text
    assert "Cells: 2 → 4." in text
    assert "batch 64: 95.0% → 97.0% (+2.0 points), best lr 0.1 → 0.3" in text
    same = " ".join(changes_since(old, {"params": old["params"], "metrics": old["metrics"]}))
    assert "No params changed since commit abc (HEAD)." in same and "→" not in same
    assert "The headline metrics are the same as at commit abc (HEAD)." in same
    assert changes_since(None, new) == [
        "No earlier version of the study is recorded in this repository's history."
    ]


def test_intervals_and_marks_are_written_plainly():
    assert ci_text({"mean": 0.5, "lo": 0.25, "hi": 0.75}) == "0.5 [0.25, 0.75]"
    assert ci_text({"mean": 0.5, "lo": float("nan"), "hi": None}) == "0.5 (1 seed)"
    assert ci_text(None) == "n/a"
    assert [mark(v) for v in ("supported", "not supported", "mixed", "inconclusive")] == ["✔", "✘", "◐", "?"]


def test_a_chart_may_not_share_its_id_with_a_section():
    clash = [Section("noise", "Noise", charts=[("noise", {"mark": "point"}, "")])]
    with pytest.raises(ValueError, match="ids used twice: noise"):
        render_html("T", clash, STAMP, "")


def test_verdicts_follow_a_study_with_known_answers():
    """Ten seeds; small batches noisier; the smallest batch at the lr nearest 0.02 diverges late
    in every seed. No equal-updates run: that claim is inconclusive; no noise probes, no time to
    a target and no Solution 2 cells: those claims are left out rather than guessed; the lr rule
    needs two batch sizes with their optimum inside the window, and this grid of three lrs has
    one (batch 4), so it is left out too."""
    from batchlab.analysis.lr_law import lr_law
    from batchlab.analysis.lr_response import response_table
    from batchlab.analysis.verdicts import paired_verdicts

    blow_lr = nearest(LRS, 0.02)
    config = {**CONFIG, "solution2": {"enabled": False}}

    def judged(seeds):
        cells, settings, best, epochs, _ = study(best=lambda b: 0.01 * b, diverge={(1, blow_lr): 1500}, seeds=seeds)
        response, reps = response_table(cells, n_boot=50)
        best = best.merge(response.drop(columns=["best_lr", "curve"]), on="batch_size")
        found = paired_verdicts(cells, epochs, best, config, response, lr_law(response, reps))
        return {v["claim"]: v for v in found}

    found = judged(range(10))
    assert {claim: v["verdict"] for claim, v in found.items()} == {
        "Small batches make the loss oscillate more from one iteration to the next.": "supported",
        "Large batches get stuck in local minima.": "inconclusive",
        f"Batch 1 with lr {blow_lr:g} blows up late in training.": "supported",
    }
    assert "10 blew up" in found[f"Batch 1 with lr {blow_lr:g} blows up late in training."]["evidence"]
    assert all(v["test"] for v in found.values())  # each says what its test can and cannot show
    assert all(v["headline"] for v in found.values())  # and its key number, for the first screen
    # one seed: the paired claim is inconclusive and says why; so is the blow-up, a count of one
    single = {claim: v for claim, v in judged((0,)).items()}
    osc = single["Small batches make the loss oscillate more from one iteration to the next."]
    assert osc["verdict"] == "inconclusive" and "only 1 paired seed" in osc["why"]
    assert single[f"Batch 1 with lr {blow_lr:g} blows up late in training."]["verdict"] == "inconclusive"
    # every interval printed is finite or replaced by the reason it is missing
    for v in single.values():
        assert "nan" not in v["headline"] + v["evidence"], v["key"]
    assert "no interval from 1 seed(s)" in osc["headline"]


def test_the_first_screen_answers_before_any_list_of_findings():
    """With verdicts, the page opens with the answers: a table with a mark and a key number per
    claim, then the accuracy grid and steps to the target, before the findings."""
    from batchlab.analysis.lr_law import lr_law
    from batchlab.analysis.lr_response import response_table
    from batchlab.analysis.verdicts import paired_verdicts

    cells, settings, best, epochs, curves = study(best=lambda b: 0.01 * b, seeds=(0, 1, 2))
    response, reps = response_table(cells, n_boot=50)
    best = best.merge(response.drop(columns=["best_lr", "curve"]), on="batch_size")
    found = paired_verdicts(cells, epochs, best, CONFIG, response, lr_law(response, reps))
    targets = pd.DataFrame(
        {"batch_size": BATCHES, "reached": True, "lr": 0.04, "seeds": 3, "steps": [400.0, 120.0, 40.0, 20.0],
         "steps_lo": np.nan, "steps_hi": np.nan, "samples": [400.0, 480.0, 640.0, 1280.0], "samples_lo": np.nan,
         "samples_hi": np.nan, "seconds": 1.0, "seconds_lo": np.nan, "seconds_hi": np.nan, "best_acc": np.nan}
    )  # fmt: skip
    sections = build_sections(inputs(cells, settings, best, epochs, curves, targets=targets, analysis={"verdicts": found}))
    assert [s.id for s in sections][:3] == ["answers", "verdicts", "findings"]
    page = render_html("T", sections, STAMP, "")
    first = page[page.index('<section id="answers">') : page.index('<section id="verdicts">')]
    assert first.index("<table") < first.index('id="answers-accuracy"') < first.index('id="answers-steps"')
    for v in found:
        assert html.escape(v["headline"]) in first and f"<td>{mark(v['verdict'])}</td>" in first

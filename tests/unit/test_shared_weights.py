"""The gradient at shared weights: the measurement on a real (small) model, B_simple recovered
from synthetic norms where it is known, and the direction verdict decided both ways."""

import numpy as np
import pandas as pd
import pytest
import torch

from batchlab.analysis.family import decide_family
from batchlab.analysis.gradient import b_simple, direction_verdict, noise_pair, summary
from batchlab.train.models import build_model
from batchlab.train.shared_weights import measure, pairs_for


def blobs(n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(10, 784, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return centers[y] + 2.0 * torch.randn(n, 784, generator=g), y


def test_pairs_shrink_with_the_batch_and_never_below_two():
    assert [pairs_for(b) for b in (1, 64, 256, 1024, 4096, 16384)] == [64, 64, 16, 4, 2, 2]


def test_two_mini_batch_gradients_at_the_same_weights_align_as_the_batch_grows():
    torch.manual_seed(0)
    model = build_model("mlp")
    x, y = blobs()
    rows = measure(model, x, y, [1, 16, 256, 1024], torch.Generator().manual_seed(1))
    cos = [r["cosine"] for r in rows]
    g_sq = [r["g_sq"] for r in rows]
    assert cos == sorted(cos) and cos[0] < 0.5 < cos[-1] <= 1.0  # noise averages out with b
    assert g_sq == sorted(g_sq, reverse=True)  # E|g_b|^2 = |G|^2 + tr(Sigma) / b falls with b
    again = measure(model, x, y, [1, 16, 256, 1024], torch.Generator().manual_seed(1))
    assert rows == again  # the draws come from the generator given
    with pytest.raises(ValueError, match="two batches of 4,000 need 8,000"):
        measure(model, x, y, [4000], torch.Generator())


def synthetic(cosine: float, g2: float = 1.0, trace: float = 200.0, seeds=range(10), epochs=(1, 2, 3)) -> pd.DataFrame:
    """Exact norms E|g_b|^2 = g2 + trace / b at each checkpoint, and a cosine at b = 4096 of
    `cosine` (spread a little by seed); the other batch sizes as predicted."""
    rows = []
    for epoch in epochs:
        for s in seeds:
            for b in (1, 64, 1024, 4096, 16384):
                cos = cosine + 0.004 * (s - 4.5) if b == 4096 else 1 / (1 + trace / g2 / b)
                rows.append({"seed": s, "epoch": epoch, "step": 100 * epoch, "batch_size": b, "pairs": 2, "cosine": cos, "g_sq": g2 + trace / b})
    return pd.DataFrame(rows)


def test_b_simple_is_recovered_from_the_norms_of_two_batch_sizes():
    table = synthetic(0.95, g2=2.0, trace=400.0)
    assert noise_pair([1, 16, 64, 1024, 16384]) == (64, 16384) and noise_pair([1, 16]) is None
    assert b_simple(table[table["epoch"] == 1]) == pytest.approx(200.0)
    rows = summary(table)
    at = next(r for r in rows if r["epoch"] == 3 and r["batch_size"] == 1024)
    assert at["predicted"] == pytest.approx(1 / (1 + 200 / 1024)) and at["b_simple"] == pytest.approx(200.0)
    assert at["b_simple_lo"] == pytest.approx(200.0) and at["seeds"] == 10


@pytest.mark.parametrize("cosine, outcome", [(0.97, "supported"), (0.6, "not supported"), (0.9, "inconclusive")])
def test_the_direction_verdict_reads_the_largest_grid_batch_at_the_end_both_ways(cosine, outcome):
    table = synthetic(cosine)
    table.loc[table["epoch"] < 3, "cosine"] = 0.0  # earlier checkpoints do not decide it
    v = direction_verdict(table, 4096)
    assert v["key"] == "gradient" and v["primary"]["n"] == 10
    assert np.isclose(v["primary"]["mean"], cosine - 0.9)
    assert decide_family([v])[0]["verdict"] == outcome
    assert "at shared weights" in v["headline"] and "batch 4,096" in v["evidence"]


def test_no_verdict_without_the_batch_it_reads():
    assert direction_verdict(synthetic(0.95), 512) is None


def test_the_report_draws_each_checkpoint_beside_its_prediction():
    import vl_convert as vlc

    from batchlab.report import gradient as section_module
    from batchlab.report.inputs import Inputs

    empty = pd.DataFrame()
    config = {"gradient_probe": {"batch_size": 64, "lr": 0.16}}
    analysis = {"gradient_shared_weights": summary(synthetic(0.95))}
    s = section_module.section(Inputs(cells=empty, settings=empty, best_lr=empty, epochs=empty, curves=empty, config=config, analysis=analysis))
    assert "batch 64 at lr 0.16" in s.intro and "after epoch 3: 200 [200, 200]" in s.intro
    (chart_id, spec, _), = s.charts
    assert chart_id == "gradient-shared-weights" and vlc.vegalite_to_svg(spec).count("<path") >= 6
    assert section_module.section(Inputs(cells=empty, settings=empty, best_lr=empty, epochs=empty, curves=empty, config=config, analysis={})) is None

"""The batch-size ramp: its schedule, its lr, and a ramped run against a textbook one."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_train import QUIET, run, synthetic, textbook_epoch

from batchlab.cells import Recipe
from batchlab.train.cell_config import CellConfig, CellError
from batchlab.train.models import build_model
from batchlab.train.plan import batch_at


def test_the_ramp_doubles_every_k_epochs_up_to_the_batch_size():
    assert [batch_at(4096, e, 256) for e in range(1, 7)] == [256, 512, 1024, 2048, 4096, 4096]
    assert [batch_at(4096, e, 256, ramp_every=2) for e in range(1, 7)] == [256, 256, 512, 512, 1024, 1024]
    assert [batch_at(4096, e) for e in range(1, 7)] == [4096] * 6
    cfg = CellConfig(batch_size=4000, lr=0.1, epochs=3, ramp_from=1000)
    plan = cfg.plan(10000)
    assert plan.batch_sizes == (1000, 2000, 4000) and plan.iters == (10, 5, 3) and plan.total == 18
    # where a step falls: epoch 2 is steps 11-15, 2,000 images each
    assert [plan.epoch_of(s) for s in (1, 10, 11, 15, 16, 18)] == [1, 1, 2, 2, 3, 3]
    assert plan.steps_before(3) == 15
    assert plan.samples_at(10) == 10000 and plan.samples_at(12) == 14000 and plan.samples_at(16) == 24000
    assert plan.epochs_at(10) == 1.0 and plan.epochs_at(12) == pytest.approx(1.4)
    fixed = CellConfig(batch_size=64, lr=0.1, epochs=3).plan(50000)
    assert fixed.iters == (782,) * 3 and fixed.epochs_at(100) == 100 / 782 and fixed.samples_at(100) == 6400


def ramp_reference(data, seed: int, lr: float, sizes: list[int], scaled: bool) -> np.ndarray:
    """One seed on a ramp, the textbook way: each epoch a randperm from the seed's generator,
    cut into batches of that epoch's size, torch.optim.SGD at lr (or lr x b / the last b)."""
    torch.manual_seed(seed)
    model, gen, out = build_model("mlp"), torch.Generator().manual_seed(seed), []
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for b in sizes:
        for group in opt.param_groups:
            group["lr"] = lr * b / sizes[-1] if scaled else lr
        out += textbook_epoch(model, opt, data, torch.randperm(data.n_train, generator=gen), b)
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("scaled", [False, True], ids=["lr held", "lr scaled"])
def test_a_ramped_run_is_the_textbook_ramp_per_seed(scaled):
    """Batches of 16, 32, 64 in epochs 1-3 (38, 19 and 10 steps over 600 images), every seed
    stacked, each equal to its textbook run; the epoch rows say each epoch's batch size."""
    data = synthetic()
    cfg = CellConfig(batch_size=64, lr=0.05, seeds=(0, 1), epochs=3, ramp_from=16, ramp_scaled=scaled, **QUIET)
    ramped = run(cfg, data)
    assert "ramped from 16 to 64" in ramped.step_implementation
    for seed in ramped.seeds:
        assert [r["epoch_batch_size"] for r in seed.epochs] == [16, 32, 64]
        assert [r["iterations"] for r in seed.epochs] == [38, 19, 10]
        reference = ramp_reference(data, seed.seed, 0.05, [16, 32, 64], scaled)
        np.testing.assert_allclose(seed.losses, reference, rtol=1e-4, atol=1e-5)
    plain = run(replace(cfg, ramp_from=0), data)
    assert [r["epoch_batch_size"] for r in plain.seeds[0].epochs] == [64] * 3 and len(plain.seeds[0].losses) == 30


def test_the_ramp_is_a_recipe_and_bad_ramps_are_errors():
    recipe = Recipe.parse("_r512d2s")
    assert (recipe.ramp_from, recipe.ramp_every, recipe.ramp_scaled) == (512, 2, True)
    assert recipe.suffix() == "_r512d2s" and Recipe.parse("_r512").suffix() == "_r512"
    data = synthetic(n_train=64)
    for fields, message in [
        ({"ramp_from": 64}, "a batch-size ramp starts at 1 to 63 images"),
        ({"ramp_from": 8, "ramp_every": 0}, "doubles every 1 or more epochs"),
        ({"ramp_from": 8, "micro_batch": 4}, "cannot be combined with gradient accumulation"),
        ({"ramp_from": 1, "model": "mlp_bn"}, "start the ramp at 2 or more"),
    ]:
        with pytest.raises(CellError, match=message):
            run(CellConfig(batch_size=64, lr=0.1, **fields), data)

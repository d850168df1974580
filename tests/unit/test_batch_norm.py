"""BatchNorm models, ghost BatchNorm and gradient accumulation, on small synthetic data: each
checked against its definition (torch.nn.BatchNorm per seed, the batch cut into virtual
batches, the huge batch in one piece)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_train import QUIET, run, synthetic

from batchlab.train.cell_config import CellError, make_config
from batchlab.train.checkpoint import load_checkpoint, save_checkpoint
from batchlab.train.ensemble import Ensemble, chunk_bounds
from batchlab.train.models import build_model
from batchlab.train.optimizers import build_optimizer
from batchlab.train.settings import OptimizerSettings
from batchlab.train.steps import autograd_step

CPU = torch.device("cpu")
STATS = ("running_mean", "running_var", "num_batches_tracked")


def lone_net(model: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(model)


def bn_layers(net: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {name: m for name, m in net.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}


def assert_same_statistics(ens: Ensemble, i: int, net: torch.nn.Module) -> None:
    for name, layer in bn_layers(net).items():
        for stat in STATS:
            np.testing.assert_allclose(ens.buffers[f"{name}.{stat}"][i], getattr(layer, stat), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["mlp_bn", "cnn_bn"])
@pytest.mark.parametrize("ghost", [0, 8, 12])
def test_ensemble_batch_norm_is_torch_batch_norm_over_each_virtual_batch(model, ghost):
    """Each seed of a stacked ensemble, in training mode, gives torch.nn.BatchNorm's outputs
    and running statistics with the batch cut into virtual batches of `ghost` (0: whole); a
    batch of 20 in virtual batches of 12 is 12 + 8, of 8 is 8 + 8 + 4. In evaluation each seed
    uses its own running statistics."""
    data = synthetic(n_train=40, n_test=30, model=model)
    ens = Ensemble.initialize(model, [3, 4], CPU)
    ens.ghost = ghost
    x = torch.stack([data.train_x[:20], data.train_x[20:40]])
    for _ in range(2):  # twice: the running statistics move on from their first update
        out = ens.forward(x, train=True)
    evaluated = ens.forward(data.test_x)
    for i, seed in enumerate([3, 4]):
        net = lone_net(model, seed).train()
        parts = chunk_bounds(20, ghost) if ghost else [(0, 20)]
        for _ in range(2):
            ref = torch.cat([net(x[i, a:b]) for a, b in parts])
        np.testing.assert_allclose(out[i].detach(), ref.detach(), rtol=1e-4, atol=1e-5)
        assert_same_statistics(ens, i, net)
        np.testing.assert_allclose(evaluated[i].detach(), net.eval()(data.test_x).detach(), rtol=1e-4, atol=1e-5)


def test_one_virtual_batch_is_plain_batch_norm_and_a_lone_image_is_never_a_batch():
    """Ghost BatchNorm with one virtual batch holding the whole batch is plain BatchNorm, to the
    bit; a last virtual batch of a single image joins the one before it."""
    data = synthetic(n_train=32, model="mlp_bn")
    x = data.train_x[:32].view(1, 32, -1)
    plain, whole = Ensemble.initialize("mlp_bn", [0], CPU), Ensemble.initialize("mlp_bn", [0], CPU)
    whole.ghost = 32
    assert torch.equal(plain.forward(x, train=True), whole.forward(x, train=True))
    assert torch.equal(plain.buffers["1.running_var"], whole.buffers["1.running_var"])
    assert chunk_bounds(17, 8) == [(0, 8), (8, 17)] and chunk_bounds(16, 8) == [(0, 8), (8, 16)]


@pytest.mark.parametrize("model, ghost", [("mlp_bn", 0), ("mlp_bn", 8), ("cnn_bn", 8)])
def test_each_seed_of_a_batch_norm_ensemble_follows_its_lone_run(model, ghost):
    data = synthetic(n_train=320 if model == "mlp_bn" else 96, n_test=60, model=model)
    cfg = make_config(batch_size=32, lr=0.05, seeds=(0, 1, 2), epochs=2, model=model, ghost_batch=ghost, **QUIET)
    together = run(cfg, data)
    assert [s.status for s in together.seeds] == ["ok"] * 3
    for seed in (0, 1, 2):
        alone = run(replace(cfg, seeds=(seed,)), data)
        np.testing.assert_allclose(together.seeds[seed].losses, alone.seeds[0].losses, rtol=1e-4, atol=1e-5)
        # evaluation in eval mode reads the seed's own running statistics
        assert together.seeds[seed].final["val_acc"] == pytest.approx(alone.seeds[0].final["val_acc"], abs=0.02)
    if ghost:
        assert f"ghost BatchNorm over virtual batches of {ghost}" in together.step_implementation


@pytest.mark.parametrize(
    "recipe",
    [{}, {"optimizer": "momentum", "momentum": 0.9}, {"model": "cnn"}],
    ids=["sgd", "momentum", "cnn"],
)
def test_accumulation_is_the_huge_batch_update_without_batch_norm(recipe):
    """Micro-batches of 48 summed into one update of the batch of 128 (48 + 48 + 32; the
    epoch's last batch of 88 is 48 + 40): the same run as the batch in one piece, per seed, to
    float tolerance; the batch's loss is the same too."""
    model = recipe.get("model", "mlp")
    data = synthetic(n_train=600 if model == "mlp" else 216, model=model)
    cfg = make_config(batch_size=128, lr=0.1, seeds=(0, 1, 2), epochs=2, fused=False, **QUIET, **recipe)
    whole, accumulated = run(cfg, data), run(replace(cfg, micro_batch=48), data)
    assert "accumulated over micro-batches of 48" in accumulated.step_implementation
    for a, b in zip(whole.seeds, accumulated.seeds, strict=True):
        assert len(a.losses) == len(b.losses) >= 4
        np.testing.assert_allclose(a.losses, b.losses, rtol=1e-4, atol=1e-5)
        assert a.final["val_loss"] == pytest.approx(b.final["val_loss"], rel=1e-4)
        assert a.losses[-1] < a.losses[0]
    assert whole.config.of_seed(0)["micro_batch"] == 0 and accumulated.config.of_seed(0)["micro_batch"] == 48


def test_accumulation_with_batch_norm_is_ghost_batch_norm():
    """With BatchNorm each micro-batch is normalized alone: accumulation over micro-batches of
    32 is ghost BatchNorm over virtual batches of 32, and not BatchNorm over the whole batch."""
    data = synthetic(n_train=600, model="mlp_bn")
    cfg = make_config(batch_size=128, lr=0.1, seeds=(0, 1), epochs=2, model="mlp_bn", **QUIET)
    accumulated = run(replace(cfg, micro_batch=32), data)
    ghost = run(replace(cfg, ghost_batch=32), data)
    whole = run(cfg, data)
    for a, g, w in zip(accumulated.seeds, ghost.seeds, whole.seeds, strict=True):
        np.testing.assert_allclose(a.losses, g.losses, rtol=1e-4, atol=1e-5)
        assert a.final["val_loss"] == pytest.approx(g.final["val_loss"], rel=1e-4)
        assert np.abs(a.losses[1:] - w.losses[1:]).max() > 1e-3


def test_a_frozen_seed_keeps_its_running_statistics():
    """A seed frozen by its fate keeps its weights and its BatchNorm statistics, though the
    stacked forward pass still runs it; the others' move."""
    data = synthetic(n_train=64, model="mlp_bn")
    ens = Ensemble.initialize("mlp_bn", [0, 1], CPU)
    alive = torch.tensor([True, False])
    optimizer = build_optimizer(ens.tensors(), OptimizerSettings())
    step = autograd_step(ens, optimizer, alive, threshold=1000.0)
    before = {k: v.clone() for k, v in ens.state().items()}
    x, y = data.train_x[:64].view(2, 32, -1), data.train_y[:64].view(2, 32)
    for _ in range(3):
        step(x, y, 0.1)
    for name, now in ens.state().items():
        assert torch.equal(now[1], before[name][1]), name
        # the bias before BatchNorm has no gradient: the batch's mean takes it away
        assert torch.equal(now[0], before[name][0]) == (name == "0.bias"), name


def test_resume_with_batch_norm_is_bit_identical(tmp_path):
    """The checkpoint holds the running statistics with the weights."""
    data = synthetic(model="mlp_bn")
    cfg = make_config(batch_size=16, lr=0.05, seeds=(1, 2), epochs=2, model="mlp_bn", ghost_batch=4, **QUIET)
    full = run(cfg, data)
    ckpt = tmp_path / "cell.pt"

    def stop_after_first(state):
        save_checkpoint(ckpt, cfg, state)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, data, on_epoch_end=stop_after_first)
    resumed = run(cfg, data, resume=load_checkpoint(ckpt, cfg))
    for a, b in zip(full.seeds, resumed.seeds, strict=True):
        assert np.array_equal(a.losses, b.losses)
        assert a.final["val_acc"] == b.final["val_acc"]


def test_bad_batch_parts_are_errors_that_say_what_to_do():
    cases = [
        ({"model": "mlp", "ghost_batch": 8}, "ghost BatchNorm needs a BatchNorm model"),
        ({"model": "mlp_bn", "ghost_batch": 1}, "virtual batches must hold 2 to 15 images"),
        ({"model": "mlp_bn", "ghost_batch": 16}, "virtual batches must hold 2 to 15 images"),
        ({"model": "mlp_bn", "micro_batch": 1}, "micro-batches must hold 2 to 15 images"),
        ({"micro_batch": 16}, "micro-batches must hold 1 to 15 images"),
        ({"micro_batch": 4, "splits": 2}, "accumulation and Solution 2 cannot be combined"),
        ({"model": "resnet"}, "unknown model 'resnet'; choose one of mlp, cnn, mlp_bn, cnn_bn"),
    ]
    for fields, message in cases:
        with pytest.raises(CellError, match=message):
            run(make_config(batch_size=16, lr=0.1, **fields), synthetic(n_train=64))
    with pytest.raises(CellError, match="BatchNorm cannot normalize a batch of one image"):
        run(make_config(batch_size=1, lr=0.1, model="mlp_bn"), synthetic(n_train=64))
    with pytest.raises(CellError, match="ends with a batch of one image"):  # 65 = 4 x 16 + 1
        run(make_config(batch_size=16, lr=0.1, model="mlp_bn"), synthetic(n_train=65, model="mlp_bn"))

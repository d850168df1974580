"""Finished seeds are stored under a key of everything that defines their run."""

import numpy as np

from batchlab.train.cell_config import CellConfig
from batchlab.train.records import SeedResult
from batchlab.train.seed_store import SeedStore, seed_key


def test_a_stored_seed_comes_back_only_under_its_own_key(tmp_path):
    cfg = CellConfig(batch_size=16, lr=0.05, seeds=(0, 1))
    context = {"code": "abc", "data": "def", "torch": "2.14.1", "device": "cpu"}
    key = seed_key(cfg.of_seed(1), context)
    result = SeedResult(1, np.arange(5, dtype=np.float32), [{"epoch": 1, "test_acc": 0.9}], [], final={"test_acc": 0.9})
    store = SeedStore(tmp_path / "bs16_lr0.05")
    assert store.get(1, key) is None
    store.put(result, key, {"ensemble_size": 2})
    back, extra = store.get(1, key)
    assert np.array_equal(back.losses, result.losses) and back.epochs == result.epochs and extra == {"ensemble_size": 2}
    # another seed, another lr, other code or other data: another key
    assert seed_key(cfg.of_seed(0), context) != key
    assert seed_key(CellConfig(batch_size=16, lr=0.1, seeds=(0, 1)).of_seed(1), context) != key
    assert seed_key(cfg.of_seed(1), {**context, "code": "abd"}) != key
    assert store.get(1, seed_key(cfg.of_seed(1), {**context, "data": "x"})) is None
    # the seed list is not part of a seed's run
    assert seed_key(CellConfig(batch_size=16, lr=0.05, seeds=(1, 2, 3)).of_seed(1), context) == key


def test_an_unreadable_stored_seed_is_trained_again_and_said(tmp_path):
    said = []
    store = SeedStore(tmp_path, said.append)
    store.path(3).write_bytes(b"not a torch file")
    assert store.get(3, "k") is None and "unreadable" in said[0]

"""The classifier's batches (kecae.training.schedule): epochs as before, a step budget with
streams that run on across epochs, generated images drawn into every batch at a set share,
pre-training, and the cases that must raise."""

from __future__ import annotations

import numpy as np
import pytest

from kecae.training.batches import epoch_order
from kecae.training.schedule import Schedule

# 12 KL-0 and 6 KL-2 real images; 10 generated (5 of each grade)
REAL = np.array([0] * 12 + [1] * 6)
GEN = np.array([0, 1] * 5)


def test_epochs_cut_the_balanced_order_into_whole_batches():
    s = Schedule(REAL, batch_size=5, seed=3, balance=True, epochs=2)
    assert s.epoch_mode and s.steps_per_epoch == 4 and s.total == 8  # 24 balanced // 5
    for epoch in range(2):
        order = epoch_order(REAL, epoch, 3, True)[:20]
        got = np.concatenate([s.batch(epoch * 4 + k) for k in range(4)])
        assert got.tolist() == order.tolist()
    assert [s.evaluates(k) for k in range(8)] == [False, False, False, True] * 2
    assert s.augment_seed(4) == 3 * 1000003 + 1 and s.augment_seed(5) is None


def test_a_step_budget_runs_the_stream_on_across_epochs():
    s = Schedule(REAL, batch_size=5, seed=3, balance=True, epochs=99, max_steps=10, eval_every=4)
    assert s.total == 10 and [k for k in range(10) if s.evaluates(k)] == [3, 7, 9]
    stream = np.concatenate([s.batch(k) for k in range(10)])  # 50 = 2 epochs of 24, and 2
    orders = [epoch_order(REAL, e, 3, True) for e in range(3)]
    assert stream.tolist() == np.concatenate(orders)[:50].tolist()
    # balanced: over two whole epochs each class is drawn equally often
    assert np.bincount(REAL[stream[:48]]).tolist() == [24, 24]
    assert len({s.augment_seed(k) for k in range(10)}) == 10  # re-seeded at every step


@pytest.mark.parametrize(("ratio", "n_mix"), [(1.0, 4), (3.0, 6), (0.25, 2)])
def test_generated_images_fill_a_set_share_of_every_batch(ratio, n_mix):
    s = Schedule(
        REAL, batch_size=8, seed=0, balance=True, epochs=1, max_steps=12, mix_labels=GEN,
        mix_ratio=ratio,
    )  # fmt: skip
    assert (s.n_mix, s.n_real) == (n_mix, 8 - n_mix)
    batches = [s.batch(k) for k in range(12)]
    assert all(len(b) == 8 and (b >= len(REAL)).sum() == n_mix for b in batches)
    # the real part is the real stream of a run without generated images, consumed slower
    plain = Schedule(REAL, batch_size=8, seed=0, balance=True, epochs=1, max_steps=12)
    real = np.concatenate([b[b < len(REAL)] for b in batches])
    assert (
        real.tolist() == np.concatenate([plain.batch(k) for k in range(12)])[: len(real)].tolist()
    )
    # the generated part is balanced too: whole epochs of the 10 give 5 of each grade
    gen = np.concatenate([b[b >= len(REAL)] for b in batches]) - len(REAL)
    assert np.bincount(GEN[gen[:10]]).tolist() == [5, 5]


def test_pretraining_draws_generated_batches_first_and_selects_after():
    s = Schedule(
        REAL, batch_size=4, seed=1, balance=True, epochs=1, max_steps=8, mix_labels=GEN,
        pretrain_steps=3,
    )  # fmt: skip
    assert s.n_mix == 0  # no share: whole batches from one pool at a time
    for k in range(8):
        b = s.batch(k)
        assert len(b) == 4 and ((b >= len(REAL)).all() if k < 3 else (b < len(REAL)).all())
        assert s.selectable(k) == (k >= 3)
    # fine-tuning starts the real stream at its beginning
    plain = Schedule(REAL, batch_size=4, seed=1, balance=True, epochs=1, max_steps=8)
    assert s.batch(3).tolist() == plain.batch(0).tolist()
    assert s.epoch_of(2) == 0 and s.epoch_of(8) == pytest.approx(6 * 4 / 24)


def test_bad_schedules_raise():
    kw = dict(batch_size=4, seed=0, balance=True, epochs=1)
    with pytest.raises(ValueError, match="generated pool"):
        Schedule(REAL, max_steps=5, mix_ratio=1.0, **kw)
    with pytest.raises(ValueError, match="leave steps to fine-tune"):
        Schedule(REAL, max_steps=5, mix_labels=GEN, pretrain_steps=5, **kw)
    with pytest.raises(ValueError, match="step budget"):
        Schedule(REAL, mix_labels=GEN, pretrain_steps=2, **kw)


def test_cosine_learning_rate_by_hand():
    s = Schedule(REAL, batch_size=4, seed=0, balance=True, epochs=1, max_steps=8)
    assert [s.lr_factor(k, "constant") for k in (0, 7)] == [1.0, 1.0]
    # 0.5 (1 + cos(pi k / 8)): 1 at the start, 0.5 halfway, near 0 at the last step
    assert s.lr_factor(0, "cosine") == 1.0 and s.lr_factor(4, "cosine") == pytest.approx(0.5)
    assert s.lr_factor(7, "cosine") == pytest.approx(0.5 * (1 + np.cos(np.pi * 7 / 8)))
    # pre-training and fine-tuning each run their own cosine
    p = Schedule(
        REAL, batch_size=4, seed=0, balance=True, epochs=1, max_steps=8, mix_labels=GEN,
        pretrain_steps=4,
    )  # fmt: skip
    assert p.lr_factor(2, "cosine") == pytest.approx(0.5) and p.lr_factor(4, "cosine") == 1.0
    assert p.lr_factor(6, "cosine") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="cosine"):
        s.lr_factor(0, "linear")

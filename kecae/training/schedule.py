"""Which images each optimiser step of the classifier trains on, as a pure function of (seed,
step), so a resumed run sees the batches an uninterrupted one would.

Two ways to stop, one schedule:

- **epochs** (the supervisor and the judge): each epoch a seeded order of the training pool
  (the minority class bootstrapped to parity), cut into whole batches; validation after each
  epoch, early stopping on it.
- **a step budget** (``max_steps``; the downstream study): exactly that many steps, validation
  every ``eval_every`` steps, no early stopping, so every row of a comparison trains the same
  number of optimiser steps. Images come from class-balanced streams that run on across epochs:
  the training pool and, when generated images are mixed in, a second pool from which a fixed
  share of every batch is drawn (``mix_ratio`` generated per real image). With
  ``pretrain_steps`` the first steps draw whole batches from the generated pool, the rest from
  the training pool (pre-train, then fine-tune), and only fine-tuning steps may be selected.

Pool indices are global: the training pool is ``0 .. n_train - 1``, the mixed-in pool follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kecae.data.balance import balanced_indices
from kecae.registry import LR_SCHEDULES

#: Salts of the two streams' random orders (17 is the epoch order's, so the training pool's
#: stream is the epochs' orders run together).
_SALT_TRAIN, _SALT_MIX = 17, 23


def lr_factor(kind: str, step: int, length: int) -> float:
    """The learning rate of ``step`` (0-based) of a schedule ``length`` steps long, as a share of
    the set one: 1 (``constant``), or a half cosine from 1 at step 0 to 0 after the last
    (``cosine``)."""
    if kind == "constant":
        return 1.0
    if kind != "cosine":
        raise ValueError(f"lr schedule must be one of {list(LR_SCHEDULES)}, got {kind!r}")
    return 0.5 * (1.0 + math.cos(math.pi * step / length))


def pool_order(labels: np.ndarray, epoch: int, seed: int, balance: bool, salt: int) -> np.ndarray:
    """One epoch of a pool: a seeded permutation of its images, the minority classes
    bootstrap-oversampled to the largest class first when ``balance``."""
    rng = np.random.default_rng([seed, epoch, salt])
    index = balanced_indices(labels, rng) if balance else np.arange(len(labels))
    return rng.permutation(index)


@dataclass
class Stream:
    """The indices of one pool, epoch after epoch without a break; ``take(start, n)`` gives
    positions ``start .. start + n - 1`` of that endless sequence."""

    labels: np.ndarray
    seed: int
    balance: bool
    salt: int
    _orders: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def epoch_length(self) -> int:
        return len(self.order(0))

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 4:  # a run only moves forward: keep the last few epochs
                self._orders.pop(min(self._orders))
            self._orders[epoch] = pool_order(self.labels, epoch, self.seed, self.balance, self.salt)
        return self._orders[epoch]

    def take(self, start: int, n: int) -> np.ndarray:
        length = self.epoch_length
        parts, pos = [], start
        while pos < start + n:
            epoch, offset = divmod(pos, length)
            part = self.order(epoch)[offset : offset + (start + n - pos)]
            parts.append(part)
            pos += len(part)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


class Schedule:
    """The batches of one classifier run.

    ``labels``: the training pool's labels; ``mix_labels``: the mixed-in (generated) pool's, or
    None. ``max_steps`` 0 means epochs. ``batch(step)`` gives the global pool indices of a step,
    ``evaluates(step)`` whether validation follows it, ``selectable(step)`` whether its weights
    may be kept as the best, and ``augment_seed(step)`` the seed the batch augmentation is
    re-seeded with before the step (None: keep drawing from the generator).
    """

    def __init__(
        self,
        labels: np.ndarray,
        *,
        batch_size: int,
        seed: int,
        balance: bool,
        epochs: int,
        max_steps: int = 0,
        eval_every: int = 0,
        mix_labels: np.ndarray | None = None,
        mix_ratio: float = 0.0,
        pretrain_steps: int = 0,
    ) -> None:
        if (mix_ratio > 0 or pretrain_steps > 0) and (mix_labels is None or not len(mix_labels)):
            raise ValueError("mix_ratio and pretrain_steps need a generated pool to draw from")
        if pretrain_steps and not max_steps:
            raise ValueError("pretrain_steps needs a step budget (max_steps)")
        if max_steps and pretrain_steps >= max_steps:
            raise ValueError(
                f"pretrain_steps ({pretrain_steps}) must leave steps to fine-tune: fewer than "
                f"max_steps ({max_steps})"
            )
        self.batch_size, self.seed, self.max_steps = batch_size, seed, max_steps
        self.pretrain_steps = pretrain_steps
        self.n_train = len(labels)
        self.train = Stream(labels, seed, balance, _SALT_TRAIN)
        self.mix = None if mix_labels is None else Stream(mix_labels, seed, balance, _SALT_MIX)
        length = self.train.epoch_length
        # epochs: whole batches only (one short batch when the pool is smaller than one)
        self.steps_per_epoch = max(1, length // batch_size)
        if max_steps:
            self.total = max_steps
            self.eval_every = eval_every or max(1, max_steps // 30)
        else:
            self.total = epochs * self.steps_per_epoch
            self.eval_every = self.steps_per_epoch
        # the share of each batch drawn from the generated pool: r generated per real image
        self.n_mix = 0
        if max_steps and mix_ratio > 0 and not pretrain_steps:
            self.n_mix = min(
                batch_size - 1, max(1, round(batch_size * mix_ratio / (1 + mix_ratio)))
            )
        self.n_real = batch_size - self.n_mix

    @property
    def epoch_mode(self) -> bool:
        return not self.max_steps

    def batch(self, step: int) -> np.ndarray:
        """Global pool indices of the batch of ``step`` (0-based)."""
        b = self.batch_size
        if self.epoch_mode:
            epoch, k = divmod(step, self.steps_per_epoch)
            order = self.train.order(epoch)
            if len(order) >= b:
                order = order[: len(order) - len(order) % b]
            return order[k * b : (k + 1) * b]
        if step < self.pretrain_steps:
            assert self.mix is not None
            return self.n_train + self.mix.take(step * b, b)
        if self.pretrain_steps:
            return self.train.take((step - self.pretrain_steps) * b, b)
        real = self.train.take(step * self.n_real, self.n_real)
        if not self.n_mix:
            return real
        assert self.mix is not None
        return np.concatenate([real, self.n_train + self.mix.take(step * self.n_mix, self.n_mix)])

    def evaluates(self, step: int) -> bool:
        return (step + 1) % self.eval_every == 0 or step + 1 == self.total

    def selectable(self, step: int) -> bool:
        return step >= self.pretrain_steps

    def epoch_of(self, step: int) -> float:
        """Epochs of the training pool seen after ``step`` (whole epochs in epoch mode)."""
        if self.epoch_mode:
            return float(step // self.steps_per_epoch)
        real_steps = step + 1 - self.pretrain_steps
        per_step = self.batch_size if self.pretrain_steps else self.n_real
        return max(0, real_steps) * per_step / self.train.epoch_length

    def lr_factor(self, step: int, kind: str) -> float:
        """The learning rate of ``step`` as a share of the set one: 1 (``constant``), or a
        half cosine from 1 at the first step to 0 after the last (``cosine``; pre-training
        and fine-tuning each have their own)."""
        start, length = 0, self.total
        if self.pretrain_steps:
            start = 0 if step < self.pretrain_steps else self.pretrain_steps
            length = self.pretrain_steps if step < self.pretrain_steps else self.total - start
        return lr_factor(kind, step - start, length)

    def augment_seed(self, step: int) -> int | None:
        if self.epoch_mode:
            epoch, k = divmod(step, self.steps_per_epoch)
            return self.seed * 1000003 + epoch if k == 0 else None
        return self.seed * 1000003 + 7919 * step + 1

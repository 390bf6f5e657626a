"""``phantom_params(n, seed)``: phantom parameters of ``n`` knees, KL-0 and KL-2 alternating."""

from __future__ import annotations

import numpy as np
import pytest

from kecae.phantoms import PhantomParams, sample_params


def _params(n: int, seed: int, grades: tuple[int, ...] = (0, 2)) -> list[PhantomParams]:
    rng = np.random.default_rng(seed)
    return [sample_params(grades[i % len(grades)], rng) for i in range(n)]


@pytest.fixture(scope="session")
def phantom_params():
    return _params

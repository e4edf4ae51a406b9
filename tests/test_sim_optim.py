"""Tests of sim.Adam against Kingma & Ba's Algorithm 1 written out."""

import numpy as np
import pytest

from sim import Adam


def test_adam_matches_algorithm_1_and_round_trips():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(6, 3))
    opt = Adam(3, beta1=0.8, beta2=0.99, eps=1e-6)
    m = v = np.zeros(3)
    for t, g in enumerate(grads[:4], start=1):
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        expect = (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-6)
        np.testing.assert_allclose(opt.direction(g), expect, rtol=1e-14)
    state = opt.state_dict()
    ref = [opt.direction(g) for g in grads[4:]]
    opt2 = Adam(3, beta1=0.8, beta2=0.99, eps=1e-6)
    opt2.load_state_dict(state)
    assert all(np.array_equal(a, b) for a, b in zip(ref, (opt2.direction(g) for g in grads[4:])))


def test_adam_bad_input():
    with pytest.raises(ValueError, match="grad must have shape"):
        Adam(3).direction(np.zeros(2))
    with pytest.raises(ValueError, match="beta1 must be < 1"):
        Adam(3, beta1=1.0)

"""Linear Bradley-Terry preferences from a mixture of objectives, with controllable preference shift.

The DRO-REBEL setting (linear rewards, log-linear policies) with the shift of its experiments: the
reward is a mixture of objectives (annotator populations, or the reward heads of a multi-objective
reward model), training pairs come from one mixture ``P`` and evaluation uses shifted mixtures
``Q`` it never saw.

Generative model (documented choices, not tuned to any verdict):

* ``J`` objectives with parameters ``theta_j`` drawn uniformly on the unit sphere of ``R^d`` (so
  every objective has reward scale 1 and different objectives disagree).
* A pair is two responses with features ``phi_a, phi_b ~ N(0, I_d)`` (a prompt's candidates
  sampled by the reference policy). It is scored by one objective ``g ~ P`` (the annotator of the
  pair): observed rewards ``r_a = theta_g . phi_a + noise eps_a``, ``r_b = theta_g . phi_b +
  noise eps_b``, ``eps ~ N(0, 1)``. REBEL regresses ``r_a - r_b`` on ``phi_a - phi_b``; least squares
  estimates ``theta_P = sum_j P_j theta_j``.
* Under a mixture ``Q`` the population's reward is ``r_Q = theta_Q . phi`` with ``theta_Q = sum_j
  Q_j theta_j`` (a mixed reward ``sum_j Q_j r_j``, as in DRO-REBEL's mixture experiments), and
  its preferences are Bradley-Terry: ``P_Q(a > b) = sigmoid(r_Q(a) - r_Q(b))``.
* Shift of size ``s`` in ``[0, 1]``: ``Q_s = (1 - s) P + s e_k`` with ``k`` the objective ``P``
  weighs least (the minority preference becomes dominant at ``s = 1``).

Metrics of an estimate ``w`` of the reward parameter under ``Q``: parameter error
``||w - theta_Q||^2``; preference accuracy, the probability that ``sign(w . (phi_a - phi_b))``
matches a Bradley-Terry label drawn under ``Q`` (exact given the evaluation pairs); and the regret
of the KL-regularised policy ``pi_w ~ pi_0 exp(eta w . phi)`` (one REBEL step from a uniform
``pi_0`` over ``K`` candidates) in the objective ``J_Q(pi) = E_pi[r_Q] - KL(pi || pi_0) / eta``,
whose maximiser is ``pi_{theta_Q}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from solvers._validation import (
    as_float_array,
    check_finite_scalar,
    check_int_scalar,
    check_rng,
)

__all__ = ["LinearBTPreferences", "mixture_divergence"]


def mixture_divergence(q: Any, p: Any, kind: str) -> float:
    """Divergence of mixture weights ``q`` from ``p``: ``"kl"`` ``sum q log(q/p)`` or ``"chi2"``
    ``1/2 sum p (q/p - 1)^2`` (the conventions of :func:`solvers.dro_rebel_weights`).

    Reweighting the training pairs of objective ``j`` by ``q_j / p_j`` turns the empirical
    distribution of ``P`` into one of ``Q`` whose divergence from the uniform weights is this
    number, so it is the radius an ambiguity set needs to contain the shift ``P -> Q``.
    """
    qa = as_float_array(q, "q", ndim=1, nonneg=True)
    pa = as_float_array(p, "p", ndim=1, positive=True)
    if qa.shape != pa.shape:
        raise ValueError(f"q and p must have the same shape, got {qa.shape} and {pa.shape}")
    if kind == "kl":
        pos = qa > 0
        return float(np.sum(qa[pos] * np.log(qa[pos] / pa[pos])))
    if kind == "chi2":
        return float(0.5 * np.sum(pa * (qa / pa - 1.0) ** 2))
    raise ValueError(f"kind must be 'kl' or 'chi2', got {kind!r}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class LinearBTPreferences:
    """Mixture of linear objectives with Bradley-Terry preferences (see the module docstring).

    Parameters
    ----------
    dim : int >= 1
        Feature dimension ``d``.
    mixture : sequence of float
        Training mixture ``P`` over the ``J = len(mixture)`` objectives (positive, sums to 1).
    noise : float >= 0
        Standard deviation of the observed reward of one response.
    seed : int, Generator or None
        Draws the objectives ``theta_j``.

    Examples
    --------
    >>> prefs = LinearBTPreferences(dim=4, mixture=(0.7, 0.3), seed=0)
    >>> fa, fb, ra, rb, groups = prefs.sample_pairs(5, np.random.default_rng(1))
    >>> fa.shape, ra.shape, sorted(set(groups.tolist())) <= [0, 1]
    ((5, 4), (5,), True)
    """

    def __init__(self, *, dim: int = 8, mixture: Any = (0.6, 0.3, 0.1), noise: float = 1.0, seed: Any = 0) -> None:
        self.dim = check_int_scalar(dim, "dim", lo=1)
        mix = as_float_array(mixture, "mixture", ndim=1, positive=True, min_size=1)
        if abs(mix.sum() - 1.0) > 1e-9:
            raise ValueError(f"mixture must sum to 1, got {float(mix.sum())!r}")
        self.mixture = mix / mix.sum()
        self.noise = check_finite_scalar(noise, "noise", lo=0.0)
        rng = check_rng(seed)
        comps = rng.standard_normal((mix.size, self.dim))
        self.components = comps / np.linalg.norm(comps, axis=1, keepdims=True)
        self.minority = int(np.argmin(self.mixture))

    @property
    def n_components(self) -> int:
        return int(self.mixture.size)

    def shifted(self, s: float) -> np.ndarray:
        """``Q_s = (1 - s) P + s e_k`` with ``k`` the least-weighted objective; ``0 <= s <= 1``."""
        s_f = check_finite_scalar(s, "s", lo=0.0, hi=1.0)
        q = (1.0 - s_f) * self.mixture
        q[self.minority] += s_f
        return q

    def theta(self, mixture: Any = None) -> np.ndarray:
        """``theta_Q = sum_j Q_j theta_j`` (the training mixture ``P`` by default)."""
        q = self.mixture if mixture is None else as_float_array(mixture, "mixture", ndim=1, nonneg=True)
        if q.shape != self.mixture.shape:
            raise ValueError(f"mixture must have {self.n_components} weights, got shape {q.shape}")
        return q @ self.components

    def sample_pairs(self, n: int, rng: Any, mixture: Any = None):
        """``n`` training pairs under ``mixture`` (default ``P``).

        Returns
        -------
        features_a, features_b : ndarray, shape [n, d]
        rewards_a, rewards_b : ndarray, shape [n]
        groups : ndarray of int64, shape [n]
            The objective that scored each pair.
        """
        n_i = check_int_scalar(n, "n", lo=1)
        gen = check_rng(rng, "rng")
        q = self.mixture if mixture is None else as_float_array(mixture, "mixture", ndim=1, nonneg=True)
        fa = gen.standard_normal((n_i, self.dim))
        fb = gen.standard_normal((n_i, self.dim))
        groups = gen.choice(self.n_components, size=n_i, p=q / q.sum()).astype(np.int64)
        th = self.components[groups]
        ra = np.einsum("nd,nd->n", fa, th) + self.noise * gen.standard_normal(n_i)
        rb = np.einsum("nd,nd->n", fb, th) + self.noise * gen.standard_normal(n_i)
        return fa, fb, ra, rb, groups

    def parameter_error(self, w: Any, mixture: Any = None) -> float:
        """``||w - theta_Q||^2``."""
        return float(np.sum((np.asarray(w, float) - self.theta(mixture)) ** 2))

    def preference_accuracy(self, w: Any, diffs: Any, mixture: Any = None) -> float:
        """Probability that ``sign(w . diff)`` matches a Bradley-Terry label under ``Q`` (reward
        ``theta_Q . phi``), averaged over the evaluation pairs' feature differences ``diffs`` [m, d]
        (exact given ``diffs``; a tie ``w . diff = 0`` counts 1/2)."""
        dd = as_float_array(diffs, "diffs", ndim=2)
        margin = dd @ self.theta(mixture)
        pred = np.sign(dd @ np.asarray(w, float))
        p_a = _sigmoid(margin)
        acc = np.where(pred > 0, p_a, np.where(pred < 0, 1.0 - p_a, 0.5))
        return float(acc.mean())

    def regret(self, w: Any, features: Any, eta: float, mixture: Any = None) -> float:
        """Mean over prompts of ``J_Q(pi_{theta_Q}) - J_Q(pi_w)`` with ``pi_v ~ exp(eta v . phi)`` over
        each prompt's candidates ``features`` [P, K, d] (uniform ``pi_0``) and
        ``J_Q(pi) = E_pi[theta_Q . phi] - KL(pi || uniform) / eta``. Non-negative; 0 iff
        ``pi_w = pi_{theta_Q}``."""
        feats = as_float_array(features, "features", ndim=3)
        eta_f = check_finite_scalar(eta, "eta", lo=0.0, lo_open=True)
        r = feats @ self.theta(mixture)
        k = feats.shape[1]

        def objective(logits: np.ndarray) -> np.ndarray:
            z = logits - logits.max(axis=1, keepdims=True)
            lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            p = np.exp(lp)
            return (p * r).sum(axis=1) - (p * (lp + np.log(k))).sum(axis=1) / eta_f

        best = objective(eta_f * r)
        got = objective(eta_f * (feats @ np.asarray(w, float)))
        return float(np.maximum(best - got, 0.0).mean())

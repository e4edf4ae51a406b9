"""Adversarial multi-armed bandits of the EXP3 family: ``Exp3``, ``Exp3P`` and ``Exp3IX``.

All three keep exponential weights in log space (``log_weights``) and turn them into a sampling
distribution with a max-subtracted softmax, so arbitrarily large cumulative estimates never
overflow. ``log_weights`` are defined up to an additive constant (probabilities are invariant to
shifts); after every update the maximum is subtracted so the largest log weight is exactly 0.

References
----------
.. [ACFS02] P. Auer, N. Cesa-Bianchi, Y. Freund, R. E. Schapire, "The nonstochastic multiarmed
   bandit problem", SIAM J. Comput. 32(1), 2002. Fig. 1 (Exp3), Cor. 3.2, Fig. 3 (Exp3.P),
   Thm. 6.3.
.. [Neu15] G. Neu, "Explore no more: improved high-probability regret bounds for non-stochastic
   bandits", NeurIPS 2015. Sec. 2 (Exp3-IX), Thm. 1.
.. [GDRO] K. Panaganti et al., "Group Distributionally Robust Optimization-Driven Reinforcement
   Learning for LLM Reasoning" (GDRO), arXiv:2601.19280, App. C.2:
   the practical EXP3P constants (step size 0.65, exploration 0.01).

What was checked, and against what (review of 2026-11-25)
---------------------------------------------------------
The constants below were first written from memory; a reviewer then searched the project's
reference corpora (documentation pages, stored web pages, public code) for the primary texts.

* **Checked against a secondary source.** The Exp3.P update of Fig. 3 of [ACFS02] (mixing
  ``(1 - gamma) w / sum w + gamma / K``; ``xhat = x / p`` on the played arm only; step
  ``gamma / (3K)``; bonus ``alpha / (p_j sqrt(K T))`` on *every* arm; equal initial weights)
  agrees with the restatement of Fig. 3 in the Bandits.jl documentation (``doc/EXP3P.md`` of
  ``UmaArunachalam8/Bandits.jl``). The Exp3-IX update of [Neu15] (``lhat = l / (p + gamma)`` on
  the played arm, ``w <- w exp(-eta lhat)``, no explicit uniform mixing) and its tuning
  ``eta = 2 gamma = sqrt(2 ln K / (K T))`` agree with public implementations that cite [Neu15]
  (found by the code search; one of them the anytime variant ``sqrt(2 ln K / (K t))``), and the
  NeurIPS 2015 abstract of [Neu15] confirms that Exp3-IX has no forced uniform exploration.
* **Not verified against the primary text** (no page quoting them could be found): the numbers
  of Cor. 3.2 of [ACFS02] (``gamma = min(1, sqrt(K ln K / ((e - 1) g)))``, bound
  ``2 sqrt(e - 1) sqrt(g K ln K)``), of Thm. 6.3 of [ACFS02] (``gamma = min(3/5, 2 sqrt(3/5 K ln
  K / T))``, ``alpha = 2 sqrt(ln(K T / delta))``, bound ``4 sqrt(K T ln(K T / delta)) + 4 sqrt(5/3
  K T ln K) + 8 ln(K T / delta)``) and of Thm. 1 of [Neu15] (bound ``2 sqrt(2 K T ln K) +
  (sqrt(2 K T / ln K) + 1) ln(2 / delta)``). They are the values as recalled independently by the
  author and by the reviewer (who agree); treat them as unconfirmed. The tests only check them
  empirically (observed regret below each bound on adversarial tables, uniform play above it),
  which would catch a bound that is far too small but not a wrong constant that is too large.

Conventions: ``Exp3`` and ``Exp3P`` receive *rewards* in [0, 1]; ``Exp3IX`` receives *losses* in
[0, 1] (as in the papers). Every public method validates its input and leaves the state untouched
when it raises.

Log weights are floored at :data:`LOG_WEIGHT_FLOOR` (-700) below the best arm, as in the GDRO
controllers (:mod:`bandits.prompt_gdro`): ``exp(-700) ~ 1e-304`` is zero for sampling, and the
floor keeps every state finite whatever the losses (a weight whose update overflows to
``-inf`` -- an Exp3-IX loss estimate beyond DBL_MAX -- sits at the floor instead of poisoning
every later update).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from solvers._validation import MAX_SIZE, check_finite_scalar, check_int_scalar, check_rng

from ._state import StateReader, new_state, rng_state

__all__ = ["Exp3", "Exp3P", "Exp3IX", "exp3p_regret_bound", "exp3ix_regret_bound"]

LOG_WEIGHT_FLOOR = -700.0
"""Lowest stored log weight relative to the best arm (the GDRO controllers' floor)."""


def _softmax(log_weights: np.ndarray) -> np.ndarray:
    """Softmax with max subtraction (never overflows; exact zeros only on underflow)."""
    z = log_weights - log_weights.max()
    e = np.exp(z)
    return e / e.sum()


class _LogWeightBandit:
    """Shared state and validation of the exponential-weights bandits (not public)."""

    _value_name = "reward"

    def __init__(self, n_arms: Any, seed: Any) -> None:
        self.n_arms = check_int_scalar(n_arms, "n_arms", lo=1, hi=MAX_SIZE)
        self._rng = check_rng(seed)
        self.log_weights = np.zeros(self.n_arms, dtype=np.float64)
        self.t = 0

    # -- validation -------------------------------------------------------------------------
    def _check_arm(self, arm: Any) -> int:
        return check_int_scalar(arm, "arm", lo=0, hi=self.n_arms - 1)

    def _check_value(self, value: Any) -> float:
        return check_finite_scalar(value, self._value_name, lo=0.0, hi=1.0)

    def _commit(self, new_log_weights: np.ndarray) -> None:
        """Store new log weights, max-normalised and floored at :data:`LOG_WEIGHT_FLOOR`.

        ``-inf`` entries (a weight driven to 0 by an overflowing loss step) go to the floor;
        ``+inf`` or NaN (an overflowing gain: which arm dominates is then undefined) raise."""
        top = new_log_weights.max()
        if np.isnan(new_log_weights).any() or not np.isfinite(top):
            raise ValueError(
                f"{type(self).__name__} update would make the log weights non-finite "
                f"(the step eta={getattr(self, 'eta', None)!r} times the importance-weighted "
                "estimate overflows); state left unchanged"
            )
        with np.errstate(over="ignore"):
            shifted = new_log_weights - top  # -inf where the spread overflows: floored
        self.log_weights = np.maximum(shifted, LOG_WEIGHT_FLOOR)
        self.t += 1

    # -- public -----------------------------------------------------------------------------
    def probabilities(self) -> np.ndarray:
        """Current sampling distribution over arms, float64 of shape ``(n_arms,)``."""
        raise NotImplementedError

    def sample(self) -> int:
        """Draw an arm from :meth:`probabilities` with the learner's own Generator."""
        p = self.probabilities()
        # inverse-CDF sampling with one uniform draw: deterministic given the seed.
        u = self._rng.random()
        arm = int(np.searchsorted(np.cumsum(p), u * p.sum(), side="right"))
        return min(arm, self.n_arms - 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_arms={self.n_arms}, t={self.t})"

    # -- checkpoints ------------------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Checkpoint: hyperparameters, ``log_weights``, ``t`` and the generator state.

        Plain numbers, strings and NumPy arrays only (see :mod:`bandits._state`);
        :meth:`load_state_dict` on an object constructed with the same hyperparameters resumes
        the trajectory bit for bit.
        """
        return new_state(self, self._hyperparameters(), log_weights=self.log_weights, t=self.t,
                         rng=rng_state(self._rng))

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` (also after a JSON round trip).

        Raises ``ValueError``/``TypeError`` on another class, version, hyperparameters, a wrong
        shape or non-finite weights; the object is then unchanged.
        """
        r = StateReader(self, state, self._hyperparameters())
        log_w = r.array("log_weights", (self.n_arms,), np.float64)
        t = r.int("t", lo=0)
        rng = r.rng("rng", self._rng)
        self.log_weights, self.t = log_w, t
        self._rng.bit_generator.state = rng


class Exp3(_LogWeightBandit):
    """EXP3 of Auer et al. 2002 (Fig. 1) for rewards in [0, 1].

    ``p_i = (1 - gamma) w_i / sum_j w_j + gamma / K``; after playing arm ``i`` with reward ``x``,
    ``w_i <- w_i exp(gamma * x / (p_i K))`` (the importance-weighted estimate ``x / p_i`` scaled by
    ``gamma / K``); the other weights are unchanged.

    Parameters
    ----------
    n_arms : int
        Number of arms ``K >= 1``.
    gamma : float or None
        Exploration / learning rate in (0, 1]. ``None`` uses Cor. 3.2 of [ACFS02] with the bound
        ``g = horizon`` on the best arm's total reward:
        ``gamma = min(1, sqrt(K ln K / ((e - 1) g)))`` (then ``horizon`` is required).
    horizon : int, optional
        Number of rounds ``T`` (only used to set ``gamma`` when it is ``None``; the learner keeps
        working past it).
    seed : None, int or numpy.random.Generator
        Randomness for :meth:`sample`.

    Notes
    -----
    Cor. 3.2 of [ACFS02]: with the ``gamma`` above, ``E[G_max - G_Exp3] <= 2 sqrt(e - 1)
    sqrt(g K ln K)``. For ``K = 1`` the distribution is always ``[1.0]``.

    Examples
    --------
    >>> b = Exp3(3, gamma=0.3, seed=0)
    >>> b.probabilities()
    array([0.33333333, 0.33333333, 0.33333333])
    >>> b.update(0, 1.0)
    >>> bool(b.probabilities()[0] > 1 / 3)
    True
    """

    def __init__(self, n_arms: Any, *, gamma: Any, horizon: Any = None, seed: Any = None) -> None:
        super().__init__(n_arms, seed)
        self.horizon = None if horizon is None else check_int_scalar(horizon, "horizon", lo=1)
        if gamma is None:
            if self.horizon is None:
                raise ValueError("gamma=None needs a horizon (Cor. 3.2 of Auer et al. 2002)")
            k = self.n_arms
            gamma = 1.0 if k == 1 else min(
                1.0, math.sqrt(k * math.log(k) / ((math.e - 1.0) * self.horizon))
            )
        self.gamma = check_finite_scalar(gamma, "gamma", lo=0.0, hi=1.0, lo_open=True)

    def _hyperparameters(self) -> dict:
        return {"n_arms": self.n_arms, "gamma": self.gamma, "horizon": self.horizon}

    def probabilities(self) -> np.ndarray:
        return (1.0 - self.gamma) * _softmax(self.log_weights) + self.gamma / self.n_arms

    def update(self, arm: Any, reward: Any) -> None:
        """Importance-weighted EXP3 update with the reward of the arm just played.

        Parameters
        ----------
        arm : int
            The arm played, in ``[0, n_arms)``.
        reward : float
            Its reward, in [0, 1].
        """
        arm = self._check_arm(arm)
        reward = self._check_value(reward)
        p = self.probabilities()
        new = self.log_weights.copy()
        new[arm] += self.gamma * (reward / p[arm]) / self.n_arms
        self._commit(new)


def exp3p_default_constants(n_arms: int, horizon: int, delta: float) -> tuple[float, float]:
    """``(alpha, gamma)`` of Thm. 6.3 of [ACFS02].

    ``alpha = 2 sqrt(ln(K T / delta))`` and ``gamma = min(3/5, 2 sqrt(3/5 * K ln K / T))``.
    For ``K = 1`` (nothing to learn) ``gamma`` is 3/5 and irrelevant.
    """
    k, t = n_arms, horizon
    alpha = 2.0 * math.sqrt(math.log(k) + math.log(t) - math.log(delta))  # K T / delta may overflow
    gamma = 0.6 if k == 1 else min(0.6, 2.0 * math.sqrt(0.6 * k * math.log(k) / t))
    return alpha, gamma


def exp3p_regret_bound(n_arms: int, horizon: int, delta: float) -> float:
    """High-probability regret bound of Exp3.P, Thm. 6.3 of [ACFS02].

    With the default constants of :class:`Exp3P` (``eta = gamma / (3K)``), with probability at
    least ``1 - delta`` over the learner's randomisation, for *any* fixed reward table
    ``x in [0,1]^{T x K}``::

        G_max - G_Exp3P <= 4 sqrt(K T ln(K T / delta)) + 4 sqrt(5/3 K T ln K) + 8 ln(K T / delta)

    where ``G_max = max_j sum_t x_j(t)`` and ``G_Exp3P = sum_t x_{i_t}(t)``. The constants were
    not verified against the text of [ACFS02] (see the module docstring).
    """
    k = check_int_scalar(n_arms, "n_arms", lo=1)
    t = check_int_scalar(horizon, "horizon", lo=1)
    d = check_finite_scalar(delta, "delta", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    lkt = math.log(k) + math.log(t) - math.log(d)
    return 4.0 * math.sqrt(k * t * lkt) + 4.0 * math.sqrt(5.0 / 3.0 * k * t * math.log(k)) + 8.0 * lkt


class Exp3P(_LogWeightBandit):
    """EXP3.P of Auer et al. 2002 (Fig. 3) for rewards in [0, 1], with high-probability regret.

    Distribution: ``p_j = (1 - gamma) w_j / sum_i w_i + gamma / K``. After playing arm ``i`` with
    reward ``x``, every arm ``j`` gets the optimistic estimate
    ``xhat_j = x / p_i * [j == i]`` plus the confidence bonus ``alpha / (p_j sqrt(K T))`` and::

        log w_j <- log w_j + eta * (xhat_j + alpha / (p_j * sqrt(K T)))

    with ``eta = gamma / (3K)`` in [ACFS02] (the textbook constants). The initial weights
    ``exp(alpha gamma / 3 sqrt(T / K))`` of Fig. 3 are equal across arms, so they are stored as 0
    (log weights are defined up to an additive constant).

    Parameters
    ----------
    n_arms : int
        Number of arms ``K >= 1``.
    horizon : int
        Number of rounds ``T`` the constants are tuned for (the learner keeps working past it,
        but the guarantee only covers ``T`` rounds).
    alpha : float, optional
        Confidence-bonus scale ``alpha >= 0``. Default ``2 sqrt(ln(K T / delta))`` (Thm. 6.3);
        ``alpha = 0`` removes the bonus (plain EXP3 with step ``eta``).
    gamma : float, optional
        Uniform-exploration mixing in (0, 1]. Default ``min(3/5, 2 sqrt(3/5 K ln K / T))``
        (Thm. 6.3). The GDRO paper's practical value is 0.01 (App. C.2).
    delta : float, optional
        Failure probability in (0, 1) used for the default ``alpha`` and by
        :func:`exp3p_regret_bound`. Default 0.05.
    eta : float, optional
        Step size on the estimated rewards, ``> 0``. Default ``gamma / (3K)`` ([ACFS02]). The GDRO
        paper's practical EXP3P uses 0.65 with ``gamma = 0.01`` (App. C.2.1-C.2.2), because the
        textbook constants learn very slowly. With a non-default ``eta`` or ``alpha`` the bound of
        Thm. 6.3 no longer applies.
    seed : None, int or numpy.random.Generator
        Randomness for :meth:`sample`.

    Attributes
    ----------
    log_weights : ndarray, shape (K,)
        Log weights (max-normalised to 0).
    t : int
        Number of updates so far.
    alpha, gamma, eta, delta, horizon : float / int
        The constants in use.

    Notes
    -----
    Thm. 6.3 of [ACFS02] (stated by :func:`exp3p_regret_bound`): for any fixed ``T``, ``K >= 2``
    and ``delta > 0``, with the default ``alpha`` and ``gamma``, with probability at least
    ``1 - delta``, ``G_max - G_Exp3P <= 4 sqrt(K T ln(KT/delta)) + 4 sqrt(5/3 K T ln K)
    + 8 ln(KT/delta)``.

    ``update`` uses the probabilities of the *current* state, i.e. the distribution the arm was
    drawn from. If the arm was chosen by another mechanism (e.g. a budget-matching step), pass the
    probability it was actually chosen with as ``propensity``; only the importance weight of the
    played arm uses it, the bonus keeps the current ``p_j``.

    Examples
    --------
    >>> b = Exp3P(4, horizon=1000, eta=0.65, gamma=0.01, alpha=0.0, seed=0)
    >>> arm = b.sample()
    >>> b.update(arm, 1.0)
    >>> int(np.argmax(b.probabilities())) == arm
    True
    """

    def __init__(
        self,
        n_arms: Any,
        *,
        horizon: Any,
        alpha: Any = None,
        gamma: Any = None,
        delta: Any = None,
        eta: Any = None,
        seed: Any = None,
    ) -> None:
        super().__init__(n_arms, seed)
        self.horizon = check_int_scalar(horizon, "horizon", lo=1)
        self.delta = 0.05 if delta is None else check_finite_scalar(
            delta, "delta", lo=0.0, hi=1.0, lo_open=True, hi_open=True
        )
        default_alpha, default_gamma = exp3p_default_constants(self.n_arms, self.horizon, self.delta)
        self.alpha = default_alpha if alpha is None else check_finite_scalar(alpha, "alpha", lo=0.0)
        self.gamma = default_gamma if gamma is None else check_finite_scalar(
            gamma, "gamma", lo=0.0, hi=1.0, lo_open=True
        )
        self.eta = self.gamma / (3.0 * self.n_arms) if eta is None else check_finite_scalar(
            eta, "eta", lo=0.0, lo_open=True
        )
        self._bonus_scale = self.alpha / math.sqrt(self.n_arms * self.horizon)
        # every p_j >= gamma / K, so one update adds at most eta K / gamma (1 + alpha / sqrt(K T))
        # to a log weight (default propensity): it must be finite, or every update would fail
        with np.errstate(over="ignore"):
            largest = np.float64(self.eta) * (self.n_arms / self.gamma) * (1.0 + self._bonus_scale)
        if not np.isfinite(largest):
            raise ValueError(
                f"the largest Exp3P step eta * K / gamma * (1 + alpha / sqrt(K T)) overflows float64 "
                f"(eta={self.eta!r}, gamma={self.gamma!r}, alpha={self.alpha!r}, n_arms={self.n_arms}): "
                "every update would be rejected; lower eta or alpha, or raise gamma"
            )

    def _hyperparameters(self) -> dict:
        return {"n_arms": self.n_arms, "horizon": self.horizon, "alpha": self.alpha,
                "gamma": self.gamma, "delta": self.delta, "eta": self.eta}

    def probabilities(self) -> np.ndarray:
        """``(1 - gamma) softmax(log_weights) + gamma / K``, float64 of shape ``(K,)``."""
        return (1.0 - self.gamma) * _softmax(self.log_weights) + self.gamma / self.n_arms

    def update(self, arm: Any, reward: Any, *, propensity: Any = None) -> None:
        """EXP3.P update (Fig. 3 of [ACFS02]) after playing ``arm`` and observing ``reward``.

        Parameters
        ----------
        arm : int
            The arm played, in ``[0, n_arms)``.
        reward : float
            Its reward, in [0, 1].
        propensity : float, optional
            Probability with which ``arm`` was chosen, in (0, 1]; default
            ``probabilities()[arm]``.
        """
        arm = self._check_arm(arm)
        reward = self._check_value(reward)
        p = self.probabilities()
        p_arm = p[arm] if propensity is None else check_finite_scalar(
            propensity, "propensity", lo=0.0, hi=1.0, lo_open=True
        )
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by _commit
            gain = self._bonus_scale / p
            gain[arm] += reward / p_arm
            new = self.log_weights + self.eta * gain
        self._commit(new)


def exp3ix_regret_bound(n_arms: int, horizon: int, delta: float) -> float:
    """High-probability regret bound of Exp3-IX, Thm. 1 of [Neu15].

    With ``eta = 2 gamma = sqrt(2 ln K / (K T))`` (the :class:`Exp3IX` defaults), with probability
    at least ``1 - delta``, for any fixed loss table ``l in [0,1]^{T x K}``::

        sum_t l_{I_t}(t) - min_i sum_t l_i(t)
            <= 2 sqrt(2 K T ln K) + (sqrt(2 K T / ln K) + 1) ln(2 / delta)

    (``K >= 2``; for ``K = 1`` the regret is 0.) The constants were not verified against the text
    of [Neu15] (see the module docstring).
    """
    k = check_int_scalar(n_arms, "n_arms", lo=1)
    t = check_int_scalar(horizon, "horizon", lo=1)
    d = check_finite_scalar(delta, "delta", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if k == 1:
        return 0.0
    lk = math.log(k)
    return 2.0 * math.sqrt(2.0 * k * t * lk) + (math.sqrt(2.0 * k * t / lk) + 1.0) * math.log(2.0 / d)


class Exp3IX(_LogWeightBandit):
    """EXP3-IX of Neu 2015 (implicit exploration) for losses in [0, 1].

    ``p_i = w_i / sum_j w_j`` (no explicit uniform mixing). After playing arm ``i`` with loss
    ``l``, the implicit-exploration estimate ``lhat_i = l / (p_i + gamma)`` (0 for other arms)
    and ``log w_i <- log w_i - eta * lhat_i``.

    Parameters
    ----------
    n_arms : int
        Number of arms ``K >= 1``.
    horizon : int
        Number of rounds ``T`` the defaults are tuned for.
    eta : float, optional
        Learning rate ``> 0``; default ``sqrt(2 ln K / (K T))`` (Thm. 1 of [Neu15]).
    gamma : float, optional
        Implicit-exploration parameter ``>= 0``; default ``eta / 2`` (Thm. 1 of [Neu15]).
    seed : None, int or numpy.random.Generator
        Randomness for :meth:`sample`.

    Notes
    -----
    Thm. 1 of [Neu15] (see :func:`exp3ix_regret_bound`): with the defaults, with probability at
    least ``1 - delta``, the regret against the best fixed arm is at most
    ``2 sqrt(2KT ln K) + (sqrt(2KT/ln K) + 1) ln(2/delta)``. For ``K = 1`` the default ``eta``
    would be 0; the learner then uses ``eta = 1`` (irrelevant: the distribution is ``[1.0]``).

    Examples
    --------
    >>> b = Exp3IX(2, horizon=100, seed=0)
    >>> b.update(0, 1.0)
    >>> bool(b.probabilities()[0] < 0.5)
    True
    """

    _value_name = "loss"

    def __init__(
        self, n_arms: Any, *, horizon: Any, eta: Any = None, gamma: Any = None, seed: Any = None
    ) -> None:
        super().__init__(n_arms, seed)
        self.horizon = check_int_scalar(horizon, "horizon", lo=1)
        if eta is None:
            k = self.n_arms
            eta = 1.0 if k == 1 else math.sqrt(2.0 * math.log(k) / (k * self.horizon))
        self.eta = check_finite_scalar(eta, "eta", lo=0.0, lo_open=True)
        self.gamma = self.eta / 2.0 if gamma is None else check_finite_scalar(gamma, "gamma", lo=0.0)

    def _hyperparameters(self) -> dict:
        return {"n_arms": self.n_arms, "horizon": self.horizon, "eta": self.eta, "gamma": self.gamma}

    def probabilities(self) -> np.ndarray:
        """``softmax(log_weights)``, float64 of shape ``(K,)``."""
        return _softmax(self.log_weights)

    def update(self, arm: Any, loss: Any) -> None:
        """Implicit-exploration update after playing ``arm`` and observing ``loss`` in [0, 1].

        A step ``eta * lhat`` that overflows float64 (huge ``eta``, tiny ``p[arm] + gamma``)
        drives the arm's weight to 0, i.e. to the floor (see the module docstring). With
        ``gamma = 0`` and an arm whose probability is exactly 0 the estimate would be infinite;
        this raises ``ValueError`` instead (state unchanged; the floor keeps every probability
        positive, so it only happens if ``log_weights`` were set by hand).
        """
        arm = self._check_arm(arm)
        loss = self._check_value(loss)
        p = self.probabilities()
        denom = p[arm] + self.gamma
        if loss > 0.0 and not denom > 0.0:
            raise ValueError(
                f"arm {arm} has probability 0 and gamma=0: the loss estimate is infinite"
            )
        new = self.log_weights.copy()
        if loss > 0.0:
            with np.errstate(over="ignore", invalid="ignore"):  # -inf: the floor, in _commit
                new[arm] -= self.eta * loss / denom
        self._commit(new)

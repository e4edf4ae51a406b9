"""``SoftmaxRLVR``: a synthetic RLVR task with a shared log-linear policy and exact ground truth.

Generative model (every random draw comes from the constructor's ``seed``)
-------------------------------------------------------------------------
``Q`` prompts, each with ``K`` candidate answers. Answer ``a`` of prompt ``q`` has features
``phi(q, a)`` in ``R^d`` and the policy is one log-linear model shared by all prompts,

    pi_theta(a | q) = softmax_a(theta . phi(q, a)),          theta in R^d,

so a parameter update made for one prompt moves every other prompt too (the allocation
trade-offs between prompts are real). Binary task: exactly one answer ``c_q`` is correct, reward
``r(q, a) = 1{a = c_q}`` and the success probability is ``p_q(theta) = pi_theta(c_q | q)``.

The ``d`` coordinates of ``phi`` have two roles.

* Coordinate 0 carries the *pre-trained prior*: ``phi(q, a)_0 = b_{q,a}``, the log-odds a
  pre-trained model gives answer ``a``. The initial parameter is ``theta_0 = e_0`` so that
  ``pi_theta0(. | q) = softmax(b_q)``. Distractors have ``b ~ N(0, prior_scale^2)``; the correct
  answer's ``b`` is solved for so that ``p_q(theta_0)`` equals the prompt's drawn initial success
  probability exactly. Learning can rescale this coordinate (``theta_0`` sharpens or flattens the
  prior: prompts the prior already favours gain, the others lose).
* Coordinates ``1..d-1`` are a *skill space*. Each prompt needs one skill, a unit vector ``u_q``:
  there are ``n_topics`` topic directions that share a common component (weight
  ``shared_skill``: a general skill every topic uses, like arithmetic or answer formatting), and
  ``u_q`` is its topic's direction plus prompt-specific noise (``topic_spread``). The correct
  answer expresses the skill, ``phi(q, c_q)_{1:} = learnability_q u_q + noise``; every answer has
  isotropic noise ``answer_noise * N(0, I / (d-1))``. Learning the skills of frequent topics
  raises ``p`` for every prompt whose skill points the same way (transfer) and moves the
  distractors of all prompts at random (interference).

Difficulty is heterogeneous and drifts as ``theta`` learns. Each prompt draws a class from
``mix`` over :data:`DIFFICULTY_CLASSES`; the class gives the initial success probability (drawn
uniformly on the logit scale inside the class's range) and the learnability of its skill:

==================  ====================  ============  ===============================================
class               initial ``p_q``       learnability  meaning
==================  ====================  ============  ===============================================
easy                0.75 - 0.98           1.0           solved most of the time; saturates to all-1 groups
medium              0.30 - 0.75           1.0           the informative middle
hard                0.05 - 0.30           1.0           rarely solved; learnable through its skill
nearly-unsolvable   0.001 - 0.02          0.25          beyond the model: its skill barely separates the answer
==================  ====================  ============  ===============================================

The default mixture is 25 % / 30 % / 30 % / 15 %. These numbers are a choice made once from the
description above (every class present, the nearly unsolvable prompts a minority, no dataset
matched); they were not tuned against any study's verdict.

Prompt features and embeddings. ``x_q`` in ``R^d``: ``x_q[1:] = u_q`` (the prompt's skill, i.e. its
topic) and ``x_q[0] = difficulty_signal * logit(p_q(theta_0)) / 4`` (embedding models separate,
say, olympiad problems from drill exercises). :attr:`SoftmaxRLVR.embeddings` are
``x_q + embedding_noise * N(0, I)``, drawn once: the noisy view a GP success predictor gets
(never the answer features).

Embedding layout (``embedding``). ``"features"`` (the default, described above): the embedding is
a noisy copy of the prompt features, so the initial success logit is a *linear* read-out of it
(coordinate 0) -- exactly a ridge regression's model class. ``"topic-clusters"`` models what a
sentence encoder gives instead (VIP embeds prompts with a text encoder): each topic ``t`` has a
random semantic centroid ``c_t ~ N(0, I_d / d)``, independent of its skill direction, and a prompt's
embedding is ``c_{topic(q)} + embedding_noise * N(0, I)``; the difficulty *class* is drawn once per
topic from ``mix`` (every prompt of a topic shares it; the initial ``p_q`` is still drawn per prompt
inside the class's range), so difficulty is a piecewise-constant, non-linear function of the
embedding that no linear map can represent once there are more topics than dimensions. The
policy's features (``phi``, ``prompt_features``) are built the same way in both layouts; only the
order of the random draws (topics before classes) and the embeddings differ.

Continuous-reward variant (``reward="continuous"``; VIP App. E). The correct answer earns 1 and
each distractor a partial credit ``partial_credit * Beta(1, 3)`` (fixed per answer), so rewards lie
in ``[0, 1]``; :meth:`SoftmaxRLVR.success_prob` is then the expected reward ``E_pi[r]`` and the
difficulty classes refer to the probability of the fully correct answer.

Gradients. ``J(theta) = (1/|B|) sum_{q in B} E_{a ~ pi(.|q)} r(q, a)`` (= mean success
probability). The exact gradient is
``grad J = (1/|B|) sum_q sum_a pi(a|q) (r(q,a) - rbar_q) phi(q, a)`` and the score function is
``grad_theta log pi(a|q) = phi(q, a) - sum_b pi(b|q) phi(q, b)`` (exact, no autodiff).
The estimate from a batch (VIP eq. 4 with ``pi_old = pi_theta``) is

    g = (1/|B|) sum_i m_i (1/n_i) sum_j A_ij grad log pi(a_ij | q_i),

with group advantages ``A`` from :func:`solvers.group_advantages` on the ragged batch and
optional advantage multipliers ``m_i`` (Prompt-GDRO weights). RLOO is unbiased
(``E g = grad J``); Dr. GRPO has mean ``(1/|B|) sum_i (n_i - 1)/n_i grad p_i``; GRPO's std
normalisation makes it biased with no closed form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from solvers import group_advantages
from solvers._validation import (
    as_float_array,
    as_int_array,
    check_finite_scalar,
    check_int_scalar,
    check_rng,
)

from ._softmax_kernels import gradient_kernel, rollout_kernel
from ._softmax_kernels import softmax_rows as _softmax_rows
from .batch import RolloutBatch
from .group_variance import group_gradient_variance

__all__ = ["DEFAULT_MIX", "DIFFICULTY_CLASSES", "EMBEDDINGS", "ESTIMATORS", "DifficultyClass", "SoftmaxRLVR"]

STATE_FORMAT_VERSION = 1


class DifficultyClass(NamedTuple):
    """Initial success-probability range (drawn uniformly on the logit scale) and skill learnability."""

    p_low: float
    p_high: float
    learnability: float


DIFFICULTY_CLASSES: Mapping[str, DifficultyClass] = MappingProxyType(
    {
        "easy": DifficultyClass(0.75, 0.98, 1.0),
        "medium": DifficultyClass(0.30, 0.75, 1.0),
        "hard": DifficultyClass(0.05, 0.30, 1.0),
        "nearly-unsolvable": DifficultyClass(0.001, 0.02, 0.25),
    }
)
"""Difficulty classes of :class:`SoftmaxRLVR`, easiest first (module docstring)."""

DEFAULT_MIX: Mapping[str, float] = MappingProxyType(
    {"easy": 0.25, "medium": 0.30, "hard": 0.30, "nearly-unsolvable": 0.15}
)
"""Default mixture over :data:`DIFFICULTY_CLASSES`."""

ESTIMATORS = ("grpo", "drgrpo", "rloo")
"""Advantage estimators accepted by :meth:`SoftmaxRLVR.gradient` (see :data:`solvers.ADVANTAGE_KINDS`)."""

_REWARD_KINDS = ("binary", "continuous")
EMBEDDINGS = ("features", "topic-clusters")
"""Embedding layouts of :class:`SoftmaxRLVR` (module docstring, "Embedding layout")."""


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _mix_iv(mix: Any) -> np.ndarray:
    names = list(DIFFICULTY_CLASSES)
    if mix is None:
        mix = DEFAULT_MIX
    if isinstance(mix, Mapping):
        unknown = sorted(set(mix) - set(names))
        if unknown:
            raise ValueError(f"mix has unknown difficulty classes {unknown}; valid classes: {names}")
        w = np.array([float(mix.get(k, 0.0)) for k in names])
    else:
        w = as_float_array(mix, "mix", ndim=1)
        if w.shape[0] != len(names):
            raise ValueError(f"mix must have {len(names)} weights (one per class {names}), got {w.shape[0]}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"mix must be non-negative weights with a positive sum, got {w.tolist()}")
    return w / w.sum()


def _check_estimator(estimator: Any) -> str:
    if not isinstance(estimator, str):
        raise TypeError(f"estimator must be a str, got {type(estimator).__name__}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid estimators: {list(ESTIMATORS)}")
    return estimator


class SoftmaxRLVR:
    """Synthetic RLVR task: shared softmax policy over answer features (module docstring).

    Parameters
    ----------
    n_prompts : int >= 1
        Number of prompts ``Q``.
    n_answers : int >= 2
        Candidate answers per prompt ``K`` (exactly one correct in the binary task).
    dim : int >= 2
        Feature dimension ``d`` (coordinate 0: pre-trained prior; ``1..d-1``: skill space).
    seed : None, int or numpy.random.Generator
        Draws the whole task (features, classes, embeddings). Same seed, same task.
    mix : mapping or sequence of 4 floats, optional
        Weights over :data:`DIFFICULTY_CLASSES` (normalised); default :data:`DEFAULT_MIX`.
    n_topics : int >= 1
        Number of topic (skill) directions.
    shared_skill : float in [0, 1]
        Weight of the skill component all topics share.
    topic_spread : float >= 0
        Prompt-specific deviation of a prompt's skill from its topic's direction.
    answer_noise : float >= 0
        Scale of the isotropic noise on every answer's skill-space features.
    prior_scale : float >= 0
        Standard deviation of the distractors' prior log-odds.
    embedding_noise : float >= 0
        Standard deviation of the noise in :attr:`embeddings`.
    difficulty_signal : float >= 0
        Weight of the initial difficulty in the prompt features (``x_q[0]``).
    reward : {"binary", "continuous"}
        Binary (one correct answer) or continuous partial-credit rewards in ``[0, 1]``.
    partial_credit : float in [0, 1]
        Largest partial credit of a distractor (continuous variant only).
    embedding : {"features", "topic-clusters"}
        What :attr:`embeddings` encode (module docstring, "Embedding layout"): a noisy copy of the
        prompt features (default; difficulty linear in the embedding) or per-topic semantic
        clusters with a difficulty class drawn per topic (difficulty non-linear in the embedding).

    Attributes
    ----------
    n_prompts, n_answers, dim : int
    reward_kind : str
    difficulty : ndarray of int64, shape (Q,)
        Class index of each prompt into ``list(DIFFICULTY_CLASSES)``.
    topic : ndarray of int64, shape (Q,)
    correct : ndarray of int64, shape (Q,)
        Index of the correct (full-reward) answer.
    features : ndarray, shape (Q, K, d)
        Answer features ``phi`` (read-only view).
    reward_table : ndarray, shape (Q, K)
        Reward of every answer (read-only view).
    prompt_features : ndarray, shape (Q, d)
        Noise-free prompt features ``x_q`` (read-only view).
    embeddings : ndarray, shape (Q, d)
        Noisy prompt features for success predictors (read-only view).
    theta : ndarray, shape (d,)
        Current policy parameter (a copy; assign to set it).

    Examples
    --------
    >>> import numpy as np
    >>> from sim import SoftmaxRLVR
    >>> env = SoftmaxRLVR(n_prompts=64, n_answers=8, dim=16, seed=0)
    >>> ids = np.arange(4)
    >>> batch = env.rollout(ids, n=[4, 4, 8, 2], rng=np.random.default_rng(1))
    >>> batch.rewards.shape, batch.group_ids[:5]
    ((18,), array([0, 0, 0, 0, 1]))
    >>> g = env.gradient(batch, "rloo")          # unbiased estimate of env.true_gradient(ids)
    >>> g.shape
    (16,)
    >>> env.step(g, lr=0.5)                       # theta <- theta + 0.5 g (gradient ascent)
    """

    def __init__(
        self,
        n_prompts: int = 1024,
        n_answers: int = 16,
        dim: int = 32,
        *,
        seed: Any = None,
        mix: Any = None,
        n_topics: int = 8,
        shared_skill: float = 0.3,
        topic_spread: float = 0.5,
        answer_noise: float = 0.5,
        prior_scale: float = 1.0,
        embedding_noise: float = 0.05,
        difficulty_signal: float = 0.5,
        reward: str = "binary",
        partial_credit: float = 0.5,
        embedding: str = "features",
    ) -> None:
        q = check_int_scalar(n_prompts, "n_prompts", lo=1)
        k = check_int_scalar(n_answers, "n_answers", lo=2)
        d = check_int_scalar(dim, "dim", lo=2)
        weights = _mix_iv(mix)
        n_top = check_int_scalar(n_topics, "n_topics", lo=1)
        shared = check_finite_scalar(shared_skill, "shared_skill", lo=0.0, hi=1.0)
        spread = check_finite_scalar(topic_spread, "topic_spread", lo=0.0)
        a_noise = check_finite_scalar(answer_noise, "answer_noise", lo=0.0)
        p_scale = check_finite_scalar(prior_scale, "prior_scale", lo=0.0)
        e_noise = check_finite_scalar(embedding_noise, "embedding_noise", lo=0.0)
        d_signal = check_finite_scalar(difficulty_signal, "difficulty_signal", lo=0.0)
        if not isinstance(reward, str) or reward not in _REWARD_KINDS:
            raise ValueError(f"reward must be one of {list(_REWARD_KINDS)}, got {reward!r}")
        credit = check_finite_scalar(partial_credit, "partial_credit", lo=0.0, hi=1.0)
        if not isinstance(embedding, str) or embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {list(EMBEDDINGS)}, got {embedding!r}")
        rng = check_rng(seed)

        self.n_prompts, self.n_answers, self.dim = q, k, d
        self.reward_kind = reward
        self.config = {
            "n_prompts": q, "n_answers": k, "dim": d, "mix": weights.tolist(), "n_topics": n_top,
            "shared_skill": shared, "topic_spread": spread, "answer_noise": a_noise, "prior_scale": p_scale,
            "embedding_noise": e_noise, "difficulty_signal": d_signal, "reward": reward,
            "partial_credit": credit, "embedding": embedding,
        }  # fmt: skip
        classes = list(DIFFICULTY_CLASSES.values())
        ds = d - 1

        # difficulty class and initial success probability (uniform on the logit scale); in the
        # topic-clusters layout topics come first and each topic draws one class for its prompts
        if embedding == "topic-clusters":
            topic = rng.integers(n_top, size=q).astype(np.int64)
            topic_class = rng.choice(len(classes), size=n_top, p=weights).astype(np.int64)
            difficulty = topic_class[topic]
        else:
            difficulty = rng.choice(len(classes), size=q, p=weights).astype(np.int64)
        lo = _logit(np.array([c.p_low for c in classes]))[difficulty]
        hi = _logit(np.array([c.p_high for c in classes]))[difficulty]
        p0 = 1.0 / (1.0 + np.exp(-rng.uniform(lo, hi)))
        learn = np.array([c.learnability for c in classes])[difficulty]

        # skills: topic directions sharing a common component, plus prompt-specific noise
        common = _unit_rows(rng.standard_normal(ds))
        own = _unit_rows(rng.standard_normal((n_top, ds)))
        topic_dirs = _unit_rows(np.sqrt(shared) * common + np.sqrt(1.0 - shared) * own)
        if embedding == "features":
            topic = rng.integers(n_top, size=q).astype(np.int64)
        skill = _unit_rows(topic_dirs[topic] + spread * rng.standard_normal((q, ds)) / np.sqrt(ds))

        # answers: prior log-odds on coordinate 0, noisy skill-space features on 1..d-1
        correct = rng.integers(k, size=q).astype(np.int64)
        rows = np.arange(q)
        phi = np.empty((q, k, d))
        phi[:, :, 1:] = a_noise * rng.standard_normal((q, k, ds)) / np.sqrt(ds)
        phi[rows, correct, 1:] += learn[:, None] * skill
        prior = p_scale * rng.standard_normal((q, k))
        prior[rows, correct] = -np.inf
        lse_others = np.logaddexp.reduce(prior, axis=1)
        prior[rows, correct] = _logit(p0) + lse_others  # softmax(prior)[correct] == p0 exactly
        phi[:, :, 0] = prior

        table = np.zeros((q, k))
        if reward == "continuous":
            table[:] = credit * rng.beta(1.0, 3.0, size=(q, k))
        table[rows, correct] = 1.0

        x = np.empty((q, d))
        x[:, 0] = d_signal * _logit(p0) / 4.0
        x[:, 1:] = skill
        if embedding == "topic-clusters":
            centroids = rng.standard_normal((n_top, d)) / np.sqrt(d)
            emb = centroids[topic] + e_noise * rng.standard_normal((q, d))
        else:
            emb = x + e_noise * rng.standard_normal((q, d))

        self.difficulty = difficulty
        self.topic = topic
        self.correct = correct
        self._phi = phi
        self._reward = table
        self._x = x
        self._emb = emb
        self._theta = np.zeros(d)
        self._theta[0] = 1.0
        for arr in (self.difficulty, self.topic, self.correct, self._phi, self._reward, self._x, self._emb):
            arr.setflags(write=False)
        self._fingerprint = hashlib.sha256(phi.tobytes() + table.tobytes()).hexdigest()[:16]

    # ------------------------------------------------------------------ read-only data
    @property
    def features(self) -> np.ndarray:
        return self._phi

    @property
    def reward_table(self) -> np.ndarray:
        return self._reward

    @property
    def prompt_features(self) -> np.ndarray:
        return self._x

    @property
    def embeddings(self) -> np.ndarray:
        return self._emb

    @property
    def class_names(self) -> list[str]:
        """Names of the difficulty classes, indexed by :attr:`difficulty`."""
        return list(DIFFICULTY_CLASSES)

    @property
    def theta(self) -> np.ndarray:
        return self._theta.copy()

    @theta.setter
    def theta(self, value: Any) -> None:
        t = as_float_array(value, "theta", ndim=1)
        if t.shape != (self.dim,):
            raise ValueError(f"theta must have shape ({self.dim},), got {t.shape}")
        self._theta = t.copy()

    # ------------------------------------------------------------------ validation
    def _ids_iv(self, ids: Any, name: str = "ids") -> np.ndarray:
        arr = np.atleast_1d(as_int_array(ids, name, ndim=(0, 1), min_size=1))
        bad = (arr < 0) | (arr >= self.n_prompts)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name} must be prompt indices in [0, {self.n_prompts}), got {int(arr[i])} at index {i}")
        return arr

    @staticmethod
    def _counts_iv(n: Any, size: int) -> np.ndarray:
        c = as_int_array(n, "n", ndim=(0, 1))
        if c.ndim == 0:
            c = np.full(size, int(c), dtype=np.int64)
        elif c.shape[0] != size:
            raise ValueError(f"n must be a scalar or have one count per id ({size}), got length {c.shape[0]}")
        bad = c < 1
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"n must be >= 1 (rollouts per prompt), got {int(c[i])} at index {i}")
        return c

    def _batch_iv(self, batch: Any) -> RolloutBatch:
        if not isinstance(batch, RolloutBatch):
            raise TypeError(f"batch must be a RolloutBatch from SoftmaxRLVR.rollout, got {type(batch).__name__}")
        p = batch.ids.shape[0]
        if batch.probs.shape != (p, self.n_answers) or batch.counts.shape != (p,):
            raise ValueError(
                f"batch does not belong to this environment: probs {batch.probs.shape}, counts {batch.counts.shape}"
                f" for {p} ids and {self.n_answers} answers"
            )
        if batch.ids.size and (batch.ids.min() < 0 or batch.ids.max() >= self.n_prompts):
            raise ValueError(f"batch ids are out of range [0, {self.n_prompts})")
        return batch

    # ------------------------------------------------------------------ exact quantities
    def policy(self, ids: Any) -> np.ndarray:
        """``pi_theta(. | q)`` for each id, shape (P, K)."""
        idx = self._ids_iv(ids)
        return _softmax_rows(self._phi[idx] @ self._theta)

    def success_prob(self, ids: Any) -> np.ndarray:
        """Exact ``p_q = E_{a ~ pi_theta(.|q)} r(q, a)`` (binary: the success probability), shape (P,)."""
        idx = self._ids_iv(ids)
        return np.einsum("pk,pk->p", _softmax_rows(self._phi[idx] @ self._theta), self._reward[idx])

    def reward_variance(self, ids: Any) -> np.ndarray:
        """Exact ``Var(r)`` of one rollout per prompt (binary: ``p (1 - p)``), shape (P,)."""
        idx = self._ids_iv(ids)
        pi = _softmax_rows(self._phi[idx] @ self._theta)
        r = self._reward[idx]
        mean = np.einsum("pk,pk->p", pi, r)
        return np.maximum(np.einsum("pk,pk->p", pi, r * r) - mean * mean, 0.0)

    def pass_at_k(self, ids: Any, k: int) -> np.ndarray:
        """Exact probability that at least one of ``k`` rollouts earns reward 1, shape (P,)."""
        kk = check_int_scalar(k, "k", lo=1)
        idx = self._ids_iv(ids)
        pi = _softmax_rows(self._phi[idx] @ self._theta)
        p_full = np.einsum("pk,pk->p", pi, (self._reward[idx] == 1.0).astype(np.float64))
        return -np.expm1(kk * np.log1p(-np.minimum(p_full, 1.0)))

    def objective(self, ids: Any) -> float:
        """``J(theta) = mean over ids of p_q``."""
        return float(self.success_prob(ids).mean())

    def true_gradient(self, ids: Any) -> np.ndarray:
        """Exact ``grad J = (1/|B|) sum_q sum_a pi(a|q) (r(q,a) - rbar_q) phi(q, a)``, shape (d,)."""
        idx = self._ids_iv(ids)
        phi = self._phi[idx]
        pi = _softmax_rows(phi @ self._theta)
        r = self._reward[idx]
        w = pi * (r - np.einsum("pk,pk->p", pi, r)[:, None])
        return np.einsum("pk,pkd->d", w, phi) / idx.shape[0]

    def scores(self, ids: Any) -> np.ndarray:
        """Exact score vectors ``grad log pi(a|q) = phi(q,a) - E_pi phi(q,.)`` of every answer, shape (P, K, d)."""
        idx = self._ids_iv(ids)
        phi = self._phi[idx]
        pi = _softmax_rows(phi @ self._theta)
        return phi - np.einsum("pk,pkd->pd", pi, phi)[:, None, :]

    def gradient_variance(self, ids: Any, n: Any, estimator: str = "rloo", *, projected: bool = False) -> np.ndarray:
        """Exact variance of each prompt's group gradient estimate with ``n`` rollouts, shape (P,).

        ``projected=False``: ``tr Cov`` of the vector estimate ``(1/n) sum_j A_j grad log pi(a_j|q)``
        (rewards on this environment's ``[0, 1]`` scale). ``projected=True``: ``Var`` of VIP's scalar
        ``G = (1/n) sum_j A_j Z_j`` with ``Z_j = ||grad log pi(a_j|q)||_2`` and VIP's rewards
        ``R = 2 r - 1`` (VIP Sec. 4), the quantity Prop 4.2/4.3 approximate. Computed in closed form
        by :func:`sim.group_gradient_variance` (no independence assumption); ``estimator`` is
        ``"rloo"`` or ``"drgrpo"``.
        """
        idx = self._ids_iv(ids)
        counts = self._counts_iv(n, idx.shape[0])
        s = self.scores(idx)
        pi = _softmax_rows(self._phi[idx] @ self._theta)
        r = self._reward[idx]
        if projected:
            return group_gradient_variance(pi, 2.0 * r - 1.0, np.linalg.norm(s, axis=2), counts, estimator=estimator)
        return group_gradient_variance(pi, r, s, counts, estimator=estimator)

    def score_norm_moments(self, ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """Exact mean and variance of ``Z = ||grad log pi(a|q)||_2`` under ``pi_theta(.|q)`` (VIP's ``mu_Z``,
        ``sigma_Z^2``), each shape (P,)."""
        idx = self._ids_iv(ids)
        z = np.linalg.norm(self.scores(idx), axis=2)
        pi = _softmax_rows(self._phi[idx] @ self._theta)
        mean = np.einsum("pk,pk->p", pi, z)
        return mean, np.maximum(np.einsum("pk,pk->p", pi, z * z) - mean * mean, 0.0)

    # ------------------------------------------------------------------ sampling and learning
    def rollout(self, ids: Any, n: Any, rng: Any) -> RolloutBatch:
        """Sample ``n[i]`` answers for prompt ``ids[i]`` from ``pi_theta``.

        Parameters
        ----------
        ids : array_like of int, shape (P,)
            Prompt ids in ``[0, n_prompts)`` (repeats allowed).
        n : int or array_like of int, shape (P,)
            Rollouts per prompt, each ``>= 1``.
        rng : numpy.random.Generator or int
            Source of randomness (the environment keeps none).

        Returns
        -------
        RolloutBatch
            Flat ``rewards`` / ``actions`` / ``group_ids`` (rollouts of ``ids[0]`` first) and the
            sampling policy ``probs``.
        """
        idx = self._ids_iv(ids)
        counts = self._counts_iv(n, idx.shape[0])
        gen = check_rng(rng, "rng")
        p = idx.shape[0]
        n_total = int(counts.sum())
        u = gen.random(n_total)
        probs = np.empty((p, self.n_answers))
        actions = np.empty(n_total, dtype=np.int64)
        rewards = np.empty(n_total)
        rollout_kernel(self._phi, self._theta, idx, counts, u, self._reward, probs, actions, rewards)
        gid = np.repeat(np.arange(p, dtype=np.int64), counts)
        return RolloutBatch(ids=idx, counts=counts, group_ids=gid, actions=actions, rewards=rewards, probs=probs)

    def gradient(self, batch: RolloutBatch, estimator: str, multipliers: Any = None, *,
                 baselines: Any = None) -> np.ndarray:
        """Policy-gradient estimate of ``grad J`` from a batch (module docstring), shape (d,).

        Parameters
        ----------
        batch : RolloutBatch
            From :meth:`rollout` on this environment (or a training selection of it).
        estimator : {"grpo", "drgrpo", "rloo"}
            Group advantage (:func:`solvers.group_advantages` on the ragged batch).
        multipliers : array_like, shape (P,), optional
            Per-prompt advantage multipliers ``m_i`` (default 1).
        baselines : array_like, shape (P,), optional
            Per-prompt baselines ``b_i`` that replace the estimator's: the advantage of a rollout
            of prompt ``i`` is ``r - b_i`` (no standard-deviation scaling; e.g. Reinforce-Ada's
            baseline from all of the step's rollouts, :class:`bandits.controllers.TrainSelection`).
        """
        est = _check_estimator(estimator)
        b = self._batch_iv(batch)
        p = b.probs.shape[0]
        if multipliers is None:
            scale = 1.0 / (p * b.counts.astype(np.float64))
        else:
            m = as_float_array(multipliers, "multipliers", ndim=1)
            if m.shape[0] != p:
                raise ValueError(f"multipliers must have one value per prompt ({p}), got length {m.shape[0]}")
            scale = m / (p * b.counts.astype(np.float64))
        if baselines is None:
            adv = group_advantages(b.rewards, kind=est, group_ids=b.group_ids)
        else:
            base = as_float_array(baselines, "baselines", ndim=1)
            if base.shape[0] != p:
                raise ValueError(f"baselines must have one value per prompt ({p}), got length {base.shape[0]}")
            adv = b.rewards - base[b.group_ids]
        out = np.empty(self.dim)
        gradient_kernel(self._phi, b.ids, b.probs, b.group_ids, b.actions, adv * scale[b.group_ids], out)
        return out

    def step(self, direction: Any, lr: float) -> None:
        """Gradient *ascent* on ``J``: ``theta <- theta + lr * direction``."""
        dvec = as_float_array(direction, "direction", ndim=1)
        if dvec.shape != (self.dim,):
            raise ValueError(f"direction must have shape ({self.dim},), got {dvec.shape}")
        step = check_finite_scalar(lr, "lr")
        new = self._theta + step * dvec
        if not np.all(np.isfinite(new)):
            raise FloatingPointError("the step made theta non-finite; lower lr")
        self._theta = new

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """``{"format_version", "config", "fingerprint", "theta"}``: plain numbers, lists and arrays.

        The task itself is a deterministic function of the constructor's arguments and seed; the
        state is the policy parameter. ``fingerprint`` guards against loading into another task.
        """
        return {
            "format_version": STATE_FORMAT_VERSION,
            "config": dict(self.config),
            "fingerprint": self._fingerprint,
            "theta": self._theta.copy(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :attr:`theta` from :meth:`state_dict` (the task must be the same)."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping from state_dict(), got {type(state).__name__}")
        missing = {"format_version", "fingerprint", "theta"} - set(state)
        if missing:
            raise ValueError(f"state is missing keys {sorted(missing)}")
        if state["format_version"] != STATE_FORMAT_VERSION:
            raise ValueError(f"state format_version {state['format_version']!r} is not {STATE_FORMAT_VERSION}")
        if state["fingerprint"] != self._fingerprint:
            raise ValueError("state comes from a different task (features fingerprint differs)")
        self.theta = state["theta"]

    def __repr__(self) -> str:
        counts = np.bincount(self.difficulty, minlength=len(DIFFICULTY_CLASSES))
        mixdesc = ", ".join(f"{name} {c}" for name, c in zip(DIFFICULTY_CLASSES, counts))
        return (
            f"SoftmaxRLVR(n_prompts={self.n_prompts}, n_answers={self.n_answers}, dim={self.dim}, "
            f"reward={self.reward_kind!r}; {mixdesc})"
        )

"""A finite-response RLHF environment with a known gold reward and an exploitable proxy reward.

Each prompt ``x`` has ``K`` candidate responses ``y`` (a finite stand-in for the response space of
an LLM, as in the DRRO paper's promptwise simplex model, Sec. 2-3). The policy is log-linear,

    pi_theta(y | x) = softmax_y( s0(x, y) + theta . phi(x, y) ),                (policy)

with features ``phi(x, y) ~ N(0, I_d)`` shared by all prompts (one parameter vector ``theta`` for
every prompt, as an LLM shares its weights) and fixed base logits ``s0``: ``theta = 0`` is the
reference policy ``pi_0 = softmax(s0)`` (the SFT model the run starts from).

Generative model (every quantity drawn once per environment from its seed; choices argued from
first principles and documented, not tuned to any study's verdict):

* **Reference.** ``s0(x, y) = ref_scale * xi(x, y)``, ``xi ~ N(0, 1)`` independent of the features:
  a pre-trained prior that makes some responses common and others rare (``ref_scale = 1.5``
  gives ``pi_0`` an entropy of about 2.5 nats over 32 responses).
* **Gold reward** (the held-out evaluator, "true human utility"):
  ``r*(x, y) = phi(x, y)[0] + ref_quality * xi(x, y) + gold_noise * nu(x, y)``, ``nu ~ N(0, 1)``.
  The first term is quality the policy can learn (the gold direction is the first feature
  coordinate); the second says the reference already knows something about quality (an SFT model
  rarely produces bad answers), which the policy loses when it drifts away from ``pi_0``; the
  third is quality no feature captures.
* **Proxy reward** (the reward model the policy is trained on): gold plus a reward-model error
  that is *structured* and *larger where the reference rarely goes*,
  ``r_hat = r* + error_scale * (K pi_0(y|x))^(-1/2) * (phi(x, y)[1] + eps(x, y))``, ``eps ~ N(0, 1)``.
  The factor ``(K pi_0)^(-1/2)`` is the standard error of a regressor fitted on data sampled from
  ``pi_0`` (local sample size proportional to ``pi_0(y|x)``; 1 where ``pi_0`` is uniform); the
  bracket's first term is an error aligned with a spurious feature (the second coordinate: think
  length or assertiveness), which a policy can exploit by moving along it, the second an
  unstructured error. ``error_scale`` is set so that the proxy agrees with the gold ranking on
  85.7 % of response pairs sampled from ``pi_0`` (the main benchmark's proxy of the DRRO paper,
  App. G: 85.7 % pairwise agreement); :meth:`FiniteResponseRLHF.pairwise_agreement` computes it
  exactly for an instance.

Everything the studies report is computed exactly from these tables: expected gold and proxy
rewards of ``pi_theta`` and its KL from ``pi_0`` (sums over the ``K`` responses, no sampling
noise); only the training batches are sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from solvers._validation import (
    as_float_array,
    as_int_array,
    check_finite_scalar,
    check_int_scalar,
    check_rng,
)

__all__ = ["PromptSet", "FiniteResponseRLHF", "DEFAULT_ERROR_SCALE", "PAPER_AGREEMENT"]

PAPER_AGREEMENT = 0.857
"""Pairwise proxy-gold agreement of the DRRO paper's main-benchmark proxy (App. G)."""

DEFAULT_ERROR_SCALE = 0.48
"""``error_scale`` giving :data:`PAPER_AGREEMENT` under the default generative model (measured
exactly on 20,000 prompts by :meth:`FiniteResponseRLHF.pairwise_agreement`: 0.8567; the test suite
checks it)."""


@dataclass(frozen=True)
class PromptSet:
    """The tables of one set of prompts (``P`` prompts, ``K`` responses, ``d`` features).

    Attributes
    ----------
    features : ndarray, shape [P, K, d]
    ref_logprobs : ndarray, shape [P, K]
        ``log pi_0(y|x)`` (log-softmax of the base logits).
    gold, proxy : ndarray, shape [P, K]
        Gold reward ``r*`` and proxy reward ``r_hat``.
    """

    features: np.ndarray
    ref_logprobs: np.ndarray
    gold: np.ndarray
    proxy: np.ndarray

    @property
    def n_prompts(self) -> int:
        return int(self.features.shape[0])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=-1, keepdims=True)
    shifted = z - top
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class FiniteResponseRLHF:
    """Finite-response RLHF environment: log-linear policy, gold reward, exploitable proxy.

    Parameters
    ----------
    n_train, n_eval : int >= 1
        Training prompts (batches are drawn from these) and held-out evaluation prompts.
    n_responses : int >= 2
        ``K``, candidate responses per prompt.
    dim : int >= 2
        Feature dimension ``d`` (coordinate 0 is the gold direction, 1 the spurious one).
    ref_scale, ref_quality, gold_noise, error_scale : float >= 0
        See the module docstring (defaults 1.5, 0.5, 0.5, :data:`DEFAULT_ERROR_SCALE`).
    seed : int, Generator or None
        Seeds every table.

    Examples
    --------
    >>> env = FiniteResponseRLHF(n_train=8, n_eval=4, seed=0)
    >>> out = env.expected(np.zeros(env.dim))
    >>> round(out["kl"], 12)
    0.0
    """

    def __init__(
        self,
        *,
        n_train: int = 512,
        n_eval: int = 256,
        n_responses: int = 32,
        dim: int = 8,
        ref_scale: float = 1.5,
        ref_quality: float = 0.5,
        gold_noise: float = 0.5,
        error_scale: float = DEFAULT_ERROR_SCALE,
        seed: Any = 0,
    ) -> None:
        self.n_train = check_int_scalar(n_train, "n_train", lo=1)
        self.n_eval = check_int_scalar(n_eval, "n_eval", lo=1)
        self.n_responses = check_int_scalar(n_responses, "n_responses", lo=2)
        self.dim = check_int_scalar(dim, "dim", lo=2)
        self.ref_scale = check_finite_scalar(ref_scale, "ref_scale", lo=0.0)
        self.ref_quality = check_finite_scalar(ref_quality, "ref_quality", lo=0.0)
        self.gold_noise = check_finite_scalar(gold_noise, "gold_noise", lo=0.0)
        self.error_scale = check_finite_scalar(error_scale, "error_scale", lo=0.0)
        rng = check_rng(seed)
        self.train = self._draw(rng, self.n_train)
        self.eval = self._draw(rng, self.n_eval)

    def _draw(self, rng: np.random.Generator, n: int) -> PromptSet:
        k, d = self.n_responses, self.dim
        features = rng.standard_normal((n, k, d))
        xi = rng.standard_normal((n, k))
        nu = rng.standard_normal((n, k))
        eps = rng.standard_normal((n, k))
        ref_logprobs = _log_softmax(self.ref_scale * xi)
        gold = features[..., 0] + self.ref_quality * xi + self.gold_noise * nu
        rarity = np.exp(-0.5 * (ref_logprobs + np.log(k)))  # (K pi_0)^(-1/2)
        proxy = gold + self.error_scale * rarity * (features[..., 1] + eps)
        return PromptSet(features, ref_logprobs, gold, proxy)

    # ----------------------------------------------------------------------------------------
    def _split(self, split: str) -> PromptSet:
        if split == "train":
            return self.train
        if split == "eval":
            return self.eval
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")

    def _theta(self, theta: Any) -> np.ndarray:
        th = as_float_array(theta, "theta", ndim=1)
        if th.shape != (self.dim,):
            raise ValueError(f"theta must have shape ({self.dim},), got {th.shape}")
        return th

    def _ids(self, ids: Any, split: str) -> np.ndarray:
        n = self._split(split).n_prompts
        arr = as_int_array(ids, "prompt_ids", ndim=1, nonneg=True)
        if arr.size and arr.max() >= n:
            raise ValueError(f"prompt_ids must be < {n} (the {split} prompts), got {int(arr.max())}")
        return arr

    def logprobs(self, theta: Any, prompt_ids: Any = None, *, split: str = "train") -> np.ndarray:
        """``log pi_theta(y|x)`` for the given prompts (all of ``split`` by default), shape [P, K]."""
        th = self._theta(theta)
        ps = self._split(split)
        if prompt_ids is None:
            return _log_softmax(ps.ref_logprobs + ps.features @ th)
        ids = self._ids(prompt_ids, split)
        return _log_softmax(ps.ref_logprobs[ids] + ps.features[ids] @ th)

    def sample(self, theta: Any, prompt_ids: Any, group_size: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``group_size`` responses per prompt from ``pi_theta`` (training prompts).

        Returns
        -------
        responses : ndarray of int64, shape [P, G]
        logprobs : ndarray, shape [P, K]
            ``log pi_theta(.|x)`` of the prompts (the rollout policy's log-probabilities).
        """
        g = check_int_scalar(group_size, "group_size", lo=1)
        gen = check_rng(rng, "rng")
        ids = self._ids(prompt_ids, "train")
        lp = self.logprobs(theta, ids)
        cum = np.cumsum(np.exp(lp), axis=1)
        u = gen.random((ids.size, g)) * cum[:, -1:]
        responses = np.minimum((u[:, :, None] >= cum[:, None, :]).sum(axis=2), self.n_responses - 1)
        return responses.astype(np.int64), lp

    def score(self, theta: Any, prompt_ids: Any, responses: Any) -> np.ndarray:
        """``grad_theta log pi_theta(y|x) = phi(x, y) - E_{pi_theta}[phi(x, .)]``, shape [P, G, d]."""
        ids = self._ids(prompt_ids, "train")
        resp = as_int_array(responses, "responses", ndim=2, nonneg=True)
        if resp.shape[0] != ids.size or (resp.size and resp.max() >= self.n_responses):
            raise ValueError(f"responses must have {ids.size} rows of indices < {self.n_responses}, got shape {resp.shape}")
        phi = self.train.features[ids]
        p = np.exp(self.logprobs(theta, ids))
        mean_phi = np.einsum("pk,pkd->pd", p, phi)
        return np.take_along_axis(phi, resp[:, :, None], axis=1) - mean_phi[:, None, :]

    def rewards(self, prompt_ids: Any, responses: Any, *, kind: str = "proxy") -> np.ndarray:
        """Proxy (``kind="proxy"``, what training sees) or gold rewards of sampled responses, [P, G]."""
        ids = self._ids(prompt_ids, "train")
        resp = as_int_array(responses, "responses", ndim=2, nonneg=True)
        table = {"proxy": self.train.proxy, "gold": self.train.gold}.get(kind)
        if table is None:
            raise ValueError(f"kind must be 'proxy' or 'gold', got {kind!r}")
        return np.take_along_axis(table[ids], resp, axis=1)

    def kl_gradient(self, theta: Any, prompt_ids: Any) -> np.ndarray:
        """Exact gradient of ``mean_x KL(pi_theta(.|x) || pi_0(.|x))`` over the prompts, shape [d].

        ``d KL / d theta = E_pi[(log pi - log pi_0 - KL) phi]`` for a log-linear policy.
        """
        th = self._theta(theta)
        ids = self._ids(prompt_ids, "train")
        lp = self.logprobs(th, ids)
        p = np.exp(lp)
        ratio = lp - self.train.ref_logprobs[ids]
        kl = (p * ratio).sum(axis=1, keepdims=True)
        return np.einsum("pk,pkd->d", p * (ratio - kl), self.train.features[ids]) / ids.size

    def expected(self, theta: Any, *, split: str = "eval") -> dict[str, float]:
        """Exact means over the prompts of ``split``: gold and proxy rewards of ``pi_theta`` and
        ``KL(pi_theta || pi_0)`` (sequence-level; nats)."""
        ps = self._split(split)
        lp = self.logprobs(theta, split=split)
        p = np.exp(lp)
        return {
            "gold": float((p * ps.gold).sum(axis=1).mean()),
            "proxy": float((p * ps.proxy).sum(axis=1).mean()),
            "kl": float(np.maximum((p * (lp - ps.ref_logprobs)).sum(axis=1), 0.0).mean()),
        }

    def pilot_discrepancy(self) -> float:
        """``E_{x in train, y ~ pi_0}[|r_hat - r*|]``: the promptwise l1 discrepancy per response of
        the DRRO paper's pilot calibration (Sec. 4.5), computed exactly."""
        p0 = np.exp(self.train.ref_logprobs)
        return float((p0 * np.abs(self.train.proxy - self.train.gold)).sum(axis=1).mean())

    def pairwise_agreement(self, *, split: str = "train") -> float:
        """Probability that the proxy ranks two distinct responses drawn from ``pi_0`` like the gold
        reward (the DRRO paper's agreement, App. G), computed exactly per prompt and averaged."""
        ps = self._split(split)
        p0 = np.exp(ps.ref_logprobs)
        w = p0[:, :, None] * p0[:, None, :]
        k = self.n_responses
        off = ~np.eye(k, dtype=bool)
        agree = (np.sign(ps.proxy[:, :, None] - ps.proxy[:, None, :])
                 == np.sign(ps.gold[:, :, None] - ps.gold[:, None, :]))
        num = (w * agree * off).sum(axis=(1, 2))
        den = (w * off).sum(axis=(1, 2))
        return float((num / den).mean())

"""Online pass@k difficulty binning of prompts (GDRO eq. 10-11 and App. B).

Each time a prompt is rolled out, the caller reports ``c = 1{any rollout correct}`` (GDRO eq. 10).
:class:`PassAtKBinner` keeps, per prompt, the last ``window`` indicators and bins the prompt by its
windowed success rate (eq. 11) against edges ``0 = a_0 < a_1 < ... < a_B = 1``: bin ``b`` (0-based)
holds rates in ``[a_b, a_{b+1})``, the last bin also holds rate 1. Bin 0 is the *hardest* bin
(lowest pass rate), as ``accbin_0`` in the paper.

The uncertainty-aware option (GDRO App. B lists it as future work) replaces the plug-in rate by a
Beta posterior ``Beta(a0 + s, b0 + m - s)`` over the window's ``m`` indicators with ``s``
successes, and bins by its mean or by a quantile (``scipy.special.betaincinv``), so that prompts
seen only a few times are not thrown to the extreme bins on one observation. That posterior is
over the *pass@k indicator*, so it saturates like pass@k itself.

:class:`PosteriorBinner` is the per-rollout alternative: a discounted Beta posterior over each
prompt's success rate ``p`` from ``successes`` out of ``trials`` rollouts, binned on its mean, a
one-sided credible bound or the posterior mean of ``4 p (1 - p)``, with hysteresis. Both binners
are registered in :data:`BINNERS` (``"pass@k"``, ``"posterior"``; :func:`make_binner`) and accept
the same binner-neutral call ``observe(prompt_ids, *, any_correct, successes, trials)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from solvers._validation import (
    MAX_SIZE,
    as_float_array,
    as_int_array,
    check_finite_scalar,
    check_int_scalar,
)

from ._state import StateReader, new_state

__all__ = ["BINNERS", "PassAtKBinner", "PosteriorBinner", "make_binner"]

_MODES = ("window", "beta")
_MAX_WINDOW = 2**20
"""Largest window ``H`` (one byte per prompt and step of the window is stored)."""


def _edges_iv(edges: Any, n_bins: int) -> np.ndarray:
    """Bin edges ``0 = a_0 < ... < a_B = 1`` (default ``b / B``, an exact division)."""
    if edges is None:
        return np.arange(n_bins + 1, dtype=np.float64) / n_bins
    e = as_float_array(edges, "edges", ndim=1, min_size=2, copy=True)
    if e.size - 1 != n_bins:
        raise ValueError(f"edges has {e.size} entries, so n_bins must be {e.size - 1}, got {n_bins}")
    if e[0] != 0.0 or e[-1] != 1.0:
        raise ValueError(f"edges must start at 0 and end at 1, got {float(e[0])!r} and {float(e[-1])!r}")
    if np.any(np.diff(e) <= 0):
        i = int(np.argmax(np.diff(e) <= 0))
        raise ValueError(
            f"edges must be strictly increasing, got {float(e[i])!r} then {float(e[i + 1])!r} at index {i}"
        )
    return e


class PassAtKBinner:
    """Online difficulty classifier by windowed pass@k (GDRO eq. 10-11), optionally Bayesian.

    Parameters
    ----------
    n_bins : int
        Number of bins ``B >= 1`` (default 10, as in GDRO App. C.2). When ``edges`` is given it
        must equal ``len(edges) - 1``.
    window : int
        Sliding-window length ``1 <= H <= 2**20`` (default 50; GDRO App. C.2 uses ``H in [50, 100]``). The
        window runs over the prompt's own observations (the steps at which it was in the batch).
    edges : array_like, shape (B + 1,), optional
        Strictly increasing bin edges with ``edges[0] == 0`` and ``edges[-1] == 1``. Default:
        uniform ``b / B`` (computed as an exact division, so a rate such as ``3/10`` falls in the
        bin that starts at ``0.3``).
    mode : {"window", "beta"}
        ``"window"``: bin by the plug-in windowed rate. ``"beta"``: bin by the Beta posterior's mean
        (``quantile=None``) or its ``quantile``.
    prior : (float, float)
        Beta prior ``(a0, b0)``, both ``> 0`` (default uniform ``(1, 1)``); ``"beta"`` mode only.
    quantile : float, optional
        Posterior quantile in (0, 1) used for binning in ``"beta"`` mode (e.g. 0.1 for a
        pessimistic assignment). ``None``: posterior mean.
    unseen_bin : int, optional
        Bin of prompts never observed. Default ``None``: in ``"window"`` mode bin 0 (the literal
        value of eq. 11 with an empty window, rate 0, i.e. unseen prompts are treated as the
        hardest); in ``"beta"`` mode the bin of the prior's statistic (mean or quantile).

    Attributes
    ----------
    n_prompts : int
        Number of distinct prompts observed so far.
    edges : ndarray, shape (B + 1,)

    Notes
    -----
    Interpretive choices (eq. 11 leaves them open):

    * Eq. 11 divides by ``H``. Until a prompt has ``H`` observations we divide by the number of
      observations in the window, ``min(count, H)``, so the rate is an unbiased plug-in estimate
      rather than one biased towards 0; once the window is full the two agree.
    * Several occurrences of one prompt in a batch are separate observations, processed in batch
      order.
    * Prompt ids are arbitrary non-negative integers (up to ``2**63 - 1``); storage grows with
      the number of distinct prompts (``window`` bytes each). Lookups are vectorised: a dense
      id -> slot table while ids stay below ``max(2**22, 16 * n_prompts)`` (dataset indices),
      otherwise sorted ids + ``searchsorted``. Both give identical results.

    Examples
    --------
    >>> binner = PassAtKBinner(n_bins=4, window=3)
    >>> binner.update([7, 7, 9], [1, 0, 1])
    >>> binner.rates([7, 9, 123])
    array([0.5, 1. , 0. ])
    >>> binner.bins([7, 9, 123])
    array([2, 3, 0])
    """

    def __init__(
        self,
        n_bins: Any = 10,
        window: Any = 50,
        edges: Any = None,
        *,
        mode: str = "window",
        prior: Any = (1.0, 1.0),
        quantile: Any = None,
        unseen_bin: Any = None,
    ) -> None:
        self.n_bins = check_int_scalar(n_bins, "n_bins", lo=1, hi=MAX_SIZE)
        self.window = check_int_scalar(window, "window", lo=1, hi=_MAX_WINDOW)
        self.edges = _edges_iv(edges, self.n_bins)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.mode = mode
        pr = as_float_array(prior, "prior", ndim=1, positive=True)
        if pr.shape != (2,):
            raise ValueError(f"prior must be a pair (a0, b0), got shape {pr.shape}")
        self.prior = (float(pr[0]), float(pr[1]))
        if quantile is not None:
            if mode != "beta":
                raise ValueError("quantile is only used with mode='beta'")
            quantile = check_finite_scalar(quantile, "quantile", lo=0.0, hi=1.0, lo_open=True,
                                           hi_open=True)
        self.quantile = quantile
        self.unseen_bin = None if unseen_bin is None else check_int_scalar(
            unseen_bin, "unseen_bin", lo=0, hi=self.n_bins - 1
        )
        # storage: one slot per distinct prompt. Id -> slot lookup uses a dense table while the
        # ids are small (the usual dataset indices), else sorted ids + searchsorted.
        self._id_of_slot = np.zeros(0, dtype=np.int64)
        self._dense: np.ndarray | None = np.zeros(0, dtype=np.int32)
        self._ids_sorted = np.empty(0, dtype=np.int64)
        self._slots_sorted = np.empty(0, dtype=np.int64)
        self._ring = np.zeros((0, self.window), dtype=np.uint8)
        self._count = np.zeros(0, dtype=np.int64)
        self._successes = np.zeros(0, dtype=np.int64)
        self.n_prompts = 0

    # -- storage ------------------------------------------------------------------------------
    _DENSE_MIN = 1 << 22  # dense id table allowed up to max(4M ids, 16 x n_prompts) entries

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        """Slot of each id, -1 for unseen ids."""
        if self._dense is not None:
            out = np.full(ids.shape, -1, dtype=np.int64)
            inside = ids < self._dense.size
            out[inside] = self._dense[ids[inside]]
            return out
        n = self._ids_sorted.size
        if n == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.searchsorted(self._ids_sorted, ids)
        pos_c = np.minimum(pos, n - 1)
        found = self._ids_sorted[pos_c] == ids
        return np.where(found, self._slots_sorted[pos_c], -1)

    def _add(self, new_ids: np.ndarray) -> None:
        """Register new distinct ids (sorted, unique, all unseen)."""
        m = new_ids.size
        first = self.n_prompts
        need = first + m
        if need > self._ring.shape[0]:
            cap = max(need, 2 * self._ring.shape[0], 64)
            ring = np.zeros((cap, self.window), dtype=np.uint8)
            ring[:first] = self._ring[:first]
            count = np.zeros(cap, dtype=np.int64)
            count[:first] = self._count[:first]
            succ = np.zeros(cap, dtype=np.int64)
            succ[:first] = self._successes[:first]
            id_of_slot = np.zeros(cap, dtype=np.int64)
            id_of_slot[:first] = self._id_of_slot[:first]
            self._ring, self._count, self._successes = ring, count, succ
            self._id_of_slot = id_of_slot
        new_slots = np.arange(first, need, dtype=np.int64)
        self._id_of_slot[first:need] = new_ids
        self.n_prompts = need
        if self._dense is not None:
            top = int(new_ids[-1])  # new_ids is sorted
            limit = max(self._DENSE_MIN, 16 * need)
            if top < limit:
                if top >= self._dense.size:
                    dense = np.full(min(max(top + 1, 2 * self._dense.size), limit), -1, np.int32)
                    dense[: self._dense.size] = self._dense
                    self._dense = dense
                self._dense[new_ids] = new_slots
                return
            # ids too large or too sparse for a dense table: switch to sorted lookup for good
            self._dense = None
            ids = self._id_of_slot[:need]
            order = np.argsort(ids, kind="stable")
            self._ids_sorted, self._slots_sorted = ids[order], order.astype(np.int64)
            return
        ids = np.concatenate([self._ids_sorted, new_ids])
        slots = np.concatenate([self._slots_sorted, new_slots])
        order = np.argsort(ids, kind="stable")
        self._ids_sorted, self._slots_sorted = ids[order], slots[order]

    def _ids_iv(self, prompt_ids: Any) -> np.ndarray:
        return as_int_array(prompt_ids, "prompt_ids", ndim=(0, 1), nonneg=True).reshape(-1)

    # -- public -------------------------------------------------------------------------------
    def update(self, prompt_ids: Any, any_correct: Any) -> None:
        """Record ``c = 1{any rollout correct}`` (eq. 10) for each prompt of a batch.

        Parameters
        ----------
        prompt_ids : array_like of int, shape (n,)
            Non-negative prompt ids (repeats allowed; processed in order).
        any_correct : array_like of bool or {0, 1}, shape (n,)
            Whether at least one rollout of the prompt was correct.

        Raises
        ------
        ValueError
            On negative ids, mismatched lengths, or indicators other than 0/1 (state unchanged).
        """
        ids = self._ids_iv(prompt_ids)
        raw = np.asarray(any_correct)
        if raw.dtype == np.bool_:
            c = raw.astype(np.uint8).reshape(-1)
        else:
            cf = as_float_array(any_correct, "any_correct", ndim=(0, 1)).reshape(-1)
            bad = (cf != 0.0) & (cf != 1.0)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"any_correct must be 0/1 or bool, got {float(cf[i])!r} at index {i}")
            c = cf.astype(np.uint8)
        if c.shape != ids.shape:
            raise ValueError(
                f"prompt_ids and any_correct must have the same length, got {ids.size} and {c.size}"
            )
        if ids.size == 0:
            return
        slots = self._lookup(ids)
        if (slots < 0).any():
            self._add(np.unique(ids[slots < 0]))
            slots = self._lookup(ids)
        # rank of each occurrence among the occurrences of its prompt in this batch
        order = np.argsort(slots, kind="stable")
        s_sorted = slots[order]
        starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
        group_len = np.diff(np.r_[starts, s_sorted.size])
        rank_sorted = np.arange(s_sorted.size) - np.repeat(starts, group_len)
        total_sorted = np.repeat(group_len, group_len)
        keep = rank_sorted >= total_sorted - self.window  # only the last H occurrences matter
        s_keep = s_sorted[keep]
        pos = (self._count[s_keep] + rank_sorted[keep]) % self.window
        self._ring[s_keep, pos] = c[order][keep]
        uniq = s_sorted[starts]
        self._count[uniq] += group_len
        self._successes[uniq] = self._ring[uniq].sum(axis=1, dtype=np.int64)

    def observe(self, prompt_ids: Any, *, any_correct: Any = None, successes: Any = None, trials: Any = None) -> None:
        """Binner-neutral update (the same call works for every binner of :data:`BINNERS`).

        Uses ``any_correct`` (GDRO eq. 10) only, exactly as :meth:`update`; ``successes`` and
        ``trials`` (what :class:`PosteriorBinner` reads) are accepted and ignored.
        """
        if any_correct is None:
            raise ValueError("any_correct is required by PassAtKBinner.observe (GDRO eq. 10 indicators)")
        self.update(prompt_ids, any_correct)

    def counts(self, prompt_ids: Any) -> np.ndarray:
        """Number of observations in each prompt's window, ``min(count, H)`` (0 if unseen)."""
        slots = self._lookup(self._ids_iv(prompt_ids))
        out = np.zeros(slots.shape, dtype=np.int64)
        seen = slots >= 0
        out[seen] = np.minimum(self._count[slots[seen]], self.window)
        return out

    def _window_stats(self, prompt_ids: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        slots = self._lookup(self._ids_iv(prompt_ids))
        seen = slots >= 0
        m = np.zeros(slots.shape, dtype=np.int64)
        s = np.zeros(slots.shape, dtype=np.int64)
        m[seen] = np.minimum(self._count[slots[seen]], self.window)
        s[seen] = self._successes[slots[seen]]
        return seen, m, s

    def rates(self, prompt_ids: Any) -> np.ndarray:
        """Windowed plug-in pass rate (eq. 11, divided by the window's fill), float64 of shape
        ``(n,)``; 0.0 for unseen prompts (eq. 11 with an empty window)."""
        seen, m, s = self._window_stats(prompt_ids)
        out = np.zeros(m.shape, dtype=np.float64)
        out[seen] = s[seen] / m[seen]
        return out

    def posterior(self, prompt_ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """Beta posterior parameters ``(a0 + s, b0 + m - s)`` over each prompt's window."""
        _, m, s = self._window_stats(prompt_ids)
        return self.prior[0] + s, self.prior[1] + (m - s)

    def scores(self, prompt_ids: Any) -> np.ndarray:
        """The statistic used for binning: the windowed rate (``"window"`` mode), or the posterior
        mean / ``quantile`` (``"beta"`` mode)."""
        if self.mode == "window":
            return self.rates(prompt_ids)
        a, b = self.posterior(prompt_ids)
        if self.quantile is None:
            return a / (a + b)
        from scipy.special import betaincinv

        return np.asarray(betaincinv(a, b, self.quantile), dtype=np.float64)

    def bins(self, prompt_ids: Any) -> np.ndarray:
        """Bin of each prompt, int64 in ``[0, n_bins)``: ``b`` with ``edges[b] <= score <
        edges[b + 1]`` (score 1 goes to the last bin); unseen prompts go to ``unseen_bin``."""
        ids = self._ids_iv(prompt_ids)
        out = np.searchsorted(self.edges[1:-1], self.scores(ids), side="right").astype(np.int64)
        if self.unseen_bin is not None:
            out[self._lookup(ids) < 0] = self.unseen_bin
        return out

    def __repr__(self) -> str:
        return (f"PassAtKBinner(n_bins={self.n_bins}, window={self.window}, mode={self.mode!r}, "
                f"n_prompts={self.n_prompts})")

    # -- checkpoints --------------------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        return {"n_bins": self.n_bins, "window": self.window, "edges": self.edges, "mode": self.mode,
                "prior": list(self.prior), "quantile": self.quantile, "unseen_bin": self.unseen_bin}

    def state_dict(self) -> dict:
        """Checkpoint: every observed prompt id (in first-seen order), its ring buffer of the last
        ``window`` indicators (uint8, ``(n_prompts, window)``) and its observation count.

        The id lookup tables are rebuilt on load (dense or sorted, by the same rule as
        :meth:`update`; both give identical results), as are the window success counts.
        """
        n = self.n_prompts
        return new_state(self, self._hyperparameters(), ids=self._id_of_slot[:n], ring=self._ring[:n],
                         count=self._count[:n])

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; ``ValueError``/``TypeError`` (object unchanged) on another
        class, version, hyperparameters, shapes, repeated or negative ids, indicators other than
        0/1 or negative counts."""
        r = StateReader(self, state, self._hyperparameters())
        ids = r.array("ids", (None,), np.int64, lo=0)
        n = ids.size
        ring = r.array("ring", (n, self.window), np.uint8, lo=0, hi=1)
        count = r.array("count", (n,), np.int64, lo=0)
        if np.unique(ids).size != n:
            raise ValueError("PassAtKBinner.load_state_dict: state['ids'] has repeated prompt ids")
        # rebuild the lookup in the saved slot order (so a state_dict after loading equals the
        # loaded one), by the rule of _add: a dense table while ids are small, else sorted ids
        slots = np.arange(n, dtype=np.int64)
        dense: np.ndarray | None = None
        ids_sorted = np.empty(0, dtype=np.int64)
        slots_sorted = np.empty(0, dtype=np.int64)
        top = int(ids.max()) if n else -1
        if top < max(self._DENSE_MIN, 16 * n):
            dense = np.full(max(top + 1, 0), -1, dtype=np.int32)
            dense[ids] = slots
        else:
            order = np.argsort(ids, kind="stable")
            ids_sorted, slots_sorted = ids[order], order.astype(np.int64)
        self._id_of_slot, self._ring, self._count = ids, ring, count
        self._successes = ring.sum(axis=1, dtype=np.int64)
        self._dense, self._ids_sorted, self._slots_sorted = dense, ids_sorted, slots_sorted
        self.n_prompts = n


# ------------------------------------------------------------------------------------------------
# uncertainty-aware bins
# ------------------------------------------------------------------------------------------------

_STATISTICS = ("mean", "lower", "upper", "variance")
_MAX_TRIALS = 2**31 - 1


class _SlotTable:
    """Prompt id -> storage slot (dense table while ids are small, else sorted ids), as in
    :class:`PassAtKBinner`. Slots are assigned in first-seen order."""

    _DENSE_MIN = 1 << 22

    def __init__(self, ids: np.ndarray | None = None) -> None:
        self.ids = np.zeros(0, dtype=np.int64)  # id of each slot
        self._dense: np.ndarray | None = np.zeros(0, dtype=np.int32)
        self._sorted_ids = np.empty(0, dtype=np.int64)
        self._sorted_slots = np.empty(0, dtype=np.int64)
        if ids is not None and ids.size:
            self.add(ids)

    def __len__(self) -> int:
        return int(self.ids.size)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Slot of each id, -1 for ids never added."""
        if self._dense is not None:
            out = np.full(ids.shape, -1, dtype=np.int64)
            inside = ids < self._dense.size
            out[inside] = self._dense[ids[inside]]
            return out
        pos = np.searchsorted(self._sorted_ids, ids)
        pos_c = np.minimum(pos, self._sorted_ids.size - 1)
        found = self._sorted_ids[pos_c] == ids
        return np.where(found, self._sorted_slots[pos_c], -1)

    def add(self, new_ids: np.ndarray) -> None:
        """Append distinct, unseen ids (in the given order) as new slots."""
        first = self.ids.size
        self.ids = np.concatenate([self.ids, new_ids])
        slots = np.arange(first, self.ids.size, dtype=np.int64)
        top = int(self.ids.max()) if self.ids.size else -1
        if self._dense is not None and top < max(self._DENSE_MIN, 16 * self.ids.size):
            if top >= self._dense.size:
                grown = np.full(max(top + 1, 2 * self._dense.size), -1, dtype=np.int32)
                grown[: self._dense.size] = self._dense
                self._dense = grown
            self._dense[new_ids] = slots
            return
        self._dense = None  # too large or too sparse for a dense table: sorted ids for good
        order = np.argsort(self.ids, kind="stable")
        self._sorted_ids, self._sorted_slots = self.ids[order], order.astype(np.int64)


class PosteriorBinner:
    """Uncertainty-aware difficulty bins from a Beta posterior over each prompt's success rate.

    GDRO (Panaganti et al., arXiv:2601.19280) bins prompts by windowed pass@k (eq. 10-11) and lists
    "uncertainty-aware binning (e.g., Bayesian estimators or confidence-bound assignment rules)"
    as future work (App. B): estimated pass@k "may have high variance early in training, and bin
    boundaries can induce discontinuous group reassignment". Pass@k also saturates: with ``k >= 4``
    rollouts every prompt with per-rollout success rate ``p >= 0.5`` has pass@k ``>= 0.94`` and
    lands in the top bin, so a ``p = 0.5`` prompt (the largest reward variance) shares a bin with
    a ``p = 0.97`` one. This binner addresses the three points:

    * **per-rollout evidence**: each observation reports ``successes`` out of ``trials`` rollouts
      (partial credit allowed: ``successes`` is the sum of rewards in ``[0, 1]``), and the prompt's
      success rate ``p`` gets a Beta posterior ``Beta(a0 + S, b0 + F)`` with discounted counts
      ``S <- gamma S + successes``, ``F <- gamma F + (trials - successes)`` (``gamma = discount``,
      applied per observation of that prompt, so ``1 / (1 - gamma)`` observations is the effective
      memory, like :class:`PassAtKBinner`'s window over the prompt's own observations);
    * **posterior statistic**: bins are read on a score in ``[0, 1]``: the posterior mean of ``p``
      (``"mean"``), a one-sided credible bound (``"lower"``: the ``1 - confidence`` quantile, a
      pessimistic assignment; ``"upper"``: the ``confidence`` quantile), or the posterior mean of
      the reward variance ``4 p (1 - p)`` (``"variance"``: ``4 a b / ((a + b)(a + b + 1))``).
      With ``"mean"``/``"lower"``/``"upper"`` bin 0 is the hardest, as in :class:`PassAtKBinner`;
      with ``"variance"`` bin 0 holds the *lowest-variance* prompts (nearly solved and nearly
      unsolvable alike) and the top bin the ``p ~ 1/2`` prompts -- the ordering Rollout-GDRO's
      variance proxy (GDRO eq. 19) acts on, not a difficulty ordering;
    * **hysteresis**: a prompt in bin ``b`` moves only when its score leaves
      ``[edges[b] - hysteresis, edges[b + 1] + hysteresis)``, and then to the bin that contains
      the score. A prompt's first observation assigns its bin directly. Bins change only in
      :meth:`update` / :meth:`observe` (reading :meth:`bins` is pure), so a controller that reads
      the bins in ``plan`` and again in ``observe`` sees the same bins.

    Parameters
    ----------
    n_bins : int
        Number of bins ``B >= 1`` (default 10). With ``edges`` it must equal ``len(edges) - 1``.
    edges : array_like, shape (B + 1,), optional
        Strictly increasing edges from 0 to 1 over the score (default ``b / B``).
    statistic : {"mean", "lower", "upper", "variance"}
        The posterior score binned (see above). Default ``"mean"``.
    confidence : float in (0, 1)
        Level of the one-sided bounds (default 0.9); used by ``"lower"`` and ``"upper"`` only.
    prior : (float, float)
        Beta prior ``(a0, b0)``, both ``> 0`` (default uniform ``(1, 1)``).
    discount : float in (0, 1]
        Forgetting factor ``gamma`` of the counts per observation (default 0.98: an effective
        memory of 50 observations, GDRO App. C.2's window ``H = 50``); 1 keeps everything.
    hysteresis : float in [0, 1)
        Margin of the stay band in score units (default 0.02, a fifth of a default bin); 0 turns
        hysteresis off.
    unseen_bin : int, optional
        Bin of prompts never observed; default the bin of the prior's score.

    Attributes
    ----------
    n_prompts : int
        Number of distinct prompts observed so far.
    edges : ndarray, shape (B + 1,)

    Examples
    --------
    >>> binner = PosteriorBinner(n_bins=10, hysteresis=0.0)
    >>> binner.update([0, 1], successes=[2, 4], trials=[4, 4])   # p ~ 0.5 and p ~ 1
    >>> binner.scores([0, 1]).round(3)
    array([0.5  , 0.833])
    >>> binner.bins([0, 1, 7])            # prompt 7 unseen: the prior mean 0.5
    array([5, 8, 5])
    """

    def __init__(
        self,
        n_bins: Any = 10,
        *,
        edges: Any = None,
        statistic: str = "mean",
        confidence: Any = 0.9,
        prior: Any = (1.0, 1.0),
        discount: Any = 0.98,
        hysteresis: Any = 0.02,
        unseen_bin: Any = None,
    ) -> None:
        self.n_bins = check_int_scalar(n_bins, "n_bins", lo=1, hi=MAX_SIZE)
        self.edges = _edges_iv(edges, self.n_bins)
        if not isinstance(statistic, str):
            raise TypeError(f"statistic must be a str, got {type(statistic).__name__}")
        if statistic not in _STATISTICS:
            raise ValueError(f"statistic must be one of {list(_STATISTICS)}, got {statistic!r}")
        self.statistic = statistic
        self.confidence = check_finite_scalar(confidence, "confidence", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        pr = as_float_array(prior, "prior", ndim=1, positive=True)
        if pr.shape != (2,):
            raise ValueError(f"prior must be a pair (a0, b0), got shape {pr.shape}")
        if pr.max() > 1e100:
            raise ValueError(f"prior must be <= 1e100, got {float(pr.max())!r}")
        self.prior = (float(pr[0]), float(pr[1]))
        self.discount = check_finite_scalar(discount, "discount", lo=0.0, hi=1.0, lo_open=True)
        self.hysteresis = check_finite_scalar(hysteresis, "hysteresis", lo=0.0, hi=1.0, hi_open=True)
        self.unseen_bin = None if unseen_bin is None else check_int_scalar(
            unseen_bin, "unseen_bin", lo=0, hi=self.n_bins - 1
        )
        self._slots = _SlotTable()
        self._succ = np.zeros(0)
        self._fail = np.zeros(0)
        self._bin = np.zeros(0, dtype=np.int64)

    @property
    def n_prompts(self) -> int:
        return len(self._slots)

    # -- statistics ------------------------------------------------------------------------------
    def _score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.statistic == "mean":
            out = a / (a + b)
        elif self.statistic == "variance":
            out = 4.0 * (a / (a + b)) * (b / (a + b + 1.0))
        else:
            from scipy.special import betaincinv

            level = self.confidence if self.statistic == "upper" else 1.0 - self.confidence
            out = np.asarray(betaincinv(a, b, level), dtype=np.float64)
        return np.clip(out, 0.0, 1.0)

    def _plain_bin(self, score: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges[1:-1], score, side="right").astype(np.int64)

    def _prior_bin(self) -> int:
        if self.unseen_bin is not None:
            return self.unseen_bin
        return int(self._plain_bin(self._score(np.array([self.prior[0]]), np.array([self.prior[1]])))[0])

    def _assign(self, score: np.ndarray, current: np.ndarray) -> np.ndarray:
        """New bins: the plain bin, unless hysteresis keeps the current one (``current < 0``: none)."""
        plain = self._plain_bin(score)
        if self.hysteresis == 0.0:
            return plain
        cur = np.maximum(current, 0)
        stay = (current >= 0) & (score >= self.edges[cur] - self.hysteresis) & (
            score < self.edges[cur + 1] + self.hysteresis
        )
        return np.where(stay, current, plain)

    # -- validation --------------------------------------------------------------------------------
    def _ids_iv(self, prompt_ids: Any) -> np.ndarray:
        return as_int_array(prompt_ids, "prompt_ids", ndim=(0, 1), nonneg=True).reshape(-1)

    def _update_iv(self, prompt_ids: Any, successes: Any, trials: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = self._ids_iv(prompt_ids)
        n = as_int_array(trials, "trials", ndim=(0, 1)).reshape(-1)
        if n.shape != ids.shape:
            raise ValueError(f"prompt_ids and trials must have the same length, got {ids.size} and {n.size}")
        bad = (n < 1) | (n > _MAX_TRIALS)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"trials must be in [1, {_MAX_TRIALS}], got {int(n[i])} at index {i}")
        s = as_float_array(successes, "successes", ndim=(0, 1), nonneg=True).reshape(-1)
        if s.shape != ids.shape:
            raise ValueError(f"prompt_ids and successes must have the same length, got {ids.size} and {s.size}")
        nf = n.astype(np.float64)
        bad = s > nf * (1.0 + 1e-12)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"successes must be <= trials (rewards in [0, 1]), got {float(s[i])!r} > {int(n[i])} "
                             f"at index {i}")
        return ids, np.minimum(s, nf), nf

    # -- public ------------------------------------------------------------------------------------
    def update(self, prompt_ids: Any, successes: Any, trials: Any) -> None:
        """Record ``successes`` out of ``trials`` rollouts for each prompt of a batch, then reassign
        the bins of the prompts observed (with hysteresis).

        Parameters
        ----------
        prompt_ids : array_like of int, shape (n,)
            Non-negative prompt ids; repeats are separate observations, processed in order.
        successes : array_like of float, shape (n,)
            Sum of the prompt's rollout rewards in ``[0, 1]`` (the number of correct rollouts for
            binary rewards), ``0 <= successes <= trials``.
        trials : array_like of int, shape (n,)
            Rollouts of the prompt in this observation, ``>= 1``.

        Raises
        ------
        ValueError
            Negative ids, mismatched lengths, ``trials < 1`` or ``successes`` outside
            ``[0, trials]`` (state unchanged).
        """
        ids, s, n = self._update_iv(prompt_ids, successes, trials)
        if ids.size == 0:
            return
        slots = self._slots.lookup(ids)
        fresh = slots < 0
        if fresh.any():
            _, first = np.unique(ids[fresh], return_index=True)
            new_ids = ids[fresh][np.sort(first)]  # first-seen order
            self._slots.add(new_ids)
            k = new_ids.size
            self._succ = np.concatenate([self._succ, np.zeros(k)])
            self._fail = np.concatenate([self._fail, np.zeros(k)])
            self._bin = np.concatenate([self._bin, np.full(k, -1, dtype=np.int64)])
            slots = self._slots.lookup(ids)
        # repeats of a prompt in one batch are processed in order: round r handles each prompt's
        # r-th occurrence (vectorised within a round)
        order = np.argsort(slots, kind="stable")
        s_sorted = slots[order]
        starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
        rank = np.empty(ids.size, dtype=np.int64)
        rank[order] = np.arange(ids.size) - np.repeat(starts, np.diff(np.r_[starts, ids.size]))
        gamma = self.discount
        for r in range(int(rank.max()) + 1):
            pick = rank == r
            sl = slots[pick]
            self._succ[sl] = gamma * self._succ[sl] + s[pick]
            self._fail[sl] = gamma * self._fail[sl] + (n[pick] - s[pick])
            a = self.prior[0] + self._succ[sl]
            b = self.prior[1] + self._fail[sl]
            self._bin[sl] = self._assign(self._score(a, b), self._bin[sl])

    def observe(self, prompt_ids: Any, *, any_correct: Any = None, successes: Any = None, trials: Any = None) -> None:
        """Binner-neutral update (the same call works for every binner of :data:`BINNERS`): uses
        ``successes`` and ``trials`` exactly as :meth:`update`; ``any_correct`` is ignored."""
        if successes is None or trials is None:
            raise ValueError("successes and trials are required by PosteriorBinner.observe (per-rollout evidence)")
        self.update(prompt_ids, successes, trials)

    def _counts(self, prompt_ids: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        slots = self._slots.lookup(self._ids_iv(prompt_ids))
        seen = slots >= 0
        succ = np.zeros(slots.shape)
        fail = np.zeros(slots.shape)
        succ[seen] = self._succ[slots[seen]]
        fail[seen] = self._fail[slots[seen]]
        return slots, succ, fail

    def counts(self, prompt_ids: Any) -> np.ndarray:
        """Discounted number of rollouts behind each prompt's posterior, ``S + F`` (0 if unseen)."""
        _, succ, fail = self._counts(prompt_ids)
        return succ + fail

    def posterior(self, prompt_ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """Beta posterior parameters ``(a0 + S, b0 + F)`` of each prompt (the prior if unseen)."""
        _, succ, fail = self._counts(prompt_ids)
        return self.prior[0] + succ, self.prior[1] + fail

    def scores(self, prompt_ids: Any) -> np.ndarray:
        """The binned posterior statistic in ``[0, 1]`` (``statistic``), float64 of shape ``(n,)``."""
        a, b = self.posterior(prompt_ids)
        return self._score(a, b)

    def bins(self, prompt_ids: Any) -> np.ndarray:
        """Current bin of each prompt, int64 in ``[0, n_bins)`` (assigned at its last observation;
        unseen prompts: ``unseen_bin``, else the bin of the prior's score). Reading is pure."""
        slots = self._slots.lookup(self._ids_iv(prompt_ids))
        out = np.full(slots.shape, self._prior_bin(), dtype=np.int64)
        seen = slots >= 0
        out[seen] = self._bin[slots[seen]]
        return out

    def __repr__(self) -> str:
        return (f"PosteriorBinner(n_bins={self.n_bins}, statistic={self.statistic!r}, discount={self.discount}, "
                f"hysteresis={self.hysteresis}, n_prompts={self.n_prompts})")

    # -- checkpoints -------------------------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        return {"n_bins": self.n_bins, "edges": self.edges, "statistic": self.statistic,
                "confidence": self.confidence, "prior": list(self.prior), "discount": self.discount,
                "hysteresis": self.hysteresis, "unseen_bin": self.unseen_bin}

    def state_dict(self) -> dict:
        """Checkpoint: every observed prompt id (first-seen order), its discounted success and
        failure counts and its current bin (the hysteresis memory)."""
        return new_state(self, self._hyperparameters(), ids=self._slots.ids, successes=self._succ,
                         failures=self._fail, bins=self._bin)

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; ``ValueError``/``TypeError`` (object unchanged) on another
        class, version, hyperparameters, shapes, repeated or negative ids, negative or non-finite
        counts, or bins outside ``[0, n_bins)``."""
        r = StateReader(self, state, self._hyperparameters())
        ids = r.array("ids", (None,), np.int64, lo=0)
        n = ids.size
        succ = r.array("successes", (n,), np.float64, lo=0.0)
        fail = r.array("failures", (n,), np.float64, lo=0.0)
        bins = r.array("bins", (n,), np.int64, lo=0, hi=self.n_bins - 1)
        if np.unique(ids).size != n:
            raise ValueError("PosteriorBinner.load_state_dict: state['ids'] has repeated prompt ids")
        self._slots = _SlotTable(ids)
        self._succ, self._fail, self._bin = succ, fail, bins


BINNERS: dict[str, type] = {"pass@k": PassAtKBinner, "posterior": PosteriorBinner}
"""Difficulty binners by name: ``"pass@k"`` (:class:`PassAtKBinner`, GDRO eq. 10-11) and
``"posterior"`` (:class:`PosteriorBinner`). Both offer ``observe(prompt_ids, *, any_correct,
successes, trials)``, ``bins``, ``scores``, ``n_bins``, ``state_dict`` / ``load_state_dict``."""


def make_binner(name: Any, **options: Any) -> Any:
    """Build a binner of :data:`BINNERS` by name with its constructor ``options``.

    Examples
    --------
    >>> make_binner("posterior", n_bins=5).n_bins
    5
    >>> make_binner("pass@k", window=20).window
    20
    """
    if not isinstance(name, str):
        raise TypeError(f"binner name must be a str, got {type(name).__name__}")
    if name not in BINNERS:
        raise ValueError(f"unknown binner {name!r}; valid binners: {list(BINNERS)}")
    return BINNERS[name](**options)

"""Online pass@k difficulty binning of prompts (GDRO eq. 10-11 and App. B).

Each time a prompt is rolled out, the caller reports ``c = 1{any rollout correct}`` (GDRO eq. 10).
:class:`PassAtKBinner` keeps, per prompt, the last ``window`` indicators and bins the prompt by its
windowed success rate (eq. 11) against edges ``0 = a_0 < a_1 < ... < a_B = 1``: bin ``b`` (0-based)
holds rates in ``[a_b, a_{b+1})``, the last bin also holds rate 1. Bin 0 is the *hardest* bin
(lowest pass rate), as ``accbin_0`` in the paper.

The uncertainty-aware option (GDRO App. B lists it as future work) replaces the plug-in rate by a
Beta posterior ``Beta(a0 + s, b0 + m - s)`` over the window's ``m`` indicators with ``s``
successes, and bins by its mean or by a quantile (``scipy.special.betaincinv``), so that prompts
seen only a few times are not thrown to the extreme bins on one observation.
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

__all__ = ["PassAtKBinner"]

_MODES = ("window", "beta")
_MAX_WINDOW = 2**20
"""Largest window ``H`` (one byte per prompt and step of the window is stored)."""


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
        if edges is None:
            self.edges = np.arange(self.n_bins + 1, dtype=np.float64) / self.n_bins
        else:
            e = as_float_array(edges, "edges", ndim=1, min_size=2, copy=True)
            if e.size - 1 != self.n_bins:
                raise ValueError(
                    f"edges has {e.size} entries, so n_bins must be {e.size - 1}, got {self.n_bins}"
                )
            if e[0] != 0.0 or e[-1] != 1.0:
                raise ValueError(f"edges must start at 0 and end at 1, got {float(e[0])!r} and {float(e[-1])!r}")
            if np.any(np.diff(e) <= 0):
                i = int(np.argmax(np.diff(e) <= 0))
                raise ValueError(
                    f"edges must be strictly increasing, got {float(e[i])!r} then {float(e[i + 1])!r} at index {i}"
                )
            self.edges = e
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

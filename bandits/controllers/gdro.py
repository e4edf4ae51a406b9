"""GDRO controllers: ``prompt-gdro``, ``rollout-gdro`` and the coupled ``gdro-coupled``.

All three bin prompts online -- by default by windowed pass@k (GDRO eq. 10-11,
:class:`bandits.PassAtKBinner`), optionally by a Beta posterior (``binning="posterior"``,
:class:`bandits.PosteriorBinner`) -- and drive the GDRO adversaries of :mod:`bandits.prompt_gdro` / :mod:`bandits.rollout_gdro` with
the paper's practical constants (App. C.2: 10 bins, window 50, steps 0.65, exploration 0.01, EMA
0.12 / 0.4, dual step 0.05, weight cap 15).

What each learner receives (interpretive choices, each documented where it is made):

* **Binner** -- GDRO eq. 10: ``c_i = 1{some rollout of prompt i has reward 1}`` over the
  rollouts actually generated (``n_i`` of them; App. C.2 names a "fixed k = 8" but eq. 10 counts
  the generated rollouts, which is what a controller observes). A partial-credit reward below 1
  is not "correct". Bins are read before the step's update ("within a step t, treat g_t as
  fixed", Sec. 3.1), so ``observe`` uses the bins ``plan`` used. The binner is chosen by name,
  ``binning="pass@k"`` (default: :class:`bandits.PassAtKBinner` from ``n_bins``, ``window``,
  ``bin_mode``, ``bin_quantile``) or ``binning="posterior"`` (:class:`bandits.PosteriorBinner`,
  uncertainty-aware bins from each prompt's per-rollout successes -- GDRO App. B's future work),
  with constructor options in ``binning_options``; or ``binner=`` plugs in any object with the
  protocol of :func:`binner_iv`. Every binner receives the same call, ``observe(ids, *,
  any_correct, successes, trials)`` with the eq. 10 indicators, each prompt's reward sum and its
  rollout count, and reads what it needs (pass@k: ``any_correct``; posterior: the counts).
* **Prompt-GDRO step** -- ``prompt_step_size="matched"`` (default): the exponential-weights step
  of Thm F.7 for the loss range, ``eta_q = sqrt(8 log B / T) / M`` with ``M = prompt_loss_range``
  (2 for the default loss ``1 - 2 r_bar`` in ``[-1, 1]``) and ``T = prompt_horizon``
  (:meth:`bandits.PromptGDRO.matched_step_size`). The paper's 0.65 (App. C.2.1) was set for its
  eq. 6 loss, the negative clipped GRPO surrogate plus a KL term, which is close to 0 on-policy
  (group-normalised advantages sum to 0): applied to a loss of range 2 it moves the log-odds of two
  bins by up to 1.3 nats per step, and the weights collapse onto one bin within tens of steps.
  Pass ``prompt_step_size=0.65`` for the paper's constant.
* **Prompt-GDRO** -- a prompt-level loss (eq. 7, aggregated by bin into eq. 12's ``L_{t,b}``).
  Eq. 6's loss is the negative clipped GRPO surrogate, which a controller cannot see (and which is
  ~0 on-policy: group-normalised advantages sum to 0). The default is the negative mean reward on
  the paper's reward scale ``r in {-1, +1}`` (App. C.1.2), ``l_i = 1 - 2 r_bar_i`` in ``[-1, 1]``:
  the loss of the RL objective eq. 2 per prompt, so eq. 13 becomes the worst-bin accuracy. Pass
  ``prompt_losses=`` to :meth:`observe` to feed the trainer's eq. 7 losses instead.
* **Rollout-GDRO** -- arms start at the budget, the shadow price is signed (the budget is an
  equality) and, with the variance utility, arms a bin has never played are valued by the ``1/n``
  law of that utility (``arm_start``, ``signed_price``, ``arm_model`` of
  :class:`bandits.RolloutGDRO`; ``arm_model="auto"`` picks ``"inverse"`` for ``utility="variance"``
  and ``"free"`` for ``utility="loss"``). A per-prompt utility ``J_i`` (eq. 35; larger is better). Default
  (``utility="variance"``): minus the variance-proxy contribution of Remark F.25 / eq. 19,
  ``J_i = -4 s2_i / n_i`` with ``s2_i`` the unbiased sample variance of the prompt's rewards
  (``x 4``: the paper's {-1, +1} reward scale, for which its constants were tuned) -- "in
  practice we use ... the empirical variance of reward ... within each bin to guide arm
  selection" (Remark F.25). With it the primal-dual game is the variance-minimising one of
  Thm F.22 / eq. 69, whose optimum is the square-root law eq. 21. ``utility="loss"`` uses eq. 35
  literally, ``J_i = -l_i`` with the prompt loss above; its expectation does not depend on ``n``
  (more rollouts do not change a prompt's mean reward), so it gives the arms little to learn --
  offered for fidelity to eq. 35. Rollout-GDRO needs ``n_i >= 2`` (a sample variance; a group of
  one also has zero GRPO advantage), hence ``lower >= 2``, and its arms are all integers in
  ``[lower, upper]`` (App. C.2.2: ``2..12``), hence a finite ``upper``.
* **Exact budget** -- :meth:`bandits.RolloutGDRO.allocate` meets ``M * mean_budget`` exactly
  whenever some choice of one arm per bin reaches it (always when ``mean_budget`` is an integer);
  otherwise (e.g. ``mean_budget = 4.5`` with bin sizes that make every reachable total even) it
  returns the nearest reachable total, and the controller moves single prompts by one rollout,
  chosen uniformly among those that can move, until the total is exact (the prompts of a bin then
  use two adjacent arms; :meth:`bandits.RolloutGDRO.update` credits each prompt to its own arm).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..binning import BINNERS, PassAtKBinner, make_binner
from ..prompt_gdro import PromptGDRO
from ..rollout_gdro import _MAX_ARM, RolloutGDRO
from .base import Controller, Observation, StepPlan, even_split, fix_total

_BINNER_DEFAULTS = {"n_bins": 10, "window": 50, "bin_mode": "window", "bin_quantile": None}
_PASSK_TOP_LEVEL = {"window": "window", "mode": "bin_mode", "quantile": "bin_quantile"}
"""PassAtKBinner constructor options that are the controllers' own top-level options."""


def _binning_iv(binning: Any, binning_options: Any) -> tuple[str, dict]:
    """``binning`` (a name of :data:`bandits.binning.BINNERS`) and a copy of ``binning_options``
    (constructor options of that binner other than ``n_bins``), validated by name."""
    if not isinstance(binning, str):
        raise TypeError(f"binning must be a str naming a binner, one of {list(BINNERS)}, got {type(binning).__name__}")
    if binning not in BINNERS:
        raise ValueError(f"unknown binning {binning!r}; valid binnings: {list(BINNERS)}")
    if binning_options is None:
        return binning, {}
    if not isinstance(binning_options, Mapping):
        raise TypeError(f"binning_options must be a dict of {binning!r} binner options, got "
                        f"{type(binning_options).__name__}")
    opts = dict(binning_options)
    sig = inspect.signature(BINNERS[binning].__init__)
    valid = [k for k, p in sig.parameters.items() if k not in ("self", "n_bins")
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if binning == "pass@k":
        valid = [k for k in valid if k not in _PASSK_TOP_LEVEL]
    for key in opts:
        if not isinstance(key, str):
            raise TypeError(f"binning_options keys must be str, got {key!r}")
        if key == "n_bins":
            raise ValueError("binning_options must not set 'n_bins': it is the controller's own option (n_bins=), "
                             "shared by the binner and the adversaries")
        if binning == "pass@k" and key in _PASSK_TOP_LEVEL:
            raise ValueError(f"binning_options must not set {key!r} for binning='pass@k': use the controller's "
                             f"option {_PASSK_TOP_LEVEL[key]}=")
        if key not in valid:
            raise TypeError(f"binning_options has an unknown option {key!r} for binning={binning!r}; valid: {valid}")
    return binning, opts


def binner_iv(binner: Any, n_bins: Any, window: Any, bin_mode: Any, bin_quantile: Any, binning: Any = "pass@k",
              binning_options: Any = None) -> Any:
    """The difficulty binner of a binned controller (GDRO controllers, ``sqrt-law``).

    Three ways to choose it:

    * default (``binning="pass@k"``): a :class:`bandits.PassAtKBinner` built from ``n_bins``,
      ``window``, ``bin_mode``, ``bin_quantile`` and any further constructor options in
      ``binning_options`` (``edges``, ``prior``, ``unseen_bin``) -- GDRO eq. 10-11;
    * by name, ``binning="posterior"``: a :class:`bandits.PosteriorBinner` (uncertainty-aware bins,
      GDRO App. B's future work) built by :func:`bandits.make_binner` with ``n_bins`` and
      ``binning_options`` (e.g. ``{"statistic": "variance", "hysteresis": 0.02}``); ``window``,
      ``bin_mode``, ``bin_quantile`` configure the pass@k binner only and must keep their
      defaults;
    * ``binner=``: any object with the protocol below (then ``binning``/``binning_options`` must
      keep their defaults; ``n_bins`` is the binner's, a different explicit ``n_bins`` is a
      ``ValueError``; ``window``, ``bin_mode``, ``bin_quantile`` must keep their defaults).

    ``n_bins`` is shared: the binner's bins are the adversaries' groups. Names, options and
    mismatches are ``ValueError``/``TypeError`` naming the parameter.

    Binner protocol: ``n_bins`` (int >= 1), ``bins(prompt_ids) -> int array`` in ``[0, n_bins)``,
    ``state_dict()`` and ``load_state_dict(state)``, and a way to learn from a step:
    ``observe(prompt_ids, *, any_correct, successes, trials)`` (preferred; the controller passes
    the eq. 10 indicators ``any_correct`` (bool per prompt), ``successes`` = the sum of each
    prompt's rewards in [0, 1] and ``trials`` = its rollouts, and the binner reads what it needs --
    the protocol of every binner of :data:`bandits.binning.BINNERS`), or, for binners written
    against the earlier protocol, ``update(prompt_ids, any_correct)`` (used when there is no
    ``observe``). The controller owns the binner: it reads bins in ``plan`` (and the same bins in
    ``observe``, before updating the binner), feeds it in ``observe`` and stores its state in its
    checkpoints. What bin 0 means is the binner's (the lowest pass rate for pass@k bins).
    """
    binning, opts = _binning_iv(binning, binning_options)
    if binner is None:
        if binning == "pass@k":
            return PassAtKBinner(n_bins, window, mode=bin_mode, quantile=bin_quantile, **opts)
        for name, value in (("window", window), ("bin_mode", bin_mode), ("bin_quantile", bin_quantile)):
            if value != _BINNER_DEFAULTS[name]:
                raise ValueError(f"{name}={value!r} configures the pass@k binner; with binning={binning!r} leave it "
                                 f"at {_BINNER_DEFAULTS[name]!r} and configure the binner with binning_options")
        return make_binner(binning, n_bins=n_bins, **opts)
    if binning != "pass@k" or opts:
        raise ValueError(f"binner= and binning={binning!r} / binning_options= are exclusive: pass a binner object or "
                         "name one, not both")
    for attr in ("bins", "state_dict", "load_state_dict"):
        if not callable(getattr(binner, attr, None)):
            raise TypeError(f"binner must have a callable {attr}() (see binner_iv), got {type(binner).__name__}")
    if not (callable(getattr(binner, "observe", None)) or callable(getattr(binner, "update", None))):
        raise TypeError(f"binner must have a callable observe() or update() (see binner_iv), got "
                        f"{type(binner).__name__}")
    nb = getattr(binner, "n_bins", None)
    if isinstance(nb, bool) or not isinstance(nb, (int, np.integer)) or nb < 1:
        raise TypeError(f"binner must have an integer n_bins >= 1, got {nb!r} on {type(binner).__name__}")
    if n_bins != _BINNER_DEFAULTS["n_bins"] and n_bins != nb:
        raise ValueError(f"n_bins={n_bins!r} disagrees with the plugged-in binner's n_bins={int(nb)}")
    for name, value in (("window", window), ("bin_mode", bin_mode), ("bin_quantile", bin_quantile)):
        if value != _BINNER_DEFAULTS[name]:
            raise ValueError(f"{name}={value!r} configures the default PassAtKBinner; with binner= given, leave it at "
                             f"{_BINNER_DEFAULTS[name]!r} and configure the binner itself")
    return binner


def _renamed(exc: Exception, prefix: str, names: tuple[str, ...]) -> Exception:
    """The component's error with its parameter name (``step_size``) replaced by the controller's
    option name (``arm_step_size``), so the message names what the caller passed."""
    msg = re.sub(rf"^({'|'.join(names)})\b", lambda m: prefix + m.group(1), str(exc))
    return type(exc)(msg)

__all__ = ["CoupledGDROController", "PromptGDROController", "RolloutGDROController", "binner_iv"]

_UTILITIES = ("variance", "loss")
_ARM_MODELS = ("auto", "free", "inverse")


def _prompt_gdro(n_bins: int, step_size: Any, exploration: Any, ema: Any, weight_cap: Any, normalization: Any,
                 seed: Any, loss_range: Any, horizon: Any) -> PromptGDRO:
    try:
        matched = PromptGDRO.matched_step_size(n_bins, loss_range, horizon)  # validates both, always
        if isinstance(step_size, str):
            if step_size != "matched":
                raise ValueError(f"step_size must be a number or 'matched', got {step_size!r}")
            step_size = matched
        return PromptGDRO(n_bins, step_size, exploration, ema, weight_cap, normalization=normalization, seed=seed)
    except (ValueError, TypeError) as exc:
        raise _renamed(exc, "prompt_", ("step_size", "exploration", "ema", "loss_range", "horizon")) from None


class _Binned(Controller):
    """Difficulty binning (GDRO eq. 10-11; pluggable, :func:`binner_iv`) shared by the binned controllers."""

    def _init_binner(self, n_bins: Any, window: Any, bin_mode: Any, bin_quantile: Any, binner: Any = None,
                     binning: Any = "pass@k", binning_options: Any = None) -> None:
        self.binner = binner_iv(binner, n_bins, window, bin_mode, bin_quantile, binning, binning_options)
        self._custom_binner = binner is not None
        self.binning = None if self._custom_binner else binning
        self._binner_observes = callable(getattr(self.binner, "observe", None))
        self.n_bins = int(self.binner.n_bins)

    def _binner_options(self) -> dict:
        """The binner's part of the checkpoint's hyperparameters. A named binner records its name
        (``binning``) and every constructor option as resolved (``binning_options``, defaults
        filled in), so that a checkpoint loads only into a controller binning the same way."""
        if self._custom_binner:
            return {"n_bins": self.n_bins, "binner": f"{type(self.binner).__module__}.{type(self.binner).__qualname__}"}
        resolved = {k: v for k, v in self.binner._hyperparameters().items() if k != "n_bins"}
        if self.binning == "pass@k":
            window, mode, quantile = resolved.pop("window"), resolved.pop("mode"), resolved.pop("quantile")
        else:
            window, mode, quantile = (_BINNER_DEFAULTS[k] for k in ("window", "bin_mode", "bin_quantile"))
        return {"n_bins": self.n_bins, "window": window, "bin_mode": mode, "bin_quantile": quantile,
                "binning": self.binning, "binning_options": resolved}

    def _update_binner(self, obs: Observation) -> None:
        """Feed the step to the binner (:func:`binner_iv`'s protocol): the eq. 10 indicators, the
        per-prompt reward sums (successes) and rollout counts (trials); each binner reads its part."""
        if self._binner_observes:
            self.binner.observe(obs.ids, any_correct=obs.any_correct, successes=obs.reward_sums, trials=obs.counts)
        else:
            self.binner.update(obs.ids, obs.any_correct)

    def bins(self, prompt_ids: Any) -> np.ndarray:
        """Current bin of each prompt (the binner's; with pass@k bins, bin 0 = lowest pass rate and
        unseen prompts are in bin 0)."""
        return self.binner.bins(self._ids_iv(prompt_ids))

    @staticmethod
    def prompt_losses(obs: Observation) -> np.ndarray:
        """Prompt-level losses fed to Prompt-GDRO: the caller's, else ``1 - 2 r_bar`` (see module)."""
        return obs.prompt_losses if obs.prompt_losses is not None else 1.0 - 2.0 * obs.mean_rewards


class _RolloutArms(_Binned):
    """Rollout-GDRO over arms ``lower..upper`` with an exact total (shared by two controllers)."""

    min_lower = 2
    allows_infinite_upper = False

    def _lower_reason(self) -> str:
        return " (Rollout-GDRO's variance utility needs two rollouts per prompt)"

    def _init_rollout(self, arm_step_size: Any, arm_exploration: Any, arm_ema: Any, dual_step: Any,
                      price_cap: Any, selection: Any, utility: Any, arm_start: Any = "budget",
                      signed_price: Any = True, arm_model: Any = "auto") -> None:
        if not isinstance(utility, str) or utility not in _UTILITIES:
            raise ValueError(f"utility must be one of {list(_UTILITIES)}, got {utility!r}")
        self.utility = utility
        if not isinstance(arm_model, str) or arm_model not in _ARM_MODELS:
            raise ValueError(f"arm_model must be one of {list(_ARM_MODELS)}, got {arm_model!r}")
        self.arm_model = arm_model
        model = arm_model if arm_model != "auto" else ("inverse" if utility == "variance" else "free")
        if self.upper > _MAX_ARM:  # the arms are lower..upper, each a count of rollouts per prompt
            raise ValueError(f"controller {self.name!r} needs upper <= 2**20 (its arms are the integers "
                             f"lower..upper), got upper={self.upper}")
        try:
            self.rollout = RolloutGDRO(
                self.n_bins, arms=range(self.lower, int(self.upper) + 1), mean_budget=float(self.mean_budget),
                dual_step=dual_step, step_size=arm_step_size, exploration=arm_exploration, ema=arm_ema,
                price_cap=price_cap, selection=selection, seed=self._spawn(), arm_start=arm_start,
                signed_price=signed_price, arm_model=model,
            )
        except (ValueError, TypeError) as exc:
            raise _renamed(exc, "arm_", ("step_size", "exploration", "ema")) from None

    def _rollout_options(self) -> dict:
        r = self.rollout
        return {"arm_step_size": r.step_size, "arm_exploration": r.exploration, "arm_ema": r.ema,
                "dual_step": r.dual_step, "price_cap": r.price_cap, "selection": r.selection,
                "utility": self.utility, "arm_start": r.arm_start, "signed_price": r.signed_price,
                "arm_model": self.arm_model}

    def _counts(self, bins: np.ndarray, total: int) -> np.ndarray:
        counts = self.rollout.allocate(bins)
        if int(counts.sum()) != total:
            counts = fix_total(counts, total, self.lower, self.upper, self._rng)
        return counts

    def _check_observation(self, obs: Observation) -> None:
        bad = (obs.counts < self.lower) | (obs.counts > self.upper)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"counts must be in [lower, upper] = [{self.lower}, {self.upper}] for controller "
                             f"{self.name!r} (its rollout arms), got {int(obs.counts[i])} at index {i}")

    def utilities(self, obs: Observation, multipliers: np.ndarray) -> np.ndarray:
        """Per-prompt utility ``J_i`` for Rollout-GDRO (module docstring), with multipliers ``omega``:
        ``-omega^2 4 s2 / n`` (``variance``) or ``-omega l`` (``loss``)."""
        if self.utility == "variance":
            return -(multipliers**2) * 4.0 * obs.sample_vars / obs.counts
        return -multipliers * self.prompt_losses(obs)


class PromptGDROController(_Binned):
    """``prompt-gdro``: uniform rollout counts, GDRO advantage multipliers (Sec. 3.2, eq. 17).

    Allocation rule: counts as ``uniform`` (``floor(T / M)`` each, the remainder to prompts drawn
    uniformly); multipliers ``min(omega_b, weight_cap)`` of :class:`bandits.PromptGDRO` for each
    prompt's bin (share-normalised by default: compute neutral, eq. 17). ``observe`` feeds
    Prompt-GDRO the bins used by ``plan`` and the prompt losses (module docstring), then updates
    the binner with the any-correct indicators (eq. 10).

    Parameters (keyword options of ``make_controller``)
    ----------------------------------------------------
    n_bins=10, window=50, bin_mode="window", bin_quantile=None
        :class:`bandits.PassAtKBinner` (App. C.2: 10 bins, ``H in [50, 100]``).
    binning="pass@k", binning_options=None
        The binner by name (:data:`bandits.binning.BINNERS`): ``"pass@k"`` or ``"posterior"``
        (:class:`bandits.PosteriorBinner`, e.g. ``binning_options={"statistic": "variance"}``),
        built with the shared ``n_bins`` and ``binning_options`` (:func:`binner_iv`).
    binner=None
        Any other difficulty binner (:func:`binner_iv`); then ``n_bins`` is the binner's.
    prompt_step_size="matched", prompt_loss_range=2.0, prompt_horizon=1000
        Exponential-weights step: ``"matched"`` is Thm F.7's step for a loss of range
        ``prompt_loss_range`` over ``prompt_horizon`` steps (module docstring; GDRO trains 1000
        steps); a number is used as given (``0.65``: App. C.2.1's constant).
    prompt_exploration=0.01, prompt_ema=0.12, weight_cap=15.0, normalization="share"
        :class:`bandits.PromptGDRO` (App. C.2.1).
    """

    name = "prompt-gdro"

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 n_bins: Any = 10, window: Any = 50, bin_mode: str = "window", bin_quantile: Any = None,
                 binner: Any = None, binning: str = "pass@k", binning_options: Any = None,
                 prompt_step_size: Any = "matched", prompt_loss_range: Any = 2.0,
                 prompt_horizon: Any = 1000, prompt_exploration: Any = 0.01, prompt_ema: Any = 0.12,
                 weight_cap: Any = 15.0, normalization: str = "share") -> None:
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        self._init_binner(n_bins, window, bin_mode, bin_quantile, binner, binning, binning_options)
        self.prompt = _prompt_gdro(self.n_bins, prompt_step_size, prompt_exploration, prompt_ema, weight_cap,
                                   normalization, self._spawn(), prompt_loss_range, prompt_horizon)
        self._prompt_step_option = (prompt_step_size if isinstance(prompt_step_size, str) else self.prompt.step_size,
                                    prompt_loss_range, prompt_horizon)

    def _prompt_options(self) -> dict:
        p = self.prompt
        step, loss_range, horizon = self._prompt_step_option
        return {"prompt_step_size": step, "prompt_loss_range": loss_range, "prompt_horizon": horizon,
                "prompt_step": p.step_size, "prompt_exploration": p.exploration, "prompt_ema": p.ema,
                "weight_cap": p.weight_cap, "normalization": p.normalization}

    def _options(self) -> dict:
        return {**self._binner_options(), **self._prompt_options()}

    def _components(self) -> dict:
        return {"binner": self.binner, "prompt_gdro": self.prompt}

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        bins = self.binner.bins(ids)
        return StepPlan(even_split(total, ids.size, self._rng), self.prompt.multipliers(bins), bins)

    def _observe(self, obs: Observation) -> None:
        bins = self.binner.bins(obs.ids)
        self.prompt.update(bins, self.prompt_losses(obs))
        self._update_binner(obs)


class RolloutGDROController(_RolloutArms):
    """``rollout-gdro``: Rollout-GDRO counts per difficulty bin under the exact mean budget (Sec. 3.3).

    Allocation rule: :meth:`bandits.RolloutGDRO.allocate` on the prompts' bins -- per-bin
    exponential weights over the arms ``lower..upper``, the exact budget-matching DP over a
    Gumbel-perturbed joint choice (App. C.2.2), then the unit fix-up of the module docstring when
    the mean budget is not reachable with one arm per bin. Multipliers are 1. ``observe`` feeds
    Rollout-GDRO the plan's bins, the counts used and the utilities (default ``-4 s2_i / n_i``,
    Remark F.25), then updates the binner (eq. 10 indicators; per-rollout counts for posterior bins).

    Parameters (keyword options of ``make_controller``)
    ----------------------------------------------------
    n_bins=10, window=50, bin_mode="window", bin_quantile=None
        :class:`bandits.PassAtKBinner`.
    binning="pass@k", binning_options=None
        The binner by name (:data:`bandits.binning.BINNERS`): ``"pass@k"`` or ``"posterior"``
        (:class:`bandits.PosteriorBinner`, e.g. ``binning_options={"statistic": "variance"}``),
        built with the shared ``n_bins`` and ``binning_options`` (:func:`binner_iv`).
    binner=None
        Any other difficulty binner (:func:`binner_iv`); then ``n_bins`` is the binner's.
    arm_step_size=0.65, arm_exploration=0.01, arm_ema=0.4, dual_step=0.05, price_cap=10.0, selection="gumbel"
        :class:`bandits.RolloutGDRO` (App. C.2.2).
    arm_start="budget", signed_price=True
        :class:`bandits.RolloutGDRO` (``"uniform"``, ``False``: the unfixed start and price).
    arm_model : {"auto", "free", "inverse"}, default "auto"
        How never-played arms are scored; ``"auto"``: ``"inverse"`` (the ``1/n`` law) for the
        variance utility, ``"free"`` for the loss utility.
    utility : {"variance", "loss"}, default "variance"
        What Rollout-GDRO maximises (module docstring).
    """

    name = "rollout-gdro"

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 n_bins: Any = 10, window: Any = 50, bin_mode: str = "window", bin_quantile: Any = None,
                 binner: Any = None, binning: str = "pass@k", binning_options: Any = None,
                 arm_step_size: Any = 0.65, arm_exploration: Any = 0.01, arm_ema: Any = 0.4,
                 dual_step: Any = 0.05, price_cap: Any = 10.0, selection: str = "gumbel",
                 utility: str = "variance", arm_start: str = "budget", signed_price: Any = True,
                 arm_model: str = "auto") -> None:
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        self._init_binner(n_bins, window, bin_mode, bin_quantile, binner, binning, binning_options)
        self._init_rollout(arm_step_size, arm_exploration, arm_ema, dual_step, price_cap, selection, utility,
                           arm_start, signed_price, arm_model)

    def _options(self) -> dict:
        return {**self._binner_options(), **self._rollout_options()}

    def _components(self) -> dict:
        return {"binner": self.binner, "rollout_gdro": self.rollout}

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        bins = self.binner.bins(ids)
        return StepPlan(self._counts(bins, total), np.ones(ids.size), bins)

    def _observe(self, obs: Observation) -> None:
        bins = self.binner.bins(obs.ids)
        self.rollout.update(bins, obs.counts, self.utilities(obs, np.ones(obs.ids.size)))
        self._update_binner(obs)


class CoupledGDROController(_RolloutArms):
    r"""``gdro-coupled``: Prompt-GDRO multipliers and Rollout-GDRO counts in one game.

    The GDRO paper runs the two adversaries separately and leaves their joint dynamics to future
    work (Sec. 5, App. B, Remark F.24). **The coupling chosen here: the compute adversary sees the
    data adversary's weights through the variance of the reweighted gradient.**

    *Derivation.* Prompt-GDRO does not resample prompts; it scales prompt ``i``'s advantages by
    ``omega_i = min(omega_{b(i)}, w_max)`` (eq. 17). The reweighted batch gradient is
    ``g = (1/M) sum_i omega_i g_i(n_i)``, and with independent rollout groups (Lemma F.15, eq. 54)
    its conditional variance is ``(1/M^2) sum_i omega_i^2 Var(g_i(n_i)) <= (1/M) sum_b qhat_b
    omega_b^2 v_b / n_b``. So with the multipliers in place the variance proxy of eq. 19 becomes
    ``sum_b qhat_b (omega_b^2 v_b) / n_b``: the same budgeted problem (eq. 20, 36, 69) with
    ``v_b`` replaced by ``omega_b^2 v_b``. Rollout-GDRO therefore receives the utility
    ``J_i = -omega_i^2 4 s2_i / n_i`` (``utility="variance"``; ``-omega_i l_i`` with
    ``utility="loss"``: the prompt's share of the reweighted loss), with ``omega_i`` the
    multipliers that ``plan`` returned for the step.

    *Why this coupling.* (1) It is the only channel through which the two levers interact in this
    compute-neutral design: Remark F.24's worry -- that ``qhat`` becomes endogenous to a prompt
    *sampler* -- does not arise, because Prompt-GDRO reweights rather than samples, so the bin
    shares ``qhat`` (and the budget constraint ``sum_b qhat_b n_b = n_bar``) stay exogenous.
    (2) Its target is explicit: by the square-root law (eq. 21 / Thm F.17) the variance-optimal
    counts become ``n_b \propto omega_b sqrt(v_b)``, so bins the data adversary up-weights also get
    the rollouts that keep their amplified gradient noise in check, instead of a 15x multiplier on
    a 2-rollout estimate. (3) For a fixed ``omega`` (the Prompt-GDRO weights move slowly, through
    an EMA) the rollout game is exactly the primal-dual game of Thm F.22 with
    ``V_b(n) = omega_b^2 v_b / n <= w_max^2 v_b / n_min``, so its guarantee applies step by step
    (a two-time-scale reading; no claim is made about the joint dynamics). Alternatives set aside:
    independent composition (ignores the amplified variance), or weighting the budget constraint
    by ``q`` instead of ``qhat`` (breaks compute neutrality: rollouts are paid for realised
    prompts).

    Order of updates in ``observe``: bins and multipliers are read from the state ``plan`` used;
    Rollout-GDRO is updated with the coupled utilities, then Prompt-GDRO with the prompt losses
    (its update does not depend on the counts beyond the rewards), then the binner.

    Parameters: the options of ``prompt-gdro`` and ``rollout-gdro`` together.
    """

    name = "gdro-coupled"

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 n_bins: Any = 10, window: Any = 50, bin_mode: str = "window", bin_quantile: Any = None,
                 binner: Any = None, binning: str = "pass@k", binning_options: Any = None,
                 prompt_step_size: Any = "matched", prompt_loss_range: Any = 2.0,
                 prompt_horizon: Any = 1000, prompt_exploration: Any = 0.01, prompt_ema: Any = 0.12,
                 weight_cap: Any = 15.0, normalization: str = "share",
                 arm_step_size: Any = 0.65, arm_exploration: Any = 0.01, arm_ema: Any = 0.4,
                 dual_step: Any = 0.05, price_cap: Any = 10.0, selection: str = "gumbel",
                 utility: str = "variance", arm_start: str = "budget", signed_price: Any = True,
                 arm_model: str = "auto") -> None:
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        self._init_binner(n_bins, window, bin_mode, bin_quantile, binner, binning, binning_options)
        self.prompt = _prompt_gdro(self.n_bins, prompt_step_size, prompt_exploration, prompt_ema, weight_cap,
                                   normalization, self._spawn(), prompt_loss_range, prompt_horizon)
        self._prompt_step_option = (prompt_step_size if isinstance(prompt_step_size, str) else self.prompt.step_size,
                                    prompt_loss_range, prompt_horizon)
        self._init_rollout(arm_step_size, arm_exploration, arm_ema, dual_step, price_cap, selection, utility,
                           arm_start, signed_price, arm_model)

    _prompt_options = PromptGDROController._prompt_options

    def _options(self) -> dict:
        return {**self._binner_options(), **self._prompt_options(), **self._rollout_options()}

    def _components(self) -> dict:
        return {"binner": self.binner, "prompt_gdro": self.prompt, "rollout_gdro": self.rollout}

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        bins = self.binner.bins(ids)
        return StepPlan(self._counts(bins, total), self.prompt.multipliers(bins), bins)

    def _observe(self, obs: Observation) -> None:
        bins = self.binner.bins(obs.ids)
        omega = self.prompt.multipliers(bins)
        self.rollout.update(bins, obs.counts, self.utilities(obs, omega))
        self.prompt.update(bins, self.prompt_losses(obs))
        self._update_binner(obs)


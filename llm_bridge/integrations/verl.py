"""verl integration: ragged-safe robust advantage estimators and a trainer with per-prompt rollout
counts, Prompt-GDRO multipliers and DRRO/DRO shaping (``pip install "robust-rollouts[verl]"``), a
thin adapter over the one robust step (:mod:`llm_bridge.robust_step`).

Tested against verl 0.9.1 (``verl[verl-core]``; V1 trainer, ``trainer.use_v1=true``).

What verl gives and what this module adds
-----------------------------------------
* verl's built-in GRPO gives a group of one its raw score and a registered advantage estimator
  never sees log-probs. Importing this module registers three estimators with
  ``core_algos.register_adv_est``: ``robust_grpo``, ``robust_drgrpo`` and ``robust_rloo``. They
  group rollouts by ``uid`` (groups may have any size; a group of one gets advantage 0), compute
  verl's own convention over each group (advantage kinds ``verl-grpo`` -- sample std + 1e-6, or
  ``verl-drgrpo`` when ``algorithm.norm_adv_by_std_in_grpo`` is false -- ``verl-drgrpo`` and
  ``verl-rloo`` of :data:`llm_bridge.advantage_kinds.ADVANTAGE_KINDS`; on groups of two or more
  they equal verl's ``grpo`` / ``rloo`` bit for bit; ``algorithm.robust_advantage_kind`` picks
  another kind, e.g. ``grpo`` for the papers' population std) and multiply each group by its
  Prompt-GDRO multiplier when the algorithm config carries one (key ``robust_multipliers``: a
  mapping ``uid -> multiplier``; missing uids get 1). Use them with
  ``algorithm.adv_estimator=robust_grpo`` in any verl trainer, or call
  :func:`compute_robust_advantage` to take the multipliers from a per-row batch column.
* Multi-output (multi-turn) agent loops: verl's V1 trainers pass every output row of a trajectory
  to a non-``grpo`` estimator, which would count each output as a group member. Importing this
  module makes V1's ``compute_advantage_for_multi_trajectories`` treat the robust estimators as
  verl treats its ``grpo``: the final output of each ``{uid}_{session}`` joins the group and its
  advantage is broadcast to the session's other outputs
  (:func:`compute_robust_advantage_for_multi_trajectories`; verl's own estimators are untouched).
* :class:`RobustPPOTrainer` (registered as ``trainer.v1.trainer_mode=robust_sync``) is verl's
  ``PPOTrainerSync`` with three hooks:

  - ``_next_train_batch``: asks the controller for one rollout count per prompt of the training
    batch (stable prompt id = the dataset's ``extra_info.index``, copied by verl to the row field
    ``index``) and injects them as the per-row integer column ``__rollout_n__`` that verl's V1
    agent loop reads; counts sum to ``train_batch_size * rollout.n`` so mini-batch sizes do not
    change.
  - ``_compute_advantage``: reads the step's scores, ``old_log_probs`` (and ``ref_log_prob`` when a
    reference policy is configured), shapes the scores within each group (DRRO eq. 4.14 / 4.15,
    the DRO rule, optional KL-driven budget eq. 4.17), writes the shaped scores back, passes the
    controller's multipliers to the estimator through the algorithm config, runs verl's own
    advantage step, and feeds success values back to the controller (``observe``;
    :func:`llm_bridge.robust_step.success_values`: rewards in [0, 1] as they are, any range for a
    controller that does not learn from rewards, else ``robust.success_threshold`` or the
    trainer's ``success_fn``). Multi-output trajectories count once, by their final output.
  - checkpoints: the controller and the KL history of the dynamic budget are saved beside verl's
    checkpoint (``global_step_N/robust_state.pkl``) and restored with it.
  - metrics ``robust/*``: real group sizes, groups of one, multipliers, shaping bonus and budget,
    per difficulty bin.

  verl looks the trainer class up before user modules are imported, so it needs its own entry
  point: ``python -m llm_bridge.integrations.verl_main`` (a copy of verl's ``main_ppo`` command line
  whose Ray task runner imports this module first; the module must be importable on the Ray
  workers, i.e. installed in their environment). An example config is
  ``llm_bridge/integrations/verl_config/robust_ppo_trainer.yaml``.

Configuration (section ``robust`` of the verl config; see the example config)::

    robust:
      controller: vip            # a name of bandits.controllers.CONTROLLERS
      n_prompts: 7473            # size of the prompt pool (ids are extra_info.index in [0, n_prompts))
      lower: 2                   # per-prompt rollout bounds
      upper: 16
      seed: 0
      options: {}                # keyword options of make_controller (e.g. cost: rloo)
      success_threshold: null    # success = reward >= threshold, for controllers that learn from rewards
      shaping: null              # or {rule: drro, delta: 2.0, tau: 2.0, kl_alpha: null, kl_window: 20,
                                 #     reference_group_size: null}  (no tau: the hard rule)

Scores written back after shaping are what verl's own ``critic/score`` metrics then report; the raw
rewards are in ``robust/reward_mean``.

Controllers that sample in rounds, skip prompts or select their training rollouts
(``reinforce-ada``, ``dapo-dynamic``, ``ar3po``, ``greso``) are refused when the trainer is built
(``ValueError``): verl's V1 agent loop generates each prompt's ``__rollout_n__`` rollouts in one
pass and the trainer's mini-batches are sized for ``train_batch_size * rollout.n`` rows, every one
of which enters the update, so there is no second generation call within a step, no prompt with
0 rollouts and no dropped group. Run such a controller with the project's trainer
(``robust-rollouts train --controller ...``; verl's own DAPO recipe implements DAPO's dynamic
sampling with its own trainer).
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

try:
    import torch
    import transfer_queue as tq
    from omegaconf import DictConfig, OmegaConf, open_dict
    from verl.protocol import DataProto
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.ray_trainer import compute_advantage
    from verl.trainer.ppo.v1 import register_trainer
    from verl.trainer.ppo.v1 import trainer_base as _v1_trainer_base
    from verl.trainer.ppo.v1 import utils as _v1_utils
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
    from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path
    from verl.workers.utils.padding import response_to_nested
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "llm_bridge.integrations.verl needs verl: pip install \"robust-rollouts[verl]\" "
        f"(verl[verl-core]); import failed with: {exc}"
    ) from exc

from bandits.controllers import check_controller

from ..advantage_kinds import get_advantage_kind
from ..robust_step import RobustAdvantage, Shaping, robust_step, step_metrics, success_values
from ..rounds import host_support_iv

__all__ = [
    "ESTIMATORS",
    "KIND_KEY",
    "MULTIPLIER_KEY",
    "ROLLOUT_N_KEY",
    "TRAINER_NAME",
    "RobustPPOTrainer",
    "ROBUST_STATE_FILE",
    "compute_robust_advantage",
    "compute_robust_advantage_for_multi_trajectories",
    "estimator_kind",
    "robust_advantage_estimator",
]

MULTIPLIER_KEY = "robust_multipliers"
"""Algorithm-config key holding a mapping ``uid -> Prompt-GDRO multiplier``."""
ROLLOUT_N_KEY = "__rollout_n__"
"""Per-row column verl's V1 agent loop reads as the number of rollouts of that prompt."""
TRAINER_NAME = "robust_sync"
"""``trainer.v1.trainer_mode`` of :class:`RobustPPOTrainer`."""
KIND_KEY = "robust_advantage_kind"
"""Algorithm-config key naming the advantage kind of the robust estimators (default: verl's convention)."""
ROBUST_STATE_FILE = "robust_state.pkl"
"""File in each ``global_step_N`` checkpoint folder with the controller's and the shaping's state."""
VERL_ROUNDS_REASON = (
    "verl's V1 agent loop generates each prompt's __rollout_n__ rollouts in one pass and the trainer's mini-batches "
    "are sized for train_batch_size x rollout.n rows, all of which enter the update, so it cannot run extra "
    "generation rounds, give a prompt 0 rollouts, or drop groups from the update.")
"""Why :class:`RobustPPOTrainer` refuses controllers that sample in rounds, skip prompts or select
their training rollouts (module docstring)."""


def _config_get(config: Any, key: str, default: Any = None) -> Any:
    if config is None:
        return default
    if isinstance(config, Mapping) or hasattr(config, "get"):
        try:
            return config.get(key, default)
        except Exception:  # noqa: BLE001 - e.g. a structured config without the key
            return default
    return getattr(config, key, default)


def _group_ids(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """uids (any hashable labels) -> (unique labels in first-seen order, int64 group id per row)."""
    labels = np.asarray([str(u) for u in index], dtype=object)
    uniq, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # relabel in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return uniq[order], rank[inverse].astype(np.int64)


def _multipliers_for(uids: np.ndarray, config: Any) -> np.ndarray:
    table = _config_get(config, MULTIPLIER_KEY)
    m = np.ones(len(uids))
    if table is None:
        return m
    if not (isinstance(table, Mapping) or hasattr(table, "get")):
        raise TypeError(f"algorithm.{MULTIPLIER_KEY} must be a mapping uid -> multiplier, got {type(table).__name__}")
    for i, u in enumerate(uids):
        v = table.get(u, 1.0)
        v = float(v)
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"algorithm.{MULTIPLIER_KEY}[{u!r}] must be finite and >= 0, got {v!r}")
        m[i] = v
    return m


def estimator_kind(estimator: str, config: Any = None) -> str:
    """The advantage kind a robust estimator uses under an algorithm config: ``config[robust_advantage_kind]``
    if set, else verl's convention -- ``robust_grpo``: ``verl-grpo`` (``verl-drgrpo`` when
    ``norm_adv_by_std_in_grpo`` is false), ``robust_drgrpo``: ``verl-drgrpo``, ``robust_rloo``:
    ``verl-rloo``."""
    override = _config_get(config, KIND_KEY)
    if override is not None:
        return get_advantage_kind(str(override)).name
    name = str(estimator)
    if name == "robust_grpo":
        return "verl-grpo" if bool(_config_get(config, "norm_adv_by_std_in_grpo", True)) else "verl-drgrpo"
    if name == "robust_drgrpo":
        return "verl-drgrpo"
    if name == "robust_rloo":
        return "verl-rloo"
    raise ValueError(f"unknown robust estimator {estimator!r}; valid: ['robust_drgrpo', 'robust_grpo', 'robust_rloo']")


def robust_advantage_estimator(kind: str):
    """Build a verl advantage estimator ``robust_{kind}`` for ``kind`` in {"grpo", "drgrpo", "rloo"}.

    The estimator has verl's calling convention (``token_level_rewards`` and ``response_mask`` of
    shape (bs, response_length), ``index`` = the per-trajectory ``uid`` array, ``config`` = the
    algorithm config) and returns ``(advantages, returns)``, both the per-rollout advantage
    broadcast over the response tokens. The score of a rollout is ``token_level_rewards.sum(-1)``
    (as in verl's GRPO). Groups are the rollouts sharing a uid, of any size; a group of one, or a
    group whose scores are all equal, gets advantage 0. The advantage kind is
    :func:`estimator_kind` (verl's own convention by default, so that on groups of two or more the
    estimator equals verl's ``grpo`` / ``rloo``); the group advantage is multiplied by
    ``config[robust_multipliers][uid]`` when present.
    """
    if kind not in ("grpo", "drgrpo", "rloo"):
        raise ValueError(f"unknown advantage kind {kind!r}; valid kinds: ['drgrpo', 'grpo', 'rloo']")
    name = f"robust_{kind}"

    def estimator(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any = None,
                  config: Any = None, epsilon: float | None = None, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if index is None:
            raise ValueError(f"{name} needs the per-trajectory uid array (index=...), got None")
        if len(index) != token_level_rewards.shape[0]:
            raise ValueError(f"index has {len(index)} entries but token_level_rewards has "
                             f"{token_level_rewards.shape[0]} rows")
        with torch.no_grad():
            scores = token_level_rewards.sum(dim=-1).detach().to("cpu").double().numpy()
            uids, gid = _group_ids(index)
            has_table = _config_get(config, MULTIPLIER_KEY) is not None
            mult = _multipliers_for(uids, config) if has_table else None
            res = robust_step(scores, gid, kind=estimator_kind(name, config), n_groups=len(uids), multipliers=mult,
                              eps=epsilon)
            out = torch.as_tensor(res.advantages, dtype=token_level_rewards.dtype, device=token_level_rewards.device)
            out = out.unsqueeze(-1) * response_mask
        return out, out

    estimator.__name__ = f"compute_robust_{kind}_advantage"
    estimator.__qualname__ = estimator.__name__
    estimator.__doc__ = (f"Ragged-safe {kind} advantages (size-1 groups 0) in verl's convention, with Prompt-GDRO "
                         "multipliers; see llm_bridge.integrations.verl.robust_advantage_estimator.")
    return estimator


ESTIMATORS = {f"robust_{k}": robust_advantage_estimator(k) for k in ("grpo", "drgrpo", "rloo")}
"""The registered estimators: ``robust_grpo``, ``robust_drgrpo``, ``robust_rloo``."""

for _name, _fn in ESTIMATORS.items():
    if core_algos.ADV_ESTIMATOR_REGISTRY.get(_name) is not _fn:
        # a re-import (e.g. a module reload) replaces our own earlier registration only
        core_algos.ADV_ESTIMATOR_REGISTRY.pop(_name, None)
        core_algos.register_adv_est(_name)(_fn)


_VERL_MULTI_TRAJECTORIES = getattr(_v1_utils.compute_advantage_for_multi_trajectories, "__wrapped_verl__",
                                   _v1_utils.compute_advantage_for_multi_trajectories)


def compute_robust_advantage_for_multi_trajectories(data: DataProto, batch_keys: list[str], adv_estimator: Any,
                                                    gamma: float = 1.0, lam: float = 1.0, num_repeat: int = 1,
                                                    norm_adv_by_std_in_grpo: bool = True,
                                                    config: Any = None) -> DataProto:
    """verl V1's ``compute_advantage_for_multi_trajectories``, with the robust estimators handled as verl
    handles ``grpo``: only the final output of each ``{uid}_{session}`` (the largest output index)
    joins its group, and its advantage is broadcast over the response tokens of every output of the
    session. Other estimators go to verl's function unchanged.
    """
    if str(adv_estimator) not in ESTIMATORS:
        return _VERL_MULTI_TRAJECTORIES(data, batch_keys=batch_keys, adv_estimator=adv_estimator, gamma=gamma,
                                        lam=lam, num_repeat=num_repeat,
                                        norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo, config=config)
    sessions, outputs, _ = _trajectory_keys(batch_keys)
    final = _final_rows(sessions, outputs)
    local = {sess: k for k, sess in enumerate(final)}
    final_data = compute_advantage(data.select_idxs(list(final.values())), adv_estimator=adv_estimator, gamma=gamma,
                                   lam=lam, num_repeat=num_repeat, norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo,
                                   config=config)
    first = final_data.batch["response_mask"].argmax(dim=1)
    per_session = final_data.batch["advantages"][torch.arange(len(final_data)), first]
    scores = per_session[[local[sess] for sess in sessions]].unsqueeze(-1) * data.batch["response_mask"]
    data.batch["advantages"] = scores
    data.batch["returns"] = scores
    return data


compute_robust_advantage_for_multi_trajectories.__wrapped_verl__ = _VERL_MULTI_TRAJECTORIES
# verl's V1 trainers call the function by these names: route the robust estimators through ours
_v1_utils.compute_advantage_for_multi_trajectories = compute_robust_advantage_for_multi_trajectories
_v1_trainer_base.compute_advantage_for_multi_trajectories = compute_robust_advantage_for_multi_trajectories


def compute_robust_advantage(data: DataProto, adv_estimator: str = "robust_grpo", *, config: Any = None,
                             multiplier_column: str = "robust_multiplier", **kwargs: Any) -> DataProto:
    """verl's ``compute_advantage`` with Prompt-GDRO multipliers taken from the batch.

    ``data.non_tensor_batch[multiplier_column]`` (or ``data.batch[multiplier_column]``), one
    multiplier per row and equal within a uid, is turned into the ``robust_multipliers`` mapping of
    the algorithm config for this call only. Other keyword arguments go to ``compute_advantage``.
    """
    if adv_estimator not in ESTIMATORS:
        raise ValueError(f"adv_estimator must be one of {sorted(ESTIMATORS)}, got {adv_estimator!r}")
    if multiplier_column in data.non_tensor_batch:
        col = np.asarray(data.non_tensor_batch[multiplier_column], dtype=np.float64)
    elif data.batch is not None and multiplier_column in data.batch.keys():  # noqa: SIM118 - TensorDict has no 'in'
        col = data.batch[multiplier_column].detach().to("cpu", torch.float64).numpy().reshape(-1)
    else:
        col = None
    overlay: dict[str, Any] = {}
    if col is not None:
        uids = [str(u) for u in data.non_tensor_batch["uid"]]
        table: dict[str, float] = {}
        for u, v in zip(uids, col.tolist()):
            if u in table and table[u] != v:
                raise ValueError(f"{multiplier_column} differs within uid {u!r}: {table[u]!r} vs {v!r}")
            table[u] = v
        overlay[MULTIPLIER_KEY] = table
    merged = _ConfigOverlay(config, overlay)
    return compute_advantage(data, adv_estimator=adv_estimator, config=merged, **kwargs)


class _ConfigOverlay(Mapping):
    """A read-only view of an algorithm config with a few keys added (no copy of the config)."""

    def __init__(self, base: Any, extra: dict[str, Any]):
        self._base, self._extra = base, extra

    def __getitem__(self, key: str) -> Any:
        if key in self._extra:
            return self._extra[key]
        if self._base is None:
            raise KeyError(key)
        return self._base[key]

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._extra:
            return self._extra[key]
        return _config_get(self._base, key, default)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        if key in self._extra:
            return self._extra[key]
        return getattr(self._base, key)

    def __iter__(self):
        keys = list(self._base.keys()) if self._base is not None else []
        return iter(keys + [k for k in self._extra if k not in keys])

    def __len__(self) -> int:
        return sum(1 for _ in self)


# ------------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------------

def _as_list(x: Any) -> list:
    if isinstance(x, torch.Tensor):
        return x.reshape(-1).tolist()
    if hasattr(x, "tolist") and not isinstance(x, list):
        return list(x.tolist())
    return [getattr(v, "data", v) for v in x]


def _trajectory_keys(keys: list[str]) -> tuple[list[str], list[int], list[str]]:
    """``{uid}_{session}_{output}`` TransferQueue keys -> (session ``{uid}_{session}`` per row, output
    index per row, uid per row)."""
    sessions, outputs, uids = [], [], []
    for k in keys:
        parts = str(k).rsplit("_", 2)
        if len(parts) != 3:
            raise ValueError(f"unexpected TransferQueue key {k!r}: expected '{{uid}}_{{session}}_{{output}}'")
        sessions.append(f"{parts[0]}_{parts[1]}")
        outputs.append(int(parts[2]))
        uids.append(parts[0])
    return sessions, outputs, uids


def _final_rows(sessions: list[str], outputs: list[int]) -> dict[str, int]:
    """Session -> row of its final output (largest output index), in order of first appearance."""
    final: dict[str, tuple[int, int]] = {}
    for i, (sess, out) in enumerate(zip(sessions, outputs)):
        if sess not in final or final[sess][0] < out:
            final[sess] = (out, i)
    return {sess: row for sess, (_, row) in final.items()}


@register_trainer(TRAINER_NAME)
class RobustPPOTrainer(PPOTrainerSync):
    """verl's synchronous V1 trainer with a rollout controller and robust advantages.

    Behaves exactly as verl's ``sync`` trainer (``trainer.v1.trainer_mode`` is rewritten to
    ``sync`` in the trainer's own config copy, so every mode check, the replay buffer and
    ``trainer.v1.sync.*`` settings are the sync ones) plus the hooks described in the module
    docstring. Config: the ``robust`` section (module docstring).

    Parameters
    ----------
    config : DictConfig
        verl's config with a ``robust`` section.
    controller : optional
        A ready controller (the ``bandits.controllers`` protocol) instead of the one
        ``robust.controller`` names; verl itself passes only ``config``. Controllers that sample
        in rounds, skip prompts or select their training rollouts are refused (``ValueError``;
        module docstring).
    success_fn : callable, optional
        Maps rewards to success values in [0, 1] for a controller that learns from them
        (alternative to ``robust.success_threshold``).

    Attributes
    ----------
    controller
        The rollout controller (``bandits.controllers``), ``plan`` / ``observe`` / ``state_dict``.
    advantage : RobustAdvantage
        Shaping (and its KL history) applied in ``_compute_advantage``.
    last_step : dict
        What the last advantage step did: ``prompt_ids``, ``counts``, ``rewards``, ``group_ids``,
        ``multipliers``, ``advantages`` (per trajectory), ``result`` (a RobustStepResult).
    """

    def __init__(self, config: DictConfig, controller: Any = None,
                 success_fn: Callable[[np.ndarray], Any] | None = None):
        config = copy.deepcopy(config)
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config=config)
        self._init_robust(config, controller, success_fn)

    def _init_robust(self, config: DictConfig, controller: Any = None,
                     success_fn: Callable[[np.ndarray], Any] | None = None) -> None:
        robust = config.get("robust", None)
        if robust is None:
            raise ValueError("RobustPPOTrainer needs a 'robust' config section (controller, n_prompts, ...); "
                             "see llm_bridge/integrations/verl_config/robust_ppo_trainer.yaml")
        robust = OmegaConf.to_container(robust, resolve=True) if isinstance(robust, DictConfig) else dict(robust)
        n_prompts = robust.get("n_prompts")
        if n_prompts is None and controller is None:
            raise ValueError("robust.n_prompts is required: the size of the prompt pool "
                             "(prompt ids are the dataset's extra_info.index, in [0, n_prompts))")
        self.rollout_n = int(config.actor_rollout_ref.rollout.n)
        if controller is not None:
            self.controller = check_controller(controller)
            budget = getattr(controller, "mean_budget", None)
            if budget is not None and Fraction(budget) != self.rollout_n:
                raise ValueError(f"the controller's mean_budget {budget} must equal actor_rollout_ref.rollout.n="
                                 f"{self.rollout_n} (counts sum to train_batch_size x rollout.n)")
        else:
            from bandits.controllers import make_controller

            self.controller = make_controller(
                robust.get("controller", "uniform"), n_prompts=int(n_prompts), mean_budget=self.rollout_n,
                lower=int(robust.get("lower", 1)), upper=int(robust.get("upper", 4 * self.rollout_n)),
                seed=int(robust.get("seed", 0)), **dict(robust.get("options") or {}))
        host_support_iv(self.controller, "RobustPPOTrainer (verl)", VERL_ROUNDS_REASON)
        name = str(config.algorithm.adv_estimator)
        if name not in ESTIMATORS:
            raise ValueError(f"RobustPPOTrainer needs algorithm.adv_estimator in {sorted(ESTIMATORS)} "
                             f"(ragged-safe), got {name!r}")
        threshold = robust.get("success_threshold")
        if success_fn is not None and threshold is not None:
            raise ValueError("give either success_fn or robust.success_threshold, not both")
        if success_fn is not None and not callable(success_fn):
            raise TypeError(f"success_fn must be callable, got {type(success_fn).__name__}")
        if threshold is not None:
            t = float(threshold)
            success_fn = lambda r: (r >= t).astype(np.float64)  # noqa: E731 - a documented one-liner
        self.success_fn = success_fn
        shaping = robust.get("shaping")
        self.advantage = RobustAdvantage(estimator_kind(name, config.algorithm),
                                         Shaping.coerce(shaping) if shaping else None)
        self._robust_plans: dict[str, tuple[int, int, float, int]] = {}
        self.last_step: dict[str, Any] = {}

    # -- 1. per-prompt rollout counts ------------------------------------------------------------
    def _next_train_batch(self, num_prompts: int | None = None):
        batch = super()._next_train_batch(num_prompts)
        return self._plan_batch(batch)

    def _plan_batch(self, batch):
        """Ask the controller for counts and inject them as ``__rollout_n__`` (int64 column)."""
        if "index" not in batch.keys():  # noqa: SIM118 - TensorDict has no 'in'
            raise ValueError("the training batch has no 'index' field: give every example a stable "
                             "extra_info.index in [0, robust.n_prompts) (verl copies it to 'index')")
        ids = np.asarray([int(v) for v in _as_list(batch["index"])], dtype=np.int64)
        uids = [str(u) for u in _as_list(batch["uid"])]
        plan = self.controller.plan(ids)
        counts = np.asarray(plan.counts, dtype=np.int64)
        if counts.sum() != ids.size * self.rollout_n:  # the controller guarantees it; a broken one must not pass
            raise RuntimeError(f"controller planned {int(counts.sum())} rollouts for {ids.size} prompts, "
                               f"expected {ids.size} x rollout.n={self.rollout_n}")
        mult = np.ones(ids.size) if plan.multipliers is None else np.asarray(plan.multipliers, dtype=np.float64)
        bins = np.full(ids.size, -1) if plan.bins is None else np.asarray(plan.bins, dtype=np.int64)
        for u, q, n, m, b in zip(uids, ids.tolist(), counts.tolist(), mult.tolist(), bins.tolist()):
            self._robust_plans[u] = (q, n, m, b)
        batch[ROLLOUT_N_KEY] = torch.as_tensor(counts, dtype=torch.int64)
        return batch

    # -- 2. shaping, multipliers, observations ---------------------------------------------------
    def _compute_advantage(self, batch, metrics: dict):
        fields = ["uid", "rm_scores", "response_mask", "old_log_probs"]
        if self.use_reference_policy:
            fields.append("ref_log_prob")
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        shaped, table, step = self._robust_advantage_step(list(batch.keys), data)
        metrics.update(step)
        if shaped is not None:
            tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id,
                            fields=shaped)
        algo = self.config.algorithm
        with open_dict(algo):
            algo[MULTIPLIER_KEY] = table
        try:
            return super()._compute_advantage(batch, metrics)
        finally:
            with open_dict(algo):
                algo.pop(MULTIPLIER_KEY, None)

    def _robust_advantage_step(self, keys: list[str], data) -> tuple[Any, dict[str, float], dict[str, float]]:
        """The framework-facing core of ``_compute_advantage``, on the step's fields.

        Parameters
        ----------
        keys : list of str
            TransferQueue keys ``{uid}_{session}_{output}`` of the rows.
        data : TensorDict
            ``rm_scores``, ``response_mask``, ``old_log_probs`` (jagged, one row per key) and
            optionally ``ref_log_prob``.

        A trajectory (``{uid}_{session}``) is one rollout of its prompt, represented by its final
        output (the largest output index; as verl's GRPO does for multi-output agent loops): its
        score and log-probs are the final output's, and a shaping bonus goes to that output.

        Returns
        -------
        shaped : TensorDict or None
            ``rm_scores`` with the shaping correction added at the last response token of each
            trajectory's final output (None without shaping).
        multipliers : dict
            ``uid -> multiplier`` for the estimator.
        metrics : dict
            ``robust/*`` statistics.
        """
        sessions, outputs, _ = _trajectory_keys(keys)
        final = _final_rows(sessions, outputs)
        rows = np.asarray(list(final.values()), dtype=np.int64)
        mask = data["response_mask"]
        padded = data.to_padded_tensor() if hasattr(data, "to_padded_tensor") else data
        scores_tok = padded["rm_scores"].to(torch.float64)
        resp = padded["response_mask"].to(torch.float64)
        width = min(scores_tok.shape[-1], resp.shape[-1])
        rewards = scores_tok[rows].sum(dim=-1).numpy()
        seq_lp = (padded["old_log_probs"][rows, :width].to(torch.float64) * resp[rows, :width]).sum(-1).numpy()
        ref_lp = None
        if "ref_log_prob" in padded.keys():  # noqa: SIM118 - TensorDict has no 'in'
            ref_lp = (padded["ref_log_prob"][rows, :width].to(torch.float64) * resp[rows, :width]).sum(-1).numpy()

        group_uids, gid = _group_ids([sess.rsplit("_", 1)[0] for sess in final])
        unknown = [u for u in group_uids if u not in self._robust_plans]
        if unknown:
            raise ValueError(f"{len(unknown)} uid(s) of this step were never planned by the controller "
                             f"(e.g. {unknown[0]!r}); was the batch fetched through _next_train_batch?")
        plans = [self._robust_plans[u] for u in group_uids]
        prompt_ids = np.asarray([p[0] for p in plans], dtype=np.int64)
        mult = np.asarray([p[2] for p in plans], dtype=np.float64)
        bins = np.asarray([p[3] for p in plans], dtype=np.int64)
        # a learning controller needs success values in [0, 1]: refuse before any state changes
        success = success_values(rewards, self.controller, self.success_fn)
        result = self.advantage(rewards, gid, n_groups=len(group_uids), multipliers=mult,
                                seq_logprobs=seq_lp, ref_seq_logprobs=ref_lp)
        sizes = result.group_sizes
        self.controller.observe(prompt_ids, sizes, success, gid)
        for u in group_uids:
            del self._robust_plans[u]
        metrics = step_metrics(result, None if (bins < 0).any() else bins)
        metrics["robust/reward_mean"] = float(rewards.mean())
        self.last_step = {"prompt_ids": prompt_ids, "counts": sizes, "rewards": rewards, "success": success,
                          "group_ids": gid, "multipliers": mult, "uids": group_uids, "rows": rows, "result": result}
        shaped = None
        if self.advantage.shaping is not None:
            bonus = torch.as_tensor(result.shaped_rewards - rewards, dtype=scores_tok.dtype)
            last = (resp[rows].sum(-1).long() - 1).clamp(min=0)
            new_scores = scores_tok.clone()
            new_scores[torch.as_tensor(rows), last] += bonus
            new_scores = new_scores.to(padded["rm_scores"].dtype)
            shaped = {"rm_scores": response_to_nested(new_scores, mask)}
            shaped = type(data)(shaped, batch_size=len(keys)) if not isinstance(data, dict) else shaped
        table = {u: float(m) for u, m in zip(group_uids.tolist(), mult.tolist())}
        return shaped, table, metrics

    # -- checkpoints -----------------------------------------------------------------------------
    def robust_state_dict(self) -> dict[str, Any]:
        """Controller and shaping state (plain numbers, lists and arrays)."""
        return {"version": 1, "controller": self.controller.state_dict(), "advantage": self.advantage.state_dict()}

    def load_robust_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("not a RobustPPOTrainer state (version 1)")
        self.controller.load_state_dict(state["controller"])
        self.advantage.load_state_dict(state["advantage"])

    def _save_checkpoint(self):
        """verl's checkpoint plus ``robust_state.pkl`` (written first, so that verl's
        ``latest_checkpointed_iteration.txt`` never points at a folder without it)."""
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f"{ROBUST_STATE_FILE}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump(self.robust_state_dict(), f)
        os.replace(tmp, os.path.join(folder, ROBUST_STATE_FILE))
        return super()._save_checkpoint()

    def _resume_folder(self) -> str | None:
        """The ``global_step_N`` folder verl's ``_load_checkpoint`` resumed from (None: from scratch)."""
        trainer = self.config.trainer
        if trainer.resume_mode == "auto":
            root = trainer.default_local_dir
            return find_latest_ckpt_path(root if os.path.isabs(root) else os.path.join(os.getcwd(), root))
        if trainer.resume_mode == "resume_path":
            path = trainer.resume_from_path
            return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
        return None

    def _load_checkpoint(self):
        """verl's resume, then the controller and the KL history from the same folder."""
        result = super()._load_checkpoint()
        if self.global_steps == 0:  # nothing was resumed
            return result
        folder = self._resume_folder()
        path = None if folder is None else os.path.join(folder, ROBUST_STATE_FILE)
        if path is None or not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint {folder!r} has no {ROBUST_STATE_FILE}: it was not written by "
                                    "RobustPPOTrainer, so the controller cannot resume from it")
        with open(path, "rb") as f:
            self.load_robust_state_dict(pickle.load(f))
        return result

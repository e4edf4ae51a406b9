"""TRL integration: a ``GRPOTrainer`` with per-prompt rollout counts, Prompt-GDRO multipliers and
DRRO/DRO shaping (``pip install "robust-rollouts[trl]"``), a thin adapter over the one robust step
(:mod:`llm_bridge.robust_step`).

Supported TRL: 1.16 (tested: 1.16.0 with transformers 5.24, accelerate 1.15). The subclass overrides
two internal methods of ``GRPOTrainer`` (``_generate_and_score_completions`` and
``_calculate_rewards``) and ``log``, so other TRL versions get a warning at import; they may work
but are not tested.

A drop-in
---------
Under the ``uniform`` controller without shaping, :class:`RobustGRPOTrainer` computes TRL's own
advantages operation for operation (the advantage kinds ``trl-group`` / ``trl-batch`` /
``trl-none`` / ``trl-normalize-then-sum`` of :data:`llm_bridge.advantage_kinds.ADVANTAGE_KINDS`,
chosen from ``scale_rewards`` and ``multi_objective_aggregation``), so its losses, gradients and
parameters equal ``GRPOTrainer``'s bit for bit, for every ``loss_type``, with gradient
accumulation, ``steps_per_generation``, ``num_iterations`` and ``beta > 0``. Any reward range
works: only a controller that learns success probabilities from the rewards needs them in [0, 1]
or a ``success_fn`` (:func:`llm_bridge.robust_step.success_values`). A dataset without a
``prompt_id`` column gets one (the row index) when it is a map-style ``datasets.Dataset``.

How a training step changes
---------------------------
TRL's ``RepeatSampler`` puts every prompt ``num_generations`` (G) times in a row into the
generation batch and TRL groups rewards with ``view(-1, G)``. :class:`RobustGRPOTrainer` keeps the
sampler (so TRL's batch-size and divisibility checks hold) and, at each generation:

1. takes the unique prompts of the *global* generation batch (gathered from every process), whose
   stable ids are the dataset column ``prompt_id`` (an int in ``[0, n_prompts)``);
2. asks the controller for one rollout count per prompt (``controller.plan``); the counts sum to
   the generation batch size (the controller's ``mean_budget`` equals G);
3. re-expands the rows (prompt ``q`` repeated ``counts[q]`` times) and gives each process its slice;
   groups may straddle processes, which is safe because TRL gathers the rewards of every process
   before the group statistics, and so does this class;
4. lets TRL generate one completion per row (the HF ``generate`` path or vLLM *colocate* mode) and
   score it with the reward functions;
5. recomputes the advantages over the real, uneven groups with the robust step (a group of one
   gets 0): optional shaping from sequence log-probabilities of the sampling distribution (TRL's
   old per-token log-probs summed over the completion when TRL computed them, else one no-grad
   forward pass of TRL's own scorer), the advantage kind, the controller's multipliers;
6. feeds success values back (``controller.observe``) and logs ``robust/*`` metrics through TRL's
   metrics (real group sizes, groups of one, multipliers, shaping, per difficulty bin; ``min`` /
   ``max`` keys are the true extremes over a logging window), and recomputes TRL's
   ``frac_reward_zero_std`` over the real groups (``reward_std`` is TRL's batch std, unchanged).

vLLM *server* mode samples ``n=G`` completions per unique prompt and cannot honour per-prompt
counts: the trainer refuses it, as it refuses a custom ``rollout_func``. Evaluation is left to TRL
unchanged.

Controllers that sample in rounds, skip prompts or select their training rollouts
---------------------------------------------------------------------------------
TRL draws one generation batch of fixed size per step and its training buffer is exactly that
batch: every row its ``RepeatSampler`` draws becomes one completion and one training row, sliced
into ``steps_per_generation`` minibatches of ``per_device_train_batch_size`` rows on each process.
A controller that samples in rounds (``reinforce-ada``, ``dapo-dynamic``, ``ar3po``) needs more
generation calls after the first, spends a step-dependent number of rollouts and drops or adds
training rows; one that skips prompts (``greso``, ``dapo-dynamic``) leaves rows of the batch
without a prompt; one with a training selection drops groups from the gradient, sets its own
baselines or reuses an earlier response. None of that fits the fixed buffer without changing
TRL's batch-size invariants (and a zero advantage is not the same as leaving a row out: TRL's
loss normalisers and the KL term still count it), so :class:`RobustGRPOTrainer` refuses such a
controller at construction with a ``ValueError`` that says so; run it with the project's own
trainer (``robust-rollouts train --controller reinforce-ada``, :class:`llm_bridge.Trainer`),
which drives rounds, skipped prompts and training selections. Every single-round controller that
plans every prompt of the batch works here (``uniform``, ``vip``, ``knapsack``, the GDRO
controllers, ...).
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

try:
    import torch
    import trl
    from accelerate.utils import broadcast_object_list, gather_object
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
    from trl import GRPOTrainer
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "llm_bridge.integrations.trl needs TRL: pip install \"robust-rollouts[trl]\"; "
        f"import failed with: {exc}"
    ) from exc

from bandits.controllers import check_controller

from ..advantage_kinds import _nanstd, _table, get_advantage_kind, trl_normalize_then_sum_rewards
from ..robust_step import RobustAdvantage, RobustStepResult, Shaping, step_metrics, success_values
from ..rounds import host_support_iv

__all__ = ["ROBUST_STATE_FILE", "SUPPORTED_TRL", "RobustGRPOTrainer", "advantage_kind_for"]

ROBUST_STATE_FILE = "robust_state.pkl"
"""File in each TRL checkpoint folder with the controller's and the shaping's state (plain types)."""

SUPPORTED_TRL = ("1.16",)
"""TRL minor versions this integration is tested with."""

if ".".join(trl.__version__.split(".")[:2]) not in SUPPORTED_TRL:  # pragma: no cover - version dependent
    warnings.warn(f"llm_bridge.integrations.trl is tested with TRL {', '.join(SUPPORTED_TRL)}; found "
                  f"{trl.__version__}. It overrides GRPOTrainer internals, so check a step before trusting it.",
                  stacklevel=2)

_EXTREMES = ("robust/group_size/min", "robust/group_size/max")

TRL_ROUNDS_REASON = (
    "TRL generates one fixed-size generation batch per step and trains on exactly its rows (each row the "
    "RepeatSampler draws becomes one completion and one training row), so it cannot run extra generation rounds, "
    "leave a prompt without completions, or drop or add training rows without breaking its batch-size invariants.")
"""Why :class:`RobustGRPOTrainer` refuses controllers that sample in rounds, skip prompts or select
their training rollouts (module docstring)."""


def advantage_kind_for(scale_rewards: str, multi_objective_aggregation: str = "sum_then_normalize") -> str:
    """The advantage kind that reproduces TRL's ``scale_rewards`` / ``multi_objective_aggregation``."""
    if multi_objective_aggregation == "normalize_then_sum":
        return "trl-normalize-then-sum"
    if multi_objective_aggregation != "sum_then_normalize":
        raise ValueError(f"multi_objective_aggregation must be 'sum_then_normalize' or 'normalize_then_sum', got "
                         f"{multi_objective_aggregation!r}")
    table = {"group": "trl-group", "batch": "trl-batch", "none": "trl-none"}
    if scale_rewards not in table:
        raise ValueError(f"scale_rewards must be one of {sorted(table)}, got {scale_rewards!r}")
    return table[scale_rewards]


def _positional(args: tuple, kwargs: dict, name: str, index: int) -> Any:
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else None)


class RobustGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` whose rollouts per prompt, advantage multipliers and reward shaping come
    from a rollout controller (``bandits.controllers``) and the DRRO paper's shaping rules.

    Parameters
    ----------
    *args, **kwargs
        Everything ``GRPOTrainer`` takes (model, reward_funcs, args, train_dataset, ...).
    controller
        A controller of :func:`bandits.controllers.make_controller` (or any object with its
        methods) with ``mean_budget`` equal to ``args.num_generations`` and ``n_prompts`` covering
        the dataset's prompt ids. ``uniform`` (no shaping) reproduces ``GRPOTrainer`` exactly. A
        controller that samples in rounds, skips prompts or selects its training rollouts
        (``reinforce-ada``, ``dapo-dynamic``, ``ar3po``, ``greso``) is refused with a
        ``ValueError`` (module docstring).
    shaping : None, str, dict or Shaping
        ``None`` (no shaping), or a rule of :data:`llm_bridge.robust_step.SHAPINGS` (``"drro"``,
        ``"dro"``) with ``shaping_params``.
    shaping_params : dict, optional
        Parameters of :class:`~llm_bridge.robust_step.Shaping` (``delta``, ``tau`` (None = hard
        rule), ``kl_alpha``, ``kl_window``, ``reference_group_size``). The dynamic budget
        (``kl_alpha``) needs a reference model (``args.beta > 0``).
    advantage : str, optional
        A kind of :data:`llm_bridge.advantage_kinds.ADVANTAGE_KINDS`. Default: TRL's own
        convention for ``args.scale_rewards`` and ``args.multi_objective_aggregation``
        (:func:`advantage_kind_for`); ``"grpo"`` / ``"drgrpo"`` / ``"rloo"`` give the papers'
        definitions (GRPO with the population std, ``sqrt(n / (n - 1))`` times TRL's advantages).
    prompt_id_column : str
        Dataset column with the stable integer prompt id the controller knows (added as the row
        index when a map-style dataset lacks it).
    success_fn : callable, optional
        Maps the weighted total rewards (ndarray) to success values in ``[0, 1]`` for
        ``controller.observe``. Default: rewards in [0, 1] as they are; controllers that do not
        learn from rewards (``uniform``, ``oracle``) take any range; a learning controller given
        rewards outside [0, 1] without ``success_fn`` raises ``ValueError`` at that step, before
        any state changes (:func:`llm_bridge.robust_step.success_values`).

    Attributes
    ----------
    last_step : dict
        The last training generation: ``prompt_ids``, ``counts``, ``group_ids`` (global row order),
        ``rewards``, ``success``, ``seq_logprobs`` (or None), ``result`` (:class:`RobustStepResult`).
    """

    def __init__(self, *args: Any, controller: Any, shaping: Any = None, shaping_params: dict | None = None,
                 advantage: str | None = None, prompt_id_column: str = "prompt_id",
                 success_fn: Callable[[np.ndarray], np.ndarray] | None = None, **kwargs: Any):
        check_controller(controller)
        host_support_iv(controller, "RobustGRPOTrainer (TRL)", TRL_ROUNDS_REASON)
        if not isinstance(prompt_id_column, str) or not prompt_id_column:
            raise TypeError(f"prompt_id_column must be a non-empty string, got {prompt_id_column!r}")
        if success_fn is not None and not callable(success_fn):
            raise TypeError(f"success_fn must be callable, got {type(success_fn).__name__}")
        shaping_obj = Shaping.coerce(shaping, **(shaping_params or {}))
        if advantage is not None:
            get_advantage_kind(advantage)
        if kwargs.get("rollout_func") is not None:
            raise ValueError("RobustGRPOTrainer does not support rollout_func: a custom rollout function decides "
                             "its own completions per prompt, so per-prompt counts cannot be honoured")
        cfg = _positional(args, kwargs, "args", 2)
        if cfg is not None:
            self._check_config(cfg, controller)
        dataset = _positional(args, kwargs, "train_dataset", 3)
        dataset = self._check_dataset(dataset, prompt_id_column, controller)
        if "train_dataset" in kwargs or len(args) <= 3:
            kwargs["train_dataset"] = dataset
        else:
            args = (*args[:3], dataset, *args[4:])
        super().__init__(*args, **kwargs)
        if cfg is None:  # GRPOTrainer built its default config
            self._check_config(self.args, controller)
        if shaping_obj is not None and shaping_obj.kl_alpha is not None and self.beta == 0.0:
            raise ValueError("shaping with kl_alpha (DRRO eq. 4.17) needs reference log-probs: set args.beta > 0")
        kind = advantage if advantage is not None else advantage_kind_for(self.scale_rewards,
                                                                          self.multi_objective_aggregation)
        self.controller = controller
        self.robust_advantage = RobustAdvantage(kind, shaping_obj)
        self.prompt_id_column = prompt_id_column
        self.success_fn = success_fn
        self.last_step: dict[str, Any] = {}
        self._robust_rewards: torch.Tensor | None = None
        prompts = self.args.generation_batch_size // self.num_generations
        if prompts == 1:
            warnings.warn(
                f"each generation batch holds one prompt (generation_batch_size {self.args.generation_batch_size} = "
                f"num_generations {self.num_generations}), so the controller can only give it num_generations "
                "rollouts and changes nothing: raise per_device_train_batch_size (or steps_per_generation) to a "
                "multiple of num_generations with several prompts per generation batch", UserWarning, stacklevel=2)

    # -- checks before TRL builds anything -------------------------------------------------------
    @staticmethod
    def _check_config(cfg: Any, controller: Any) -> None:
        if getattr(cfg, "use_vllm", False) and getattr(cfg, "vllm_mode", "server") != "colocate":
            raise ValueError(f"RobustGRPOTrainer needs vllm_mode='colocate' (or use_vllm=False): vLLM "
                             f"{cfg.vllm_mode!r} mode samples num_generations completions per unique prompt and "
                             "cannot honour per-prompt rollout counts")
        budget = getattr(controller, "mean_budget", None)
        g = getattr(cfg, "num_generations", None)
        if budget is not None and g is not None and Fraction(budget) != g:
            raise ValueError(f"the controller's mean_budget {budget} must equal args.num_generations={g}: the "
                             "counts of a generation batch must sum to its size (make_controller(mean_budget="
                             f"{g}, ...))")
        if getattr(cfg, "remove_unused_columns", False):
            raise ValueError("set remove_unused_columns=False in the GRPOConfig: the prompt id column must reach "
                             "the trainer")

    @staticmethod
    def _check_dataset(dataset: Any, column: str, controller: Any) -> Any:
        names = getattr(dataset, "column_names", None)
        if dataset is None or names is None:  # an iterable dataset: rows are checked as they arrive
            return dataset
        if column not in names:
            if not hasattr(dataset, "add_column") or not hasattr(dataset, "__len__"):
                raise ValueError(f"train_dataset has no column {column!r} (the stable integer prompt id the "
                                 f"controller needs); columns: {names}")
            dataset = dataset.add_column(column, list(range(len(dataset))))  # the row index is the prompt id
        ids = dataset[column]
        bad = next((v for v in ids if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))), None)
        if bad is not None:
            raise TypeError(f"train_dataset column {column!r} must hold integer prompt ids, got {bad!r} "
                            f"({type(bad).__name__})")
        n = getattr(controller, "n_prompts", None)
        if len(ids) and (min(ids) < 0 or (n is not None and max(ids) >= n)):
            raise ValueError(f"train_dataset column {column!r} holds prompt ids in [{min(ids)}, {max(ids)}]; the "
                             f"controller knows [0, {n}) (make_controller(n_prompts=...) must cover every id)")
        return dataset

    # -- rewards: keep the gathered per-function rewards of this generation ------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._robust_rewards = rewards_per_func
        return rewards_per_func

    # -- the step -----------------------------------------------------------------------------------
    def _plan_rows(self, inputs: list[dict]) -> tuple[list[dict], np.ndarray, np.ndarray, Any, int]:
        """Global unique prompts -> plan -> re-expanded global rows; returns this process's rows."""
        g = self.num_generations
        n_proc = self.accelerator.num_processes
        all_rows = gather_object(inputs) if n_proc > 1 else list(inputs)
        total = len(all_rows)
        if total % g:
            raise RuntimeError(f"generation batch of {total} rows is not a multiple of num_generations={g}")
        slots = [all_rows[s * g:(s + 1) * g] for s in range(total // g)]
        col = self.prompt_id_column
        ids = []
        for s, rows in enumerate(slots):
            if col not in rows[0]:
                raise ValueError(f"dataset rows have no {col!r} field (the stable integer prompt id); "
                                 "add it to the dataset and keep remove_unused_columns=False")
            q = rows[0][col]
            if isinstance(q, (bool, np.bool_)) or not isinstance(q, (int, np.integer)):
                raise TypeError(f"dataset field {col!r} must be an integer prompt id, got {q!r}")
            if any(r[col] != q for r in rows):  # RepeatSampler puts each prompt G times in a row
                raise RuntimeError(f"rows {s * g}..{s * g + g - 1} of the generation batch are not one prompt "
                                   "repeated num_generations times (was the sampler replaced?)")
            ids.append(int(q))
        prompt_ids = np.asarray(ids, dtype=np.int64)
        plan = self.controller.plan(prompt_ids) if self.accelerator.is_main_process or n_proc == 1 else None
        if n_proc > 1:  # every process uses the main process's plan (one source of truth)
            box = [None if plan is None else (np.asarray(plan.counts), plan.multipliers, plan.bins)]
            box = broadcast_object_list(box, from_process=0)
            counts, mult, bins = box[0]
            if plan is None:  # keep the non-main controllers' state in step with the main one
                self.controller.plan(prompt_ids)
        else:
            counts, mult, bins = plan.counts, plan.multipliers, getattr(plan, "bins", None)
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != prompt_ids.shape or counts.min() < 1 or counts.sum() != total:
            raise RuntimeError(f"the controller planned counts {counts.tolist()} for {prompt_ids.size} prompts; "
                               f"need one count >= 1 per prompt summing to the generation batch size {total} "
                               f"(make_controller(mean_budget=num_generations={g}))")
        expanded = [dict(slots[s][0]) for s, c in enumerate(counts.tolist()) for _ in range(c)]
        group_ids = np.repeat(np.arange(prompt_ids.size, dtype=np.int64), counts)
        local = len(inputs)
        start = self.accelerator.process_index * local
        mult = np.ones(prompt_ids.size) if mult is None else np.asarray(mult, dtype=np.float64)
        return expanded[start:start + local], prompt_ids, group_ids, (counts, mult, bins), start

    def _sequence_logprobs(self, output: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """Gathered sequence log-probs under the rollout policy (and the reference, when present)."""
        mask = output["completion_mask"]
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        per_token = output.get("old_per_token_logps")
        if per_token is None:
            ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
            attn = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
            with torch.no_grad():
                per_token, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, ids, attn, output["completion_ids"].size(1),
                    batch_size=self.args.per_device_train_batch_size)
        seq = (per_token.detach().double() * mask).sum(dim=1)
        ref = output.get("ref_per_token_logps")
        ref_seq = None if ref is None else (ref.detach().double() * mask).sum(dim=1)
        seq = self.accelerator.gather(seq).cpu().numpy()
        if ref_seq is not None:
            ref_seq = self.accelerator.gather(ref_seq).cpu().numpy()
        return seq, ref_seq

    def _step_rewards(self, per_func: torch.Tensor, group_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rewards the advantage kind normalises, weighted total rewards); TRL's operations, float32,
        NaN where every reward function returned None."""
        weights = self.reward_weights.to(per_func.device)
        unscorable = torch.isnan(per_func).all(dim=1)
        total = (per_func * weights.unsqueeze(0)).nansum(dim=1)
        total[unscorable] = torch.nan
        total_np = total.double().cpu().numpy()
        if self.robust_advantage.kind == "trl-normalize-then-sum":
            return trl_normalize_then_sum_rewards(per_func.cpu(), weights.cpu(), group_ids), total_np
        return total_np, total_np

    def _frac_zero_std(self, rewards: np.ndarray, result: RobustStepResult) -> float:
        """TRL's ``frac_reward_zero_std`` over the real groups: the share of rows whose group (or,
        for batch-scaled kinds, the batch) has a reward std of ~0; a group of one has no spread."""
        r = torch.as_tensor(rewards.astype(np.float32))
        if result.kind in ("trl-batch", "trl-normalize-then-sum"):
            std = _nanstd(r).expand_as(r) if r.numel() > 1 else torch.zeros_like(r)
            zero = torch.isclose(std, torch.zeros_like(std))
        else:
            table, gi, _ = _table(r, result.group_ids, result.group_sizes)
            std = _nanstd(table, dim=1)
            zero = (torch.isclose(std, torch.zeros_like(std)) | torch.as_tensor(result.group_sizes < 2))[gi]
        return zero.float().mean().item()

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        rows, prompt_ids, group_ids, (counts, mult, bins), start = self._plan_rows(inputs)
        self._robust_rewards = None
        output = super()._generate_and_score_completions(rows)
        per_func = self._robust_rewards
        if per_func is None or per_func.shape[0] != group_ids.size:  # pragma: no cover - TRL contract changed
            raise RuntimeError("RobustGRPOTrainer did not see the gathered rewards of this generation; "
                               f"TRL {trl.__version__} changed _calculate_rewards")
        rewards, total = self._step_rewards(per_func, group_ids)
        success = success_values(total, self.controller, self.success_fn)  # raises before any state changes
        seq_lp = ref_lp = None
        if self.robust_advantage.shaping is not None:
            seq_lp, ref_lp = self._sequence_logprobs(output)
        result: RobustStepResult = self.robust_advantage(
            rewards, group_ids, n_groups=prompt_ids.size, multipliers=mult, seq_logprobs=seq_lp,
            ref_seq_logprobs=ref_lp)
        local = slice(start, start + output["advantages"].shape[0])
        output["advantages"] = torch.as_tensor(result.advantages[local], dtype=output["advantages"].dtype,
                                               device=output["advantages"].device)
        self.controller.observe(prompt_ids, counts, success, group_ids)
        metrics = self._metrics["train"]
        if metrics["frac_reward_zero_std"]:  # TRL's value came from view(-1, G) windows: recompute it
            metrics["frac_reward_zero_std"][-1] = self._frac_zero_std(rewards, result)
        logs = self._logs["advantages"]
        if len(logs) >= group_ids.size:  # replace TRL's view(-1, G) advantages in the completions log
            for _ in range(group_ids.size):
                logs.pop()
            logs.extend(result.advantages.tolist())
        for name, value in step_metrics(result, bins).items():
            metrics[name].append(value)
        self.last_step = {"prompt_ids": prompt_ids, "counts": counts, "group_ids": group_ids, "rewards": total,
                          "success": success, "seq_logprobs": seq_lp, "result": result}
        return output

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's ``log`` with the ``robust/group_size/min|max`` metrics reduced to their true
        extremes over the logging window (TRL averages every metric)."""
        metrics = self._metrics["train"] if self.model.training else None
        if metrics is not None:
            for key, fn in zip(_EXTREMES, (min, max)):
                values = metrics.get(key)
                if values:
                    metrics[key] = [fn(values)]
        super().log(logs, start_time)

    # -- checkpoints ----------------------------------------------------------------------------------
    def robust_state_dict(self) -> dict[str, Any]:
        """Controller and shaping state (plain numbers, lists and arrays) and a format version."""
        return {"version": 1, "controller": self.controller.state_dict(),
                "advantage": self.robust_advantage.state_dict()}

    def load_robust_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("not a RobustGRPOTrainer state (version 1)")
        self.controller.load_state_dict(state["controller"])
        self.robust_advantage.load_state_dict(state["advantage"])

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            with open(os.path.join(folder, ROBUST_STATE_FILE), "wb") as f:
                pickle.dump(self.robust_state_dict(), f)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            path = os.path.join(checkpoint, ROBUST_STATE_FILE)
            if not os.path.exists(path):
                raise FileNotFoundError(f"checkpoint {checkpoint!r} has no {ROBUST_STATE_FILE}: it was not written by "
                                        "RobustGRPOTrainer, so the controller cannot resume from it")
            with open(path, "rb") as f:
                self.load_robust_state_dict(pickle.load(f))

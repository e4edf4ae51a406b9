"""TRL integration: a ``GRPOTrainer`` with per-prompt rollout counts, Prompt-GDRO multipliers and
DRRO/DRO shaping (``pip install "robust-rollouts[trl]"``).

Supported TRL: 1.16 (tested: 1.16.0 with transformers 5.24, accelerate 1.15). The subclass overrides
two internal methods of ``GRPOTrainer`` (``_generate_and_score_completions`` and
``_calculate_rewards``), so other TRL versions get a warning at import; they may work but are not
tested.

How a training step changes
---------------------------
TRL's ``RepeatSampler`` puts every prompt ``num_generations`` (G) times in a row into the
generation batch and TRL groups rewards with ``view(-1, G)``. :class:`RobustGRPOTrainer` keeps the
sampler (so TRL's batch-size and divisibility checks hold) and, at each generation:

1. takes the unique prompts of the *global* generation batch (gathered from every process), whose
   stable ids are the dataset column ``prompt_id`` (an int in ``[0, n_prompts)``);
2. asks the controller for one rollout count per prompt (``controller.plan``); the counts sum to
   the generation batch size (the controller's ``mean_budget`` must equal G);
3. re-expands the rows (prompt ``q`` repeated ``counts[q]`` times) and gives each process its slice;
   groups may straddle processes, which is safe because TRL gathers the rewards of every process
   before the group statistics, and so does this class;
4. lets TRL generate one completion per row (the HF ``generate`` path or vLLM *colocate* mode) and
   score it with the reward functions;
5. recomputes the advantages over the real, uneven groups (a group of one gets 0):
   optional shaping from sequence log-probabilities of the sampling distribution (TRL divides the
   logits by ``temperature``): TRL's old per-token log-probs summed over the completion when TRL
   computed them, else one no-grad forward pass of TRL's own scorer; then
   :func:`solvers.group_advantages`, then the controller's multipliers;
6. feeds the raw rewards back (``controller.observe``) and logs ``robust/*`` metrics through TRL's
   metrics (real group sizes, groups of one, multipliers, shaping, per difficulty bin).

vLLM *server* mode samples ``n=G`` completions per unique prompt and cannot honour per-prompt
counts: the trainer refuses it, as it refuses a custom ``rollout_func`` and the
``normalize_then_sum`` aggregation. Evaluation is left to TRL unchanged.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable
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

from .robust_step import RobustAdvantage, RobustStepResult, Shaping, step_metrics

__all__ = ["ROBUST_STATE_FILE", "SUPPORTED_TRL", "RobustGRPOTrainer", "advantage_kind_for"]

ROBUST_STATE_FILE = "robust_state.pkl"
"""File in each TRL checkpoint folder with the controller's and the shaping's state (plain types)."""

SUPPORTED_TRL = ("1.16",)
"""TRL minor versions this integration is tested with."""

if ".".join(trl.__version__.split(".")[:2]) not in SUPPORTED_TRL:  # pragma: no cover - version dependent
    warnings.warn(f"llm_bridge.integrations.trl is tested with TRL {', '.join(SUPPORTED_TRL)}; found "
                  f"{trl.__version__}. It overrides GRPOTrainer internals, so check a step before trusting it.",
                  stacklevel=2)


def advantage_kind_for(scale_rewards: str) -> str:
    """The :func:`solvers.group_advantages` kind matching TRL's ``scale_rewards`` setting."""
    table = {"group": "grpo", "none": "drgrpo"}
    if scale_rewards not in table:
        raise ValueError(f"scale_rewards={scale_rewards!r} has no ragged equivalent; use 'group' (GRPO) or "
                         "'none' (Dr.GRPO), or pass advantage='grpo' | 'drgrpo' | 'rloo' explicitly")
    return table[scale_rewards]


class RobustGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` whose rollouts per prompt, advantage multipliers and reward shaping come
    from a rollout controller (``bandits.controllers``) and the DRRO paper's shaping rules.

    Parameters
    ----------
    *args, **kwargs
        Everything ``GRPOTrainer`` takes (model, reward_funcs, args, train_dataset, ...).
    controller
        A controller from :func:`bandits.controllers.make_controller` with ``mean_budget`` equal to
        ``args.num_generations`` and ``n_prompts`` covering the dataset's prompt ids.
    shaping : None, str, dict or Shaping
        ``None`` (no shaping), or a rule of :data:`llm_bridge.integrations.SHAPING_RULES`
        (``"drro"``, ``"drro-soft"``, ``"dro"``, ``"dro-soft"``) with ``shaping_params``.
    shaping_params : dict, optional
        Parameters of :class:`~llm_bridge.integrations.Shaping` (``delta``, ``tau``,
        ``kl_alpha``, ``kl_window``). The dynamic budget (``kl_alpha``) needs a reference model
        (``args.beta > 0``).
    advantage : {"grpo", "drgrpo", "rloo"}, optional
        Advantage kind; default from ``args.scale_rewards`` ("group" -> GRPO, "none" -> Dr.GRPO).
        GRPO divides by the population std of the group (the papers' definition; TRL uses the
        sample std), so advantages differ from TRL's by ``sqrt(n / (n - 1))``.
    prompt_id_column : str
        Dataset column with the stable integer prompt id the controller knows.
    success_fn : callable, optional
        Maps the weighted total rewards (ndarray) to success values in ``[0, 1]`` for
        ``controller.observe`` (default: the rewards themselves, which must then lie in ``[0, 1]``).

    Attributes
    ----------
    last_step : dict
        The last training generation: ``prompt_ids``, ``counts``, ``group_ids`` (global row order),
        ``rewards``, ``seq_logprobs`` (or None), ``result`` (:class:`RobustStepResult`).
    """

    def __init__(self, *args: Any, controller: Any, shaping: Any = None, shaping_params: dict | None = None,
                 advantage: str | None = None, prompt_id_column: str = "prompt_id",
                 success_fn: Callable[[np.ndarray], np.ndarray] | None = None, **kwargs: Any):
        for method in ("plan", "observe", "state_dict", "load_state_dict"):
            if not callable(getattr(controller, method, None)):
                raise TypeError(f"controller must have a {method}() method (bandits.controllers protocol), "
                                f"got {type(controller).__name__}")
        if not isinstance(prompt_id_column, str) or not prompt_id_column:
            raise TypeError(f"prompt_id_column must be a non-empty string, got {prompt_id_column!r}")
        if success_fn is not None and not callable(success_fn):
            raise TypeError(f"success_fn must be callable, got {type(success_fn).__name__}")
        shaping_obj = Shaping.coerce(shaping, **(shaping_params or {}))
        if kwargs.get("rollout_func") is not None:
            raise ValueError("RobustGRPOTrainer does not support rollout_func: a custom rollout function decides "
                             "its own completions per prompt, so per-prompt counts cannot be honoured")
        super().__init__(*args, **kwargs)
        if self.use_vllm and self.vllm_mode != "colocate":
            raise ValueError(f"RobustGRPOTrainer needs vllm_mode='colocate' (or use_vllm=False): vLLM "
                             f"{self.vllm_mode!r} mode samples num_generations completions per unique prompt and "
                             "cannot honour per-prompt rollout counts")
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError("RobustGRPOTrainer supports multi_objective_aggregation='sum_then_normalize' only, "
                             f"got {self.multi_objective_aggregation!r}")
        if shaping_obj is not None and shaping_obj.kl_alpha is not None and self.beta == 0.0:
            raise ValueError("shaping with kl_alpha (DRRO eq. 4.17) needs reference log-probs: set args.beta > 0")
        train = self.train_dataset
        columns = getattr(train, "column_names", None)
        if columns is not None and prompt_id_column not in columns:
            raise ValueError(f"train_dataset has no column {prompt_id_column!r} (the stable integer prompt id the "
                             f"controller needs); columns: {columns}")
        if getattr(self.args, "remove_unused_columns", False):
            raise ValueError("set remove_unused_columns=False in the GRPOConfig: the prompt id column "
                             f"{prompt_id_column!r} must reach the trainer")
        kind = advantage if advantage is not None else advantage_kind_for(self.scale_rewards)
        self.controller = controller
        self.robust_advantage = RobustAdvantage(kind, shaping_obj)
        self.prompt_id_column = prompt_id_column
        self.success_fn = success_fn
        self.last_step: dict[str, Any] = {}
        self._robust_rewards: torch.Tensor | None = None

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
            counts, mult, bins = plan.counts, plan.multipliers, plan.bins
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
        unscorable = torch.isnan(per_func).all(dim=1)
        if bool(unscorable.any()):
            raise ValueError(f"{int(unscorable.sum())} completions got None from every reward function; "
                             "RobustGRPOTrainer needs a reward for every completion")
        weights = self.reward_weights.to(per_func.device)
        rewards = (per_func * weights.unsqueeze(0)).nansum(dim=1).double().cpu().numpy()
        success = rewards if self.success_fn is None else np.asarray(self.success_fn(rewards.copy()), np.float64)
        if success.shape != rewards.shape or not np.all(np.isfinite(success)) or success.min() < 0 or success.max() > 1:
            raise ValueError("the controller needs success values in [0, 1] (1 = success): rewards span "
                             f"[{rewards.min():.4g}, {rewards.max():.4g}]; pass success_fn= to map them")
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
        logs = self._logs["advantages"]
        if len(logs) >= group_ids.size:  # replace TRL's view(-1, G) advantages in the completions log
            for _ in range(group_ids.size):
                logs.pop()
            logs.extend(result.advantages.tolist())
        for name, value in step_metrics(result, bins).items():
            self._metrics["train"][name].append(value)
        self.last_step = {"prompt_ids": prompt_ids, "counts": counts, "group_ids": group_ids,
                          "rewards": rewards, "seq_logprobs": seq_lp, "result": result}
        return output

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

"""Sampling in rounds on the LLM side: one controller step around a generation backend, its
rollouts merged into one batch, and the training batch of the controller's selection.

The controller protocol (:mod:`bandits.controllers.base`) lets a controller sample in rounds
(``extend``), give a prompt no rollouts (``skips_prompts``) and say which rollouts enter the
gradient (``select`` -> :class:`bandits.controllers.TrainSelection`: a mask, per-prompt baselines,
reuse of an earlier correct response). :class:`llm_bridge.Trainer` drives all of it through
:func:`drive_step` (the controllers' own :func:`bandits.controllers.sample_step`), and this module
turns the result into torch tensors:

* :func:`merge_rollouts` -- every round's :class:`~llm_bridge.RolloutBatch` in one batch, in the
  step's rollout order (round after round; the row order of ``step.rewards`` and of the
  selection's ``train_mask``), prompts re-padded on the left and completions on the right to the
  widest round. ``group_ids`` are positions in the step's batch and need not be contiguous across
  rounds. A single round over the whole batch is returned as generated (bit for bit the batch of
  a plain plan -> generate step).
* :class:`ResponseBank` -- the most recent correct completion (reward exactly 1) seen for each
  prompt at an earlier step, with ``state_dict`` / ``load_state_dict`` (a trainer checkpoint holds
  it, so a resumed run reuses the same responses).
* :func:`training_batch` -- the rollouts that enter the gradient: the selected rows, plus one
  banked correct response (reward 1) for each prompt the selection flags for ``reuse`` and the
  bank holds one for (AR3PO's response reuse; a reused response costs no rollout, and its old
  log-probs are the current policy's, so its ratio starts at 1 like every rollout of the step).
  Rows are grouped (each kept prompt's rows contiguous, generation order within a group, the
  reused response last); a prompt none of whose rows is selected is *dropped*: it is not in the
  batch at all (its rollouts were spent and are counted in the step's metrics).
* :func:`host_support_iv` -- the check a host that generates one fixed batch per step (TRL,
  verl) runs at construction: it refuses controllers that sample in rounds, skip prompts or
  select their training rollouts, naming why and what to use instead.

Needs the ``llm`` extra (torch) for the tensors; importing this module imports no extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandits.controllers import Controller, Round, StepRollouts, TrainSelection, sample_step, supports_rounds
from solvers._validation import as_int_array, check_int_scalar

from ._deps import require
from .rollout import RolloutBatch

__all__ = [
    "ResponseBank",
    "TrainingBatch",
    "check_round_controller",
    "drive_step",
    "has_selection_rule",
    "host_support_iv",
    "merge_rollouts",
    "training_batch",
]


def has_selection_rule(controller: Any) -> bool:
    """Whether ``controller`` may select its training rollouts (drop groups, set baselines or
    reuse responses): a :class:`~bandits.controllers.Controller` that overrides ``_select``, or
    any other object with a callable ``select``."""
    if isinstance(controller, Controller):
        return type(controller)._select is not Controller._select
    return callable(getattr(controller, "select", None))


def host_support_iv(controller: Any, host: str, why: str) -> None:
    """Refuse a controller a host cannot drive (``ValueError`` naming each reason and the way out).

    A host that generates exactly one fixed-size batch per step and trains on every row of it
    cannot run a controller that samples in rounds (``extend``), skips prompts
    (``skips_prompts``: 0 rollouts for some prompt) or selects its training rollouts (``select``).
    ``why`` says, in the host's terms, what it cannot do.
    """
    reasons = []
    if supports_rounds(controller):
        reasons.append("samples in rounds (extra generation calls within a step)")
    if getattr(controller, "skips_prompts", False):
        reasons.append("skips prompts (0 rollouts for some prompts of the batch)")
    if has_selection_rule(controller):
        reasons.append("selects which rollouts enter the gradient (drops groups, sets its own baselines or "
                       "reuses responses)")
    if reasons:
        name = getattr(controller, "name", type(controller).__name__)
        raise ValueError(
            f"{host} cannot drive controller {name!r}: it " + "; it ".join(reasons) + f". {why} Run it with the "
            f"project's trainer instead (robust-rollouts train --controller {name}, or llm_bridge.Trainer), which "
            "drives rounds, skipped prompts and training selections, or use a single-round controller here "
            "(uniform, vip, knapsack, rollout-gdro, prompt-gdro, ...).")


def check_round_controller(controller: Any) -> None:
    """Refuse (``TypeError``) a controller that samples in rounds without subclassing
    :class:`~bandits.controllers.Controller`, whose base class checks every extension against the
    step's budget."""
    if supports_rounds(controller) and not isinstance(controller, Controller):
        raise TypeError(f"a controller that samples in rounds must subclass bandits.controllers.Controller (its base "
                        f"class checks every extension against the step's budget); got {type(controller).__name__}")


def drive_step(controller: Any, prompt_ids: Any,
               generate: Callable[[np.ndarray, np.ndarray], tuple[Any, Any, Any]]) -> StepRollouts:
    """One controller step around ``generate`` (see :func:`bandits.controllers.sample_step`).

    A :class:`~bandits.controllers.Controller` runs :func:`~bandits.controllers.sample_step`: plan,
    every round, selection. Any other object with the protocol's methods (a user's controller) is
    single-round: ``plan``, one call ``generate(prompt_ids, plan.counts)`` with every prompt (a
    count below 1 is left to the backend to refuse), and every rollout selected.
    """
    if isinstance(controller, Controller):
        return sample_step(controller, prompt_ids, generate)
    check_round_controller(controller)
    ids = np.asarray(prompt_ids, dtype=np.int64)
    plan = controller.plan(ids)
    counts = np.asarray(plan.counts, dtype=np.int64)
    rewards, group_ids, payload = generate(ids, counts)
    rewards = np.asarray(rewards, dtype=np.float64)
    group_ids = np.asarray(group_ids, dtype=np.int64)
    whole = Round(np.arange(ids.size, dtype=np.int64), counts.copy(), 0, payload)
    return StepRollouts(ids, plan, counts.copy(), rewards, group_ids, (whole,),
                        TrainSelection(np.ones(rewards.size, dtype=bool)), int(counts.sum()))


# -------------------------------------------------------------------------------------- tensors
def _repad(batch: RolloutBatch, lp: int, t: int, pad_id: int) -> tuple[Any, Any, Any, Any]:
    """``batch``'s tensors with prompts left-padded to ``lp`` and completions right-padded to ``t``."""
    torch = require("torch")
    n, lp0, t0 = batch.n_rollouts, int(batch.prompt_length), int(batch.completion_mask.shape[1])
    dev = batch.input_ids.device
    ids = torch.full((n, lp + t), pad_id, dtype=batch.input_ids.dtype, device=dev)
    att = torch.zeros((n, lp + t), dtype=batch.attention_mask.dtype, device=dev)
    ids[:, lp - lp0:lp] = batch.input_ids[:, :lp0]
    ids[:, lp:lp + t0] = batch.input_ids[:, lp0:]
    att[:, lp - lp0:lp] = batch.attention_mask[:, :lp0]
    att[:, lp:lp + t0] = batch.attention_mask[:, lp0:]
    cmask = torch.zeros((n, t), dtype=batch.completion_mask.dtype, device=dev)
    cmask[:, :t0] = batch.completion_mask
    logps = torch.zeros((n, t), dtype=batch.token_logprobs.dtype, device=dev)
    logps[:, :t0] = batch.token_logprobs
    return ids, att, cmask, logps


def _concat(parts: Sequence[RolloutBatch], group_ids: np.ndarray, counts: np.ndarray, pad_id: int) -> RolloutBatch:
    """The rows of ``parts`` one after the other, re-padded to the widest prompt and completion."""
    torch = require("torch")
    lp = max(int(b.prompt_length) for b in parts)
    t = max(int(b.completion_mask.shape[1]) for b in parts)
    padded = [_repad(b, lp, t, pad_id) for b in parts]
    ids, att, cmask, logps = (torch.cat([p[k] for p in padded], dim=0) for k in range(4))
    texts = [x for b in parts for x in b.texts]
    finished = np.concatenate([np.asarray(b.finished, dtype=bool) for b in parts])
    return RolloutBatch(ids, att, lp, cmask, logps, group_ids, counts, texts, finished)


def merge_rollouts(step: StepRollouts, pad_id: int) -> RolloutBatch:
    """Every round of ``step`` in one :class:`~llm_bridge.RolloutBatch` (module docstring).

    Each round's payload must be the backend's :class:`~llm_bridge.RolloutBatch` of that round.
    ``group_ids`` of the result are positions in ``step.prompt_ids`` (``step.group_ids``), its
    ``counts`` the step's totals (0 for a skipped prompt); rows are in the step's order.
    """
    if not isinstance(step, StepRollouts):
        raise TypeError(f"step must be a StepRollouts, got {type(step).__name__}")
    rounds = step.rounds
    if not rounds:
        raise ValueError("the step generated no rollouts")
    if len(rounds) == 1 and rounds[0].positions.size == step.prompt_ids.size:
        return rounds[0].payload
    return _concat([r.payload for r in rounds], step.group_ids.copy(), step.counts.copy(), pad_id)


class ResponseBank:
    """The most recent correct completion of each prompt (for AR3PO's response reuse).

    Parameters
    ----------
    n_prompts : int
        Prompt ids are in ``[0, n_prompts)``.

    Notes
    -----
    A completion is *correct* when its reward is exactly 1 (GDRO eq. 10's success, as in the
    controllers). :meth:`record` keeps, per prompt, the last correct completion of a step in the
    step's rollout order; the tokens kept are the completion's generated tokens (end-of-sequence
    token included), so a reused response is the very sequence that was scored.
    """

    FORMAT = 1

    def __init__(self, n_prompts: int) -> None:
        self.n_prompts = check_int_scalar(n_prompts, "n_prompts", lo=1)
        self.responses: dict[int, tuple[list[int], str]] = {}

    def __len__(self) -> int:
        return len(self.responses)

    def has(self, prompt_ids: Any) -> np.ndarray:
        """bool ``(M,)``: whether a correct completion is held for each prompt."""
        ids = as_int_array(prompt_ids, "prompt_ids", ndim=1)
        return np.fromiter((int(q) in self.responses for q in ids), dtype=bool, count=ids.size)

    def record(self, prompt_ids: Any, batch: RolloutBatch, rewards: Any) -> None:
        """Keep the correct completions of ``batch`` (``prompt_ids[batch.group_ids]`` are their
        prompts; ``rewards`` one per row)."""
        ids = as_int_array(prompt_ids, "prompt_ids", ndim=1)
        r = np.asarray(rewards, dtype=np.float64)
        if r.shape != (batch.n_rollouts,):
            raise ValueError(f"rewards must have one entry per row ({batch.n_rollouts}), got shape {r.shape}")
        rows = np.flatnonzero(r >= 1.0)
        if rows.size == 0:
            return
        lengths = batch.completion_lengths
        tokens = batch.completion_ids[rows].cpu().numpy()
        for k, j in enumerate(rows.tolist()):
            q = int(ids[batch.group_ids[j]])
            self.responses[q] = (tokens[k, :lengths[j]].tolist(), batch.texts[j])

    def rows(self, prompt_ids: Any, prompt_tokens: Sequence[Sequence[int]], pad_id: int, device: Any) -> RolloutBatch:
        """A :class:`~llm_bridge.RolloutBatch` with one held completion for each of ``prompt_ids``
        (each must be held; ``group_ids`` = positions in ``prompt_ids``; token log-probs 0: the
        caller computes them under its current policy)."""
        torch = require("torch")
        ids = as_int_array(prompt_ids, "prompt_ids", ndim=1, min_size=1)
        missing = [int(q) for q in ids if int(q) not in self.responses]
        if missing:
            raise KeyError(f"no correct completion held for prompts {missing}")
        prompts = [list(prompt_tokens[int(q)]) for q in ids]
        comps = [self.responses[int(q)][0] for q in ids]
        n, lp, t = ids.size, max(len(p) for p in prompts), max(max(len(c) for c in comps), 1)
        input_ids = torch.full((n, lp + t), pad_id, dtype=torch.long)
        att = torch.zeros((n, lp + t), dtype=torch.long)
        cmask = torch.zeros((n, t), dtype=torch.float32)
        for i, (p, c) in enumerate(zip(prompts, comps)):
            input_ids[i, lp - len(p):lp] = torch.as_tensor(p, dtype=torch.long)
            att[i, lp - len(p):lp] = 1
            input_ids[i, lp:lp + len(c)] = torch.as_tensor(c, dtype=torch.long)
            att[i, lp:lp + len(c)] = 1
            cmask[i, :len(c)] = 1.0
        group_ids = np.arange(n, dtype=np.int64)
        texts = [self.responses[int(q)][1] for q in ids]
        return RolloutBatch(input_ids.to(device), att.to(device), lp, cmask.to(device),
                            torch.zeros((n, t), dtype=torch.float32, device=device), group_ids,
                            np.ones(n, dtype=np.int64), texts, np.ones(n, dtype=bool))

    def state_dict(self) -> dict:
        """Plain data: ``{"format", "n_prompts", "responses": {str(prompt id): [tokens, text]}}``."""
        return {"format": self.FORMAT, "n_prompts": self.n_prompts,
                "responses": {str(q): [list(tok), text] for q, (tok, text) in sorted(self.responses.items())}}

    def load_state_dict(self, state: Any) -> None:
        """Restore :meth:`state_dict` (``ValueError`` on another format or prompt pool; the bank is
        then unchanged)."""
        if not isinstance(state, dict) or state.get("format") != self.FORMAT:
            raise ValueError(f"response bank state must be a dict with format {self.FORMAT}")
        if state.get("n_prompts") != self.n_prompts:
            raise ValueError(f"response bank state is for {state.get('n_prompts')!r} prompts, this bank has "
                             f"{self.n_prompts}")
        out: dict[int, tuple[list[int], str]] = {}
        for key, value in dict(state.get("responses", {})).items():
            q = int(key)
            if not 0 <= q < self.n_prompts or not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ValueError(f"response bank state: bad entry for prompt {key!r}")
            out[q] = ([int(x) for x in value[0]], str(value[1]))
        self.responses = out


@dataclass(frozen=True)
class TrainingBatch:
    """The rollouts of a step that enter the gradient (built by :func:`training_batch`).

    Attributes
    ----------
    batch : RolloutBatch or None
        The training rows, ``group_ids`` in ``[0, K)`` (kept prompts, contiguous), None when
        every group was dropped.
    rewards : ndarray (R,)
        Reward of each row (1 for a reused response).
    positions : ndarray of int64 (K,)
        Position in the step's batch of each kept prompt.
    reused : ndarray of bool (R,)
        Rows that are reused responses (their old log-probs must be computed by the caller).
    baselines : ndarray (K,) or None
        The controller's per-prompt baselines of the kept prompts (None: the estimator's own).
    trivial : bool
        The training batch *is* the merged batch (every rollout selected, nothing reused, no
        baselines, no skipped prompt).
    """

    batch: RolloutBatch | None
    rewards: np.ndarray
    positions: np.ndarray
    reused: np.ndarray
    baselines: np.ndarray | None
    trivial: bool

    @property
    def n_reused(self) -> int:
        return int(self.reused.sum())


def training_batch(merged: RolloutBatch, step: StepRollouts, bank: ResponseBank | None,
                   prompt_tokens: Sequence[Sequence[int]], pad_id: int) -> TrainingBatch:
    """The training rows of ``step``'s selection (module docstring).

    Parameters
    ----------
    merged : RolloutBatch
        :func:`merge_rollouts` of ``step``.
    step : StepRollouts
    bank : ResponseBank or None
        Correct completions of earlier steps for ``reuse`` (None: nothing is reused).
    prompt_tokens : sequence of token-id lists
        Every prompt's tokens, indexed by prompt id (for reused responses).
    pad_id : int
    """
    sel = step.selection
    m = step.prompt_ids.size
    n = step.rewards.size
    if sel.trivial and int(step.counts.min()) > 0:
        return TrainingBatch(merged, step.rewards, np.arange(m, dtype=np.int64), np.zeros(n, dtype=bool), None, True)
    mask = np.asarray(sel.train_mask, dtype=bool)
    reuse = np.zeros(m, dtype=bool) if sel.reuse is None else np.asarray(sel.reuse, dtype=bool).copy()
    if bank is not None and reuse.any():
        reuse &= bank.has(step.prompt_ids)
    else:
        reuse[:] = False
    g = step.group_ids
    n_sel = np.bincount(g[mask], minlength=m) + reuse
    keep = np.flatnonzero(n_sel > 0)
    baselines = None if sel.baselines is None else np.asarray(sel.baselines, dtype=np.float64)[keep]
    if keep.size == 0:
        return TrainingBatch(None, np.zeros(0), keep.astype(np.int64), np.zeros(0, dtype=bool), baselines, False)
    torch = require("torch")
    new_pos = np.full(m, -1, dtype=np.int64)
    new_pos[keep] = np.arange(keep.size)
    rows = np.flatnonzero(mask)
    extra = np.flatnonzero(reuse)
    keys = np.concatenate([new_pos[g[rows]], new_pos[extra]])
    order = np.argsort(keys, kind="stable")  # grouped; generation order within a group, reuse last
    dev = merged.input_ids.device
    idx = torch.as_tensor(rows, dtype=torch.long, device=dev)
    chosen = RolloutBatch(merged.input_ids[idx], merged.attention_mask[idx], merged.prompt_length,
                          merged.completion_mask[idx], merged.token_logprobs[idx], rows, np.zeros(0, dtype=np.int64),
                          [merged.texts[j] for j in rows.tolist()], np.asarray(merged.finished)[rows])
    parts = [chosen]
    if extra.size:
        parts.append(bank.rows(step.prompt_ids[extra], prompt_tokens, pad_id, dev))
    counts = n_sel[keep].astype(np.int64)
    both = _concat(parts, keys, counts, pad_id)
    perm = torch.as_tensor(order, dtype=torch.long, device=dev)
    train = RolloutBatch(both.input_ids[perm], both.attention_mask[perm], both.prompt_length,
                         both.completion_mask[perm], both.token_logprobs[perm], keys[order], counts,
                         [both.texts[j] for j in order.tolist()], both.finished[order])
    rewards = np.concatenate([step.rewards[rows], np.ones(extra.size)])[order]
    reused = np.concatenate([np.zeros(rows.size, dtype=bool), np.ones(extra.size, dtype=bool)])[order]
    return TrainingBatch(train, rewards, keep.astype(np.int64), reused, baselines, False)

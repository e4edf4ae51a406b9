"""Studies on the simulators: each module follows the study protocol of
``benchmarks.study_runner`` (``NAME``, ``TITLE``, ``config``, ``tasks``, ``run_task``, ``summarize``)
and returns a :class:`solvers.claims.StudyResult` (claims with verdicts computed from 95 %
confidence intervals over seeds, tables, declarative figures). Nothing here plots.

* :mod:`sim.studies.variance` -- VIP Prop 4.2/4.3 (+ E.1/E.2), App. B, and the batch-gradient
  variance of allocation rules at equal budget.
* :mod:`sim.studies.training` -- learning curves at equal rollout budget for every controller.
* :mod:`sim.studies.gdro` -- Prompt-/Rollout-/coupled GDRO vs GRPO on a hard-skewed pool.
* :mod:`sim.studies.peers` -- every controller head to head at equal rollouts per step (the peers'
  included): ranking with intervals, significance against uniform, the peers' claims.
* :mod:`sim.studies.predictor` -- VIP Fig. 3: predicting the next mini-batch's success
  probabilities along a training trajectory.
* :mod:`sim.studies.overopt` -- DRRO Sec. 6 / Table 1: reward over-optimisation on finite-response
  RLHF (GRPO, DRO, DRRO hard/soft/soft+dynamic, GRPO+KL).
* :mod:`sim.studies.preference_shift` -- DRO-REBEL: REBEL vs W/KL/chi-square DRO-REBEL under
  preference shift.
* :mod:`sim.studies.rate` -- DRO-REBEL's O(d/n) parameter-error rate.
"""

__all__: list[str] = []

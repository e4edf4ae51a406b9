"""Studies on the simulators: each module follows the study protocol of
``benchmarks.study_runner`` (``NAME``, ``TITLE``, ``config``, ``tasks``, ``run_task``, ``summarize``)
and returns a :class:`solvers.claims.StudyResult` (claims with verdicts computed from 95 %
confidence intervals over seeds, tables, declarative figures). Nothing here plots.

* :mod:`sim.studies.variance` -- VIP Prop 4.2/4.3 (+ E.1/E.2), App. B, and the batch-gradient
  variance of allocation rules at equal budget.
* :mod:`sim.studies.predictor` -- VIP Fig. 3: predicting the next mini-batch's success
  probabilities along a training trajectory.
"""

__all__: list[str] = []

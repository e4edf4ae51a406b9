"""Studies of ``robust-rollouts study`` that run on the simulators (see ``benchmarks.study_runner``
for the protocol). Each module defines ``NAME``, ``TITLE``, ``config``, ``tasks``, ``run_task`` and
``summarize``; none imports matplotlib (figures are declarative)."""

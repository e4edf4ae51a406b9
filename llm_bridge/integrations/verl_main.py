"""Command line for verl training with :class:`llm_bridge.integrations.verl.RobustPPOTrainer`.

``python -m llm_bridge.integrations.verl_main [hydra overrides]`` -- verl's ``main_ppo`` with two
differences: the default config is ``verl_config/robust_ppo_trainer.yaml`` (verl's
``ppo_trainer`` plus a ``robust`` section, ``trainer.v1.trainer_mode=robust_sync`` and
``algorithm.adv_estimator=robust_grpo``), and the Ray task runner imports
:mod:`llm_bridge.integrations.verl` before it looks the trainer up. verl resolves
``trainer.v1.trainer_mode`` inside its task-runner actor, before any user module is imported, so a
custom trainer registered in the driver alone is not found there; this runner registers it in the
actor's own process. ``robust-rollouts`` must be installed in the Ray workers' environment.
"""

from __future__ import annotations

try:
    import hydra
    import ray
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "llm_bridge.integrations.verl_main needs verl: pip install \"robust-rollouts[verl]\" "
        f"(verl[verl-core]); import failed with: {exc}"
    ) from exc

__all__ = ["RobustTaskRunner", "main"]


class _RobustTaskRunner(TaskRunnerV1.__ray_actor_class__):
    """verl's V1 task runner that registers the robust estimators and trainer in its own process."""

    def run(self, config):
        from llm_bridge.integrations import verl as _robust_verl  # noqa: F401 - registers on import

        return super().run(config)


RobustTaskRunner = ray.remote(_RobustTaskRunner)
"""Ray actor class to pass to ``verl.trainer.main_ppo.run_ppo`` (done by :func:`main`)."""


@hydra.main(config_path="verl_config", config_name="robust_ppo_trainer", version_base=None)
def main(config) -> None:
    """Validate the config like verl's ``main_ppo`` and run the V1 trainer with :data:`RobustTaskRunner`."""
    from llm_bridge.integrations import verl as _robust_verl  # noqa: F401 - the driver checks the names too

    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config),
                    use_critic=need_critic(config))
    if not config.trainer.use_v1:
        raise ValueError("the robust trainer is a V1 trainer: set trainer.use_v1=true")
    run_ppo(config, task_runner_class=RobustTaskRunner)


if __name__ == "__main__":
    main()

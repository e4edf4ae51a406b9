"""One check of the controller protocol for code that drives a controller it did not build.

A training loop (the simulator, the LLM trainer, the TRL and verl adapters, log replay) accepts
any object with the methods of :class:`~bandits.controllers.Controller` -- the project's own
controllers or a user's -- and checks it once, here, instead of each loop writing its own duck
check:

* required: ``plan(prompt_ids)``, ``observe(prompt_ids, counts, rewards, group_ids)``,
  ``state_dict()``, ``load_state_dict(state)``;
* optional: ``extend(prompt_ids, counts, rewards, group_ids)`` (controllers that sample in rounds);
  when present it must be callable;
* optional attribute ``learns_from_rewards`` (default True): False for controllers whose
  ``observe`` only validates (``uniform``, ``oracle``), which therefore need no success values in
  [0, 1] from a reward of another range (see :func:`learns_from_rewards`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPTIONAL_METHODS", "REQUIRED_METHODS", "check_controller", "learns_from_rewards"]

REQUIRED_METHODS = ("plan", "observe", "state_dict", "load_state_dict")
"""Methods every controller has."""
OPTIONAL_METHODS = ("extend",)
"""Methods a controller may have (callable when present)."""


def check_controller(controller: Any, *, name: str = "controller") -> Any:
    """Return ``controller`` if it implements the controller protocol, else raise ``TypeError``.

    Parameters
    ----------
    controller : object
        A controller of :data:`bandits.controllers.CONTROLLERS` or any object with the same methods.
    name : str
        How the caller calls the argument (used in the error message).

    Raises
    ------
    TypeError
        Naming every missing required method (and any optional one that is present but not callable).

    Examples
    --------
    >>> from bandits.controllers import check_controller, make_controller
    >>> ctrl = check_controller(make_controller("uniform", n_prompts=4, mean_budget=2, lower=1, upper=4))
    >>> check_controller(object())
    Traceback (most recent call last):
    ...
    TypeError: controller must implement the bandits.controllers protocol: object has no plan(), observe(), state_dict(), load_state_dict()
    """
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(controller, m, None))]
    if missing:
        raise TypeError(f"{name} must implement the bandits.controllers protocol: {type(controller).__name__} has no "
                        + ", ".join(f"{m}()" for m in missing))
    bad = [m for m in OPTIONAL_METHODS if hasattr(controller, m) and not callable(getattr(controller, m))]
    if bad:
        raise TypeError(f"{name}.{bad[0]} must be a method (the optional part of the bandits.controllers protocol), "
                        f"got {type(getattr(controller, bad[0])).__name__}")
    return controller


def learns_from_rewards(controller: Any) -> bool:
    """Whether ``controller.observe`` learns from the rewards (and so needs success values in [0, 1]).

    Read from the controller's ``learns_from_rewards`` attribute; objects without it are assumed to
    learn (the safe default: they get validated success values).
    """
    return bool(getattr(controller, "learns_from_rewards", True))

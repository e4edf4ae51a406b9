"""Controllers of ``bandits.controllers``.

Properties (hypothesis): every controller keeps the step budget exact and the bounds, over random
batches (repeated ids included), budgets and bounds. Checkpoints: every controller resumes
bit-identically from ``state_dict`` (directly and after a JSON round trip) into a fresh object.
Bad input: a clear ``ValueError``/``TypeError`` that leaves the state unchanged. Semantics: each
controller's allocation rule against an independent reference, what each learner receives, the
degenerate cases of a real run, and one end-to-end check on a toy ground truth (VIP allocation
lowers the total RLOO gradient variance of VIP Prop 4.3 below uniform at equal budget).
"""

from __future__ import annotations

import copy
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandits import PromptGDRO, RolloutGDRO
from bandits._state import plain
from bandits.controllers import (
    CONTROLLERS,
    Controller,
    StepPlan,
    controller_options,
    make_controller,
    sample_step,
    supports_rounds,
)
from bandits.controllers.base import even_split, fix_total
from solvers import allocate, grad_variance, round_greedy

N = 24
EMB = np.random.default_rng(7).normal(size=(N, 3))
P_TRUE = np.clip(1.0 / (1.0 + np.exp(-2.5 * EMB[:, 0])), 0.0, 1.0)
P_TRUE[:3] = [0.0, 1.0, 0.5]  # a hopeless, a solved and a maximally uncertain prompt


def _true_success(ids):
    return P_TRUE[ids]


def _options(name: str, n_prompts: int = N) -> dict:
    """The options each controller needs (every registered controller must be covered here)."""
    emb = EMB if n_prompts == N else np.random.default_rng(n_prompts).normal(size=(n_prompts, 3))
    if name in ("vip", "vip-paper", "inverse-accuracy", "inverse-variance", "skip-saturated"):
        return {"embeddings": emb}
    if name == "oracle":
        p = P_TRUE if n_prompts == N else np.random.default_rng(n_prompts + 1).random(n_prompts)
        return {"true_success": lambda ids, p=p: p[ids]}
    return {}


def _make(name, *, n_prompts=N, mean_budget=4, lower=2, upper=8, seed=0, **extra):
    return make_controller(name, n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed,
                           **{**_options(name, n_prompts), **extra})


def _rollouts(ids, counts, rng, partial=True):
    """Toy environment: Bernoulli(p) rewards, a few partial-credit rewards; group_ids shuffled."""
    p = P_TRUE[ids % N]
    g = np.repeat(np.arange(ids.size), counts)
    r = (rng.random(g.size) < p[g]).astype(np.float64)
    if partial and g.size > 3:
        r[rng.integers(0, g.size, size=2)] = 0.5
    perm = rng.permutation(g.size)
    return r[perm], g[perm]


def _state_json(ctrl):
    return json.dumps(plain(ctrl.state_dict()), sort_keys=True)


def _generator(rng, partial=True):
    """The toy environment of ``_rollouts`` as a ``sample_step`` generator."""
    def generate(ids, counts):
        r, g = _rollouts(ids, counts, rng, partial)
        return r, g, None
    return generate


def _flexible(name):
    """Controllers whose step spends at most the budget (rounds) or may skip prompts."""
    cls = CONTROLLERS[name]
    return cls.samples_in_rounds or cls.skips_prompts


# ------------------------------------------------------------------------------------------ registry
def test_registry_names_and_protocol():
    assert sorted(CONTROLLERS) == sorted([
        "uniform", "vip", "vip-paper", "oracle", "inverse-accuracy", "inverse-variance", "skip-saturated",
        "rollout-gdro", "prompt-gdro", "gdro-coupled", "sqrt-law",
        "knapsack", "greso", "reinforce-ada", "dapo-dynamic", "ar3po",
    ])
    for name, cls in CONTROLLERS.items():
        assert issubclass(cls, Controller) and cls.name == name
        ctrl = _make(name)
        plan = ctrl.plan([0, 1, 2])
        assert isinstance(plan, StepPlan)
        with pytest.raises(AttributeError):
            plan.counts = None  # frozen


def test_unknown_controller_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown controller 'vipp'; valid controllers: \['ar3po', 'dapo-dynamic', 'gdro-coupled'"):
        make_controller("vipp", n_prompts=4, mean_budget=4, lower=2, upper=8, seed=0)
    with pytest.raises(TypeError, match="controller name must be a string"):
        make_controller(3, n_prompts=4, mean_budget=4, lower=2, upper=8, seed=0)


def test_unknown_option_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"unknown option 'cots' for controller 'vip'; valid options: \["):
        make_controller("vip", n_prompts=N, mean_budget=4, lower=2, upper=8, seed=0, embeddings=EMB, cots="rloo")
    with pytest.raises(TypeError, match="unknown option 'embeddings' for controller 'uniform'"):
        make_controller("uniform", n_prompts=N, mean_budget=4, lower=2, upper=8, embeddings=EMB)
    assert controller_options("vip")["cost"] == "rloo"
    assert "weight_cap" in controller_options("gdro-coupled") and "dual_step" in controller_options("gdro-coupled")


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, exc, pattern", [
    ({"n_prompts": 0}, ValueError, "n_prompts must be >= 1, got 0"),
    ({"n_prompts": 2.5}, ValueError, "n_prompts must be an integer"),
    ({"n_prompts": "10"}, TypeError, "n_prompts must be an integer"),
    ({"mean_budget": 0}, ValueError, "mean_budget must be > 0"),
    ({"mean_budget": -2.0}, ValueError, "mean_budget must be > 0"),
    ({"mean_budget": float("nan")}, ValueError, "mean_budget must be finite"),
    ({"mean_budget": float("inf")}, ValueError, "mean_budget must be finite"),
    ({"mean_budget": "4"}, TypeError, "mean_budget must be a real number"),
    ({"mean_budget": True}, TypeError, "mean_budget must be a real number, got bool"),
    ({"lower": 0}, ValueError, "lower must be >= 1, got 0"),
    ({"lower": 1.5}, ValueError, "lower must be an integer"),
    ({"upper": 1, "lower": 1, "mean_budget": 1, "n_prompts": 4, "name": "vip"}, ValueError,
     r"controller 'vip' needs lower >= 2 \(cost 'rloo'"),
    ({"upper": 3.5}, ValueError, "upper must be an integer"),
    ({"upper": 1, "lower": 2}, ValueError, "lower must be <= upper"),
    ({"mean_budget": 1}, ValueError, r"mean_budget 1 is infeasible: need lower=2 <= mean_budget <= upper=8"),
    ({"mean_budget": 9.5}, ValueError, r"mean_budget 19/2 \(= 9.5\) is infeasible: need lower=2 <= mean_budget"),
    ({"seed": "x"}, TypeError, "seed must be None, an int or a numpy.random.Generator"),
])
def test_bad_construction_arguments(kwargs, exc, pattern):
    kwargs = dict(kwargs)
    name = kwargs.pop("name", "uniform")
    args = {"n_prompts": N, "mean_budget": 4, "lower": 2, "upper": 8, "seed": 0, **kwargs}
    with pytest.raises(exc, match=pattern):
        make_controller(name, **args, **_options(name, 4 if args["n_prompts"] == 4 else N))


@pytest.mark.parametrize("name, kwargs, exc, pattern", [
    ("vip", {"embeddings": None}, ValueError, r"controller 'vip' with predictor='gp' needs embeddings="),
    ("vip", {"embeddings": EMB[:-1]}, ValueError, r"embeddings must have shape \(n_prompts, d\) = \(24, d\)"),
    ("vip", {"cost": "grpo"}, ValueError, r"unknown cost 'grpo'; valid costs: \['drgrpo', 'rloo'\]"),
    ("vip", {"cost": "drgrpo"}, ValueError, r"needs lower >= 3 \(cost 'drgrpo'"),
    ("vip", {"predictor": "lstm"}, ValueError, r"unknown predictor 'lstm'; valid predictors"),
    ("vip", {"predictor": "beta-binomial"}, ValueError, "embeddings= is only used by the predictors"),
    ("vip", {"predictor_options": {"noize": 1.0}}, TypeError, "noize"),
    ("vip", {"predictor_options": {"seed": 3}}, TypeError, "must not set 'seed'"),
    ("vip", {"predictor_options": [("noise", 0.0)]}, TypeError, "predictor_options must be a dict"),
    ("oracle", {"true_success": None}, TypeError, "controller 'oracle' needs true_success="),
    ("oracle", {"true_success": [0.5] * N}, TypeError, "true_success must be callable"),
    ("rollout-gdro", {"upper": math.inf}, ValueError, "needs a finite upper"),
    ("gdro-coupled", {"lower": 1, "mean_budget": 2}, ValueError, "needs lower >= 2"),
    ("rollout-gdro", {"utility": "reward"}, ValueError, r"utility must be one of \['variance', 'loss'\]"),
    ("prompt-gdro", {"weight_cap": 0}, ValueError, "weight_cap must be > 0"),
    ("skip-saturated", {"saturation_prob": 0.0}, ValueError, "saturation_prob must be > 0"),
    ("inverse-accuracy", {"epsilon": -1.0}, ValueError, "epsilon must be > 0"),
])
def test_bad_controller_options(name, kwargs, exc, pattern):
    args = {"n_prompts": N, "mean_budget": 4, "lower": 2, "upper": 8, "seed": 0, **_options(name)}
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        make_controller(name, **args)


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_bad_plan_input(name):
    ctrl = _make(name, mean_budget=Fraction(5, 2) if name not in ("vip", "oracle", "vip-paper") else 4)
    before = _state_json(ctrl)
    with pytest.raises(ValueError, match=r"prompt_ids must be in \[0, n_prompts\) = \[0, 24\), got 24 at index 1"):
        ctrl.plan([0, 24])
    with pytest.raises(ValueError, match="prompt_ids must be non-negative|must be in"):
        ctrl.plan([-1, 2])
    with pytest.raises(ValueError, match="prompt_ids must have at least 1 element"):
        ctrl.plan([])
    with pytest.raises(ValueError, match="prompt_ids must contain integers"):
        ctrl.plan([0.5, 1])
    with pytest.raises(ValueError, match="prompt_ids must be 1-D"):
        ctrl.plan([[0, 1]])
    with pytest.raises(TypeError, match="prompt_ids must be an array of integers"):
        ctrl.plan(["a"])
    if ctrl.mean_budget.denominator == 2:
        with pytest.raises(ValueError, match=r"len\(prompt_ids\) \* mean_budget must be an integer .* 3 \* 5/2 = 15/2"):
            ctrl.plan([0, 1, 2])
    assert _state_json(ctrl) == before


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_bad_observe_input_changes_nothing(name):
    ctrl = _make(name)
    rng = np.random.default_rng(0)
    ids = np.array([0, 3, 3, 5])
    plan = ctrl.plan(ids)
    r, g = _rollouts(ids, plan.counts, rng)
    ctrl.observe(ids, plan.counts, r, g)
    before = _state_json(ctrl)
    c = plan.counts
    if _flexible(name):  # the plan may be a first round with zeros: probe with a full batch instead
        c = np.array([3, 2, 4, 2])
        r, g = _rollouts(ids, c, rng)
    zero_count = ((ids, np.r_[0, c[1:]], r[c[0]:], np.repeat(np.arange(4), np.r_[0, c[1:]])), ValueError,
                  "counts must be >= 1, got 0 at index 0")
    if CONTROLLERS[name].skips_prompts:  # a count of 0 is a skipped prompt: valid; a negative one is not
        zero_count = ((ids, np.r_[-1, c[1:]], r, g), ValueError, "counts must be >= 0, got -1 at index 0")
    bad_cases = [
        zero_count,
        ((ids, c[:3], r, g), ValueError, r"counts must have one entry per prompt, shape \(4,\)"),
        ((ids, c, np.where(np.arange(r.size) == 2, 1.5, r), g), ValueError,
         r"rewards must be in \[0, 1\] .* got 1.5 at index 2"),
        ((ids, c, np.where(np.arange(r.size) == 1, -0.1, r), g), ValueError, "rewards must be in"),
        ((ids, c, np.where(np.arange(r.size) == 0, np.nan, r), g), ValueError, "rewards must be finite"),
        ((ids, c, r, g[:-1]), ValueError, "rewards and group_ids must have the same shape"),
        ((ids, c, r[:-1], g[:-1]), ValueError, r"rewards must have counts.sum\(\) = "),
        ((ids, c, r, np.where(np.arange(g.size) == 0, 4, g)), ValueError,
         r"group_ids must be positions in prompt_ids, in \[0, 4\), got 4 at index 0"),
        ((ids, c, r, np.sort(np.where(g == 1, 0, g))), ValueError, "group_ids must list position"),
        ((np.array([0, 3, 3, 99]), c, r, g), ValueError, "prompt_ids must be in"),
        ((ids, c, r.astype(str), g), TypeError, "rewards must be an array of real numbers"),
    ]
    for (pi, cc, rr, gg), exc, pattern in bad_cases:
        with pytest.raises(exc, match=pattern):
            ctrl.observe(pi, cc, rr, gg)
        assert _state_json(ctrl) == before
    with pytest.raises(ValueError, match=r"prompt_losses must have one entry per prompt"):
        ctrl.observe(ids, c, r, g, prompt_losses=[0.0, 1.0])
    with pytest.raises(ValueError, match="prompt_losses must have magnitude"):
        ctrl.observe(ids, c, r, g, prompt_losses=[0.0, 1.0, 1e101, 0.0])
    assert _state_json(ctrl) == before
    if name in ("rollout-gdro", "gdro-coupled"):
        one = np.array([1, 1, 1, 1])
        with pytest.raises(ValueError, match=r"counts must be in \[lower, upper\] = \[2, 8\] .* rollout arms"):
            ctrl.observe(ids, one, np.ones(4), np.arange(4))
        assert _state_json(ctrl) == before


# ------------------------------------------------------------------------------------------ properties
@st.composite
def _scenarios(draw, name):
    cls = CONTROLLERS[name]
    n_prompts = draw(st.integers(1, 30))
    m = draw(st.integers(1, 12))
    lower = draw(st.integers(cls.min_lower, cls.min_lower + 3))
    finite = (not cls.allows_infinite_upper) or draw(st.booleans())
    upper = draw(st.integers(lower, lower + 9)) if finite else math.inf
    cap = upper if finite else lower + 20
    total = draw(st.integers(m * lower, m * cap))
    return {
        "n_prompts": n_prompts, "m": m, "lower": lower, "upper": upper, "mean_budget": Fraction(total, m),
        "total": total, "seed": draw(st.integers(0, 2**32 - 1)), "steps": draw(st.integers(1, 3)),
        "ids_seed": draw(st.integers(0, 2**16)),
    }


def _check_budget_and_bounds(name, sc):
    ctrl = make_controller(name, n_prompts=sc["n_prompts"], mean_budget=sc["mean_budget"], lower=sc["lower"],
                           upper=sc["upper"], seed=sc["seed"], **_options(name, sc["n_prompts"]))
    rng = np.random.default_rng(sc["ids_seed"])
    if _flexible(name):
        _check_flexible_budget(ctrl, sc, rng)
        return
    for _ in range(sc["steps"]):
        ids = rng.integers(0, sc["n_prompts"], size=sc["m"])  # repeats and unseen prompts included
        plan = ctrl.plan(ids)
        assert plan.counts.dtype == np.int64 and plan.counts.shape == (sc["m"],)
        assert int(plan.counts.sum()) == sc["total"] == plan.total
        assert plan.counts.min() >= sc["lower"] and plan.counts.max() <= sc["upper"]
        assert plan.multipliers.dtype == np.float64 and plan.multipliers.shape == (sc["m"],)
        assert np.all(np.isfinite(plan.multipliers)) and np.all(plan.multipliers >= 0)
        if plan.bins is not None:
            assert plan.bins.dtype == np.int64 and plan.bins.shape == (sc["m"],)
        if plan.p_hat is not None:
            assert np.all((plan.p_hat >= 0) & (plan.p_hat <= 1))
        g = np.repeat(np.arange(sc["m"]), plan.counts)
        r = (rng.random(g.size) < 0.4).astype(np.float64)
        ctrl.observe(ids, plan.counts, r, g)


def _check_flexible_budget(ctrl, sc, rng):
    """Round / skipping controllers: the plan and every extension together spend at most the
    budget (exactly the budget for a single-round controller that skips prompts), each prompt's
    running total is 0 (skipped) or in [lower, upper], and the selection is well formed."""
    gen = _generator(rng, partial=False)
    for _ in range(sc["steps"]):
        ids = rng.integers(0, sc["n_prompts"], size=sc["m"])
        step = sample_step(ctrl, ids, gen)
        c = step.counts
        assert c.dtype == np.int64 and c.shape == (sc["m"],) and step.budget == sc["total"]
        if ctrl.samples_in_rounds:
            assert step.total <= sc["total"]
        else:
            assert step.total == sc["total"] == step.plan.total
        used = c[c > 0]
        assert used.size == 0 or (used.min() >= sc["lower"] and used.max() <= sc["upper"])
        assert ctrl.skips_prompts or used.size == sc["m"]
        assert step.plan.multipliers.dtype == np.float64 and np.all(step.plan.multipliers >= 0)
        sel = step.selection
        assert sel.train_mask.dtype == bool and sel.train_mask.shape == step.rewards.shape
        ctrl.observe(ids, c, step.rewards, step.group_ids)


def _property_test(name):
    @given(_scenarios(name))
    def prop(sc):
        """Budget exactness and bounds: for every batch of M prompt ids (repeats
        and never-seen prompts included), every integer total T in [M lower, M upper] (mean_budget
        = T / M, fractional allowed) and every step, plan().counts sums to exactly T and lies in
        [lower, upper]; multipliers are finite and non-negative."""
        _check_budget_and_bounds(name, sc)

    return prop


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_budget_is_exact_and_bounds_hold(name):
    """Hypothesis property, per controller: sum(counts) == M * mean_budget exactly and
    lower <= counts <= upper, for random batches, ids, budgets and bounds (see ``prop``)."""
    _property_test(name)()


# ------------------------------------------------------------------------------------------ checkpoints
def _drive(ctrl, t0, steps, m=6, record=None):
    """Steps through :func:`sample_step` (one plan -> generate for a single-round controller;
    rounds and a selection for the others); records each step's plan, counts and selection."""
    out = [] if record is None else record
    for t in range(t0, t0 + steps):
        rng = np.random.default_rng(1000 + t)
        ids = rng.integers(0, N, size=m)
        step = sample_step(ctrl, ids, _generator(rng))
        out.append(step)
        losses = rng.normal(size=m) if t % 3 == 0 else None
        ctrl.observe(ids, step.counts, step.rewards, step.group_ids, prompt_losses=losses)
    return out


def _same_plans(a, b):
    assert len(a) == len(b)
    for sx, sy in zip(a, b):
        assert np.array_equal(sx.counts, sy.counts) and np.array_equal(sx.rewards, sy.rewards)
        for f in ("train_mask", "baselines", "reuse"):
            u, v = getattr(sx.selection, f), getattr(sy.selection, f)
            assert (u is None) == (v is None) and (u is None or np.array_equal(u, v))
        x, y = sx.plan, sy.plan
        assert np.array_equal(x.counts, y.counts)
        assert np.array_equal(x.multipliers, y.multipliers)
        assert (x.bins is None) == (y.bins is None) and (x.bins is None or np.array_equal(x.bins, y.bins))
        assert (x.p_hat is None) == (y.p_hat is None) and (x.p_hat is None or np.array_equal(x.p_hat, y.p_hat))


@pytest.mark.parametrize("json_trip", [False, True], ids=["direct", "json"])
@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_checkpoint_resumes_bit_identically(name, json_trip):
    """Every registered controller: save after 5 steps, load into a fresh controller built with
    the same arguments, and the next 10 plans (counts, multipliers, bins, p_hat) and the final
    states are identical bit for bit. mean_budget 9/2 exercises the random remainders."""
    kw = {"mean_budget": Fraction(9, 2), "upper": 9}
    a = _make(name, **kw)
    _drive(a, 0, 5)
    state = a.state_dict()
    saved = json.loads(json.dumps(plain(state), allow_nan=False)) if json_trip else copy.deepcopy(state)
    b = _make(name, **kw)
    b.load_state_dict(saved)
    assert _state_json(b) == json.dumps(plain(state), sort_keys=True)
    _same_plans(_drive(a, 5, 10), _drive(b, 5, 10))
    assert _state_json(a) == _state_json(b)
    assert a.step == b.step == 15


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_bad_checkpoint_is_rejected_and_changes_nothing(name):
    a = _make(name)
    _drive(a, 0, 3)
    good = a.state_dict()
    b = _make(name)
    _drive(b, 50, 4)
    before = _state_json(b)
    bad = []
    s = copy.deepcopy(good)
    s["hyperparameters"]["mean_budget"] = "5"
    bad.append((s, "hyperparameter 'mean_budget' differs"))
    s = copy.deepcopy(good)
    s["class"] = "UniformController" if name != "uniform" else "VIPController"
    bad.append((s, "saved by class"))
    other = "uniform" if name != "uniform" else "prompt-gdro"
    bad.append((_make(other).state_dict(), "saved by class"))
    s = copy.deepcopy(good)
    s["components"]["extra"] = {}
    bad.append((s, "state\\['components'\\] has"))
    comps = list(good["components"])
    if comps:
        # tamper with the *last* component: the earlier ones load first and must be rolled back
        s = copy.deepcopy(good)
        last = s["components"][comps[-1]]
        last["step" if "step" in last else "version"] = -1 if "step" in last else 99
        bad.append((s, "must be >= 0|unsupported state version"))
    for state, pattern in bad:
        with pytest.raises((ValueError, TypeError), match=pattern):
            b.load_state_dict(state)
        assert _state_json(b) == before
    b.load_state_dict(good)
    assert _state_json(b) == json.dumps(plain(good), sort_keys=True)


@pytest.mark.parametrize("name", sorted(n for n, c in CONTROLLERS.items() if c.allows_infinite_upper))
def test_checkpoint_with_unbounded_upper_is_strict_json(name):
    """upper = inf is stored as the string "inf": the state is strict JSON (no Infinity/NaN)."""
    a = _make(name, upper=math.inf)
    _drive(a, 0, 2)
    text = json.dumps(plain(a.state_dict()), allow_nan=False)
    b = _make(name, upper=math.inf)
    b.load_state_dict(json.loads(text))
    _same_plans(_drive(a, 2, 3), _drive(b, 2, 3))
    c = _make(name, upper=64)
    with pytest.raises(ValueError, match="hyperparameter 'upper' differs"):
        c.load_state_dict(json.loads(text))


def test_checkpoint_does_not_store_embeddings_and_checks_them():
    a = _make("vip")
    _drive(a, 0, 2)
    state = a.state_dict()
    text = json.dumps(plain(state))
    assert len(text) < 20 * N * 30  # O(N) numbers, no N x d matrix stored
    other = np.random.default_rng(99).normal(size=(N, 3))
    b = make_controller("vip", n_prompts=N, mean_budget=4, lower=2, upper=8, seed=0, embeddings=other)
    before = _state_json(b)
    with pytest.raises(ValueError, match="hyperparameter 'embeddings' differs|hyperparameter 'bandwidth' differs"):
        b.load_state_dict(state)
    assert _state_json(b) == before


# ------------------------------------------------------------------------------------------ observations
def test_observation_summaries():
    """Per-prompt summaries from a ragged batch in arbitrary order: reward sums (successes, partial
    credit fractional), mean, unbiased sample variance, and GDRO eq. 10's any-correct (reward 1)."""
    ctrl = _make("uniform", lower=1)
    rewards = np.array([1.0, 0.0, 0.5, 0.9, 1.0, 0.0, 0.25])
    groups = np.array([0, 0, 1, 1, 2, 0, 2])
    obs = ctrl._observation_iv([4, 5, 6], [3, 2, 2], rewards, groups, None)
    assert obs.reward_sums.tolist() == [1.0, 1.4, 1.25]
    assert np.allclose(obs.mean_rewards, [1 / 3, 0.7, 0.625])
    assert np.allclose(obs.sample_vars, [np.var([1, 0, 0], ddof=1), np.var([0.5, 0.9], ddof=1),
                                         np.var([1.0, 0.25], ddof=1)])
    assert obs.any_correct.tolist() == [True, False, True]  # 0.9 is partial credit, not correct
    obs1 = ctrl._observation_iv([4], [1], [1.0], [0], None)
    assert obs1.sample_vars.tolist() == [0.0]


# ------------------------------------------------------------------------------------------ allocation rules
def test_uniform_rule():
    ctrl = _make("uniform", mean_budget=4)
    assert ctrl.plan([5, 5, 7]).counts.tolist() == [4, 4, 4]
    half = _make("uniform", mean_budget=2.5, lower=1, upper=3)
    seen = set()
    for _ in range(20):
        c = half.plan([0, 1, 2, 3]).counts
        assert sorted(c.tolist()) == [2, 2, 3, 3]
        seen.add(tuple(c.tolist()))
    assert len(seen) > 1  # the extra rollouts go to random positions, not always the first ones


def test_even_split_and_fix_total():
    rng = np.random.default_rng(0)
    c = even_split(17, 5, rng)
    assert c.sum() == 17 and set(c.tolist()) <= {3, 4}
    start = np.array([2, 2, 8, 8, 5])
    for target in (10, 12, 25, 40):
        out = fix_total(start, target, 2, 8, rng)
        assert out.sum() == target and out.min() >= 2 and out.max() <= 8
        moved = out - start
        assert np.all(moved >= 0) if target >= start.sum() else np.all(moved <= 0)  # one direction only


@pytest.mark.parametrize("cost", ["rloo", "drgrpo"])
def test_oracle_and_vip_rules_match_the_solvers(cost):
    """oracle = exact integer VIP eq. 5 with a = 4 p (1 - p) (Prop 4.2/4.3); vip-paper = Thm 5.1/5.2
    continuous + Alg. 2; vip = the same exact rule on the GP's p_hat."""
    ids = np.arange(3, N)
    lower, upper, total = 3, 16, 8 * ids.size
    oracle = _make("oracle", cost=cost, lower=lower, upper=upper, mean_budget=8)
    plan = oracle.plan(ids)
    a = 4 * P_TRUE[ids] * (1 - P_TRUE[ids])
    ref = allocate(a, total, lower, upper, cost=cost, integer=True)
    assert np.array_equal(plan.counts, ref.n) and np.array_equal(plan.p_hat, P_TRUE[ids])
    # the exact optimum is never worse than uniform or the paper's rounding
    cont = allocate(a, total, lower, upper, cost=cost)
    paper = round_greedy(cont.n, a, total, lower, upper, cost=cost)
    f = {"rloo": lambda n: a / (n - 1), "drgrpo": lambda n: a * (n - 1) / n**2}[cost]
    assert f(plan.counts).sum() <= f(paper.n).sum() + 1e-12
    assert f(plan.counts).sum() <= f(np.full(ids.size, 8)).sum() + 1e-12
    # vip / vip-paper on the predictor's p_hat
    vip = _make("vip", cost=cost, lower=lower, upper=upper, mean_budget=8)
    vpaper = _make("vip-paper", cost=cost, lower=lower, upper=upper, mean_budget=8,
                   predictor_options={"noise": "binomial"})  # vip's predictor: isolate the rounding
    _drive(vip, 0, 3, m=8)
    _drive(vpaper, 0, 3, m=8)
    p_hat = vip.predict(ids)
    assert np.array_equal(p_hat, vpaper.predict(ids))
    a_hat = 4 * p_hat * (1 - p_hat)
    a_hat = a_hat / a_hat.max()
    assert np.array_equal(vip.plan(ids).counts, allocate(a_hat, total, lower, upper, cost=cost, integer=True).n)
    cont = allocate(a_hat, total, lower, upper, cost=cost)
    assert np.array_equal(vpaper.plan(ids).counts, round_greedy(cont.n, a_hat, total, lower, upper, cost=cost).n)


def test_oracle_validates_true_success():
    bad_shape = make_controller("oracle", n_prompts=4, mean_budget=4, lower=2, upper=8,
                                true_success=lambda ids: np.full(2, 0.5))
    with pytest.raises(ValueError, match=r"true_success\(ids\) must return shape \(3,\), got \(2,\)"):
        bad_shape.plan([0, 1, 2])
    bad_range = make_controller("oracle", n_prompts=4, mean_budget=4, lower=2, upper=8,
                                true_success=lambda ids: np.full(ids.size, 1.5))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\], got 1.5"):
        bad_range.plan([0, 1])


def _proportional_reference(w, total, lower, upper):
    """clip(c w, lower, upper) with sum = total, by bisection on c (the App. C.1 normalisation)."""
    lo, hi = 0.0, 1e12
    for _ in range(400):
        c = 0.5 * (lo + hi)
        if np.clip(c * w, lower, upper).sum() < total:
            lo = c
        else:
            hi = c
    return np.clip(0.5 * (lo + hi) * w, lower, upper)


@pytest.mark.parametrize("name", ["inverse-accuracy", "inverse-variance"])
def test_inverse_heuristics_are_box_constrained_proportional(name):
    """VIP App. C.1: counts proportional to the weight within the box, then Alg. 2 rounding. The
    continuous step equals a bisection reference; the rounding is VIP Alg. 2 on f = w^2 / n."""
    ctrl = _make(name, lower=2, upper=10, mean_budget=5, predictor="beta-binomial", embeddings=None)
    rng = np.random.default_rng(3)
    for _ in range(4):  # give the predictor some history
        ids = np.arange(N)
        plan = ctrl.plan(ids)
        g = np.repeat(ids, plan.counts)
        ctrl.observe(ids, plan.counts, (rng.random(g.size) < P_TRUE[g]).astype(float), g)
    ids = np.arange(N)
    p = ctrl.predict(ids)
    eps = 0.01
    w = 1 - p + eps if name == "inverse-accuracy" else 1 / (4 * p * (1 - p) + eps)
    ref = _proportional_reference(w, 5 * N, 2, 10)
    a = (w / w.max()) ** 2
    cont = allocate(a, 5 * N, 2, 10, cost="inverse")
    assert np.allclose(cont.n, ref, rtol=1e-9, atol=1e-9)
    counts = ctrl.plan(ids).counts
    assert np.array_equal(counts, round_greedy(cont.n, a, 5 * N, 2, 10, cost="inverse").n)
    assert np.all(np.abs(counts - ref) < 1.0 + 1e-9)  # rounding moves each count by less than 1
    heavier = w[:, None] > w[None, :] * (1 + 1e-6)
    assert np.all(counts[:, None] >= counts[None, :], where=heavier)  # more weight, never fewer rollouts


def test_skip_saturated_rule():
    ctrl = _make("skip-saturated", mean_budget=6, lower=2, upper=12, predictor="beta-binomial", embeddings=None)
    # prompts 0 (all fail) and 1 (all succeed) seen 30 times each: predicted saturated
    ctrl.observe([0, 1], [30, 30], np.r_[np.zeros(30), np.ones(30)], np.repeat([0, 1], 30))
    p = ctrl.predict([0, 1, 2])
    assert ctrl.saturated(p).tolist() == [True, True, False]
    plan = ctrl.plan([0, 1, 2, 3, 4])
    assert plan.counts[:2].tolist() == [2, 2]
    assert sorted(plan.counts[2:].tolist()) == [8, 9, 9]  # (30 - 4) / 3 spread evenly
    # the others capped at upper: the excess goes back to the saturated prompts, evenly
    capped = _make("skip-saturated", mean_budget=10, lower=2, upper=12, predictor="beta-binomial", embeddings=None)
    capped.load_state_dict({**capped.state_dict(), "components": ctrl.state_dict()["components"]})
    c = capped.plan([0, 1, 2]).counts
    assert c[2] == 12 and sorted(c[:2].tolist()) == [9, 9]
    # everything saturated: uniform
    assert sorted(capped.plan([0, 1, 0, 1]).counts.tolist()) == [10, 10, 10, 10]


# ------------------------------------------------------------------------------------------ GDRO
def test_prompt_gdro_receives_bins_and_reward_losses():
    """Prompt-GDRO gets the plan's bins and l = 1 - 2 r_bar (the negative mean reward on the paper's
    {-1, +1} scale), or the caller's prompt_losses; the binner gets eq. 10's any-correct."""
    ctrl = _make("prompt-gdro", n_bins=4, window=5, prompt_exploration=0.0)
    ids = np.array([0, 1, 2])
    plan = ctrl.plan(ids)
    assert plan.bins.tolist() == [0, 0, 0]  # never seen: bin 0 (eq. 11 with an empty window)
    r = np.r_[np.ones(4), np.zeros(4), 0.5, np.ones(3) * 0.99]
    g = np.repeat([0, 1, 2], 4)
    ctrl.observe(ids, plan.counts, r, g)
    assert ctrl.prompt.scores[0] == pytest.approx(np.mean([1 - 2 * 1.0, 1 - 2 * 0.0, 1 - 2 * (0.5 + 2.97) / 4]))
    assert ctrl.binner.rates([0, 1, 2]).tolist() == [1.0, 0.0, 0.0]  # 0.99 is not a success
    assert ctrl.plan(ids).bins.tolist() == [3, 0, 0]
    ref = PromptGDRO(4, exploration=0.0)
    ref.update([0, 0, 0], 1 - 2 * np.array([1.0, 0.0, 3.47 / 4]))
    ctrl2 = _make("prompt-gdro", n_bins=4, window=5, prompt_exploration=0.0)
    ctrl2.observe(ids, plan.counts, r, g, prompt_losses=[0.3, 0.2, 0.1])
    assert ctrl2.prompt.scores[0] == pytest.approx(0.2)
    assert np.array_equal(ctrl.prompt.log_weights, ref.log_weights)
    assert np.array_equal(ctrl.plan([0, 1]).multipliers, ctrl.prompt.multipliers([3, 0]))


def test_rollout_gdro_receives_variance_utilities():
    """Rollout-GDRO's utility is J = -4 s2 / n (Remark F.25 on the {-1, +1} reward scale): after one
    observation each played (bin, arm) score is the mean of 4 s2 / n over its prompts."""
    ctrl = _make("rollout-gdro", n_bins=3, lower=2, upper=6, mean_budget=4)
    ids = np.array([0, 1, 2, 3])
    plan = ctrl.plan(ids)
    rng = np.random.default_rng(1)
    r, g = _rollouts(ids, plan.counts, rng)
    ctrl.observe(ids, plan.counts, r, g)
    obs = ctrl._observation_iv(ids, plan.counts, r, g, None)
    for arm in np.unique(plan.counts):
        sel = plan.counts == arm
        k = int(arm) - 2
        assert ctrl.rollout.arm_scores[0, k] == pytest.approx(np.mean(4 * obs.sample_vars[sel] / arm))
    loss_ctrl = _make("rollout-gdro", n_bins=3, lower=2, upper=6, mean_budget=4, utility="loss")
    plan = loss_ctrl.plan(ids)
    r, g = _rollouts(ids, plan.counts, rng)
    loss_ctrl.observe(ids, plan.counts, r, g, prompt_losses=[1.0, 1.0, 1.0, 1.0])
    assert np.allclose(loss_ctrl.rollout.arm_scores[loss_ctrl.rollout.arm_seen], 1.0)


def test_rollout_gdro_unreachable_budget_is_fixed_up_exactly():
    """mean_budget 9/2 with four unseen prompts (one bin): one arm per bin reaches only multiples of
    4; the controller moves single prompts by one rollout to the exact total 18."""
    ctrl = _make("rollout-gdro", mean_budget=Fraction(9, 2), lower=2, upper=9)
    for _ in range(10):
        plan = ctrl.plan([0, 1, 2, 3])
        assert plan.total == 18 and plan.counts.min() >= 2 and plan.counts.max() <= 9
        assert not ctrl.rollout.last_allocation.exact  # the DP alone could not reach 18
        assert plan.counts.max() - plan.counts.min() <= 1  # one arm, moved by single units


def test_coupled_multipliers_are_prompt_gdro_and_utilities_are_reweighted():
    """gdro-coupled: its multipliers are exactly those of a standalone prompt-gdro fed the same data
    (the coupling does not touch the data adversary), and Rollout-GDRO receives the utilities
    -omega^2 4 s2 / n with the multipliers the plan returned (the reweighted variance proxy)."""
    kw = {"n_bins": 4, "window": 5, "lower": 2, "upper": 6, "mean_budget": 4}
    coupled = _make("gdro-coupled", **kw)
    alone = _make("prompt-gdro", **{k: v for k, v in kw.items()})
    rng = np.random.default_rng(5)
    for t in range(8):
        ids = rng.integers(0, N, size=8)
        pc, pa = coupled.plan(ids), alone.plan(ids)
        assert np.array_equal(pc.multipliers, pa.multipliers) and np.array_equal(pc.bins, pa.bins)
        r, g = _rollouts(ids, pc.counts, rng)
        obs = coupled._observation_iv(ids, pc.counts, r, g, None)
        ref = RolloutGDRO(4, arms=range(2, 7), mean_budget=4.0, arm_model="inverse")  # the 1/n law of the variance utility
        ref.load_state_dict(coupled.rollout.state_dict())
        ref.update(pc.bins, pc.counts, -(pc.multipliers**2) * 4 * obs.sample_vars / pc.counts)
        coupled.observe(ids, pc.counts, r, g)
        assert np.array_equal(coupled.rollout.arm_scores, ref.arm_scores)
        assert np.array_equal(coupled.rollout.log_weights, ref.log_weights)
        # the standalone controller observes the same rollouts (its learning uses only the rewards)
        alone.observe(ids, pc.counts, r, g)
    assert np.array_equal(coupled.prompt.log_weights, alone.prompt.log_weights)


def _two_group_run(name, steps=150, seed=0):
    """Half the prompts have p = 0.3, half p = 0.7: equal reward variance, different difficulty.
    GDRO's default configuration (10 bins, window 50, App. C.2)."""
    n = 40
    p = np.where(np.arange(n) < n // 2, 0.3, 0.7)
    ctrl = make_controller(name, n_prompts=n, mean_budget=4, lower=2, upper=8, seed=seed)
    rng = np.random.default_rng(seed + 1)
    hard, easy = [], []
    for t in range(steps):
        ids = rng.permutation(n)[:20]
        plan = ctrl.plan(ids)
        g = np.repeat(np.arange(ids.size), plan.counts)
        r = (rng.random(g.size) < p[ids][g]).astype(float)
        ctrl.observe(ids, plan.counts, r, g)
        if t >= steps // 2:
            hard.append(plan.counts[p[ids] < 0.5].mean())
            easy.append(plan.counts[p[ids] > 0.5].mean())
    return float(np.mean(hard)), float(np.mean(easy))


def test_coupling_moves_rollouts_to_the_upweighted_bins():
    """Two groups with equal reward variance (p = 0.3 and 0.7). Uncoupled Rollout-GDRO has no reason
    to tell them apart; coupled, the data adversary up-weights the harder group and the compute
    adversary follows it (n_b ~ omega_b sqrt(v_b)), giving it clearly more rollouts."""
    hard_u, easy_u = _two_group_run("rollout-gdro")
    hard_c, easy_c = _two_group_run("gdro-coupled")
    assert abs(hard_u - easy_u) < 0.75
    assert hard_c - easy_c > 1.25
    assert hard_c - easy_c > (hard_u - easy_u) + 1.0


# ------------------------------------------------------------------------------------------ degenerate cases
@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_degenerate_batches(name):
    """Repeated ids, a batch of one, unseen prompts, and (oracle) every p exactly 0 or 1 (a = 0):
    exact budget, bounds, finite output."""
    ctrl = _make(name, lower=2, upper=8, mean_budget=4)
    rng = np.random.default_rng(0)
    for ids in ([5, 5, 5, 5], [7], [0, 1], [0, 1, 0, 1, 1], list(range(N))):
        ids = np.array(ids)
        if _flexible(name):
            step = sample_step(ctrl, ids, _generator(rng, partial=False))
            c = step.counts
            assert step.total <= 4 * ids.size and (c[c > 0].size == 0 or (c[c > 0].min() >= 2 and c.max() <= 8))
            assert step.total == 4 * ids.size or CONTROLLERS[name].samples_in_rounds
            assert np.all(np.isfinite(step.plan.multipliers))
            ctrl.observe(ids, c, step.rewards, step.group_ids)
            continue
        plan = ctrl.plan(ids)
        assert plan.total == 4 * ids.size and plan.counts.min() >= 2 and plan.counts.max() <= 8
        assert np.all(np.isfinite(plan.multipliers))
        r, g = _rollouts(ids, plan.counts, rng, partial=False)
        ctrl.observe(ids, plan.counts, r, g)
    if name == "oracle":
        saturated = make_controller("oracle", n_prompts=4, mean_budget=5, lower=2, upper=16,
                                    true_success=lambda ids: np.array([0.0, 1.0, 1.0, 0.0])[ids])
        c = saturated.plan([0, 1, 2, 3]).counts
        assert c.sum() == 20 and sorted(c.tolist()) == [5, 5, 5, 5]  # a = 0: spread evenly
        tiny = make_controller("oracle", n_prompts=3, mean_budget=5, lower=3, upper=16, cost="drgrpo",
                               true_success=lambda ids: np.array([1e-310, 1e-300, 0.5])[ids])
        c = tiny.plan([0, 1, 2]).counts
        assert c.sum() == 15 and c[2] == c.max()


@pytest.mark.parametrize("name", ["uniform", "skip-saturated", "inverse-accuracy", "prompt-gdro"])
def test_counts_of_one(name):
    """lower = 1 (one rollout per prompt is allowed where the rule does not need two): groups of
    one are observed like any other (sample variance 0, any-correct = the single reward)."""
    ctrl = _make(name, lower=1, upper=3, mean_budget=1)
    ids = np.array([0, 1, 2, 3])
    for _ in range(3):
        plan = ctrl.plan(ids)
        assert plan.counts.tolist() == [1, 1, 1, 1]
        ctrl.observe(ids, plan.counts, np.array([1.0, 0.0, 0.5, 1.0]), np.arange(4))


@pytest.mark.parametrize("name", ["vip", "vip-paper", "oracle", "inverse-variance"])
def test_observed_groups_of_one_where_plans_need_two(name):
    """A controller whose plans need lower >= 2 still accepts an observation with groups of one
    (e.g. generations that failed): the predictor sees one trial; plans stay exact."""
    ctrl = _make(name, lower=2, upper=8, mean_budget=4)
    ids = np.array([0, 1, 2, 3])
    ctrl.observe(ids, [1, 1, 2, 1], np.array([1.0, 0.0, 0.5, 0.5, 1.0]), np.array([0, 1, 2, 2, 3]))
    assert ctrl.plan(ids).total == 16


def test_near_saturated_predictions_for_all_prompts():
    """Every p_hat at the predictor's clip (all prompts seen all-0/all-1): a ~ 0.04 for all, the
    allocation is still exact and even (VIP has nothing to prefer)."""
    ctrl = _make("vip", lower=2, upper=16, mean_budget=6, predictor_options={"noise": 0.0})  # VIP Alg. 1
    ids = np.arange(N)
    g = np.repeat(ids, 4)
    ctrl.observe(ids, np.full(N, 4), (g % 2).astype(float), g)  # even ids all fail, odd all succeed
    plan = ctrl.plan(ids)
    assert np.allclose(plan.p_hat, np.where(ids % 2, 0.99, 0.01))
    assert plan.total == 6 * N and sorted(set(plan.counts.tolist())) == [6]


# ------------------------------------------------------------------------------------------ end to end
def test_vip_lowers_the_total_rloo_variance_on_a_toy_ground_truth():
    """Bernoulli successes with known p (no predictor error): at equal budget the oracle / VIP
    allocation gives a lower total RLOO gradient variance sum_q 4 p_q (1 - p_q) / (n_q - 1) (VIP
    Prop 4.3, solvers.grad_variance) than uniform; and the full loop -- GP predictor learning from
    observed Bernoulli rewards, then exact allocation -- also beats uniform on the true variance
    (with vip's default binomial-noise GP; the noise-free GP of VIP Alg. 1 does not on this toy,
    see bandits.controllers.predictive)."""
    rng = np.random.default_rng(11)
    n = 200
    emb = rng.normal(size=(n, 4))
    p = 1 / (1 + np.exp(-(3.0 * emb[:, 0] - 1.0)))  # heterogeneous difficulty, smooth in the embedding

    def total_var(ids, counts):
        return float(np.sum(grad_variance(p[ids], counts, estimator="rloo")))

    uniform = make_controller("uniform", n_prompts=n, mean_budget=6, lower=2, upper=24, seed=0)
    oracle = make_controller("oracle", n_prompts=n, mean_budget=6, lower=2, upper=24, seed=0,
                             true_success=lambda ids: p[ids])
    vip = make_controller("vip", n_prompts=n, mean_budget=6, lower=2, upper=24, seed=0, embeddings=emb)
    ratios_oracle, ratios_vip = [], []
    for t in range(30):
        ids = rng.choice(n, size=32, replace=False)
        pu, po, pv = uniform.plan(ids), oracle.plan(ids), vip.plan(ids)
        assert pu.total == po.total == pv.total == 6 * 32
        vu = total_var(ids, pu.counts)
        ratios_oracle.append(total_var(ids, po.counts) / vu)
        ratios_vip.append(total_var(ids, pv.counts) / vu)
        g = np.repeat(np.arange(ids.size), pv.counts)
        vip.observe(ids, pv.counts, (rng.random(g.size) < p[ids][g]).astype(float), g)
    assert max(ratios_oracle) <= 1.0 + 1e-12  # the exact optimum never loses to uniform
    assert np.mean(ratios_oracle) < 0.9
    assert np.mean(ratios_vip[10:]) < 1.0  # after learning, the GP-driven VIP also beats uniform


def test_extreme_bounds_and_options_are_named_value_errors():
    """Found by the extreme-input sweep: ``upper=10**400`` raised OverflowError
    (``float(upper)``); the Rollout-GDRO controllers built ``range(lower, upper + 1)`` first, so
    ``upper=2**53`` was a MemoryError and ``2**63 - 1`` an empty-arms error; an invalid
    ``arm_step_size`` was reported as ``step_size`` (an option the caller never passed);
    ``saturated(p_hat)`` raised OverflowError for a huge int."""
    import pytest

    from bandits.controllers import make_controller

    with pytest.raises(ValueError, match=r"upper must be finite, got the integer|upper must be <="):
        make_controller("uniform", n_prompts=4, mean_budget=2, lower=1, upper=10**400)
    for upper in (2**53, 2**63 - 1):
        with pytest.raises(ValueError, match=r"needs upper <= 2\*\*20"):
            make_controller("rollout-gdro", n_prompts=4, mean_budget=4, lower=2, upper=upper, n_bins=3)
    with pytest.raises(ValueError, match=r"^arm_step_size must be > 0"):
        make_controller("rollout-gdro", n_prompts=4, mean_budget=4, lower=2, upper=8, arm_step_size=0.0)
    with pytest.raises(ValueError, match=r"^prompt_step_size must be <= 1000000"):
        make_controller("prompt-gdro", n_prompts=4, mean_budget=4, lower=2, upper=8, prompt_step_size=1e300)
    ctrl = make_controller("skip-saturated", n_prompts=4, mean_budget=4, lower=1, upper=8,
                           embeddings=np.eye(4), seed=0)
    with pytest.raises(ValueError, match="p_hat must be finite"):
        ctrl.saturated([10**400, 0.5])


# ------------------------------------------------------------------------------------------ square-root law
_LEVELS = np.array([0.01, 0.05, 0.2, 0.5, 0.9])


def _stationary_run(name, steps=240, seed=0, n=200, batch=64, **options):
    """A stationary instance: prompt i has a fixed success probability ``_LEVELS[i % 5]``; Bernoulli
    rewards; pass@k bins over a window of 10. Returns the eq. 19 proxy of the realised counts over
    uniform's, ``sum_i v_i / n_i / sum_i v_i / n_bar`` with the true ``v_i = p_i (1 - p_i)``, averaged
    over the second half, and the mean counts per level over the second half."""
    rng = np.random.default_rng(seed)
    p = _LEVELS[np.arange(n) % 5]
    v = p * (1 - p)
    ctrl = make_controller(name, n_prompts=n, mean_budget=4, lower=2, upper=12, seed=seed, window=10, **options)
    ratios, per_level, seen = [], np.zeros(5), np.zeros(5)
    for t in range(steps):
        ids = rng.choice(n, batch, replace=False)
        plan = ctrl.plan(ids)
        g = np.repeat(np.arange(batch), plan.counts)
        ctrl.observe(ids, plan.counts, (rng.random(g.size) < p[ids][g]).astype(float), g)
        if t >= steps // 2:
            ratios.append(np.sum(v[ids] / plan.counts) / np.sum(v[ids] / 4))
            np.add.at(per_level, ids % 5, plan.counts)
            np.add.at(seen, ids % 5, 1)
    return float(np.mean(ratios)), per_level / seen


@pytest.mark.parametrize("name", ["rollout-gdro", "sqrt-law"])
def test_stationary_instance_lowers_the_eq19_proxy_below_uniform(name):
    """GDRO eq. 19-21 / Thm F.17: on a stationary instance (fixed success probabilities, Bernoulli
    rewards, online pass@k bins), both the learnt allocation (Rollout-GDRO fed the variance utility of
    Remark F.25) and the direct square-root rule lower the variance proxy sum_b q_b v_b / n_b of their
    realised counts below the compute-matched uniform allocation's, and give more rollouts to the
    noisier levels (p = 0.2 over p = 0.05 over p = 0.01), as the square-root law does."""
    ratio, per_level = _stationary_run(name)
    assert ratio < 0.95, ratio
    assert per_level[0] < per_level[1] < per_level[2], per_level
    assert per_level[0] < 2.5  # the nearly-hopeless level (v ~ 0.01) stays near the smallest arm


def test_sqrt_law_plan_is_the_exact_integer_minimiser_of_eq19():
    """sqrt-law: with the estimate v_hat fixed, plan's counts minimise sum_b c_b v_hat_b / n_b over one
    arm per bin in [lower, upper] subject to the exact total (brute force), and last_target is the
    continuous square-root law (Thm F.17, eq. 56) of the same problem."""
    import itertools

    from solvers import sqrt_allocation

    class ModBinner(_HalfBinner):
        n_bins = 3

        def bins(self, prompt_ids):
            return np.asarray(prompt_ids, dtype=np.int64) % 3

    ctrl = _make("sqrt-law", binner=ModBinner(), lower=2, upper=9, mean_budget=4)
    ctrl.estimator.scores[:] = [0.01, 0.24, 0.06]
    ctrl.estimator.seen[:] = True
    for ids in (np.arange(9), np.array([0, 3, 6, 9, 1, 4, 2]), np.array([1, 2, 4, 5, 7, 8])):
        plan = ctrl.plan(ids)
        counts = np.bincount(ids % 3, minlength=3)
        v = ctrl.variance
        feasible = [(sum(counts[b] * v[b] / a[b] for b in range(3)), a) for a in itertools.product(range(2, 10), repeat=3)
                    if sum(counts[b] * a[b] for b in range(3)) == 4 * ids.size]
        best = min(f[0] for f in feasible)
        assert np.sum(v[ids % 3] / plan.counts) == pytest.approx(best, rel=1e-12)
        assert np.unique(plan.counts[ids % 3 == 1]).size == 1  # one arm per bin
        assert plan.counts[ids % 3 == 1][0] > 4  # the noisiest bin gets more than n_bar
        ref = sqrt_allocation(v, counts / ids.size, 4.0, lower=2.0, upper=9.0)
        np.testing.assert_allclose(ctrl.last_target, ref.n)
        assert ctrl.shadow_price == pytest.approx(ref.price)


def test_sqrt_law_estimate_is_the_share_debiased_ema_of_within_prompt_variances():
    """Remark F.25's estimate: the first observation of a bin sets v_hat_b to the mean unbiased
    within-prompt sample variance of its prompts; unseen bins get the mean of the seen ones."""
    ctrl = _make("sqrt-law", n_bins=3, window=5, variance_ema=0.25)
    ids = np.array([0, 1])
    plan = ctrl.plan(ids)
    assert plan.counts.tolist() == [4, 4] and plan.bins.tolist() == [0, 0]
    r = np.array([1, 0, 0, 0, 1, 1, 0, 0], dtype=float)
    ctrl.observe(ids, plan.counts, r, np.repeat([0, 1], 4))
    s2 = np.array([np.var(r[:4], ddof=1), np.var(r[4:], ddof=1)])
    assert ctrl.variance[0] == pytest.approx(s2.mean())
    np.testing.assert_allclose(ctrl.variance, s2.mean())  # bins 1, 2 unseen: the seen mean
    assert ctrl.estimator.share_ema[0] == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"counts must be >= 2 for controller 'sqrt-law'"):
        ctrl.observe([0], [1], [1.0], [0])


class _HalfBinner:
    """A plugged-in binner: even prompt ids in bin 0, odd in bin 1 (protocol of binner_iv)."""

    n_bins = 2

    def __init__(self):
        self.updates = 0

    def bins(self, prompt_ids):
        return np.asarray(prompt_ids, dtype=np.int64) % 2

    def update(self, prompt_ids, any_correct):
        self.updates += 1

    def state_dict(self):
        return {"updates": self.updates}

    def load_state_dict(self, state):
        self.updates = int(state["updates"])


@pytest.mark.parametrize("name", ["prompt-gdro", "rollout-gdro", "gdro-coupled", "sqrt-law"])
def test_binner_can_be_plugged_in(name):
    """binner=: the GDRO controllers and sqrt-law use any object with n_bins, bins, update,
    state_dict and load_state_dict; they update it in observe and checkpoint it."""
    b = _HalfBinner()
    ctrl = _make(name, binner=b)
    assert ctrl.n_bins == 2
    ids = np.array([0, 1, 2, 3])
    plan = ctrl.plan(ids)
    assert plan.bins.tolist() == [0, 1, 0, 1]
    r, g = _rollouts(ids, plan.counts, np.random.default_rng(0))
    ctrl.observe(ids, plan.counts, r, g)
    assert b.updates == 1
    state = ctrl.state_dict()
    assert state["components"]["binner"] == {"updates": 1}
    assert state["hyperparameters"]["binner"].endswith("_HalfBinner")
    other = _make(name, binner=_HalfBinner())
    other.load_state_dict(state)
    assert other.binner.updates == 1
    with pytest.raises(TypeError, match="binner must have a callable bins"):
        _make(name, binner=object())
    with pytest.raises(ValueError, match=r"window=7 configures the default PassAtKBinner"):
        _make(name, binner=_HalfBinner(), window=7)
    with pytest.raises(ValueError, match=r"n_bins=3 disagrees with the plugged-in binner's n_bins=2"):
        _make(name, binner=_HalfBinner(), n_bins=3)


def test_prompt_gdro_matched_step_by_default_and_paper_constant_by_option():
    """Prompt-GDRO's step is Thm F.7's step for the loss range by default (sqrt(8 log B / T) / M,
    M = 2 for the loss 1 - 2 r_bar, T = prompt_horizon); 0.65 (GDRO App. C.2.1) is an option."""
    ctrl = _make("prompt-gdro", n_bins=10)
    assert ctrl.prompt.step_size == pytest.approx(math.sqrt(8 * math.log(10) / 1000) / 2)
    assert _make("prompt-gdro", n_bins=10, prompt_horizon=576).prompt.step_size == pytest.approx(
        math.sqrt(8 * math.log(10) / 576) / 2)
    assert _make("prompt-gdro", n_bins=10, prompt_loss_range=1.0).prompt.step_size == pytest.approx(
        math.sqrt(8 * math.log(10) / 1000))
    assert _make("gdro-coupled", prompt_step_size=0.65).prompt.step_size == 0.65
    with pytest.raises(ValueError, match=r"^prompt_step_size must be a number or 'matched', got 'fast'"):
        _make("prompt-gdro", prompt_step_size="fast")
    with pytest.raises(ValueError, match=r"^prompt_loss_range must be > 0"):
        _make("prompt-gdro", prompt_loss_range=0.0)
    with pytest.raises(ValueError, match=r"^prompt_horizon must be >= 1"):
        _make("prompt-gdro", prompt_horizon=0)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"upper": math.inf}, "needs a finite upper"),
    ({"lower": 1, "mean_budget": 2}, r"needs lower >= 2 \(the within-prompt sample variance"),
    ({"variance_ema": 0.0}, "variance_ema must be > 0"),
    ({"variance_ema": 1.5}, "variance_ema must be <= 1"),
    ({"upper": 2**21, "mean_budget": 4}, r"needs upper <= 2\*\*20"),
])
def test_sqrt_law_bad_options(kwargs, pattern):
    args = {"n_prompts": N, "mean_budget": 4, "lower": 2, "upper": 8, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        make_controller("sqrt-law", **args)


# ------------------------------------------------------------------------------------------ binning by name
_BINNED = ["prompt-gdro", "rollout-gdro", "gdro-coupled", "sqrt-law"]
_POSTERIOR = {"binning": "posterior", "binning_options": {"statistic": "variance", "discount": 0.9, "hysteresis": 0.05}}


@pytest.mark.parametrize("name", _BINNED)
def test_posterior_binning_budget_is_exact_and_bounds_hold(name):
    """Hypothesis property with posterior bins: as ``prop`` of test_budget_is_exact_and_bounds_hold
    (sum(counts) == M * mean_budget exactly, lower <= counts <= upper, finite multipliers), for
    random batches, budgets and bounds, with binning="posterior"."""

    @given(_scenarios(name))
    def prop(sc):
        """Budget exactness and bounds with binning="posterior" (see test_budget_is_exact_and_bounds_hold)."""
        ctrl = make_controller(name, n_prompts=sc["n_prompts"], mean_budget=sc["mean_budget"], lower=sc["lower"],
                               upper=sc["upper"], seed=sc["seed"], **_POSTERIOR)
        rng = np.random.default_rng(sc["ids_seed"])
        for _ in range(sc["steps"]):
            ids = rng.integers(0, sc["n_prompts"], size=sc["m"])
            plan = ctrl.plan(ids)
            assert int(plan.counts.sum()) == sc["total"]
            assert plan.counts.min() >= sc["lower"] and plan.counts.max() <= sc["upper"]
            assert np.all(np.isfinite(plan.multipliers)) and np.all(plan.multipliers >= 0)
            assert plan.bins.dtype == np.int64 and plan.bins.min() >= 0 and plan.bins.max() < ctrl.n_bins
            g = np.repeat(np.arange(sc["m"]), plan.counts)
            ctrl.observe(ids, plan.counts, (rng.random(g.size) < 0.4).astype(np.float64), g)

    prop()


@pytest.mark.parametrize("json_trip", [False, True], ids=["direct", "json"])
@pytest.mark.parametrize("name", _BINNED)
def test_posterior_binning_checkpoint_resumes_bit_identically(name, json_trip):
    """binning="posterior": save after 5 steps, load into a fresh controller built with the same
    options, and the next 10 plans (counts, multipliers, bins) and the final states are identical
    bit for bit; the state records the binning and its resolved options."""
    kw = {"mean_budget": Fraction(9, 2), "upper": 9, **_POSTERIOR}
    a = _make(name, **kw)
    _drive(a, 0, 5)
    state = a.state_dict()
    hp = state["hyperparameters"]
    assert hp["binning"] == "posterior" and hp["binning_options"]["statistic"] == "variance"
    assert hp["binning_options"]["discount"] == 0.9 and hp["binning_options"]["confidence"] == 0.9  # resolved
    assert state["components"]["binner"]["class"] == "PosteriorBinner"
    saved = json.loads(json.dumps(plain(state), allow_nan=False)) if json_trip else copy.deepcopy(state)
    b = _make(name, **kw)
    b.load_state_dict(saved)
    assert _state_json(b) == json.dumps(plain(state), sort_keys=True)
    _same_plans(_drive(a, 5, 10), _drive(b, 5, 10))
    assert _state_json(a) == _state_json(b)


@pytest.mark.parametrize("name", _BINNED)
def test_mismatched_binning_checkpoint_is_refused_and_changes_nothing(name):
    """A checkpoint loads only into a controller that bins the same way: another binning, another
    posterior statistic or option, is a ValueError naming the hyperparameter; the state is unchanged."""
    post = _make(name, **_POSTERIOR)
    _drive(post, 0, 3)
    passk = _make(name)
    _drive(passk, 0, 3)
    other_stat = _make(name, binning="posterior", binning_options={**_POSTERIOR["binning_options"], "statistic": "mean"})
    other_hyst = _make(name, binning="posterior", binning_options={**_POSTERIOR["binning_options"], "hysteresis": 0.0})
    for target, state, pattern in (
        (passk, post.state_dict(), "hyperparameter 'binning' differs"),
        (other_stat, post.state_dict(), "hyperparameter 'binning_options' differs"),
        (other_hyst, post.state_dict(), "hyperparameter 'binning_options' differs"),
        (post, passk.state_dict(), "hyperparameter 'binning' differs"),
    ):
        before = _state_json(target)
        with pytest.raises(ValueError, match=pattern):
            target.load_state_dict(state)
        assert _state_json(target) == before
    # an explicit default is the same binning as no option at all
    same = _make(name, binning="pass@k", binning_options={"prior": (1.0, 1.0)})
    same.load_state_dict(passk.state_dict())
    assert _state_json(same) == _state_json(passk)


@pytest.mark.parametrize("name", _BINNED)
def test_default_binning_is_pass_at_k_unchanged(name):
    """No binning option: the controller's binner is the pass@k binner of GDRO eq. 10-11 and its
    trajectory equals one with a plugged-in PassAtKBinner of the same settings (bit for bit)."""
    from bandits import PassAtKBinner

    a = _make(name, n_bins=4, window=5)
    b = _make(name, binner=PassAtKBinner(4, 5))
    assert type(a.binner) is PassAtKBinner and a.binning == "pass@k"
    _same_plans(_drive(a, 0, 8), _drive(b, 0, 8))
    assert json.dumps(plain(a.binner.state_dict())) == json.dumps(plain(b.binner.state_dict()))


def _fixed_rate_rewards(t):
    """Four rollouts each for a p = 0.5 prompt (2 of 4 correct every step) and a p = 0.97 prompt
    (4 of 4, except 3 of 4 every 8th step: 31/32 = 0.969 of its rollouts correct)."""
    hi = np.ones(4)
    if t % 8 == 0:
        hi[0] = 0.0
    return np.r_[1.0, 0.0, 1.0, 0.0, hi]


@pytest.mark.parametrize("name", _BINNED)
def test_posterior_bins_separate_what_pass_at_4_merges(name):
    """GDRO's pass@k bins saturate (App. B; eq. 10-11): with k = 4 rollouts both a p = 0.5 prompt
    (pass@4 = 0.94) and a p = 0.97 prompt (pass@4 ~ 1) show a success at every step and share the
    top bin. Posterior bins on the per-rollout counts separate them: by the posterior mean
    (bins 5 and 9) and by the posterior mean of the reward variance 4 p (1 - p) (the p = 0.5 prompt
    in the top bin, the p = 0.97 prompt in a low one)."""
    ids = np.array([0, 1])
    g = np.repeat([0, 1], 4)
    finals = {}
    for label, opts in (("pass@4", {}),
                        ("mean", {"binning": "posterior", "binning_options": {"statistic": "mean"}}),
                        ("variance", {"binning": "posterior", "binning_options": {"statistic": "variance"}})):
        ctrl = _make(name, lower=4, upper=4, mean_budget=4, **opts)  # exactly k = 4 rollouts per prompt
        for t in range(60):
            plan = ctrl.plan(ids)
            assert plan.counts.tolist() == [4, 4]
            ctrl.observe(ids, plan.counts, _fixed_rate_rewards(t), g)
        finals[label] = ctrl.plan(ids).bins.tolist()
    assert finals["pass@4"] == [9, 9]  # merged in the top bin
    assert finals["mean"] == [5, 9]
    high, low = finals["variance"]
    assert high == 9 and low <= 2


@pytest.mark.parametrize("name", _BINNED)
def test_binners_get_successes_and_trials_through_observe(name):
    """binner_iv's protocol: a binner with observe() receives the eq. 10 indicators, each prompt's
    reward sum (partial credit included) and its rollout count, with the ids of the batch; one
    with only update(ids, any_correct) (the earlier protocol) gets the indicators."""

    class Recorder(_HalfBinner):
        def observe(self, prompt_ids, *, any_correct=None, successes=None, trials=None):
            self.seen = (np.asarray(prompt_ids), np.asarray(any_correct), np.asarray(successes), np.asarray(trials))

    rec = Recorder()
    ctrl = _make(name, binner=rec)
    ids = np.array([0, 1, 2])
    plan = ctrl.plan(ids)
    g = np.repeat(np.arange(3), plan.counts)
    r = np.zeros(g.size)
    r[g == 0] = 1.0
    r[np.flatnonzero(g == 1)[0]] = 0.5  # partial credit: counts in successes, not in any_correct
    ctrl.observe(ids, plan.counts, r, g)
    got_ids, any_correct, successes, trials = rec.seen
    assert got_ids.tolist() == [0, 1, 2] and any_correct.tolist() == [True, False, False]
    assert successes.tolist() == [float(plan.counts[0]), 0.5, 0.0] and trials.tolist() == plan.counts.tolist()
    assert rec.updates == 0  # observe() is preferred over update()
    legacy = _HalfBinner()
    ctrl = _make(name, binner=legacy)
    ctrl.observe(ids, plan.counts, r, g)
    assert legacy.updates == 1


@pytest.mark.parametrize("kwargs, exc, pattern", [
    ({"binning": "bayes"}, ValueError, r"unknown binning 'bayes'; valid binnings: \['pass@k', 'posterior'\]"),
    ({"binning": 3}, TypeError, "binning must be a str naming a binner"),
    ({"binning": "posterior", "binning_options": [("statistic", "mean")]}, TypeError,
     "binning_options must be a dict"),
    ({"binning": "posterior", "binning_options": {"n_bins": 5}}, ValueError,
     "binning_options must not set 'n_bins'"),
    ({"binning": "posterior", "binning_options": {"window": 5}}, TypeError,
     r"binning_options has an unknown option 'window' for binning='posterior'"),
    ({"binning_options": {"window": 5}}, ValueError,
     r"binning_options must not set 'window' for binning='pass@k': use the controller's option window="),
    ({"binning_options": {"mode": "beta"}}, ValueError, "use the controller's option bin_mode="),
    ({"binning": "posterior", "window": 20}, ValueError, r"window=20 configures the pass@k binner"),
    ({"binning": "posterior", "bin_mode": "beta"}, ValueError, r"bin_mode='beta' configures the pass@k binner"),
    ({"binning": "posterior", "binning_options": {"statistic": "median"}}, ValueError, "statistic must be one of"),
    ({"binning": "posterior", "binning_options": {"hysteresis": 1.0}}, ValueError, "hysteresis must be < 1"),
    ({"binning": "posterior", "binning_options": {"edges": [0.0, 0.5, 1.0]}}, ValueError,
     "edges has 3 entries, so n_bins must be 2, got 10"),
    ({"binning": "posterior", "binner": _HalfBinner()}, ValueError, "binner= and binning='posterior'"),
    ({"binning_options": {"prior": (1.0, 1.0)}, "binner": _HalfBinner()}, ValueError, "are exclusive"),
])
@pytest.mark.parametrize("name", _BINNED)
def test_bad_binning_options(name, kwargs, exc, pattern):
    """binning / binning_options: bad names, types and conflicts are errors naming the parameter."""
    with pytest.raises(exc, match=pattern):
        _make(name, n_bins=10, **kwargs)


def test_posterior_binning_shares_n_bins_with_the_adversaries():
    """n_bins is shared: the posterior binner and the adversaries get the controller's n_bins, and
    edges in binning_options must agree with it."""
    ctrl = _make("gdro-coupled", n_bins=4, binning="posterior", binning_options={"edges": [0.0, 0.1, 0.5, 0.9, 1.0]})
    assert ctrl.binner.n_bins == ctrl.prompt.n_bins == ctrl.rollout.n_bins == ctrl.n_bins == 4
    assert ctrl.binner.edges.tolist() == [0.0, 0.1, 0.5, 0.9, 1.0]
    assert _make("sqrt-law", n_bins=3, binning="posterior").estimator.n_bins == 3

"""Checkpoints of every stateful learner of ``bandits``.

For every class: ``state_dict()`` holds only plain data (numbers, strings, lists, NumPy arrays);
loading it -- directly, or after a real JSON round trip -- into a freshly constructed object
resumes a bit-identical trajectory; a bad state (another class, version, hyperparameter, shape,
non-finite value, a different embedding matrix) raises ``ValueError``/``TypeError`` and leaves the
object unchanged. The coverage test fails for a new public class of ``bandits`` without an entry
here (and the controllers' own test does the same for every registered controller; the GDRO
controllers and ``sqrt-law`` with posterior bins are variants here as well).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math

import numpy as np
import pytest

import bandits
from bandits import (
    BetaBinomialPredictor,
    Exp3,
    Exp3IX,
    Exp3P,
    GDROExp3P,
    GPSuccessPredictor,
    GroupDRO,
    MovingAveragePredictor,
    PassAtKBinner,
    PosteriorBinner,
    PrimalDualRolloutGDRO,
    PromptGDRO,
    RidgePredictor,
    RolloutGDRO,
)
from bandits._state import FORMAT, plain
from bandits.controllers import make_controller

N_PROMPTS = 40
EMB = np.random.default_rng(123).normal(size=(N_PROMPTS, 5))


def _inputs(t: int) -> np.random.Generator:
    """Per-step input generator: the same inputs for the original and the resumed object."""
    return np.random.default_rng(10_000 + t)


# -- drivers: one step of each learner, returning what a user would observe --------------------
def _bandit_step(obj, t):
    r = _inputs(t)
    arm = obj.sample()
    obj.update(arm, float(r.random()))
    return [arm, obj.probabilities()]


def _group_dro_step(obj, t):
    r = _inputs(t)
    present = r.random(4) < 0.7
    obj.update(r.normal(size=4), present=present)
    return [obj.weights()]


def _gdro_exp3p_step(obj, t):
    r = _inputs(t)
    g = obj.sample()
    obj.update(g, float(r.random()))
    return [g, obj.weights()]


def _binner_step(obj, t):
    r = _inputs(t)
    ids = r.integers(0, 30, size=12)
    obj.update(ids, r.random(12) < 0.5)
    probe = np.arange(35)
    return [obj.bins(probe), obj.rates(probe), obj.counts(probe)]


def _posterior_binner_step(obj, t):
    r = _inputs(t)
    ids = r.integers(0, 30, size=12) * (10**15 if obj.statistic == "lower" else 1)
    trials = r.integers(1, 9, size=12)
    obj.observe(ids, successes=r.random(12) * trials, trials=trials)
    probe = np.unique(ids)
    return [obj.bins(probe), obj.scores(probe), obj.counts(probe)]


def _controller_step(obj, t):
    """One plan -> rollouts (Bernoulli(0.4), a partial-credit reward) -> observe step of a controller."""
    r = _inputs(t)
    ids = r.integers(0, N_PROMPTS, size=8)
    plan = obj.plan(ids)
    g = np.repeat(np.arange(ids.size), plan.counts)
    rewards = (r.random(g.size) < 0.4).astype(np.float64)
    rewards[0] = 0.5
    obj.observe(ids, plan.counts, rewards, g)
    return [plan.counts, plan.multipliers, plan.bins]


def _posterior_controller(name, statistic):
    """A binned controller with posterior bins (binning="posterior"); the controllers' own tests
    cover every registered controller with its default binning."""
    return make_controller(name, n_prompts=N_PROMPTS, mean_budget=4, lower=2, upper=7, seed=11, n_bins=5,
                           binning="posterior", binning_options={"statistic": statistic, "discount": 0.9})


def _prompt_gdro_step(obj, t):
    r = _inputs(t)
    bins = r.integers(0, 5, size=16)
    mult = obj.multipliers(bins)
    obj.update(bins, r.normal(size=16))
    return [mult, obj.weights, obj.scores]


def _rollout_gdro_step(obj, t):
    r = _inputs(t)
    bins = r.integers(0, 4, size=16)
    n = obj.allocate(bins)
    obj.update(bins, n, r.normal(size=16))
    return [n, obj.arm_probabilities(), obj.shadow_price]


def _primal_dual_step(obj, t):
    r = _inputs(t)
    costs = r.random((3, 5))
    shares = r.dirichlet(np.ones(3))
    obj.update(costs, shares)
    return [obj.arm_probabilities(), obj.average_arm_probabilities(), obj.average_shadow_price]


def _predictor_step(obj, t):
    r = _inputs(t)
    ids = r.integers(0, N_PROMPTS, size=8)
    trials = r.integers(1, 9, size=8)
    successes = r.binomial(trials, 0.4).astype(np.float64)
    successes[0] = trials[0] * r.random()  # partial credit: a fractional success count
    obj.update(ids, successes, trials)
    out = [obj.predict(np.arange(N_PROMPTS))]
    if hasattr(obj, "predict_var"):
        out.append(obj.predict_var(np.arange(N_PROMPTS)))
    return out


FACTORIES = {
    "Exp3": (lambda: Exp3(4, gamma=0.2, seed=1), _bandit_step),
    "Exp3P": (lambda: Exp3P(4, horizon=100, eta=0.3, gamma=0.05, seed=2), _bandit_step),
    "Exp3IX": (lambda: Exp3IX(4, horizon=100, seed=3), _bandit_step),
    "GroupDRO": (lambda: GroupDRO(4, step_size=0.5), _group_dro_step),
    "GDROExp3P": (lambda: GDROExp3P(4, horizon=100, seed=4), _gdro_exp3p_step),
    "PassAtKBinner": (lambda: PassAtKBinner(n_bins=4, window=5), _binner_step),
    "PosteriorBinner": (lambda: PosteriorBinner(n_bins=4, discount=0.9, hysteresis=0.05), _posterior_binner_step),
    "PromptGDRO": (lambda: PromptGDRO(n_bins=5, seed=5), _prompt_gdro_step),
    "RolloutGDRO": (lambda: RolloutGDRO(n_bins=4, arms=range(2, 7), mean_budget=4, seed=6), _rollout_gdro_step),
    "PrimalDualRolloutGDRO": (lambda: PrimalDualRolloutGDRO(3, arms=range(2, 7), mean_budget=4),
                              _primal_dual_step),
    "GPSuccessPredictor": (lambda: GPSuccessPredictor(EMB, seed=7), _predictor_step),
    "MovingAveragePredictor": (lambda: MovingAveragePredictor(N_PROMPTS, window=20), _predictor_step),
    "RidgePredictor": (lambda: RidgePredictor(EMB, window=20), _predictor_step),
    "BetaBinomialPredictor": (lambda: BetaBinomialPredictor(N_PROMPTS, discount=0.9), _predictor_step),
}

# beyond the defaults: variants whose state has other moving parts
VARIANTS = {
    "PassAtKBinner-sparse-ids": (lambda: PassAtKBinner(n_bins=3, window=4),
                                 lambda obj, t: _binner_step_sparse(obj, t)),
    "PassAtKBinner-beta": (lambda: PassAtKBinner(n_bins=4, window=5, mode="beta", quantile=0.2), _binner_step),
    "PosteriorBinner-lower-sparse-ids": (lambda: PosteriorBinner(n_bins=5, statistic="lower", hysteresis=0.02),
                                         _posterior_binner_step),
    "GPSuccessPredictor-binomial-noise": (lambda: GPSuccessPredictor(EMB, noise="binomial", seed=8,
                                                                     dtype=np.float64), _predictor_step),
    "RolloutGDRO-mode": (lambda: RolloutGDRO(n_bins=4, arms=range(2, 7), mean_budget=3, selection="mode"),
                         _rollout_gdro_step),
    # controllers with posterior bins: the binner's state rides in the controller's checkpoint
    "controller:rollout-gdro-posterior-variance": (lambda: _posterior_controller("rollout-gdro", "variance"),
                                                   _controller_step),
    "controller:sqrt-law-posterior-variance": (lambda: _posterior_controller("sqrt-law", "variance"), _controller_step),
    "controller:prompt-gdro-posterior-lower": (lambda: _posterior_controller("prompt-gdro", "lower"), _controller_step),
    "controller:gdro-coupled-posterior-mean": (lambda: _posterior_controller("gdro-coupled", "mean"), _controller_step),
}


def _binner_step_sparse(obj, t):
    """Huge, sparse ids: the binner switches to its sorted-id lookup."""
    r = _inputs(t)
    ids = r.integers(0, 4, size=6) * 10**15 + 7
    obj.update(ids, r.random(6) < 0.5)
    return [obj.bins(ids), obj.rates(ids)]


ALL = {**FACTORIES, **VARIANTS}


def _json_round_trip(state):
    return json.loads(json.dumps(plain(state), allow_nan=False))  # strict JSON


def _assert_plain(value, path="state"):
    """Only plain numbers, strings, None, lists, dicts and NumPy arrays (no objects)."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), f"{path}: key {k!r} is not a string"
            _assert_plain(v, f"{path}[{k!r}]")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _assert_plain(v, f"{path}[{i}]")
    elif isinstance(value, np.ndarray):
        assert value.dtype != object, f"{path}: object array"
    else:
        assert value is None or isinstance(value, (bool, int, float, str)), f"{path}: {type(value).__name__}"


def _same_output(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            assert x.dtype == np.asarray(y).dtype
            assert np.array_equal(x, y), (x, y)  # bit for bit (no tolerance)
        else:
            assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), (x, y)


def _states_equal(s1, s2):
    assert json.dumps(plain(s1), sort_keys=True) == json.dumps(plain(s2), sort_keys=True)


# ------------------------------------------------------------------------------------------------
def _stateful_public_classes():
    out = []
    for name in bandits.__all__:
        obj = getattr(bandits, name)
        if not inspect.isclass(obj) or dataclasses.is_dataclass(obj) or issubclass(obj, BaseException):
            continue
        if inspect.isabstract(obj):
            continue
        out.append(name)
    return out


def test_every_public_learner_has_a_checkpoint_test():
    """A new public class of bandits without a factory here (and without state_dict) fails."""
    missing = [n for n in _stateful_public_classes() if n not in FACTORIES]
    assert not missing, f"add these classes to FACTORIES in {__file__}: {missing}"
    for name in FACTORIES:
        cls = getattr(bandits, name)
        assert callable(getattr(cls, "state_dict", None)) and callable(getattr(cls, "load_state_dict", None)), name


@pytest.mark.parametrize("json_trip", [False, True], ids=["direct", "json"])
@pytest.mark.parametrize("name", sorted(ALL))
def test_resume_is_bit_identical(name, json_trip):
    """state_dict -> fresh object -> load_state_dict continues the trajectory bit for bit."""
    factory, step = ALL[name]
    a = factory()
    for t in range(7):
        step(a, t)
    state = a.state_dict()
    _assert_plain(state)
    assert state["format"] == FORMAT and state["class"] == type(a).__name__ and state["version"] == 1
    saved = _json_round_trip(state) if json_trip else copy.deepcopy(state)
    b = factory()
    b.load_state_dict(saved)
    _states_equal(b.state_dict(), state)  # the loaded state reads back unchanged
    for t in range(7, 19):
        _same_output(step(a, t), step(b, t))
    _states_equal(a.state_dict(), b.state_dict())


@pytest.mark.parametrize("name", sorted(ALL))
def test_state_is_a_snapshot(name):
    """Updating the learner after state_dict() does not change the state already handed out."""
    factory, step = ALL[name]
    a = factory()
    step(a, 0)
    state = a.state_dict()
    before = json.dumps(plain(state), sort_keys=True)
    for t in range(1, 4):
        step(a, t)
    assert json.dumps(plain(state), sort_keys=True) == before


def _first_array_key(state):
    for key, value in state.items():
        if isinstance(value, np.ndarray) and value.size:
            return key
    return None


def _mutations(state):
    """(description, mutated state, expected exception, message pattern)."""
    out = [("not a mapping", [1, 2], TypeError, "mapping")]
    s = copy.deepcopy(state)
    s["format"] = "pickle"
    out.append(("format", s, ValueError, "not a robust-rollouts state"))
    s = copy.deepcopy(state)
    s["class"] = "SomethingElse"
    out.append(("class", s, ValueError, "saved by class 'SomethingElse'"))
    s = copy.deepcopy(state)
    s["version"] = 99
    out.append(("version", s, ValueError, "unsupported state version 99"))
    s = copy.deepcopy(state)
    key = min(s["hyperparameters"])
    val = s["hyperparameters"][key]
    s["hyperparameters"][key] = "other" if isinstance(val, str) else ([0] if isinstance(val, list) else 12345.5)
    out.append(("hyperparameter", s, ValueError, f"hyperparameter '{key}' differs"))
    s = copy.deepcopy(state)
    del s["hyperparameters"][key]
    out.append(("missing hyperparameter", s, ValueError, "lack"))
    akey = _first_array_key(state)
    if akey is not None:
        s = copy.deepcopy(state)
        s[akey] = np.asarray(s[akey])[None]  # one axis too many
        out.append(("shape", s, ValueError, f"state\\['{akey}'\\]"))
        s = copy.deepcopy(state)
        del s[akey]
        out.append(("missing field", s, ValueError, f"missing '{akey}'"))
    for key, value in state.items():
        if isinstance(value, np.ndarray) and value.dtype == np.float64 and value.size:
            s = copy.deepcopy(state)
            s[key] = value.copy()
            s[key].flat[0] = np.nan
            out.append(("nan", s, ValueError, f"state\\['{key}'\\]"))
            break
    if "rng" in state:
        s = copy.deepcopy(state)
        s["rng"] = {"bit_generator": "MT19937", "state": {}}
        out.append(("rng kind", s, ValueError, "'MT19937' state"))
        s = copy.deepcopy(state)
        s["rng"] = dict(s["rng"], state={"state": "x", "inc": 1})
        out.append(("rng value", s, ValueError, "not a valid PCG64 state"))
    return out


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_bad_state_is_rejected_and_changes_nothing(name):
    factory, step = FACTORIES[name]
    a = factory()
    for t in range(3):
        step(a, t)
    good = a.state_dict()
    other = factory()
    for t in range(5):
        step(other, t + 50)
    before = other.state_dict()
    for what, bad, exc, pattern in _mutations(good):
        with pytest.raises(exc, match=pattern):
            other.load_state_dict(bad)
        _states_equal(other.state_dict(), before)
    # and the object still works (and still accepts the good state)
    step(other, 99)
    other.load_state_dict(good)
    _states_equal(other.state_dict(), good)


@pytest.mark.parametrize("cls", [GPSuccessPredictor, RidgePredictor])
def test_embeddings_are_fingerprinted_not_stored(cls):
    """Embeddings are constructor input: the state holds a fingerprint, checked on load."""
    a = cls(EMB)
    a.update([0, 1, 2], [1, 0, 2], [2, 2, 2])
    state = a.state_dict()
    assert not any(isinstance(v, np.ndarray) and v.ndim == 2 and v.shape == EMB.shape for v in state.values())
    fp = state["hyperparameters"]["embeddings"]
    assert fp.startswith(f"{N_PROMPTS}x5:")
    nudged = EMB.copy()
    nudged[17, 3] += 1e-3
    for other in (EMB[::-1].copy(), nudged, EMB[:, ::-1].copy()):
        b = cls(other, bandwidth=a.bandwidth) if cls is GPSuccessPredictor else cls(other)
        before = b.state_dict()
        with pytest.raises(ValueError, match="hyperparameter 'embeddings' differs"):
            b.load_state_dict(state)
        _states_equal(b.state_dict(), before)
    # float32 and float64 copies of the same values are the same input for the GP (stored as dtype)
    if cls is GPSuccessPredictor:
        c = cls(EMB.astype(np.float32).astype(np.float64), bandwidth=a.bandwidth)
        d = cls(EMB.astype(np.float32), bandwidth=a.bandwidth)
        assert c.embedding_fingerprint() == d.embedding_fingerprint()


def test_gp_state_size_is_linear_in_n():
    """The GP state holds O(N + |B|) numbers: the latent mean and the last batch, no N x N matrix."""
    gp = GPSuccessPredictor(EMB, seed=0)
    gp.update(np.arange(10), np.arange(10) % 3, np.full(10, 4))
    state = gp.state_dict()
    sizes = {k: v.size for k, v in state.items() if isinstance(v, np.ndarray)}
    assert sizes == {"mean": N_PROMPTS, "last_ids": 10, "last_diag": 10}


def test_gp_restores_the_one_step_posterior_variance():
    """predict_var after loading equals the original (the last batch's factor is recomputed)."""
    a = GPSuccessPredictor(EMB, noise="binomial", seed=0)
    a.update([3, 4, 5, 3], [1, 2, 0, 4], [4, 4, 4, 4])
    b = GPSuccessPredictor(EMB, noise="binomial", seed=0)
    b.load_state_dict(_json_round_trip(a.state_dict()))
    ids = np.arange(N_PROMPTS)
    assert np.array_equal(a.predict_var(ids), b.predict_var(ids))


def test_fractional_successes_are_partial_credit():
    """Predictors accept a fractional success count (sum of rewards in [0, 1]): s / n is the mean
    reward (VIP's (R_bar + 1) / 2 for rewards in {-1, 1}); s > n is still rejected."""
    gp = GPSuccessPredictor(EMB, seed=0)
    gp.update([0], [1.5], [4])
    assert gp.predict([0])[0] == pytest.approx(1.5 / 4)
    bb = BetaBinomialPredictor(3)
    bb.update([0], [0.5], [1])
    assert bb.predict([0])[0] == pytest.approx((1 + 0.5) / 3)
    with pytest.raises(ValueError, match="successes must be <= trials"):
        bb.update([0], [1.5], [1])


def test_binner_load_rebuilds_dense_and_sorted_lookups():
    """Both id-lookup layouts are rebuilt from the saved ids and give the same bins."""
    small = PassAtKBinner(n_bins=3, window=4)
    small.update([5, 6, 5], [1, 0, 1])
    big = PassAtKBinner(n_bins=3, window=4)
    big.update([5, 10**15, 5], [1, 0, 1])
    for binner, ids in ((small, [5, 6, 7]), (big, [5, 10**15, 7])):
        fresh = PassAtKBinner(n_bins=3, window=4)
        fresh.load_state_dict(_json_round_trip(binner.state_dict()))
        assert np.array_equal(fresh.bins(ids), binner.bins(ids))
        assert np.array_equal(fresh.rates(ids), binner.rates(ids))
    bad = small.state_dict()
    bad["ids"] = np.array([5, 5])
    with pytest.raises(ValueError, match="repeated prompt ids"):
        PassAtKBinner(n_bins=3, window=4).load_state_dict(bad)
    bad = small.state_dict()
    bad["ring"] = bad["ring"] * 2
    with pytest.raises(ValueError, match="must be <= 1"):
        PassAtKBinner(n_bins=3, window=4).load_state_dict(bad)


@pytest.mark.parametrize("name", ["rollout-gdro", "sqrt-law"])
def test_controller_refuses_a_checkpoint_with_other_binning_options(name):
    """A controller's checkpoint records its binning and the binner's resolved options: another
    statistic, discount or binning is refused by name and the controller is unchanged."""
    a = _posterior_controller(name, "variance")
    for t in range(3):
        _controller_step(a, t)
    good = a.state_dict()
    for other, pattern in ((_posterior_controller(name, "mean"), "hyperparameter 'binning_options' differs"),
                           (make_controller(name, n_prompts=N_PROMPTS, mean_budget=4, lower=2, upper=7, seed=11,
                                            n_bins=5), "hyperparameter 'binning' differs")):
        before = other.state_dict()
        with pytest.raises(ValueError, match=pattern):
            other.load_state_dict(good)
        _states_equal(other.state_dict(), before)
    s = copy.deepcopy(good)
    s["components"]["binner"]["hyperparameters"]["discount"] = 0.5  # the component checks its own too
    b = _posterior_controller(name, "variance")
    before = b.state_dict()
    with pytest.raises(ValueError, match="hyperparameter 'discount' differs"):
        b.load_state_dict(s)
    _states_equal(b.state_dict(), before)

"""The peer controllers' defining behaviour and the protocol of sampling in rounds.

The shared contract (exact or under budget, bounds, checkpoints, bad input) runs for every
registered controller in ``test_controllers.py``; this file checks what makes each peer what it
is: DAPO never trains on an all-equal group and pays for the ones it drops; Reinforce-Ada stops
a prompt once it has its positives and negatives and trains on balanced groups with a baseline
from all of the step's rollouts; GRESO skips prompts with a zero-variance history with GRESO's
probability (never certainly: it keeps exploring); AR3PO stops a prompt at its first correct
response and reuses an earlier one; Knapsack RL's allocation is a brute-force optimum of its
knapsack. Plus the round driver and checkpoints taken in the middle of a step.
"""

from __future__ import annotations

import copy
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandits._state import plain
from bandits.controllers import (
    CONTROLLERS,
    make_controller,
    sample_step,
    supports_rounds,
)
from bandits.controllers.peers import knapsack_extras, rollout_value

ROUND_PEERS = sorted(n for n, c in CONTROLLERS.items() if c.samples_in_rounds)


def _fixed(table):
    """A generator whose prompt ``q`` returns the rewards ``table[q]`` cyclically, continuing
    where its previous rollouts of the step stopped (deterministic outcomes)."""
    seen: dict[int, int] = {}

    def generate(ids, counts):
        rewards, groups = [], []
        for i, (q, c) in enumerate(zip(ids.tolist(), counts.tolist())):
            seq = table[q]
            k = seen.get(q, 0)
            rewards += [seq[(k + j) % len(seq)] for j in range(c)]
            groups += [i] * c
            seen[q] = k + c
        return np.array(rewards, dtype=float), np.array(groups), None

    return generate


def _bernoulli(p, rng):
    def generate(ids, counts):
        g = np.repeat(np.arange(ids.size), counts)
        return (rng.random(g.size) < p[ids][g]).astype(float), g, None
    return generate


def _make(name, n_prompts=8, mean_budget=8, lower=2, upper=16, seed=0, **opts):
    return make_controller(name, n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed,
                           **opts)


# ------------------------------------------------------------------------------------------ the protocol
def test_single_round_controllers_make_one_generate_call_with_the_whole_batch():
    calls = []

    def generate(ids, counts):
        calls.append((ids, counts))
        g = np.repeat(np.arange(ids.size), counts)
        return np.zeros(g.size), g, "payload"

    ctrl = _make("uniform")
    ids = np.array([3, 1, 4, 1])
    step = sample_step(ctrl, ids, generate)
    assert not supports_rounds(ctrl) and len(calls) == 1 and np.array_equal(calls[0][0], ids)
    assert step.total == 32 == step.budget and step.selection.trivial and step.rounds[0].payload == "payload"
    assert np.array_equal(ctrl.extend(ids, step.counts, step.rewards, step.group_ids), np.zeros(4))


def test_sample_step_rejects_a_bad_generator():
    ctrl = _make("uniform")
    with pytest.raises(TypeError, match="generate must be callable"):
        sample_step(ctrl, [0, 1], None)
    with pytest.raises(TypeError, match=r"must return a tuple \(rewards, group_ids, payload\)"):
        sample_step(ctrl, [0, 1], lambda ids, c: np.zeros(int(c.sum())))
    with pytest.raises(ValueError, match="must return counts.sum"):
        sample_step(ctrl, [0, 1], lambda ids, c: (np.zeros(3), np.zeros(3, dtype=int), None))
    with pytest.raises(ValueError, match="exactly counts"):
        sample_step(ctrl, [0, 1], lambda ids, c: (np.zeros(16), np.zeros(16, dtype=int), None))
    with pytest.raises(TypeError, match="controller must be"):
        sample_step("uniform", [0, 1], lambda ids, c: None)


@pytest.mark.parametrize("name", ROUND_PEERS)
def test_checkpoint_in_the_middle_of_a_step_resumes_bit_for_bit(name):
    """Save after the plan's round and one extension, load into a fresh controller, and the rest
    of the step (further extensions, the selection) and the next steps are identical."""
    p = np.linspace(0.05, 0.95, 8)
    a = _make(name)
    for t in range(3):  # some history first
        step = sample_step(a, np.arange(8), _bernoulli(p, np.random.default_rng(t)))
        a.observe(step.prompt_ids, step.counts, step.rewards, step.group_ids)
    ids = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    rng = np.random.default_rng(99)
    gen = _bernoulli(p, rng)
    plan = a.plan(ids)
    r, g, _ = gen(ids, plan.counts)
    counts = plan.counts.copy()
    extra = a.extend(ids, counts, r, g)
    state = json.loads(json.dumps(plain(a.state_dict()), allow_nan=False))
    b = _make(name)
    b.load_state_dict(state)
    pos = np.flatnonzero(extra > 0)
    r2, g2, _ = gen(ids[pos], extra[pos])
    counts2 = counts + extra
    r_all, g_all = np.r_[r, r2], np.r_[g, pos[g2]]
    for ctrl in (a, b):
        ctrl.out = ctrl.extend(ids, counts2, r_all, g_all), ctrl.select(ids, counts2, r_all, g_all)
    assert np.array_equal(a.out[0], b.out[0])
    for f in ("train_mask", "baselines", "reuse"):
        u, v = getattr(a.out[1], f), getattr(b.out[1], f)
        assert (u is None) == (v is None) and (u is None or np.array_equal(u, v))
    a.observe(ids, counts2, r_all, g_all)
    b.observe(ids, counts2, r_all, g_all)
    assert json.dumps(plain(a.state_dict()), sort_keys=True) == json.dumps(plain(b.state_dict()), sort_keys=True)


# ------------------------------------------------------------------------------------------ DAPO
def test_dapo_never_trains_on_an_all_equal_group_and_pays_for_the_dropped_ones():
    """Pool of 12 prompts, T = 4 groups of 4: prompts 0-5 always fail or always succeed, 6-11
    are mixed. DAPO samples the first 4, drops them all, refills 4, drops 2 and refills 2 more:
    the selection holds exactly the 4 mixed groups, no rollout of an all-equal group, and the
    step spent 10 groups' rollouts."""
    table = {q: [0.0] for q in range(3)} | {q: [1.0] for q in range(3, 6)} | {q: [1.0, 0.0] for q in range(6, 12)}
    ctrl = _make("dapo-dynamic", n_prompts=12, mean_budget=4, lower=2, upper=8)
    ids = np.arange(12)
    step = sample_step(ctrl, ids, _fixed(table))
    assert ctrl.train_groups(12) == 4
    assert [r.positions.tolist() for r in step.rounds] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert step.total == 40 <= step.budget == 48
    mask = step.selection.train_mask
    trained = np.unique(step.group_ids[mask])
    assert trained.tolist() == [6, 7, 8, 9]
    for q in range(12):  # never a rollout of an all-equal group
        rows = step.group_ids == q
        if rows.any() and np.ptp(step.rewards[rows]) == 0:
            assert not mask[rows].any()
    assert mask.sum() == 16 and step.total - mask.sum() == 24  # dropped rollouts still counted


def test_dapo_stops_at_the_budget_or_the_round_limit_when_every_group_is_degenerate():
    ctrl = _make("dapo-dynamic", n_prompts=30, mean_budget=4, lower=2, upper=8, max_rounds=3)
    step = sample_step(ctrl, np.arange(30), _fixed({q: [0.0] for q in range(30)}))
    assert len(step.rounds) == 3 and not step.selection.train_mask.any()
    assert step.total == 4 * (10 + 10 + 10)  # T = 10 groups, refilled twice, nothing kept
    ctrl = _make("dapo-dynamic", n_prompts=6, mean_budget=4, lower=2, upper=8, train_fraction=1.0)
    step = sample_step(ctrl, np.arange(6), _fixed({q: [0.0] for q in range(6)}))
    assert step.total == 24 == step.budget and len(step.rounds) == 1  # the pool is exhausted


# ------------------------------------------------------------------------------------------ Reinforce-Ada
def test_reinforce_ada_stops_a_prompt_once_it_has_its_signal():
    """round_size 4, keep 4 (2 positives + 2 negatives): prompt 0 alternates 1, 0 and exits after
    the first round; prompt 1 always fails and is sampled round after round; prompt 2 finds its
    second positive in round 2. The selection keeps the first 2 positives and 2 negatives of the
    finished prompts and the first 4 rollouts of the one that never exits; baselines are the mean
    reward of all of a prompt's rollouts."""
    table = {0: [1.0, 0.0], 1: [0.0], 2: [0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]}
    ctrl = _make("reinforce-ada", n_prompts=3, mean_budget=8, lower=2, upper=16)
    assert (ctrl.round_size, ctrl.keep, ctrl.max_rounds) == (4, 4, 4)
    step = sample_step(ctrl, np.arange(3), _fixed(table))
    assert [r.positions.tolist() for r in step.rounds] == [[0, 1, 2], [1, 2], [1]]
    assert step.counts.tolist() == [4, 12, 8] and step.total == 24 <= step.budget
    sel = step.selection
    for q, want in ((0, [1.0, 1.0, 0.0, 0.0]), (1, [0.0] * 4), (2, [1.0, 1.0, 0.0, 0.0])):
        rows = np.flatnonzero(step.group_ids == q)
        assert sorted(step.rewards[rows[sel.train_mask[rows]]].tolist(), reverse=True) == want
    assert np.flatnonzero(sel.train_mask[step.group_ids == 1]).tolist() == [0, 1, 2, 3]  # generation order
    assert np.allclose(sel.baselines, [0.5, 0.0, 2 / 8])


def test_reinforce_ada_positive_variant_and_budget_split():
    """The positive exit rule stops at the first positive. When the budget left cannot pay a full
    round, it is split evenly over the prompts still active (never over the budget)."""
    table = {0: [1.0, 0.0, 0.0, 0.0], 1: [0.0], 2: [0.0, 0.0, 0.0, 0.0, 1.0]}
    ctrl = _make("reinforce-ada", n_prompts=3, mean_budget=8, lower=2, upper=16, variant="positive")
    step = sample_step(ctrl, np.arange(3), _fixed(table))
    assert step.counts.tolist() == [4, 12, 8]  # prompt 0 exits with its first positive; the budget (24) binds
    balanced = _make("reinforce-ada", n_prompts=3, mean_budget=8, lower=2, upper=16)
    assert sample_step(balanced, np.arange(3), _fixed(table)).counts[0] == 8  # needs a second positive
    tight = _make("reinforce-ada", n_prompts=4, mean_budget=5, lower=2, upper=16, round_size=3, max_rounds=10)
    step = sample_step(tight, np.arange(4), _fixed({q: [0.0] for q in range(4)}))
    assert step.total == 20 == step.budget and sorted(step.counts.tolist()) == [5, 5, 5, 5]


# ------------------------------------------------------------------------------------------ GRESO
def test_greso_skips_zero_variance_history_with_an_exploration_probability():
    """After k all-correct visits a prompt is skipped with probability 1 - max(p_easy^k, 0.01),
    after k all-wrong visits with 1 - max(p_hard^k, 0.01); a prompt with a mixed last visit or no
    history never is. Empirical skip frequencies over 4000 plans match within 4.5 standard
    errors, and a prompt with a long streak is still sampled about 1 % of the time."""
    ctrl = _make("greso", n_prompts=6, mean_budget=4, lower=2, upper=16, adapt_step=0.0)
    visits = {0: [1.0] * 4, 1: [0.0] * 4, 2: [1.0, 0.0, 1.0, 1.0], 3: [1.0] * 4}
    for k in range(3):  # prompt 0, 1: 3 visits; prompt 3: 30 visits
        ctrl.observe([0, 1, 2], [4, 4, 4], np.r_[visits[0], visits[1], visits[2]], np.repeat([0, 1, 2], 4))
    for _ in range(30):
        ctrl.observe([3], [4], visits[3], [0, 0, 0, 0])
    want = np.array([1 - 0.5**3, 1 - 0.5**3, 0.0, 0.99, 0.0])
    assert np.allclose(ctrl.skip_probabilities([0, 1, 2, 3, 4]), want)
    ids = np.array([0, 1, 2, 3, 4])
    skipped = np.zeros(5)
    trials = 4000
    for _ in range(trials):
        c = ctrl.plan(ids).counts
        assert c.sum() == 20 and (c[c > 0] >= 2).all()
        skipped += c == 0
    freq = skipped / trials
    se = np.sqrt(want * (1 - want) / trials)
    assert np.all(np.abs(freq - want) <= 4.5 * se + 1e-12)
    assert 0 < trials - skipped[3] < 0.03 * trials  # still explored (floor 1 %)


def test_greso_adapts_its_bases_and_drops_zero_variance_groups():
    ctrl = _make("greso", n_prompts=4, mean_budget=4, lower=2, upper=16)
    ids = np.arange(4)
    r = np.r_[np.zeros(4), np.zeros(4), np.ones(4), [1.0, 0.0, 0.0, 1.0]]
    g = np.repeat(ids, 4)
    ctrl.observe(ids, [4] * 4, r, g)  # first visit: no history yet, the bases stay
    assert (ctrl.p_easy, ctrl.p_hard) == (0.5, 0.5)
    ctrl.observe(ids, [4] * 4, r, g)  # hard share 1/2 >= 1/6 and easy share 1/4 >= 1/12: skip more
    assert ctrl.p_hard == pytest.approx(0.49) and ctrl.p_easy == pytest.approx(0.49)
    sel = ctrl.select(ids, [4] * 4, r, g)
    assert sel.train_mask.tolist() == [False] * 12 + [True] * 4
    assert ctrl.hard_streak[:2].tolist() == [2, 2] and ctrl.easy_streak[2] == 2 and ctrl.easy_streak[3] == 0


# ------------------------------------------------------------------------------------------ AR3PO
def test_ar3po_stops_a_prompt_at_its_first_correct_response_and_reuses_earlier_ones():
    """stage_size 4: prompt 0 is correct in its first stage and stops; prompt 1 never is and is
    sampled stage after stage until the budget is spent; prompt 2 becomes correct in stage 2.
    At the next step prompt 2 fails throughout and has a correct response from the first step:
    it is flagged for reuse; prompt 1 never had one and is not."""
    ctrl = _make("ar3po", n_prompts=3, mean_budget=8, lower=2, upper=16)
    step = sample_step(ctrl, np.arange(3), _fixed({0: [0.0, 1.0], 1: [0.0], 2: [0.0] * 5 + [1.0]}))
    assert step.counts.tolist() == [4, 12, 8] and step.total == 24 == step.budget
    assert step.selection.train_mask.all() and not step.selection.reuse.any()
    ctrl.observe(step.prompt_ids, step.counts, step.rewards, step.group_ids)
    assert ctrl.has_correct.tolist() == [True, False, True]
    step = sample_step(ctrl, np.arange(3), _fixed({0: [1.0], 1: [0.0], 2: [0.0]}))
    assert step.selection.reuse.tolist() == [False, False, True]
    off = _make("ar3po", n_prompts=3, mean_budget=8, lower=2, upper=16, reuse=False)
    off.observe([2], [2], [1.0, 0.0], [0, 0])
    assert not off.select([2], [2], [0.0, 0.0], [0, 0]).reuse.any()


# ------------------------------------------------------------------------------------------ Knapsack RL
def _brute_force(p, units, lower, upper):
    """Every split of ``units`` extra rollouts over the prompts, each within ``upper - lower``."""
    best, arg = -np.inf, None
    cap = int(upper) - lower
    for ks in itertools.product(range(min(cap, units) + 1), repeat=len(p)):
        if sum(ks) != min(units, cap * len(p)):
            continue
        v = float(np.sum(rollout_value(lower + np.array(ks), p)))
        if v > best + 1e-15:
            best, arg = v, ks
    return best, arg


@given(p=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4), units=st.integers(0, 12),
       lower=st.integers(1, 3), width=st.integers(1, 5))
def test_knapsack_allocation_equals_brute_force(p, units, lower, width):
    """Knapsack RL (arXiv:2509.25849) value v(n, p) = (1 - p^n - (1 - p)^n) p (1 - p)^2 of n
    rollouts: the greedy-by-increments split of knapsack_extras attains the brute-force maximum
    of sum_i v(lower + k_i, p_i) over all splits with sum k_i = units (or every prompt full),
    0 <= k_i <= width."""
    p = np.array(p)
    upper = lower + width
    k = knapsack_extras(p, units, lower, upper)
    best, _ = _brute_force(p, units, lower, upper)
    assert k.sum() == min(units, width * p.size) and k.min() >= 0 and k.max() <= width
    assert float(np.sum(rollout_value(lower + k, p))) == pytest.approx(best, rel=1e-12, abs=1e-15)


def test_knapsack_controller_plan_follows_its_rule():
    """With valid estimates p = (0.5, 0.25, 0.875, 0, 1) after 16 rollouts each: the p = 0 and p = 1
    prompts keep lower, the three with 0 < p < 1 get lower plus the exact knapsack of the rest
    (fallback off); with the fallback the surplus beyond their need goes to the p = 0 prompt.
    Unseen prompts get the uniform share."""
    ctrl = _make("knapsack", n_prompts=6, mean_budget=6, lower=2, upper=12, fallback=False)
    p = np.array([0.5, 0.25, 0.875, 0.0, 1.0])
    ids = np.arange(5)
    r = np.concatenate([(np.arange(16) < 16 * q).astype(float) for q in p])
    ctrl.observe(ids, [16] * 5, r, np.repeat(ids, 16))
    assert np.allclose(ctrl.predict(ids), p) and ctrl.predict([5]).tolist() == [0.5]
    plan = ctrl.plan(ids)
    extra = knapsack_extras(p[:3], 30 - 10, 2, 12)
    assert plan.counts.tolist() == [*(2 + extra).tolist(), 2, 2]
    best, _ = _brute_force(p[:3], 20, 2, 12)
    assert float(np.sum(rollout_value(plan.counts[:3], p[:3]))) == pytest.approx(best, rel=1e-12)
    fb = _make("knapsack", n_prompts=6, mean_budget=6, lower=2, upper=12, alpha=0.5)
    fb.observe(ids, [16] * 5, r, np.repeat(ids, 16))
    need = sum(max(0, min(12, math.ceil(math.log(0.5) / math.log(max(q, 1 - q)))) - 2) for q in p[:3])
    c = fb.plan(ids).counts
    # the surplus 20 - need = 15 fills the p = 0 prompt up to upper = 12; the 5 it cannot take go
    # back to the knapsack over the 0 < p < 1 prompts
    assert need == 5 and c[3] == 12 and c[4] == 2 and c[:3].sum() == 6 + need + 5
    mixed = fb.plan([5, 0, 1, 3]).counts  # prompt 5 unseen: the uniform share; the surplus to prompt 3 (p = 0)
    assert mixed[0] == 6 and mixed.sum() == 24 and mixed[3] > 2


def test_knapsack_estimate_uses_the_last_visit_or_the_recent_rewards():
    """Last visit with >= buffer_length rollouts: its mean; otherwise the mean of the last
    buffer_length rewards across visits (most recent first); valid after min_history rollouts."""
    ctrl = _make("knapsack", n_prompts=2, mean_budget=4, lower=2, upper=8, buffer_length=4, min_history=3)
    ctrl.observe([0], [2], [1.0, 1.0], [0, 0])
    assert ctrl.predict([0]).tolist() == [0.5]  # 2 < min_history: not valid yet
    ctrl.observe([0], [3], [0.0, 0.0, 1.0], [0, 0, 0])
    assert ctrl.recent[0].tolist() == [1.0, 0.0, 0.0, 1.0] and ctrl.predict([0])[0] == pytest.approx(0.5)
    ctrl.observe([0, 0], [5, 1], [0.0] * 5 + [1.0], [0] * 5 + [1])  # two visits in one batch, in order
    assert ctrl.last_count[0] == 1 and ctrl.recent[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    ctrl.observe([0], [6], [1.0] * 5 + [0.0], [0] * 6)
    assert ctrl.predict([0])[0] == pytest.approx(5 / 6)


def test_peer_options_are_validated():
    cases = [
        ("dapo-dynamic", {"group_size": 9}, ValueError, r"group_size must be in \[lower, min\(upper, floor"),
        ("dapo-dynamic", {"train_fraction": 0.0}, ValueError, r"train_fraction must be in \(0, 1\]"),
        ("dapo-dynamic", {"max_rounds": 0}, ValueError, "max_rounds must be >= 1"),
        ("reinforce-ada", {"variant": "pos"}, ValueError, r"variant must be one of \['balanced', 'positive'\]"),
        ("reinforce-ada", {"keep": 1}, ValueError, "keep must be >= 2"),
        ("reinforce-ada", {"positive_threshold": 1.0}, ValueError, r"positive_threshold must be in \[0, 1\)"),
        ("reinforce-ada", {"global_baseline": 1}, TypeError, "global_baseline must be a bool"),
        ("ar3po", {"stage_size": 1}, ValueError, "stage_size must be in"),
        ("ar3po", {"max_stages": 0}, ValueError, "max_stages must be >= 1"),
        ("greso", {"p_easy": 0.99}, ValueError, r"p_easy must be in \[min_p, max_p\]"),
        ("greso", {"min_p": 0.6, "max_p": 0.5}, ValueError, "min_p must be <= max_p"),
        ("greso", {"floor": 0.0}, ValueError, r"floor must be in \(0, 1\]"),
        ("knapsack", {"alpha": 1.0}, ValueError, r"alpha must be in \(0, 1\)"),
        ("knapsack", {"buffer_length": 0}, ValueError, "buffer_length must be >= 1"),
    ]
    for name, opts, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            _make(name, n_prompts=4, mean_budget=4, lower=2, upper=8, **opts)


def test_round_controllers_respect_the_budget_with_a_fractional_mean_budget():
    """mean_budget 9/2 and a batch of 6: at most 27 rollouts over all rounds, whatever happens."""
    rng = np.random.default_rng(5)
    p = rng.random(10)
    for name in ROUND_PEERS:
        ctrl = _make(name, n_prompts=10, mean_budget=4.5, lower=2, upper=9)
        for _ in range(20):
            ids = rng.integers(0, 10, size=6)
            step = sample_step(ctrl, ids, _bernoulli(p, rng))
            assert step.total <= 27 and step.budget == 27 and step.counts.max() <= 9
            ctrl.observe(ids, step.counts, step.rewards, step.group_ids)
        assert copy.deepcopy(ctrl).step == 20

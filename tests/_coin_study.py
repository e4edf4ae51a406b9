"""A small, real study used to test the study runner: is a biased coin biased?

Each task flips a coin with success probability ``config["p"]`` ``config["flips"]`` times from its
seed and returns the success rate; the claim "the coin favours heads" holds when the 95 % CI of the
rate lies above 1/2. Deterministic in the seeds, cheap, and able to fail (set ``p = 0.5``).

A second, comparative claim ("the coin beats a fair coin", paired difference against a fair coin
flipped from the same seed) carries a positive control: a coin of known bias ``control_p`` against
the same fair coin. With ``control_p = 0.5`` the regime is a null regime whose control cannot show
any effect, and the verdict must be ``under-powered``.
"""

import numpy as np

from solvers.claims import (
    Figure,
    Panel,
    Series,
    StudyResult,
    Table,
    make_claim,
    mean_ci,
)

NAME = "coin"
TITLE = "A biased coin (runner self-test)"


def config(scale):
    return {"seeds": 3 if scale == "quick" else 5, "p": 0.7, "flips": 200, "fail_seed": None, "control_p": 0.9}


def tasks(config, seeds):
    return [{"seed": s, "label": f"coin seed {s}"} for s in seeds]


def run_task(task, config):
    if config["fail_seed"] is not None and task["seed"] == config["fail_seed"]:
        raise RuntimeError("deliberate failure")
    rng = np.random.default_rng(task["seed"])
    u = rng.random((3, config["flips"]))
    flips = u[0] < config["p"]
    fair = float((u[1] < 0.5).mean())
    control = float((u[2] < config.get("control_p", 0.9)).mean())
    return {"rate": float(flips.mean()), "running": (np.cumsum(flips) / np.arange(1, flips.size + 1)).tolist(),
            "vs_fair": float(flips.mean()) - fair, "control_vs_fair": control - fair}


def summarize(config, seeds, tasks, results):
    rate = mean_ci([r["rate"] for r in results])
    claim = make_claim("coin.biased", "self-test", "the coin favours heads", "success rate", rate, greater=0.5)
    beats = make_claim("coin.beats_fair", "self-test", "the coin beats a fair coin", "paired rate difference",
                       mean_ci([r["vs_fair"] for r in results]), greater=0.0,
                       control=mean_ci([r["control_vs_fair"] for r in results]),
                       control_label=f"coin p={config.get('control_p', 0.9)} - fair coin")
    running = np.array([r["running"] for r in results])
    est = [mean_ci(col) for col in running.T]
    x = np.arange(1, running.shape[1] + 1)
    fig = Figure("running", "Running success rate", (
        Panel("rate", "flips", "success rate", (
            Series("mean over seeds", x, [e.mean for e in est], [e.low for e in est], [e.high for e in est]),
            Series("final", [x[-1]], [rate.mean], [rate.low], [rate.high], style="points"),
        ), hlines=((0.5, "fair"),)),
    ), ncols=1)
    table = Table("rates", ("seed", "rate"), tuple((s, r["rate"]) for s, r in zip(seeds, results)))
    return StudyResult(NAME, TITLE, f"Mean rate {rate.mean:.3f} over {len(seeds)} seeds.", config, seeds,
                       (claim, beats), (table,), (fig,), {"rates": [r["rate"] for r in results]})

"""One colour and line style per method across every figure (benchmarks.styles) and reference-line
labels in the legend, not on the data (benchmarks.study_report.render_figure)."""

from __future__ import annotations

import itertools

import pytest

from benchmarks.styles import (
    FALLBACK_COLOURS,
    METHOD_STYLES,
    Style,
    canonical_method,
    figure_styles,
    reference_style,
)

CANONICAL = ("uniform", "uniform-2x", "exact-gradient", "vip", "vip-paper", "oracle", "inverse-accuracy",
             "inverse-variance", "skip-saturated", "rollout-gdro", "prompt-gdro", "gdro-coupled", "sqrt-law",
             "knapsack", "reinforce-ada", "greso", "dapo-dynamic", "ar3po", "GRPO", "DRO", "DRRO hard", "DRRO soft",
             "DRRO soft+dyn", "REBEL", "Wasserstein", "KL", "chi2", "GP", "ridge", "moving average",
             "beta-binomial", "oracle-informed")
# methods that appear in the same figures: their colours must differ
GROUPS = (
    ("uniform", "uniform-2x", "exact-gradient", "vip", "vip-paper", "oracle", "oracle-informed", "inverse-accuracy",
     "inverse-variance", "skip-saturated", "rollout-gdro", "prompt-gdro", "gdro-coupled", "sqrt-law", "knapsack",
     "reinforce-ada", "greso", "dapo-dynamic", "ar3po"),
    ("GRPO", "GRPO+KL", "DRO", "DRRO hard", "DRRO soft", "DRRO soft+dyn"),
    ("REBEL", "Wasserstein", "KL", "chi2"),
    ("GP", "ridge", "moving average", "beta-binomial"),
)


def _ls(style: Style, own: str = "solid") -> object:
    return style.linestyle if style.linestyle is not None else {"solid": "-", "dashed": "--", "dotted": ":"}[own]


def test_every_canonical_method_has_a_style_and_names_itself():
    for name in CANONICAL:
        assert name in METHOD_STYLES
        assert canonical_method(name) == (name, True)


def test_no_two_methods_share_colour_and_line_style_except_grpo_and_uniform():
    """Plain GRPO is uniform allocation: one baseline style for both names, by design."""
    pairs = {}
    for name, st in METHOD_STYLES.items():
        pairs.setdefault(st, []).append(name)
    shared = [names for names in pairs.values() if len(names) > 1]
    assert shared == [["uniform", "GRPO"]]


@pytest.mark.parametrize("group", GROUPS)
def test_methods_shown_together_have_distinct_colours(group):
    colours = [METHOD_STYLES[n].colour for n in group]
    distinct = {c for n, c in zip(group, colours) if n not in ("uniform-2x", "vip-paper", "oracle-informed")}
    assert len(distinct) == len([n for n in group if n not in ("uniform-2x", "vip-paper", "oracle-informed")])


@pytest.mark.parametrize("label, name, exact", [
    ("coupled GDRO", "gdro-coupled", True), ("GRPO (uniform)", "GRPO", True), ("DRO (hard)", "DRO", True),
    ("DRRO soft + dynamic", "DRRO soft+dyn", True), ("DRO-REBEL chi-square", "chi2", True),
    ("DRO-REBEL KL", "KL", True), ("GRPO + KL penalty", "GRPO+KL", True), ("Rollout_GDRO", "rollout-gdro", True),
    ("exact gradient (no rollout noise)", "exact-gradient", True), ("moving average (1024)", "moving average", True),
    ("Prompt-GDRO weights", "prompt-gdro", False), ("compute-matched uniform", "uniform", False),
    ("vip-paper", "vip-paper", True), ("bin 3", None, False), ("easy", None, False),
])
def test_canonical_method_reads_the_labels_studies_use(label, name, exact):
    assert canonical_method(label) == (name, exact)


def test_a_method_keeps_its_style_in_every_figure():
    """The same label gets the same colour and line style whatever else the figure holds."""
    fig_a = figure_styles([("uniform", "solid"), ("vip", "solid"), ("inverse-accuracy", "dashed"), ("bin 1", "solid")])
    fig_b = figure_styles([("inverse-accuracy", "solid"), ("rollout-gdro", "solid"), ("vip", "dotted"),
                           ("dataset share", "solid")])
    for label in ("vip", "inverse-accuracy"):
        assert fig_a[label] == fig_b[label] == METHOD_STYLES[canonical_method(label)[0]]


def test_variants_share_the_method_colour_with_another_line_style():
    st = figure_styles([("Prompt-GDRO", "solid"), ("Prompt-GDRO weights", "solid"),
                        ("data (under Prompt-GDRO)", "dashed")])
    colours = {s.colour for s in st.values()}
    assert colours == {METHOD_STYLES["prompt-gdro"].colour}
    assert len({s.linestyle for s in st.values()}) == 3


def test_no_colour_and_style_pair_repeats_and_fallback_colours_are_never_reused():
    labels = [("uniform", "solid"), ("GRPO", "solid"), ("GP (binomial noise)", "solid"), ("GP (paper)", "solid"),
              ("vip", "solid"), ("vip-paper", "solid")]
    labels += [(f"other series {k}", "solid") for k in range(2)]  # not a numbered family: only two
    labels += [(name, "solid") for name in ("easy", "medium", "hard", "dataset share", "initial policy",
                                           "trained policy", "mean success, all prompts")]
    st = figure_styles(labels)
    assert len(st) == len(labels)
    drawn = [(s.colour, _ls(s)) for s in st.values()]
    assert len(set(drawn)) == len(drawn)
    fallback = [st[lbl].colour for lbl, _ in labels if canonical_method(lbl)[0] is None]
    others = [st[lbl].colour for lbl, _ in labels if canonical_method(lbl)[0] is not None]
    assert len(set(fallback)) == len(fallback) and not set(fallback) & set(others)
    assert set(fallback) <= set(FALLBACK_COLOURS)
    again = figure_styles(labels)  # deterministic
    assert again == st


def test_numbered_families_get_an_ordered_ramp():
    st = figure_styles([(f"bin {k}", "solid") for k in (3, 0, 2, 1)])
    assert len({s.colour for s in st.values()}) == 4
    assert st["bin 0"].colour == "#440154"  # the dark end of the ramp for the smallest number


def test_many_labels_still_never_repeat_a_pair():
    labels = [(f"series {chr(97 + k)}{chr(97 + j)}", "solid") for k, j in itertools.product(range(5), range(6))]
    st = figure_styles(labels)
    drawn = [(s.colour, _ls(s)) for s in st.values()]
    assert len(set(drawn)) == len(labels)


def test_reference_lines_use_the_method_colour_or_grey():
    assert reference_style("uniform", 0) == Style(METHOD_STYLES["uniform"].colour, ":")
    a, b = reference_style("noise = signal", 0), reference_style("claim band", 1)
    assert a != b and a.colour in ("#555555", "#999999")


def test_render_figure_puts_reference_labels_in_the_legend_not_on_the_data(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from benchmarks.study_report import render_figure
    from solvers.claims import Figure, Panel, Series

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    fig = Figure("f", "t", (
        Panel("a", "x", "y", (Series("vip", (1, 2, 10), (1, 2, 3)), Series("uniform", (1, 2, 10), (1, 1, 1))),
              xscale="log", hlines=((0.5, "noise = signal"), (1.0, "uniform"))),
        Panel("b", "x", "y", (Series("Prompt-GDRO weights", (1, 2), (0, 1)),), hlines=((0.0, "noise = signal"),)),
    ))
    render_figure(fig, tmp_path / "f.png")
    (f,) = kept
    legend = [t.get_text() for t in f.legends[0].get_texts()]
    assert legend == ["vip", "uniform", "Prompt-GDRO weights", "noise = signal", "uniform (reference)"]
    assert all(not ax.texts for ax in f.axes)  # no label written on the data
    ax = f.axes[0]
    (vip_line,) = [ln for ln in ax.get_lines() if ln.get_label() == "vip"]
    assert vip_line.get_color() == METHOD_STYLES["vip"].colour
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels and not any("times" in t for t in labels)  # no 3x10^0 on a short log axis
    monkeypatch.undo()
    plt.close(f)


def test_bars_take_a_method_style_only_when_they_are_the_method():
    st = figure_styles([("VIP objective (projected)", "solid", "bar"), ("exact RLOO batch variance", "solid", "bar"),
                        ("vip", "solid", "line"), ("uniform", "solid", "bar")])
    assert st["uniform"] == METHOD_STYLES["uniform"]
    assert st["VIP objective (projected)"].colour != METHOD_STYLES["vip"].colour
    assert st["VIP objective (projected)"].colour in FALLBACK_COLOURS


def test_a_method_reference_line_never_looks_like_a_series_of_the_figure():
    taken = {(METHOD_STYLES["uniform"].colour, ":")}  # e.g. "compute-matched uniform", dotted black
    st = reference_style("uniform", 0, taken)
    assert st.colour == METHOD_STYLES["uniform"].colour and (st.colour, st.linestyle) not in taken

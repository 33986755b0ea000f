"""The report's figures, drawn with matplotlib's Agg backend (no display needed): each
function returns a matplotlib Figure (:func:`all_figures`, which tests inspect), and
:func:`all_plots` turns them into PNG bytes to embed in the HTML as data URIs.

Readable at a glance: every axis is labelled with its unit, every axis that counts has
integer ticks, intervals drawn side by side never overlap, every bar carries its number,
and colours come from the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies; Okabe & Ito 2008), with hatching as a second cue where verdicts are stacked.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from scanner.report.aggregate import Analysis, Table  # noqa: E402

# Okabe-Ito
VERMILLION, ORANGE, GREEN, BLUE, SKY, GREY, BLACK = (
    "#D55E00",
    "#E69F00",
    "#009E73",
    "#0072B2",
    "#56B4E9",
    "#999999",
    "#000000",
)
COLOURS = {"flag": VERMILLION, "review": ORANGE, "clear": GREEN, "unscannable": GREY}
HATCHES = {"flag": "//", "review": "..", "clear": "", "unscannable": "xx"}
DPI = 110

plt.rcParams.update(
    {
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "svg.fonttype": "none",
        "hatch.linewidth": 0.6,
        "hatch.color": "#00000055",
    }
)


def _png(fig: Figure) -> Figure:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _fig(width: float, height: float) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height))
    return fig, ax


def verdicts_plot(verdicts: dict[str, int]) -> Figure:
    names = list(verdicts)
    values = [verdicts[n] for n in names]
    fig, ax = _fig(7, 2.6)
    bars = ax.barh(
        names[::-1],
        values[::-1],
        color=[COLOURS[n] for n in names[::-1]],
        hatch=[HATCHES[n] for n in names[::-1]],
        edgecolor="#333333",
        linewidth=0.5,
    )
    ax.bar_label(bars, labels=[f"{v:,}" for v in values[::-1]], padding=3)
    ax.set_xlabel("results (files and archive members)")
    ax.set_title("Verdicts")
    ax.set_xlim(0, max(values + [1]) * 1.15)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", visible=False)
    return fig


def prevalence_plot(prevalence: dict[str, dict]) -> Figure:
    """Point estimates with 95% Wilson intervals, in percent."""
    labels = {"flag": "flag", "review": "review", "flag_or_review": "flag or review"}
    keys = [k for k in labels if k in prevalence and prevalence[k]["n"]]
    fig, ax = _fig(7, 0.7 + 0.55 * max(len(keys), 1))
    for i, key in enumerate(keys[::-1]):
        p = prevalence[key]
        est, (lo, hi) = 100 * p["estimate"], (100 * p["ci95"][0], 100 * p["ci95"][1])
        colour = COLOURS.get(key, BLUE)
        ax.errorbar(
            [est],
            [i],
            xerr=[[est - lo], [hi - est]],
            fmt="o",
            color=colour,
            ecolor=colour,
            capsize=5,
            markersize=7,
            linewidth=2,
        )
        ax.annotate(
            f"{est:.2f}%  [{lo:.2f}, {hi:.2f}]",
            (hi, i),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ax.set_yticks(range(len(keys)), [labels[k] for k in keys[::-1]])
    ax.set_ylim(-0.6, len(keys) - 0.4)
    top = max([100 * prevalence[k]["ci95"][1] for k in keys] + [1.0])
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("prevalence among scannable results (%), with 95% Wilson interval")
    ax.set_title("Prevalence")
    ax.grid(axis="y", visible=False)
    return fig


def scores_plot(score_values: dict[str, list[float]], review_thresholds: Sequence[float]) -> Figure | None:
    """Histogram of each result's highest component score, stacked by verdict, with the
    review threshold(s) marked. None when no record has scores."""
    if not any(score_values.values()):
        return None
    fig, ax = _fig(7, 3.2)
    order = [v for v in ("clear", "review", "flag") if score_values.get(v)]
    bins = [i / 20 for i in range(21)]
    # side by side on a log scale: clear results pile up near 0 and would flatten the others
    ax.hist(
        [score_values[v] for v in order],
        bins=bins,
        stacked=False,
        log=True,
        color=[COLOURS[v] for v in order],
        hatch=[HATCHES[v] for v in order],
        label=order,
        edgecolor="#333333",
        linewidth=0.4,
    )
    _mark_thresholds(ax, [(t, f"review threshold {t:.2f}") for t in review_thresholds], "left")
    ax.set_xlim(0, 1)
    ax.set_xlabel("highest component probability (classifier, calibrated)")
    ax.set_ylabel("results (log scale)")
    ax.set_ylim(bottom=0.8)  # counts: the log axis starts below 1 and ticks at 1, 10, 100...
    ax.set_title("Classifier scores")
    ax.legend(title="verdict", frameon=False, loc="upper right", bbox_to_anchor=(1, 0.9))
    return fig


def _mark_thresholds(ax, marks: list[tuple[float, str]], side: str) -> None:  # noqa: ANN001 - a matplotlib Axes
    """A dashed vertical line per threshold, labelled at the top on the given side of it."""
    for value, label in marks:
        ax.axvline(value, color=BLACK, linestyle="--", linewidth=1.2)
        ax.annotate(label, (value, 1), xycoords=("data", "axes fraction"), xytext=(4 if side == "left" else -4, -12),
                    textcoords="offset points", fontsize=9, ha=side)  # fmt: skip


def distances_plot(distances: list[float], thresholds: Sequence[float]) -> Figure | None:
    """Best near-duplicate distance of flagged results, with the distance threshold."""
    if not distances:
        return None
    fig, ax = _fig(7, 2.8)
    top = max(list(thresholds) + distances) * 1.1 or 0.1
    ax.hist(distances, bins=20, range=(0, top), color=VERMILLION, hatch="//", edgecolor="#333333", linewidth=0.4)
    _mark_thresholds(ax, [(t, f"distance threshold {t:g}") for t in thresholds], "right")
    ax.set_xlabel("descriptor distance to the matched signature (unitless; 0 = same shape)")
    ax.set_ylabel("flagged results")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Near-duplicate match distances")
    return fig


def time_plot(table: Table, period: str, field: str) -> Figure | None:
    rows = [r for r in table.rows if r[0] != "undated"]
    if len(rows) < 2:
        return None  # one period is no trend: the report says so and shows the table
    c = {name: i for i, name in enumerate(table.columns)}
    x = list(range(len(rows)))
    labels = [r[c["period"]] for r in rows]
    fig, (ax1, ax2) = plt.subplots(
        2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [1, 1.3], "hspace": 0.3}
    )
    ax1.bar(x, [r[c["scannable"]] for r in rows], color=SKY, edgecolor="#333333", linewidth=0.4)
    ax1.set_ylabel(f"scannable results\nper {period}")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_title(f"Over time (by {'scan time' if field == 'scanned' else 'file modification time'}, UTC)")
    ax2.set_xlim(-0.5, len(x) - 0.5)
    capsize = _side_by_side_capsize(fig, ax2, len(x), OFFSET)
    for name, offset in (("flag", -OFFSET), ("review", OFFSET)):
        est = [None if r[c[f"{name}_share"]] is None else 100 * r[c[f"{name}_share"]] for r in rows]
        keep = [i for i, e in enumerate(est) if e is not None]
        if not keep:
            continue
        lo = [est[i] - 100 * rows[i][c[f"{name}_ci95_lo"]] for i in keep]
        hi = [100 * rows[i][c[f"{name}_ci95_hi"]] - est[i] for i in keep]
        ax2.errorbar(
            [x[i] + offset for i in keep],
            [est[i] for i in keep],
            yerr=[lo, hi],
            fmt="o-" if len(keep) > 1 else "o",
            color=COLOURS[name],
            capsize=capsize,
            label=name,
            markersize=min(5.0, 2 * capsize + 1),
            linewidth=1.2,
        )
    ax2.set_ylabel("prevalence (%)\nwith 95% interval")
    ax2.set_ylim(bottom=0)
    ax2.legend(frameon=False, ncols=2, loc="lower left", bbox_to_anchor=(0, 1.0))
    step = max(1, len(x) // 12)
    ax2.set_xticks(
        x[::step],
        labels[::step],
        rotation=30 if len(x) > 4 else 0,
        ha="right" if len(x) > 4 else "center",
        rotation_mode="anchor",
    )
    ax2.set_xlabel({"week": "ISO week", "day": "day", "month": "month"}.get(period, period))
    return fig


OFFSET = 0.2
"""Flag and review intervals of one period are drawn this far (in periods) either side of it."""


def _side_by_side_capsize(fig: Figure, ax: plt.Axes, periods: int, offset: float) -> float:
    """Cap size (points) that keeps the flag and review error bars of one period apart: each
    cap's half width (and marker radius) stays under half the gap between the two bars, so they
    never overlap however many periods share the axis (which spans -0.5 to periods - 0.5)."""
    width_points = fig.get_figwidth() * ax.get_position().width * 72
    gap_points = 2 * offset * width_points / max(periods, 1)
    return max(0.0, min(3.0, gap_points / 2 - 1.0))


def breakdown_plot(table: Table, title: str, label: str, top: int = 12) -> Figure | None:
    """Stacked horizontal bars of verdicts per group (the largest ``top`` groups)."""
    if not table.rows:
        return None
    c = {name: i for i, name in enumerate(table.columns)}
    rows = table.rows[:top][::-1]
    fig, ax = _fig(7, 0.9 + 0.38 * len(rows))
    names = [str(r[0]) for r in rows]
    left = [0] * len(rows)
    for v in ("flag", "review", "clear", "unscannable"):
        vals = [r[c[v]] for r in rows]
        if not any(vals):
            continue
        ax.barh(names, vals, left=left, color=COLOURS[v], hatch=HATCHES[v], label=v, edgecolor="#333333", linewidth=0.4)
        left = [a + b for a, b in zip(left, vals, strict=True)]
    for i, total in enumerate(left):
        ax.annotate(f"{total:,}", (total, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set_xlim(0, max(left + [1]) * 1.12)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("results")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(axis="y", visible=False)
    ax.legend(title="verdict", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
    return fig


def counts_plot(labels: list[str], values: list[int], title: str, xlabel: str, colour: str) -> Figure | None:
    if not values:
        return None
    fig, ax = _fig(7, 0.9 + 0.36 * len(values))
    bars = ax.barh(labels[::-1], values[::-1], color=colour, edgecolor="#333333", linewidth=0.4)
    ax.bar_label(bars, labels=[f"{v:,}" for v in values[::-1]], padding=3, fontsize=9)
    ax.set_xlim(0, max(values) * 1.15)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="y", visible=False)
    return fig


def all_figures(a: Analysis) -> dict[str, Figure | None]:
    """Every figure of the report by name (None: nothing to draw; the report says why)."""
    s, t = a.summary, a.tables
    sig = t["top_signatures"]
    reasons = t["unscannable_by_reason"]
    return {
        "verdicts": verdicts_plot(s["verdicts"]),
        "prevalence": prevalence_plot(s["prevalence"]) if s["scannable"] else None,
        "scores": scores_plot(a.score_values, s["thresholds"]["review"]["values"]),
        "distances": distances_plot(a.distances, s["thresholds"]["distance"]["values"]),
        "over_time": time_plot(t["over_time"], s["time"]["period"], s["time"]["field"]),
        "by_format": breakdown_plot(t["by_format"], "By file format", "format"),
        "by_source": breakdown_plot(t["by_source"], "By source kind", "source"),
        "by_folder": breakdown_plot(t["by_folder"], "By top-level folder (largest 12)", "folder")
        if "by_folder" in t
        else None,
        "signatures": counts_plot(
            [f"{r[0]} ({r[1]})" for r in sig.rows[:12]],
            [r[2] for r in sig.rows[:12]],
            "Top matched signatures",
            "results matching",
            VERMILLION,
        ),
        "unscannable": counts_plot(
            [r[0] for r in reasons.rows], [r[1] for r in reasons.rows], "Unscannable results by reason", "results", GREY
        ),
    }


def all_plots(a: Analysis) -> dict[str, bytes | None]:
    """Every figure of the report as PNG bytes (None: nothing to draw)."""
    return {name: None if fig is None else _png(fig) for name, fig in all_figures(a).items()}


def threshold_plot(table: Sequence[dict], current: float | None = None, title: str = "") -> Figure:
    """``meshscan evaluate --plot``: the share of component files and of benign files sent to
    review at each review threshold (rows of the evaluation's ``threshold_table``), benign on a
    log scale so that 0.1% and 1% are told apart, with the current threshold marked."""
    fig, ax = _fig(7, 3.6)
    t = [r["threshold"] for r in table]
    comp = [100 * r["component_share"] if r["component_share"] is not None else None for r in table]
    ben = [100 * r["benign_share"] if r["benign_share"] is not None else None for r in table]
    if any(v is not None for v in comp):
        ax.plot(t, [v if v is not None else float("nan") for v in comp], color=VERMILLION, linewidth=2,
                label="component files sent to review")  # fmt: skip
    ax.set_xlabel("review threshold (1 - P(benign))")
    ax.set_ylabel("components sent to review (%)")
    ax.set_ylim(0, 102)
    if any(v is not None for v in ben):
        ax2 = ax.twinx()
        ax2.plot(t, [v if v is not None else float("nan") for v in ben], color=BLUE, linewidth=2,
                 linestyle="--", label="benign files sent to review (false reviews)")  # fmt: skip
        ax2.set_yscale("symlog", linthresh=0.1)  # logarithmic above 0.1%, linear down to a true 0
        ax2.set_ylim(0, 100)
        ax2.set_ylabel("benign sent to review (%, log above 0.1%)")
        ax2.grid(False)
        ax2.spines["right"].set_visible(True)
        handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="lower left", fontsize=8)
    if current is not None:
        _mark_thresholds(ax, [(current, f"threshold {current:.2f}")], "left")
    ax.set_title(title or "Review threshold: components vs false reviews")
    return fig


def save_png(fig: Figure, path: str) -> None:
    """Write a figure as a PNG file (no timestamps or software tag: the same data, the same bytes)."""
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)

"""Plots of the evaluation (matplotlib).

`draw_*(ax, ...)` draws into a given Axes (a notebook's `plt.subplots`, a grid of panels);
`plot_*(..., path)` draws into a new figure on an Agg canvas and saves it as PNG (no pyplot
state is touched).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dear_ray.metrics.calibration import reliability_bins
from dear_ray.metrics.openset import OpennessCurve


def _figure(size: tuple[float, float], layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _band(curve, band: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The band's (low, high) in fractions and what it is."""
    mean = np.asarray(curve.f1_mean, dtype=np.float64)
    has_ci = hasattr(curve, "f1_ci_low") and np.all(np.isfinite(np.asarray(curve.f1_ci_low, dtype=np.float64)))
    if band == "ci" or (band == "auto" and has_ci):
        if not has_ci:
            raise ValueError("openness curves: band='ci' needs f1_ci_low / f1_ci_high (evaluate's CURVES_FILE)")
        return (np.asarray(curve.f1_ci_low, dtype=np.float64), np.asarray(curve.f1_ci_high, dtype=np.float64),
                "95% bootstrap interval")
    if band not in ("std", "auto"):
        raise ValueError(f"openness curves: band={band!r}; expected 'auto', 'ci' or 'std'")
    std = np.asarray(curve.f1_std, dtype=np.float64)
    return mean - std, mean + std, "+-1 std over class subsets"


def draw_openness_curves(ax: Axes, curves: Mapping[str, object], *,
                         title: str = "Open-set macro-F1 vs openness", band: str = "auto") -> Axes:
    """Several methods' openness curves on `ax`, in percent: mean line and a band each.

    A curve is anything with `openness`, `f1_mean` and `f1_std` arrays (fractions): an
    `OpennessCurve`, or one label's rows of `evaluate`'s `openness_curves.parquet` (a DataFrame),
    whose `f1_ci_low` / `f1_ci_high` columns hold the 95% bootstrap interval of the mean F1 at each
    point. `band`: `ci` (that interval), `std` (+-1 std over the random class subsets) or `auto`
    (`ci` where every curve has it); the axis label says which.
    """
    if not curves:
        raise ValueError("openness curves: no curves given")
    if band == "auto":
        band = "ci" if all(_band(c, "auto")[2].startswith("95%") for c in curves.values()) else "std"
    what = ""
    for name, curve in curves.items():
        x = 100 * np.asarray(curve.openness, dtype=np.float64)
        mean = 100 * np.asarray(curve.f1_mean, dtype=np.float64)
        low, high, what = _band(curve, band)
        (line,) = ax.plot(x, mean, marker=".", label=name, linewidth=1.5)
        ax.fill_between(x, 100 * low, 100 * high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set(xlabel="openness (%)", ylabel=f"open-set macro-F1 (%), band: {what}", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", ncol=2 if len(curves) > 6 else 1)
    return ax


def plot_openness_curves(curves: Mapping[str, OpennessCurve], path: str | Path, *,
                         title: str = "Open-set macro-F1 vs openness", band: str = "auto") -> Path:
    """`draw_openness_curves` saved as a PNG."""
    fig = _figure((7, 4.5))
    draw_openness_curves(fig.add_subplot(), curves, title=title, band=band)
    return _save(fig, path)


def plot_openness_curves_by_set(curves, path: str | Path, *, band: str = "auto") -> Path:
    """One panel per unknown set of `evaluate`'s curve table (columns `unknown_set`, `label`, ...)."""
    sets = list(dict.fromkeys(curves["unknown_set"]))
    fig = _figure((7 * len(sets), 4.5))
    for i, name in enumerate(sets):
        part = curves[curves["unknown_set"] == name]
        draw_openness_curves(fig.add_subplot(1, len(sets), i + 1), dict(iter(part.groupby("label", sort=False))),
                             title=f"Open-set macro-F1 vs openness (unknown: {name})", band=band)
    return _save(fig, path)


def shared_bin_edges(known_scores, unknown_scores, bins: int = 50) -> np.ndarray:
    """`(bins+1,)` edges spanning both sets' pooled range: one scale for known and unknown."""
    pooled = np.concatenate([np.ravel(known_scores), np.ravel(unknown_scores)]).astype(np.float64)
    if pooled.size == 0 or not np.all(np.isfinite(pooled)):
        raise ValueError("uncertainty histogram: scores must be non-empty and finite")
    return np.histogram_bin_edges(pooled, bins=bins)


def draw_uncertainty_histograms(ax: Axes, known_scores, unknown_scores, *, bins: int = 50,
                                score_name: str = "uncertainty", threshold: float | None = None,
                                title: str | None = None, histtype: str = "bar") -> Axes:
    """Known vs unknown score histograms on `ax`, on ONE shared bin scale, as densities.

    `histtype`: matplotlib's; `stepfilled` draws one polygon a histogram instead of a patch a bin
    (about 2x faster, what the post-hoc grid uses).

    Both histograms use the same bin edges over the pooled range, so their positions compare
    directly (DEAR's script normalised each set to its own range, which hides the overlap).
    """
    known = np.asarray(known_scores, dtype=np.float64)
    unknown = np.asarray(unknown_scores, dtype=np.float64)
    edges = shared_bin_edges(known, unknown, bins)
    ax.hist(known, bins=edges, density=True, alpha=0.55, histtype=histtype, label=f"known (n={known.size})")
    ax.hist(unknown, bins=edges, density=True, alpha=0.55, histtype=histtype, label=f"unknown (n={unknown.size})")
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:.4g}")
    ax.set(xlabel=f"{score_name} (higher = more unknown)", ylabel="density", title=title or score_name)
    ax.legend(fontsize="small")
    return ax


def plot_uncertainty_histograms(known_scores, unknown_scores, path: str | Path, *, bins: int = 50,
                                score_name: str = "uncertainty", threshold: float | None = None,
                                title: str | None = None) -> Path:
    """`draw_uncertainty_histograms` saved as a PNG."""
    fig = _figure((6, 4))
    draw_uncertainty_histograms(fig.add_subplot(), known_scores, unknown_scores, bins=bins,
                                score_name=score_name, threshold=threshold, title=title)
    return _save(fig, path)


def plot_histogram_grid(panels: Sequence[Mapping], path: str | Path, *, columns: int = 3,
                        title: str | None = None) -> Path:
    """Several `draw_uncertainty_histograms` panels in one PNG (the post-hoc detector rows of a
    model: one figure instead of one each). A panel: `known`, `unknown`, `score_name`, optional
    `threshold` and `title`."""
    if not panels:
        raise ValueError("histogram grid: no panels given")
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    fig = _figure((3.6 * cols, 2.9 * rows), layout=None)  # constrained layout costs 2x here
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.88 if title else 0.94, wspace=0.3, hspace=0.6)
    for i, panel in enumerate(panels):
        ax = draw_uncertainty_histograms(fig.add_subplot(rows, cols, i + 1), panel["known"], panel["unknown"],
                                         score_name=panel["score_name"], threshold=panel.get("threshold"),
                                         title=panel.get("title"), histtype="stepfilled")
        if i:  # the first panel's legend names the colours for all; thresholds differ per panel
            ax.get_legend().remove()
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_reliability_diagram(confidences, correct, path: str | Path, *, num_bins: int = 15,
                             title: str = "Reliability diagram") -> Path:
    """Accuracy per confidence bin against the diagonal, with the sample count per bin."""
    rb = reliability_bins(confidences, correct, num_bins=num_bins)
    width = np.diff(rb.edges)
    fig = _figure((5, 5))
    ax = fig.add_subplot()
    full = rb.count > 0
    ax.bar(rb.edges[:-1][full], rb.accuracy[full], width=width[full], align="edge", edgecolor="k",
           alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title)
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_confusion_matrix(matrix, path: str | Path, *, class_names: Sequence[str] | None = None,
                          normalize: bool = True, title: str = "Open-set confusion matrix") -> Path:
    """The (K+1) x (K+1) matrix (unknown last), rows normalised to recall when `normalize`."""
    cm = np.asarray(matrix, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion_matrix: expected a square matrix, got shape {cm.shape}")
    if class_names is not None and len(class_names) != cm.shape[0]:
        raise ValueError(f"class_names: {len(class_names)} names for a {cm.shape[0]}x{cm.shape[0]} matrix")
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    names = list(class_names) if class_names is not None else [str(i) for i in range(cm.shape[0] - 1)] + ["unknown"]
    side = min(3 + 0.25 * cm.shape[0], 20)
    fig = _figure((side, side))
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, shrink=0.8)
    if cm.shape[0] <= 40:
        ticks = np.arange(cm.shape[0])
        ax.set_xticks(ticks, names, rotation=90)
        ax.set_yticks(ticks, names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)

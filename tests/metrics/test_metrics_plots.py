import numpy as np
import pytest
from matplotlib.image import imread

from dear_ray.metrics import open_set_f1_curve
from dear_ray.metrics.plots import (
    plot_confusion_matrix,
    plot_openness_curves,
    plot_reliability_diagram,
    plot_uncertainty_histograms,
    shared_bin_edges,
)


def _png_size(path):
    image = imread(path)
    assert image.ndim == 3 and image.std() > 0  # a real, non-blank picture
    return image.shape[1], image.shape[0]


def test_every_plot_writes_a_png_of_the_requested_size(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 30)
    curve = open_set_f1_curve(y, y, rng.random(30), rng.integers(0, 4, 20), rng.integers(0, 3, 20),
                              rng.random(20) + 0.3, 0.7, num_trials=3, num_known=3)
    assert _png_size(plot_openness_curves({"a": curve, "b": curve}, tmp_path / "c.png")) == (840, 540)
    assert _png_size(plot_uncertainty_histograms(rng.random(30), rng.random(20), tmp_path / "h.png",
                                                 threshold=0.5)) == (720, 480)
    assert _png_size(plot_reliability_diagram(rng.random(30), y == 1, tmp_path / "r.png")) == (600, 600)
    path = plot_confusion_matrix(np.arange(16).reshape(4, 4), tmp_path / "sub" / "m.png")
    assert path.exists() and _png_size(path)[0] == _png_size(path)[1]


def test_histograms_share_one_scale():
    edges = shared_bin_edges([0.0, 0.1], [0.5, 2.0], bins=4)
    np.testing.assert_allclose(edges, [0.0, 0.5, 1.0, 1.5, 2.0])
    with pytest.raises(ValueError, match="non-empty and finite"):
        shared_bin_edges([np.nan], [0.1])


def test_bad_plot_inputs(tmp_path):
    with pytest.raises(ValueError, match="no curves given"):
        plot_openness_curves({}, tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"expected a square matrix, got shape \(2, 3\)"):
        plot_confusion_matrix(np.zeros((2, 3)), tmp_path / "m.png")
    with pytest.raises(ValueError, match="class_names: 2 names for a 3x3 matrix"):
        plot_confusion_matrix(np.zeros((3, 3)), tmp_path / "m.png", class_names=["a", "b"])


def test_draw_functions_fill_given_axes_from_curves_or_their_parquet_rows():
    import pandas as pd
    from matplotlib.figure import Figure

    from dear_ray.metrics.plots import draw_openness_curves, draw_uncertainty_histograms

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 30)
    curve = open_set_f1_curve(y, y, rng.random(30), rng.integers(0, 4, 20), rng.integers(0, 3, 20),
                              rng.random(20) + 0.3, 0.7, num_trials=3, num_known=3)
    rows = pd.DataFrame({"label": "b", "openness": curve.openness, "f1_mean": curve.f1_mean,
                         "f1_std": curve.f1_std})  # the layout of evaluate's CURVES_FILE
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert draw_openness_curves(left, {"a": curve, **dict(iter(rows.groupby("label")))}) is left
    a, b = left.get_lines()
    assert [line.get_label() for line in (a, b)] == ["a", "b"]
    for line in (a, b):
        np.testing.assert_allclose(line.get_xdata(), 100 * curve.openness)
        np.testing.assert_allclose(line.get_ydata(), 100 * curve.f1_mean)
    draw_uncertainty_histograms(right, [0.0, 0.1, 0.2], [0.5, 2.0], bins=4, threshold=0.3)
    known, unknown = right.patches[:4], right.patches[4:]
    assert [p.get_x() for p in known] == [p.get_x() for p in unknown] == [0.0, 0.5, 1.0, 1.5]
    assert right.get_lines()[0].get_xdata()[0] == 0.3


def test_openness_band_is_the_bootstrap_interval_when_the_curves_have_one(tmp_path):
    import pandas as pd
    from matplotlib.figure import Figure

    from dear_ray.metrics.plots import draw_openness_curves, plot_openness_curves_by_set

    rows = pd.DataFrame({"label": "a", "unknown_set": "hmdb", "openness": [0.0, 0.1, 0.2],
                         "f1_mean": [0.8, 0.7, 0.6], "f1_std": [0.0, 0.05, 0.05],
                         "f1_ci_low": [0.75, 0.6, 0.4], "f1_ci_high": [0.85, 0.8, 0.7]})
    ax = Figure().subplots()
    draw_openness_curves(ax, {"a": rows})
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(40.0) and band.max() == pytest.approx(85.0)
    assert "95% bootstrap interval" in ax.get_ylabel()
    ax = Figure().subplots()
    draw_openness_curves(ax, {"a": rows}, band="std")
    assert ax.collections[0].get_paths()[0].vertices[:, 1].min() == pytest.approx(55.0)
    with pytest.raises(ValueError, match="band='ci' needs f1_ci_low"):
        draw_openness_curves(Figure().subplots(), {"a": rows.drop(columns=["f1_ci_low"])}, band="ci")
    two = pd.concat([rows, rows.assign(unknown_set="mit")])
    assert plot_openness_curves_by_set(two, tmp_path / "c.png").stat().st_size > 0

import numpy as np
import pytest
from sklearn.metrics import f1_score

from dear_ray.metrics import draw_unknown_subsets, open_macro_f1, open_set_f1_curve, openness


def _case(rng, k, n_known, n_unknown, n_classes):
    y = rng.integers(0, k, n_known)
    p = np.where(rng.random(n_known) < rng.random(), y, rng.integers(0, k, n_known))
    c = rng.integers(0, n_classes, n_unknown) * 3 + 5  # arbitrary unknown ids
    q = rng.integers(0, k, n_unknown)
    return y, p, rng.random(n_known), c, q, rng.random(n_unknown) + rng.random() * 0.5


def _sklearn_f1(y, p, s, c, q, su, thr, k, subset):
    m = np.isin(c, subset)
    labels = np.r_[y, np.full(m.sum(), k)]
    preds = np.r_[np.where(s > thr, k, p), np.where(su[m] > thr, k, q[m])]
    return f1_score(labels, preds, average="macro")


@pytest.mark.parametrize("seed", range(40))
def test_macro_f1_equals_sklearn_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 12))
    y, p, s, c, q, su = _case(rng, k, int(rng.integers(1, 60)), int(rng.integers(1, 80)), int(rng.integers(1, 9)))
    thr = float(rng.choice([rng.random(), -1.0, 2.0]))  # also: reject everything / nothing
    curve = open_set_f1_curve(y, p, s, c, q, su, thr, num_trials=3, seed=seed, num_known=k)
    subsets = draw_unknown_subsets(c, num_trials=3, seed=seed)
    assert curve.f1_trials[0, 0] == pytest.approx(_sklearn_f1(y, p, s, c, q, su, thr, k, []), abs=1e-12)
    for n, level in enumerate(subsets, start=1):
        for t, subset in enumerate(level):
            expected = _sklearn_f1(y, p, s, c, q, su, thr, k, subset)
            assert curve.f1_trials[n, t] == pytest.approx(expected, abs=1e-12)


def test_curve_fields_and_open_maf1():
    rng = np.random.default_rng(0)
    y, p, s, c, q, su = _case(rng, 5, 50, 60, 4)
    curve = open_set_f1_curve(y, p, s, c, q, su, 0.5, num_trials=4, num_known=5)
    np.testing.assert_array_equal(curve.num_unknown_classes, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(curve.openness, openness(5, np.arange(5)))
    np.testing.assert_allclose(curve.f1_mean, curve.f1_trials.mean(1))
    np.testing.assert_allclose(curve.f1_std, curve.f1_trials.std(1))
    assert curve.f1_std[0] == 0 and curve.f1_std[-1] == pytest.approx(0, abs=1e-15)  # n = U: one subset
    o = curve.openness
    assert open_macro_f1(curve) == pytest.approx(np.sum(o * curve.f1_mean) / o.sum())


def test_draw_unknown_subsets_is_seeded_and_complete():
    ids = np.array([9, 3, 3, 7, 12, 9])
    a = draw_unknown_subsets(ids, num_trials=5, seed=1)
    b = draw_unknown_subsets(ids, num_trials=5, seed=1)
    assert len(a) == 4 and all(len(level) == 5 for level in a)
    for n, (la, lb) in enumerate(zip(a, b), start=1):
        for sa, sb in zip(la, lb):
            np.testing.assert_array_equal(sa, sb)
            assert len(set(sa.tolist())) == n and set(sa.tolist()) <= {3, 7, 9, 12}
    c = draw_unknown_subsets(ids, num_trials=5, seed=2)
    assert any(not np.array_equal(x, y) for x, y in zip(a[0], c[0]))


def test_given_subsets_are_replayed_exactly():
    rng = np.random.default_rng(5)
    y, p, s, c, q, su = _case(rng, 4, 40, 90, 6)
    classes = np.unique(c)
    subsets = [[classes[[0]], classes[[5]]], [classes[[1, 2]], classes[[3, 4]]]]
    curve = open_set_f1_curve(y, p, s, c, q, su, 0.6, subsets=subsets, num_known=4)
    assert curve.f1_trials.shape == (3, 2)
    assert curve.f1_trials[2, 1] == pytest.approx(_sklearn_f1(y, p, s, c, q, su, 0.6, 4, classes[[3, 4]]), abs=1e-12)


@pytest.mark.parametrize("subsets, msg", [
    ([[np.array([5, 8])]], r"subsets\[0\]\[0\] must hold 1 distinct"),
    ([[np.array([6])]], r"names class id\(s\) \[6\] that have no unknown samples"),
    ([[np.array([5])], []], r"subsets\[1\] has 0 trials"),
    ([], "subsets: is empty"),
])
def test_bad_subsets(subsets, msg):
    y, p, s = np.array([0, 1]), np.array([0, 1]), np.array([0.1, 0.2])
    with pytest.raises(ValueError, match=msg):
        open_set_f1_curve(y, p, s, [5, 8], [0, 1], [0.3, 0.9], 0.5, subsets=subsets)


def test_bad_inputs():
    y, p, s = np.array([0, 1]), np.array([0, 1]), np.array([0.1, 0.2])
    with pytest.raises(ValueError, match=r"known_preds: class id 2 outside \[0, 2\)"):
        open_set_f1_curve(y, [0, 2], s, [5], [0], [0.3], 0.5, num_known=2)
    with pytest.raises(ValueError, match="unknown_scores: 1 NaN"):
        open_set_f1_curve(y, p, s, [5], [0], [np.nan], 0.5)
    with pytest.raises(ValueError, match="mismatched lengths: unknown_classes=2, unknown_preds=1"):
        open_set_f1_curve(y, p, s, [5, 6], [0], [0.3, 0.4], 0.5)
    with pytest.raises(ValueError, match="threshold=nan"):
        open_set_f1_curve(y, p, s, [5], [0], [0.3], float("nan"))

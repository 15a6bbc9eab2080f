import numpy as np
import pandas as pd
import pytest

from dear_ray.metrics import METRIC_KEYS, draw_unknown_subsets, open_set_report
from dear_ray.metrics.evaluate import CURVES_FILE, SCORES_FILE, evaluate_stores
from dear_ray.scores import OpenMax, methods_for_head, read_score_store


def _load(paths):
    return {split: read_score_store(p) for split, p in paths.items()}


def test_every_method_with_the_same_subsets(make_stores, tmp_path):
    soft = make_stores(head="softmax", run="soft")
    dear = make_stores(head="dear", run="dear", seed=1, shifted=False)
    out = tmp_path / "report"
    table = evaluate_stores([*soft.values(), *dear.values()], out, num_trials=3, seed=4)
    assert list(table.columns) == ["method", "score", "run", "head", "known", "unknown", *METRIC_KEYS]
    assert table[["method", "score"]].values.tolist() == [
        ["dear", "vacuity"], ["softmax", "msp"], ["mc_dropout", "bald"], ["openmax", "openmax"]]
    # the rows `dear-ray sweep --dry-run` announces for each trained head
    assert table.groupby("run", sort=False)["method"].apply(list).to_dict() == {
        "dear": methods_for_head("dear"), "soft": methods_for_head("softmax", stochastic_passes=3)}
    assert np.isnan(table.loc[0, "shifted_top1"]) and not np.isnan(table.loc[1, "shifted_top1"])

    subsets = draw_unknown_subsets([3, 8, 11], num_trials=3, seed=4)
    s, d = _load(soft), _load(dear)
    expected_dear = open_set_report(train=d["train"], known=d["test"], unknown=d["unknown"], score="vacuity",
                                    subsets=subsets).metrics
    expected_bald = open_set_report(train=s["train"], known=s["test"], unknown=s["unknown"], score="bald",
                                    shifted=s["test_shifted"], subsets=subsets).metrics
    for key in expected_dear:
        assert table.loc[0, key] == pytest.approx(expected_dear[key], abs=1e-12), key
        assert table.loc[2, key] == pytest.approx(expected_bald[key], abs=1e-12), key
    om = OpenMax().fit(s["train"].logits, s["train"].labels, s["train"].features)
    p_unknown = om(s["test"].logits, features=s["test"].features)
    thr = np.sort(om(s["train"].logits, features=s["train"].features))[::-1][len(s["train"]) // 20 - 1]
    assert table.loc[3, "threshold"] == pytest.approx(thr)
    assert table.loc[3, "auroc"] > 0.5 and p_unknown.shape == (len(s["test"]),)

    for name in ("results.csv", "results.parquet", "results.md", "openness_curves.png", "hist_dear.png",
                 "reliability_openmax.png", "confusion_mc_dropout.png"):
        assert (out / name).stat().st_size > 0, name
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), table)

    # the plots' data: the curve and the scores of each row, as open_set_report computed them
    curves, scores = pd.read_parquet(out / CURVES_FILE), pd.read_parquet(out / SCORES_FILE)
    assert list(curves["label"].unique()) == list(scores["label"].unique()) == list(table["method"])
    report = open_set_report(train=d["train"], known=d["test"], unknown=d["unknown"], score="vacuity",
                             subsets=subsets)
    dear_curve = curves[curves["label"] == "dear"]
    assert dear_curve["num_unknown_classes"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(dear_curve["f1_mean"], report.curve.f1_mean, atol=1e-12)
    np.testing.assert_allclose(dear_curve["f1_std"], report.curve.f1_std, atol=1e-12)
    np.testing.assert_allclose(dear_curve["openness"], report.curve.openness, atol=1e-12)
    dear_scores = scores[scores["label"] == "dear"]
    np.testing.assert_allclose(dear_scores.loc[dear_scores["split"] == "known", "uncertainty"],
                               report.known_scores)
    np.testing.assert_allclose(dear_scores.loc[dear_scores["split"] == "unknown", "uncertainty"],
                               report.unknown_scores)
    assert (dear_scores["threshold"] == table.loc[0, "threshold"]).all()
    md = (out / "results.md").read_text().splitlines()
    assert md[0].startswith("| method | score | run |") and len(md) == 2 + 4 + 2


def test_requested_scores_and_skips(make_stores, tmp_path):
    soft = make_stores(head="softmax", run="soft")
    dear = make_stores(head="dear", run="dear", seed=1)
    with pytest.warns(UserWarning, match="score 'energy' is not in all its stores"):
        table = evaluate_stores([*soft.values(), *dear.values()], tmp_path, scores=["energy", "msp"], num_trials=2,
                                 plots=False)
    assert not list(tmp_path.glob("*.png"))
    assert table[["method", "score"]].values.tolist() == [
        ["dear", "msp"], ["softmax", "energy"], ["softmax", "msp"]]
    with pytest.raises(ValueError, match="none of the scores"):
        with pytest.warns(UserWarning):
            evaluate_stores(list(dear.values()), tmp_path, scores=["energy"], plots=False)


def test_incomplete_or_duplicated_models_raise(make_stores, tmp_path):
    paths = make_stores(run="m")
    with pytest.raises(ValueError, match=r"run 'm' \(softmax\): no train store"):
        evaluate_stores([paths["test"], paths["unknown"]], tmp_path)
    with pytest.raises(ValueError, match=r"run 'm' \(softmax\): 2 'test' stores"):
        evaluate_stores([paths["train"], paths["test"], paths["test"], paths["unknown"]], tmp_path)
    with pytest.raises(ValueError, match="no score store paths"):
        evaluate_stores([], tmp_path)

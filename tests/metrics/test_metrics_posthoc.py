"""The post-hoc detector rows (`softmax+knn`, ...) of `evaluate_stores` on small stores."""

import warnings

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp

from dear_ray.metrics.calibration import ece
from dear_ray.metrics.evaluate import evaluate_stores, group_stores
from dear_ray.metrics.ood import threshold_from_train
from dear_ray.metrics.posthoc import POSTHOC_SCORES, posthoc_plans
from dear_ray.scores import (
    CLASSIFIER_KEY,
    KNN,
    StoreMeta,
    compute_scores,
    methods_for_head,
    read_score_store,
    write_classifier,
    write_score_store,
)
from dear_ray.scores.posthoc import TemperatureScaling

K, F = 3, 8
RNG = np.random.default_rng(0)
W = np.abs(RNG.normal(size=(K, F))) * np.eye(K, F) * 2 + RNG.normal(0, 0.1, (K, F))
B = np.array([0.2, 0.0, -0.1])


def _model(tmp_path, *, run="soft", head="softmax", classifier=True, val=False, train_views="prob"):
    """A softmax model's stores; logits = features @ W.T + B on score-averaged splits, and the train
    split stored as DEAR's released `prob` averaging does (two views: log of the mean softmax)."""
    rng = np.random.default_rng(1)
    folder = tmp_path / run
    extra = {CLASSIFIER_KEY: "classifier.npz"} if classifier else {}
    if classifier:
        write_classifier(folder, W, B)
    splits = {"train": np.arange(60) % K, "test": np.arange(24) % K, "unknown": np.arange(20) % 4}
    if val:
        splits["val"] = np.arange(18) % K
    paths = []
    for split, labels in splits.items():
        n = labels.size
        known = split != "unknown"
        views = [np.maximum(0, rng.normal(0, 1, (n, F)) + (3 * np.eye(K, F)[labels] if known else 0.8))
                 for _ in range(2)]
        features = np.mean(views, axis=0)
        if split == "train" and train_views == "prob":
            logits = np.log(np.mean([np.exp(log_softmax(v @ W.T + B, axis=1)) for v in views], axis=0))
        else:
            logits = features @ W.T + B
        meta = StoreMeta(split=split, dataset="ucf" if known else "hmdb", num_known=K, head=head, checkpoint="c",
                         run=run, extra={**extra, "average_clips": train_views if split == "train" else "score"})
        paths.append(write_score_store(folder / f"{split}.parquet", video_ids=[f"{split}{i}" for i in range(n)],
                                       labels=labels, logits=logits, features=features,
                                       scores=compute_scores(head, logits), meta=meta))
    return paths


def test_every_detector_is_a_row_with_the_models_predictions(tmp_path):
    paths = _model(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every detector runs: no skip warning
        table = evaluate_stores(paths, tmp_path / "out", num_trials=2, resamples=30, posthoc_resamples=10,
                                knn_k=5)  # OpenOOD's k = 50 spans most of these 60 training videos
    assert table["method"].tolist() == methods_for_head("softmax", posthoc=POSTHOC_SCORES)
    posthoc = table[table["method"].str.contains("+", regex=False)]
    assert (posthoc["closed_top1"] == table.loc[0, "closed_top1"]).all()  # the model's own predictions
    assert posthoc["auroc"].between(0.5, 1.0).all()
    stores = {p.stem: read_score_store(p) for p in paths}
    # energy's threshold: from the train logits recomputed from the features, not the stored
    # prob-averaged ones, whose energy is 0 for every video
    assert np.allclose(stores["train"].score("energy"), 0.0, atol=1e-6)
    energy_train = -logsumexp(stores["train"].features.astype(np.float64) @ W.T + B, axis=1)
    row = table.set_index("method").loc["softmax+energy"]
    assert row["threshold"] == pytest.approx(threshold_from_train(energy_train)) and row["threshold"] < -1
    # KNN's threshold from the training videos left out of their own neighbours
    knn = KNN(5).fit(features=stores["train"].features)
    expected = threshold_from_train(knn(None, features=stores["train"].features, leave_one_out=True))
    assert table.set_index("method").loc["softmax+knn", "threshold"] == pytest.approx(expected)
    # no val store: the temperature comes from the known test split, and the score says so
    t = TemperatureScaling().fit(logits=stores["test"].features.astype(np.float64) @ W.T + B,
                                 labels=stores["test"].labels).temperature
    row = table.set_index("method").loc["softmax+temp_msp"]
    assert row["score"] == "temp_msp(test)" and t != pytest.approx(1.0)
    ks = 1 - np.max(np.exp(log_softmax((stores["test"].features.astype(np.float64) @ W.T + B) / t, axis=1)), axis=1)
    assert row["ece"] == pytest.approx(ece(1 - ks, stores["test"].labels == stores["test"].preds))  # scaled MSP's ECE
    assert (tmp_path / "out" / "hist_posthoc_soft_hmdb.png").is_file()


def test_the_temperature_comes_from_the_val_store_when_there_is_one(tmp_path):
    paths = _model(tmp_path, val=True)
    (group,) = group_stores([read_score_store(p) for p in paths])
    assert group.known.meta.split == "test" and group.val.meta.split == "val"
    plans, skipped = posthoc_plans(group, ["temp_msp"])
    assert [p.score for p in plans] == ["temp_msp(val)"] and not skipped
    val, test = group.val, group.known
    t = TemperatureScaling().fit(logits=val.features.astype(np.float64) @ W.T + B, labels=val.labels).temperature
    expected = 1 - np.max(np.exp(log_softmax((test.features.astype(np.float64) @ W.T + B) / t, axis=1)), axis=1)
    np.testing.assert_allclose(plans[0].stores.known.score("temp_msp(val)"), expected, atol=1e-6)


def test_detectors_that_cannot_run_are_skipped_with_one_line_each(tmp_path):
    paths = _model(tmp_path, classifier=False)
    with pytest.warns(UserWarning) as caught:
        table = evaluate_stores(paths, tmp_path / "out", num_trials=2, resamples=0, plots=False)
    lines = sorted(str(w.message) for w in caught)
    assert lines == [
        "run 'soft': no softmax+energy/maxlogit row: the train store holds prob-averaged logits (log of the mean "
        "softmax: energy 0, max-logit in other units than the test splits'); no classifier file named in the "
        "stores' metadata (extra['classifier'])",
        "run 'soft': no softmax+vim/react/ash row: no classifier file named in the stores' metadata "
        "(extra['classifier'])"]
    assert sorted(m for m in table["method"] if "+" in m) == [
        "softmax+gen", "softmax+knn", "softmax+mahalanobis", "softmax+temp_msp"]
    # score-averaged train logits: energy and max-logit need no classifier file
    paths = _model(tmp_path / "b", classifier=False, train_views="score")
    plans, skipped = posthoc_plans(group_stores([read_score_store(p) for p in paths])[0], ["energy", "maxlogit"])
    assert [p.method for p in plans] == ["softmax+energy", "softmax+maxlogit"] and not skipped


def test_only_softmax_classifier_heads_get_detector_rows(tmp_path):
    paths = _model(tmp_path, head="edl", classifier=False, train_views="score")
    table = evaluate_stores(paths, tmp_path / "out", num_trials=2, resamples=0, plots=False)
    assert table["method"].tolist() == ["edl"] == methods_for_head("edl", posthoc=POSTHOC_SCORES)
    # asked for by name, a stored score is used as is and a detector is fitted
    paths = _model(tmp_path / "s", classifier=True)
    table = evaluate_stores(paths, tmp_path / "out2", scores=["msp", "knn", "energy"], num_trials=2,
                            resamples=0, plots=False)
    assert table[["method", "score"]].values.tolist() == [["softmax", "msp"], ["softmax", "knn"],
                                                          ["softmax", "energy"]]
    assert table.loc[2, "threshold"] < -1  # recomputed: the stored train energy is 0

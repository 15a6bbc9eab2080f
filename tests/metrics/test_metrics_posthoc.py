"""The post-hoc detector rows (`softmax+knn`, ...) of `evaluate_stores` on small stores."""

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
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
from dear_ray.cli import main
from dear_ray.scores import evidential as E
from dear_ray.scores.posthoc import TemperatureScaling
from dear_ray.scores.shaping import Scale

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
    posthoc = table[table["method"].str.contains("+", regex=False)].set_index("method")
    assert (posthoc["closed_top1"] == table.loc[0, "closed_top1"]).all()  # the model's own predictions
    assert np.isfinite(posthoc[["auroc", "open_maf1", "fpr_at_95_tpr_first", "threshold"]].to_numpy()).all()
    # SCALE reads how spread a vector is: these unknowns spread their activation over every
    # dimension, which makes exp(sum / top sum) large and the video look known
    assert posthoc["auroc"].drop("softmax+scale").between(0.5, 1.0).all()
    assert posthoc.loc["softmax+scale", "auroc"] < 0.5
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
        "run 'soft': no softmax+energy/maxlogit/nnguide row: the train store holds prob-averaged logits (log of "
        "the mean softmax: energy 0, max-logit in other units than the test splits'); no classifier file named "
        "in the stores' metadata (extra['classifier'])",
        "run 'soft': no softmax+vim/react/ash/scale/fdbd/dice row: no classifier file named in the stores' "
        "metadata (extra['classifier'])"]
    assert sorted(m for m in table["method"] if "+" in m) == [
        "softmax+gen", "softmax+knn", "softmax+mahalanobis", "softmax+rmds", "softmax+she", "softmax+temp_msp"]
    # score-averaged train logits: energy and max-logit need no classifier file
    paths = _model(tmp_path / "b", classifier=False, train_views="score")
    plans, skipped = posthoc_plans(group_stores([read_score_store(p) for p in paths])[0],
                                   ["energy", "maxlogit", "nnguide"])
    assert [p.method for p in plans] == ["softmax+energy", "softmax+maxlogit", "softmax+nnguide"] and not skipped


def test_only_softmax_classifier_heads_get_detector_rows(tmp_path):
    paths = _model(tmp_path, head="edl", classifier=False, train_views="score")
    table = evaluate_stores(paths, tmp_path / "out", num_trials=2, resamples=0, plots=False)
    assert table["method"].tolist() == ["edl", "edl+mpu", "edl+diff_entropy", "edl+mutual_info"] == \
        methods_for_head("edl", posthoc=POSTHOC_SCORES)
    # asked for by name, a stored score is used as is and a detector is fitted
    paths = _model(tmp_path / "s", classifier=True)
    table = evaluate_stores(paths, tmp_path / "out2", scores=["msp", "knn", "energy"], num_trials=2,
                            resamples=0, plots=False)
    assert table[["method", "score"]].values.tolist() == [["softmax", "msp"], ["softmax", "knn"],
                                                          ["softmax", "energy"]]
    assert table.loc[2, "threshold"] < -1  # recomputed: the stored train energy is 0


NEW_ROWS = ("rmds", "scale", "fdbd", "nnguide", "she", "dice")


def test_evidential_models_get_the_dirichlet_score_rows_with_their_evidence(tmp_path):
    paths = _model(tmp_path, run="e", head="edl", classifier=False, train_views="score")
    (group,) = group_stores([read_score_store(p) for p in paths])
    plans, skipped = posthoc_plans(group)
    assert [p.method for p in plans] == ["edl+mpu", "edl+diff_entropy", "edl+mutual_info"] and not skipped
    assert plans[0].description == "Dirichlet of the stored view-averaged logits, exp evidence"
    known = group.known.logits.astype(np.float64)
    np.testing.assert_allclose(plans[0].stores.known.score("mpu"), E.mpu(known))
    np.testing.assert_allclose(plans[2].stores.unknown[0].score("mutual_info"),
                               E.mutual_information(group.unknown[0].logits.astype(np.float64)))
    # a store that records its evidence function is scored with it
    relu = dataclasses.replace(group, train=dataclasses.replace(group.train, meta=dataclasses.replace(
        group.train.meta, extra={**group.train.meta.extra, "evidence": "relu"})))
    (plan,), _ = posthoc_plans(relu, ["diff_entropy", "knn"])  # knn: not an evidential row, passed over
    np.testing.assert_allclose(plan.stores.known.score("diff_entropy"), E.differential_entropy(known, "relu"))
    assert plan.description.endswith("relu evidence")


def test_hyper_parameters_are_options_and_every_feature_row_says_what_it_used(tmp_path):
    paths = _model(tmp_path)
    (group,) = group_stores([read_score_store(p) for p in paths])
    plans, skipped = posthoc_plans(group, ["knn", *NEW_ROWS], knn_k=5,
                                   options={"scale": {"percentile": 50}, "nnguide": {"k": 4}})
    assert not skipped
    said = {p.score: p.description for p in plans}
    for name in ("knn", *NEW_ROWS):
        assert said[name].startswith("pooled backbone features (the classifier's input), view-averaged, F=8"), name
    assert "60 training videos" in said["rmds"] and "k=5" in said["knn"] and "k=4" in said["nnguide"]
    assert "50th percentile" in said["scale"] and "90th percentile" in said["dice"]
    scale = {p.score: p for p in plans}["scale"].stores.known.score("scale")
    np.testing.assert_allclose(scale, Scale(W, B, percentile=50)(None, features=group.known.features))
    with pytest.raises(ValueError, match="post-hoc rows \\['odin'\\]"):
        posthoc_plans(group, ["knn"], options={"odin": {}})


def test_a_row_that_fails_while_scoring_is_skipped_and_the_others_stay(tmp_path):
    paths = _model(tmp_path)
    (group,) = group_stores([read_score_store(p) for p in paths])
    unknown = group.unknown[0]
    features = unknown.features.copy()
    features[0] = 0.0  # SCALE has no factor for an all-zero vector
    logits = unknown.logits.copy()
    logits[0] = B
    bad = dataclasses.replace(group, unknown=[dataclasses.replace(unknown, features=features, logits=logits)])
    plans, skipped = posthoc_plans(bad, ["scale", "dice"])
    assert [p.method for p in plans] == ["softmax+dice"]
    assert skipped == ["run 'soft': no softmax+scale row: scale: 1 video(s) whose 1 largest feature values sum "
                       "to <= 0; SCALE assumes non-negative (post-ReLU) pooled features"]


def test_dear_ray_evaluate_reports_the_new_rows_from_stored_arrays(tmp_path, capsys):
    soft = _model(tmp_path / "stores", run="soft")
    edl = _model(tmp_path / "stores", run="edl", head="edl", classifier=False, train_views="score")
    assert soft[0].parent != edl[0].parent
    out = tmp_path / "out"
    assert main(["evaluate", str(soft[0].parent), str(edl[0].parent), "--out", str(out), "--trials", "2",
                 "--resamples", "20"]) == 0
    table = pd.read_csv(out / "results.csv").set_index("method")
    new = [f"softmax+{name}" for name in NEW_ROWS] + [f"edl+{name}" for name in ("mpu", "diff_entropy", "mutual_info")]
    assert set(new) <= set(table.index)
    assert set(table.index) == set(methods_for_head("softmax", posthoc=POSTHOC_SCORES)) | set(
        methods_for_head("edl", posthoc=POSTHOC_SCORES))
    metrics = ["auroc", "auroc_ci_low", "auroc_ci_high", "open_maf1", "aupr_out_ap", "fpr_at_95_tpr_first",
               "closed_top1", "threshold"]
    assert np.isfinite(table.loc[new, metrics].to_numpy(dtype=float)).all()
    assert (table.loc[new[-3:], "closed_top1"] == table.loc["edl", "closed_top1"]).all()
    assert (table.loc[new[-3:], "score"].tolist() == ["mpu", "diff_entropy", "mutual_info"])
    assert (out / "hist_posthoc_edl_hmdb.png").is_file()


def test_the_demo_console_shows_only_the_softmax_trials_first_nine_detectors(capsys):
    import types

    from dear_ray.demo import print_results

    rows = [("softmax", "softmax"), ("softmax", "softmax+knn"), ("softmax", "softmax+rmds"), ("edl", "edl"),
            ("edl", "edl+mpu"), ("sdn", "sdn+knn")]
    table = pd.DataFrame([{"trial": t, "method": m, "unknown_set": "u", "closed_top1": 0.9, "auroc": 0.8}
                          for t, m in rows])
    print_results(types.SimpleNamespace(table=table, summary=lambda: "", sweep_dir=Path("/nonexistent"),
                                        tracking_uri="sqlite:///x.db", experiment_id="1"))
    printed = capsys.readouterr().out
    shown = [line.split()[1] for line in printed.splitlines() if line.startswith(("softmax ", "edl ", "sdn "))]
    assert shown == ["softmax", "softmax+knn", "edl"]
    assert "(3 more post-hoc rows" in printed

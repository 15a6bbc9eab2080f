"""Post-hoc detector hyper-parameters chosen on the `val` / `val_unknown` stores, never on test data."""

import dataclasses
import json

import numpy as np
import pytest

from dear_ray.metrics.evaluate import DETECTOR_PARAMS_COLUMN, evaluate_stores, group_stores
from dear_ray.metrics.posthoc import posthoc_plans
from dear_ray.metrics.posthoc_tune import GRIDS, candidates, choose, effective_params, uncertainty_auroc
from dear_ray.scores import StoreMeta, compute_scores, read_score_store, write_score_store

K, F = 2, 4
E = np.eye(F)


def _cluster(rng, direction: int, n: int) -> np.ndarray:
    return E[direction] + rng.normal(0, 0.01, (n, F))


def _write(folder, split, features, labels, *, dataset="synth"):
    logits = features[:, :K] * 3.0
    meta = StoreMeta(split=split, dataset=dataset, num_known=K, head="softmax", checkpoint="c", run="soft",
                     extra={"average_clips": "score"})
    ids = [f"{split}{i}" for i in range(len(labels))]
    return write_score_store(folder / f"{split}_{dataset}.parquet", video_ids=ids, labels=labels,
                             logits=logits, features=features, scores=compute_scores("softmax", logits), meta=meta)


def _knn_model(tmp_path, *, corrupt_test: bool = False):
    """Train bank: 300 videos at e0 (class 0), 120 at e2 and 100 at e3 (class 1), all tight.
    The known val videos lie at e0 and the val unknowns at e2: their k-th nearest training video
    is as close for k <= 100 (both inside a cluster: noise), and as far for k = 500 (both outside
    every cluster of their own), but for k = 200 only the unknowns' lies outside their cluster (120
    videos): KNN's best k on the validation split is 200, the only one with AUROC 1."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "soft"
    train = np.concatenate([_cluster(rng, 0, 300), _cluster(rng, 2, 120), _cluster(rng, 3, 100)])
    paths = [_write(folder, "train", train, np.r_[np.zeros(300, int), np.ones(220, int)]),
             _write(folder, "val", _cluster(rng, 0, 40), np.zeros(40, int)),
             _write(folder, "val_unknown", _cluster(rng, 2, 30), np.arange(30) % 3, dataset="val_unknown")]
    test, unknown = _cluster(rng, 0, 30), _cluster(rng, 3, 30)
    if corrupt_test:  # test stores that would choose another k if they were read
        test, unknown = rng.normal(0, 5, test.shape), _cluster(rng, 0, 30)
    paths += [_write(folder, "test", test, np.arange(30) % K),
              _write(folder, "unknown", unknown, np.arange(30) % 3, dataset="hmdb")]
    return paths


def _plans(paths, **kwargs):
    (group,) = group_stores([read_score_store(p) for p in paths])
    plans, skipped = posthoc_plans(group, ["knn"], **kwargs)
    assert not skipped
    return plans


def test_the_validation_split_picks_the_known_best_k(tmp_path):
    paths = _knn_model(tmp_path)
    (plan,) = _plans(paths)  # tune=None: val, since the model has val and val_unknown stores
    assert plan.params == {"k": 200}
    assert "k=200 chosen by AUROC 100.0 on val (40) vs val_unknown (30) over 4 candidates" in plan.description
    assert "pooled backbone features" in plan.description  # which layer, which statistics
    (default,) = _plans(paths, tune="none")
    assert default.params == {"k": 50} and "chosen" not in default.description
    # the grid without the values a 520-video bank cannot take (k = 1000)
    assert candidates("knn", num_train=520, num_features=F) == [{"k": k} for k in (50, 100, 200, 500)]


def test_test_stores_are_never_read_for_tuning(tmp_path):
    clean = _plans(_knn_model(tmp_path / "a"))[0]
    corrupted = _plans(_knn_model(tmp_path / "b", corrupt_test=True))[0]
    assert corrupted.params == clean.params == {"k": 200}
    assert corrupted.description == clean.description
    # on the corrupted test stores another k would have won: the test proves something
    groups = group_stores([read_score_store(p) for p in _knn_model(tmp_path / "c", corrupt_test=True)])
    (group,) = groups
    on_test = {}
    for k in (50, 100, 200, 500):
        stores = posthoc_plans(group, ["knn"], options={"knn": {"k": k}}, tune="none")[0][0].stores
        on_test[k] = uncertainty_auroc(stores.known.scores["knn"], stores.unknown[0].scores["knn"])
    assert max(on_test, key=on_test.get) != 200


def test_choose_keeps_the_last_of_tied_candidates_and_passes_over_failures():
    """OpenOOD's `hyperparam_search` keeps the last combination with the highest AUROC."""
    val, val_unknown = np.array([0.0, 1.0]), np.array([2.0, 3.0])

    def build(params):
        if params["a"] == 3:
            raise ValueError("cannot fit")
        shift = {1: 0.0, 2: 0.0, 4: 5.0}[params["a"]]  # a = 4: unknowns look known
        return lambda s: s - shift if s is val_unknown else s

    chosen = choose([{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}], build, val, val_unknown)
    assert chosen.params == {"a": 2} and chosen.auroc == 1.0 and chosen.candidates == 3
    assert choose([{"a": 3}], build, val, val_unknown) is None


def test_grids_are_openoods_in_its_order():
    assert GRIDS["react"] == {"percentile": (85, 90, 95, 99)}
    assert GRIDS["ash"]["percentile"] == GRIDS["scale"]["percentile"] == (65, 70, 75, 80, 85, 90, 95)
    gen = candidates("gen", num_train=10, num_features=None)
    assert len(gen) == 42 and gen[:2] == [{"gamma": 0.01, "m": 10}, {"gamma": 0.1, "m": 10}]  # gamma fastest
    assert candidates("vim", num_train=10, num_features=300) == [{"dim": 256}]
    assert candidates("vim", num_train=10, num_features=128) == []
    assert candidates("mahalanobis", num_train=10, num_features=8) == []
    assert effective_params("react", {"percentile": 95, "weight": 1}) == {"percentile": 95}
    assert effective_params("gen", {}) == {"gamma": 0.1, "m": 100}


def test_the_report_records_the_chosen_values_in_detector_params(tmp_path):
    table = evaluate_stores(_knn_model(tmp_path), tmp_path / "out", num_trials=2, resamples=0,
                            posthoc=("knn",), plots=False)
    row = table.set_index("method").loc["softmax+knn"]
    assert json.loads(row[DETECTOR_PARAMS_COLUMN]) == {"k": 200}
    assert (table.set_index("method").loc["softmax", DETECTOR_PARAMS_COLUMN] in ("", None)
            or table.set_index("method")["detector_params"].isna()["softmax"])
    assert (table["unknown_set"] == "hmdb").all()  # the validation unknowns are no report row
    none = evaluate_stores(_knn_model(tmp_path), tmp_path / "none", num_trials=2, resamples=0,
                           posthoc=("knn",), plots=False, posthoc_tune="none")
    assert json.loads(none.set_index("method").loc["softmax+knn", DETECTOR_PARAMS_COLUMN]) == {"k": 50}
    with pytest.raises(ValueError, match="tune='test'"):
        evaluate_stores(_knn_model(tmp_path), tmp_path / "bad", posthoc=("knn",), plots=False,
                        posthoc_tune="test")


def test_the_cli_flag(tmp_path, capsys):
    import pandas as pd

    from dear_ray.cli import main

    paths = _knn_model(tmp_path)
    for mode, k in (("val", 200), ("none", 50)):
        out = tmp_path / mode
        assert main(["evaluate", str(paths[0].parent), "--out", str(out), "--resamples", "0",
                     "--posthoc-tune", mode]) == 0
        table = pd.read_csv(out / "results.csv").set_index("method")
        assert json.loads(table.loc["softmax+knn", DETECTOR_PARAMS_COLUMN]) == {"k": k}


def test_resolved_values_are_recorded(tmp_path):
    """ViM's default dim (F/2 below F = 512) and temp_msp's fitted temperature, not None / nothing."""
    from dear_ray.scores import write_classifier

    paths = _knn_model(tmp_path)
    write_classifier(paths[0].parent, 3.0 * np.eye(K, F), np.zeros(K))  # the stores' logits
    stores = [read_score_store(p) for p in paths]
    stores = [dataclasses.replace(s, meta=dataclasses.replace(s.meta, extra={**s.meta.extra,
                                                                              "classifier": "classifier.npz"}))
              for s in stores]
    (group,) = group_stores(stores)
    plans, skipped = posthoc_plans(group, ["vim", "temp_msp"], tune="none")
    assert not skipped
    params = {p.method: p.params for p in plans}
    assert params["softmax+vim"] == {"dim": 2}
    assert set(params["softmax+temp_msp"]) == {"temperature"} and params["softmax+temp_msp"]["temperature"] > 0

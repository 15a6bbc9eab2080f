"""`eval.exclude_classes`: every metric of an unknown set with and without the named classes."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dear_ray.data.overlap import find_overlap, format_overlap
from dear_ray.metrics.evaluate import evaluate_stores
from dear_ray.metrics.exclusion import (
    Exclusion,
    class_names_of_list,
    exclusion_from_config,
    read_exclusion_names,
    without_classes,
)
from dear_ray.scores import read_score_store


def _unknown_list(folder, names_by_label):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"videos/{name}/{name}_{i:05d}.mp4 {label}" for label, name in names_by_label.items() for i in range(2)]
    (folder / "unknown.txt").write_text("\n".join(lines) + "\n")
    return folder / "unknown.txt"


def test_names_from_a_list_a_plain_file_and_saved_overlap_output(tmp_path):
    assert read_exclusion_names(["bounce", " pulse", "bounce"]) == (["bounce", "pulse"], "excluded")
    plain = tmp_path / "k400_seen.txt"
    plain.write_text("# seen in pretraining\nbounce\n\npulse\n")
    assert read_exclusion_names(plain) == (["bounce", "pulse"], "k400_seen")
    unknown = ["brush_hair", "chew", "ride_bike"]
    pairs = find_overlap(unknown, ["brushing hair", "riding a bike", "archery"], mapping=None)
    saved = tmp_path / "overlap.txt"
    saved.write_text(format_overlap(pairs, unknown, unknown_name="hmdb51", pretrain_name="kinetics400",
                                    mapping=None) + "\n")
    assert read_exclusion_names(saved) == (["brush_hair", "ride_bike"], "kinetics400")
    with pytest.raises(FileNotFoundError, match="is no file"):
        read_exclusion_names(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="no class names"):
        read_exclusion_names([])


def test_class_names_come_from_the_videos_folders(tmp_path):
    path = _unknown_list(tmp_path, {0: "bounce", 1: "pulse", 2: "shake"})
    assert class_names_of_list(path) == {0: "bounce", 1: "pulse", 2: "shake"}
    path.write_text("videos/bounce/a.mp4 0\nvideos/pulse/b.mp4 0\n")
    with pytest.raises(ValueError, match="label 0 is class 'bounce' .* 'pulse' here"):
        class_names_of_list(path)
    lists = {"hmdb": _unknown_list(tmp_path / "d", {3: "bounce", 8: "pulse", 11: "shake"})}
    with pytest.raises(ValueError, match="fly is no class of the unknown set"):
        exclusion_from_config(["pulse", "fly"], tmp_path, {k: str(v) for k, v in lists.items()})
    exclusion = exclusion_from_config(["pulse"], tmp_path / "d", {"hmdb": "unknown.txt"})
    assert exclusion == Exclusion("excluded", {"hmdb": frozenset({8})})


def test_every_metric_with_and_without_the_excluded_classes(make_stores, tmp_path):
    paths = make_stores(head="softmax", run="soft")  # unknown classes 3, 8, 11 of set `hmdb`
    exclusion = Exclusion("k400", {"hmdb": frozenset({8})})
    table = evaluate_stores(list(paths.values()), tmp_path / "out", num_trials=3, resamples=20, posthoc=(),
                            plots=False, exclude_classes=exclusion)
    soft = table[table["method"] == "softmax"].set_index("unknown_set")
    assert list(soft.index) == ["hmdb", "hmdb-minus-k400"]
    known, unknown = read_score_store(paths["test"]), read_score_store(paths["unknown"])
    kept = unknown.labels != 8
    for name, mask in (("hmdb", np.ones_like(kept)), ("hmdb-minus-k400", kept)):
        truth = np.r_[np.zeros(len(known)), np.ones(mask.sum())]
        by_hand = roc_auc_score(truth, np.r_[known.scores["msp"], unknown.scores["msp"][mask]])
        assert soft.loc[name, "auroc"] == pytest.approx(by_hand)
        assert soft.loc[name, "auroc_ci_low"] <= soft.loc[name, "auroc"] <= soft.loc[name, "auroc_ci_high"]
    assert soft.loc["hmdb", "closed_top1"] == soft.loc["hmdb-minus-k400", "closed_top1"]
    assert soft.loc["hmdb", "auroc"] != soft.loc["hmdb-minus-k400", "auroc"]
    # post-hoc rows too, and a set without an excluded class is reported once
    more = evaluate_stores(list(paths.values()), tmp_path / "more", num_trials=2, resamples=0, plots=False,
                           posthoc=("energy",), exclude_classes=exclusion)
    assert sorted(more[more["method"] == "softmax+energy"]["unknown_set"]) == ["hmdb", "hmdb-minus-k400"]
    other = evaluate_stores(list(paths.values()), tmp_path / "other", num_trials=2, resamples=0, plots=False,
                            posthoc=(), exclude_classes=Exclusion("x", {"mit": frozenset({1})}))
    assert set(other["unknown_set"]) == {"hmdb"}


def test_without_classes_cuts_every_per_video_array(make_stores):
    unknown = read_score_store(make_stores(head="softmax", run="soft")["unknown"])
    cut = without_classes(unknown, frozenset({3, 11}))
    assert set(cut.labels) == {8} and len(cut) == 10
    assert cut.logits.shape[0] == cut.features.shape[0] == cut.preds.size == len(cut.video_ids) == 10
    assert all(v.size == 10 for v in cut.scores.values())
    if cut.sample_logits is not None:
        assert cut.sample_logits.shape[1] == 10
    with pytest.raises(ValueError, match="leaves no unknown video"):
        without_classes(unknown, frozenset({3, 8, 11}))


def test_the_aggregator_reads_the_sweeps_eval_exclude_classes(tmp_path):
    import json

    from dear_ray.tracking.aggregate import sweep_exclusion

    data = tmp_path / "data"
    _unknown_list(data, {0: "bounce", 1: "pulse"})
    config = {"data": {"data_root": str(data), "unknown": {"unknown": "unknown.txt"}},
              "eval": {"exclude_classes": ["pulse"]}}
    (tmp_path / "trials.json").write_text(json.dumps({"t0": {"eval": {}}, "t1": config}))
    assert sweep_exclusion(tmp_path) == Exclusion("excluded", {"unknown": frozenset({1})})
    (tmp_path / "trials.json").write_text(json.dumps({"t0": {"eval": {}, "data": {}}}))
    assert sweep_exclusion(tmp_path) is None

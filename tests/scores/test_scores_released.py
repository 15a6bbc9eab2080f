"""Importing DEAR / PSL result files and score tables as score stores (dear_ray.scores.released)."""

import numpy as np
import pandas as pd
import pytest

from dear_ray.scores import read_score_store
from dear_ray.scores.importing import import_scores
from dear_ray.scores.released import ScoreImportError, detect_layout, read_dear_npz


def _unctt(path, **override):
    """A 4-known / 3-unknown file in the `unctt` layout (DEAR's ood_detection.py keys)."""
    arrays = {"ind_unctt": np.array([0.1, 0.5, 0.2, 0.3], np.float32),
              "ood_unctt": np.array([0.6, 0.05, 0.9], np.float32),
              "ind_pred": np.array([0, 1, 2, 0]), "ood_pred": np.array([1, 1, 2]),
              "ind_label": np.array([0, 1, 1, 0]), "ood_label": np.array([3, 50, 3]),
              "ind_conf": np.ones(4, np.float32), "ood_conf": np.ones(3, np.float32)}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_unctt_file_becomes_two_stores_in_file_order(tmp_path):
    paths = import_scores([_unctt(tmp_path / "TSM_DEAR_HMDB.npz")], method="dear", unknown_set="hmdb51",
                          known_set="k3", out_dir=tmp_path / "out", threshold=0.3)
    known, unknown = (read_score_store(p) for p in paths)
    assert [p.name for p in paths] == ["test.parquet", "unknown_hmdb51.parquet"]
    assert known.meta.run == unknown.meta.run == "TSM_DEAR_HMDB" and known.meta.method == "dear"
    assert known.meta.num_known == 3  # an unnamed known set: max(label, pred) + 1
    assert known.logits is None and known.video_ids.tolist() == ["000000", "000001", "000002", "000003"]
    assert known.scores["uncertainty"].tolist() == pytest.approx([0.1, 0.5, 0.2, 0.3])
    assert known.preds.tolist() == [0, 1, 2, 0] and unknown.labels.tolist() == [3, 50, 3]
    # numpy compares the typed 0.3 with a float32 array in float32: the stored threshold is float32(0.3)
    assert known.meta.threshold == float(np.float32(0.3)) != 0.3
    assert known.meta.extra["threshold_given"] == "0.3" and unknown.meta.extra["class_order"] == "mmaction2"


def test_the_threshold_compares_in_the_files_precision(tmp_path):
    # a score between 0.3 and float32(0.3) = 0.30000001192...: numpy's `u > 0.3` on the float32
    # array is False for float32(0.3) itself; in float64 it would be True
    u = np.array([np.float32(0.3), 0.1, 0.2, 0.1], np.float32)
    model = read_dear_npz(_unctt(tmp_path / "f.npz", ind_unctt=u), unknown_set="x", known_set="k3", threshold=0.3)
    scores = model.splits["test"].scores
    assert (u > 0.3).tolist() == (scores > model.threshold).tolist() == [False, False, False, False]
    assert (scores > 0.3).tolist()[0]


def test_a_2d_uncertainty_gives_the_column_psl_reads(tmp_path):
    two = np.array([[0.1, 9.0], [0.5, 9.0], [0.2, 9.0], [0.3, 9.0]], np.float32)
    model = read_dear_npz(_unctt(tmp_path / "bnn.npz", ind_unctt=two, ood_unctt=np.ones((3, 2), np.float32)),
                          unknown_set="x", known_set="k3")
    assert model.splits["test"].scores.tolist() == pytest.approx([0.1, 0.5, 0.2, 0.3])
    assert read_dear_npz(tmp_path / "bnn.npz", unknown_set="x", known_set="k3", column=1).splits[
        "test"].scores.tolist() == [9.0] * 4


def test_softmax_layout_scores_one_minus_msp_and_takes_a_confidence_threshold(tmp_path):
    ind = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], np.float32)
    ood = np.array([[0.34, 0.33, 0.33], [0.9, 0.05, 0.05]], np.float32)
    np.savez(tmp_path / "rpl.npz", ind_softmax=ind, ood_softmax=ood, ind_label=np.array([0, 2, 2]),
             ood_label=np.array([0, 1]))
    model = read_dear_npz(tmp_path / "rpl.npz", unknown_set="x", known_set="k3", threshold=0.75)
    assert model.layout == "softmax" and model.score == "msp"
    test = model.splits["test"]
    assert test.preds.tolist() == [0, 2, 1]
    assert test.scores.tolist() == [float(np.float32(1) - np.float32(v)) for v in (0.7, 0.8, 0.4)]
    # DEAR rejects `max p < 0.75`; stored: reject `1 - max p > 1 - float32(0.75)`
    assert model.threshold == 0.25
    rejected = np.r_[ind.max(1), ood.max(1)] < np.float32(0.75)
    assert (np.r_[test.scores, model.splits["unknown"].scores] > model.threshold).tolist() == rejected.tolist()


def test_openmax_layout_has_decisions_over_k_plus_1(tmp_path):
    ind = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])  # K = 2 known classes + unknown column
    ood = np.array([[0.1, 0.2, 0.7]])
    np.savez(tmp_path / "om.npz", ind_openmax=ind, ood_openmax=ood, ind_label=np.array([0, 1]),
             ood_label=np.array([4]))
    paths = import_scores([tmp_path / "om.npz"], method="openmax", unknown_set="x", known_set="k2",
                          out_dir=tmp_path / "out")
    known, unknown = (read_score_store(p) for p in paths)
    assert known.meta.num_known == 2 and known.scores["openmax"].tolist() == [0.1, 0.5]
    assert known.decisions.tolist() == [0, 2] and known.preds.tolist() == [0, 1]  # argmax K+1 / argmax K
    assert unknown.decisions.tolist() == [2]


def test_layout_detection():
    assert detect_layout(["ind_unctt", "ood_unctt", "ind_pred", "ood_pred", "ind_label", "ood_label"], "f") == "unctt"
    both = ["ind_softmax", "ood_softmax", "ind_openmax", "ood_openmax", "ind_label", "ood_label"]
    with pytest.raises(ScoreImportError, match="f: holds the layouts softmax and openmax; name one with --layout"):
        detect_layout(both, "f")
    assert detect_layout(both, "f", "openmax") == "openmax"


@pytest.mark.parametrize("override, message", [
    ({"ood_pred": None}, r"bad\.npz: no key 'ood_pred' \(layout unctt needs"),
    ({"ind_pred": np.array([0, 1, 2])}, r"bad\.npz: key 'ind_pred' has 3 rows, key 'ind_label' has 4"),
    ({"ood_unctt": np.array([0.6, np.nan, 0.9], np.float32)},
     r"bad\.npz: key 'ood_unctt' has 1 NaN/inf value\(s\), first at row 1"),
    ({"ind_label": np.array([0, 1, 101, 0])},
     r"bad\.npz: key 'ind_label' has value 101 at row 2, outside \[0, 101\) \(the known set ucf101 has 101"),
    ({"ood_label": np.array([3, 51, 3])},
     r"bad\.npz: key 'ood_label' has value 51 at row 1, outside \[0, 51\) \(the unknown set hmdb51 has 51"),
    ({"ood_pred": np.array([1, -1, 2])}, r"bad\.npz: key 'ood_pred' has value -1 at row 1, outside \[0, 101\)"),
])
def test_bad_files_get_one_line_naming_file_and_key_and_nothing_is_written(tmp_path, override, message):
    good = _unctt(tmp_path / "good.npz")
    bad = _unctt(tmp_path / "bad.npz", **override)
    with pytest.raises(ScoreImportError, match=message) as err:
        import_scores([good, bad], method="dear", unknown_set="hmdb51", out_dir=tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # the good file was not written either


def test_unreadable_and_pickled_files(tmp_path):
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ScoreImportError, match=r"junk\.npz: not a readable \.npz file"):
        read_dear_npz(tmp_path / "junk.npz", unknown_set="x")
    np.savez(tmp_path / "obj.npz", ind_unctt=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ScoreImportError, match=r"obj\.npz: key 'ind_unctt' holds Python objects"):
        read_dear_npz(tmp_path / "obj.npz", unknown_set="x")
    with pytest.raises(ScoreImportError, match=r"none\.npz: no such file"):
        read_dear_npz(tmp_path / "none.npz", unknown_set="x")


def test_score_table_csv_with_logits_and_parquet(tmp_path):
    frame = pd.DataFrame({"video_id": ["a", "b", "c", "u1", "u2"], "split": ["test"] * 3 + ["unknown"] * 2,
                          "label": [0, 1, 1, 7, 9], "pred": [0, 1, 0, 1, 0], "score": [0.1, 0.2, 0.3, 0.8, 0.9],
                          "logit_0": [2.0, 0.0, 1.0, 0.5, 0.1], "logit_1": [0.0, 2.0, 0.5, 0.4, 0.0]})
    frame.to_csv(tmp_path / "mine.csv", index=False)
    paths = import_scores([tmp_path / "mine.csv"], fmt="table", method="mine", unknown_set="other",
                          known_set="k2", out_dir=tmp_path / "out", threshold=0.5)
    known, unknown = (read_score_store(p) for p in paths)
    assert known.meta.num_known == 2 and known.meta.threshold == 0.5
    assert known.scores["score"].tolist() == [0.1, 0.2, 0.3]
    assert known.logits.shape == (3, 2) and known.preds.tolist() == [0, 1, 0]  # the table's pred is kept
    assert unknown.video_ids.tolist() == ["u1", "u2"] and unknown.labels.tolist() == [7, 9]
    frame.drop(columns=["logit_0", "logit_1"]).to_parquet(tmp_path / "mine.parquet")
    again = read_score_store(import_scores([tmp_path / "mine.parquet"], fmt="table", method="mine",
                                           unknown_set="other", known_set="k2", out_dir=tmp_path / "o2")[0])
    assert again.logits is None and again.scores["score"].tolist() == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["score"]), r"t\.csv: no column 'score'"),
    (lambda f: f.assign(split=["test", "test", "val2", "unknown"]), r"t\.csv: column 'split' has value 'val2'"),
    (lambda f: f.assign(score=[0.1, np.nan, 0.2, 0.3]),
     r"t\.csv: key 'score' has 1 NaN/inf value\(s\), first at row 1"),
    (lambda f: f.assign(label=[0, 5, 1, 2]), r"t\.csv: key 'label' has value 5 at row 1, outside \[0, 2\)"),
])
def test_bad_score_tables(tmp_path, change, message):
    frame = pd.DataFrame({"video_id": list("abcd"), "split": ["test", "test", "unknown", "unknown"],
                          "label": [0, 1, 1, 2], "pred": [0, 1, 0, 0], "score": [0.1, 0.2, 0.3, 0.4],
                          "logit_0": [1.0, 0.0, 1.0, 1.0], "logit_1": [0.0, 1.0, 0.0, 0.0]})  # K = 2
    change(frame).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ScoreImportError, match=message):
        import_scores([tmp_path / "t.csv"], fmt="table", method="m", unknown_set="x", known_set="k2",
                      out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()

"""The classifier file beside the stores and the score-averaged logits it gives back."""

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp

from dear_ray.scores import (
    CLASSIFIER_KEY,
    ClassifierError,
    StoreMeta,
    read_classifier,
    read_score_store,
    store_logits,
    write_classifier,
    write_score_store,
)

W = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
B = np.array([0.5, -0.5])
FEATS = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0], [3.0, 1.0, 1.0]])


def _store(tmp_path, *, logits, average_clips="score", named=True):
    extra = {"average_clips": average_clips, **({CLASSIFIER_KEY: "classifier.npz"} if named else {})}
    meta = StoreMeta(split="train", dataset="synth", num_known=2, head="softmax", checkpoint="c", run="r",
                     extra=extra)
    return read_score_store(write_score_store(tmp_path / "train.parquet", video_ids=["a", "b", "c"],
                                              labels=np.array([0, 1, 0]), logits=logits, features=FEATS,
                                              scores={}, meta=meta))


def test_the_file_round_trips_and_gives_the_score_averaged_logits(tmp_path):
    write_classifier(tmp_path, W, B)
    score_avg = _store(tmp_path, logits=FEATS @ W.T + B)
    clf = read_classifier(score_avg)
    np.testing.assert_allclose(clf.weight, W)
    np.testing.assert_allclose(store_logits(score_avg, clf), FEATS @ W.T + B, atol=1e-6)
    # a prob-averaged train split stores log(mean softmax) (here one view: log softmax), whose
    # energy is 0; the recomputed logits are the test splits' kind
    prob = _store(tmp_path, logits=log_softmax(FEATS @ W.T + B, axis=1), average_clips="prob/prob")
    assert -logsumexp(prob.logits, axis=1) == pytest.approx(np.zeros(3), abs=1e-6)
    np.testing.assert_allclose(store_logits(prob, read_classifier(prob)), FEATS @ W.T + B)
    np.testing.assert_allclose(store_logits(prob, None), prob.logits)  # without the file: as stored


def test_missing_or_foreign_files_are_errors_that_name_them(tmp_path):
    assert read_classifier(_store(tmp_path, logits=FEATS @ W.T, named=False)) is None
    with pytest.raises(ClassifierError, match="classifier.npz.*does not exist"):
        read_classifier(_store(tmp_path, logits=FEATS @ W.T))
    write_classifier(tmp_path, W * 2, B)
    store = _store(tmp_path, logits=FEATS @ W.T + B)
    with pytest.raises(ClassifierError, match="does not belong to this store"):
        store_logits(store, read_classifier(store))
    write_classifier(tmp_path, np.ones((3, 3)))
    with pytest.raises(ClassifierError, match=r"expected \(K=2, F\)"):
        read_classifier(store)

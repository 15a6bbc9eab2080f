"""The table of methods (`dear_ray.methods`) against the model registry and its readers."""

from __future__ import annotations

import pytest

from dear_ray import methods
from dear_ray.methods import HEAD_ROWS, DerivedMethod, HeadSpec
from dear_ray.models.heads import list_heads
from dear_ray.scores import compute_scores, list_scores, methods_for_head, scores_for_head
from dear_ray.train.evaluation import average_clips_for


def test_every_registered_head_has_one_row_and_every_row_a_head():
    assert sorted(HEAD_ROWS) == sorted(list_heads())


def test_every_score_of_the_table_is_a_registered_score():
    registered = set(list_scores())
    for spec in HEAD_ROWS.values():
        named = set(spec.scores) | set(spec.pass_scores) | {d.score for d in spec.derived}
        assert named <= registered, (spec.name, named - registered)


def test_the_readers_follow_the_table(monkeypatch):
    # a new row is enough for the scores, the report's methods and the view averaging
    row = HeadSpec("newhead", scores=("rpl", "msp"), default_score="rpl", average_clips="prob",
                   derived=(DerivedMethod("newhead_mc", "bald", needs_passes=True),))
    monkeypatch.setitem(HEAD_ROWS, "newhead", row)
    assert scores_for_head("newhead") == ["rpl", "msp"]
    assert methods_for_head("newhead", stochastic_passes=1) == ["newhead"]
    assert methods_for_head("newhead", stochastic_passes=10) == ["newhead", "newhead_mc"]
    assert average_clips_for("newhead", "test", "released", backbone="i3d_r50") == "prob"
    assert methods.default_threshold_rank("newhead", "rpl") == "baseline_softmax"
    monkeypatch.setitem(HEAD_ROWS, "newhead", HeadSpec("newhead", scores=("vacuity", "msp"),
                                                         default_score="vacuity", evidential=True))
    assert methods.default_threshold_rank("newhead", "msp") == "get_threshold"
    assert methods.default_prediction_rule("newhead", "msp") == "dirichlet"


def test_the_table_gives_the_released_rules():
    assert methods.EVIDENTIAL_HEADS == ("edl", "edl_avu", "dear", "dear_alt")
    assert methods.STOCHASTIC_HEADS == ("softmax", "bnn")
    assert methods.POSTHOC_HEADS == ("softmax", "sdn")
    assert methods.DEFAULT_SCORES["mc_dropout"] == "bald" and methods.DEFAULT_SCORES["openmax"] == "openmax"
    assert methods_for_head("softmax", stochastic_passes=10) == ["softmax", "mc_dropout", "openmax"]
    assert methods_for_head("softmax", stochastic_passes=1) == ["softmax", "openmax"]
    assert scores_for_head("softmax", sample_logits=True, openmax=True)[-2:] == ["bald", "openmax"]
    assert "openmax" not in scores_for_head("sdn", openmax=True)
    assert methods.default_threshold_rank("imported", "msp") == "baseline_softmax"
    assert methods.default_prediction_rule("bnn", "bald") == "mean_passes"


def test_a_bad_row_or_head_is_refused_with_its_name():
    with pytest.raises(ValueError, match="average_clips 'mean'"):
        HeadSpec("x", scores=("msp",), default_score="msp", average_clips="mean")
    with pytest.raises(ValueError, match="default score 'vacuity'"):
        HeadSpec("x", scores=("msp",), default_score="vacuity")
    with pytest.raises(ValueError, match="unknown head 'nope'"):
        scores_for_head("nope")
    with pytest.raises(ValueError, match="needs sample_logits"):
        compute_scores("bnn", [[0.0, 1.0]])

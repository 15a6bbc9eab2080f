import numpy as np
import pytest

from dear_ray.registry import UnknownNameError
from dear_ray.scores import (
    OpenMax,
    compute_scores,
    create_score,
    default_score,
    list_scores,
    methods_for_head,
    scores_for_head,
)
from dear_ray.scores import bald as B
from dear_ray.scores import evidential as E
from dear_ray.scores import softmax as S

Z = np.random.default_rng(0).normal(size=(7, 5)) * 2
SAMPLES = np.random.default_rng(1).normal(size=(4, 7, 5))


def test_registry_lists_every_score_and_rejects_unknown_names():
    assert list_scores() == ["ash", "bald", "dice", "diff_entropy", "energy", "entropy", "fdbd", "gen", "knn",
                             "mahalanobis", "maxlogit", "mpu", "msp", "mutual_info", "nnguide", "openmax", "psl",
                             "react", "rmds", "rpl", "scale", "she", "temp_msp", "vacuity", "vim"]
    with pytest.raises(UnknownNameError, match="unknown score 'odin'; known scores: ash, bald, dice"):
        create_score("odin")


@pytest.mark.parametrize("name, fn", [("msp", S.msp), ("entropy", S.entropy), ("energy", S.energy),
                                      ("maxlogit", S.maxlogit), ("rpl", S.rpl), ("vacuity", E.vacuity)])
def test_created_scores_match_the_functions(name, fn):
    np.testing.assert_allclose(create_score(name)(Z), fn(Z))


def test_score_options():
    np.testing.assert_allclose(create_score("vacuity", evidence="relu")(Z), E.vacuity(Z, "relu"))
    np.testing.assert_allclose(create_score("msp", probability="dirichlet")(Z), E.evidential_msp(Z))
    np.testing.assert_allclose(create_score("bald")(Z, sample_logits=SAMPLES), B.bald(SAMPLES))
    assert isinstance(create_score("openmax", tail_size=10), OpenMax)
    with pytest.raises(ValueError, match="bald needs sample_logits"):
        create_score("bald")(Z)
    with pytest.raises(ValueError, match="evidence='tanh'"):
        create_score("vacuity", evidence="tanh")


def test_scores_for_head_table():
    assert scores_for_head("softmax") == ["msp", "entropy", "energy", "maxlogit"]
    assert scores_for_head("softmax", sample_logits=True, openmax=True)[-2:] == ["bald", "openmax"]
    assert scores_for_head("bnn") == ["bald", "msp"]
    assert scores_for_head("rpl") == ["rpl", "msp"]
    assert scores_for_head("sdn") == ["msp", "entropy", "energy", "maxlogit"]
    for head in ("edl", "edl_avu", "dear", "dear_alt"):
        assert scores_for_head(head) == ["vacuity", "msp"]
    with pytest.raises(ValueError, match="unknown head 'tsm'; heads with scores: softmax"):
        scores_for_head("tsm")


def test_compute_scores_per_head():
    out = compute_scores("softmax", Z, sample_logits=SAMPLES)
    assert sorted(out) == ["bald", "energy", "entropy", "maxlogit", "msp"]
    np.testing.assert_allclose(out["bald"], B.bald(SAMPLES))
    dear = compute_scores("dear", Z)
    np.testing.assert_allclose(dear["vacuity"], E.vacuity(Z))
    np.testing.assert_allclose(dear["msp"], E.evidential_msp(Z))  # msp on alpha / S, not softmax
    assert not np.allclose(dear["msp"], S.msp(Z))
    np.testing.assert_allclose(compute_scores("edl", Z, evidence="softplus")["vacuity"], E.vacuity(Z, "softplus"))
    assert sorted(compute_scores("bnn", Z, sample_logits=SAMPLES)) == ["bald", "msp"]
    with pytest.raises(ValueError, match="head 'bnn' needs sample_logits"):
        compute_scores("bnn", Z)


def test_methods_for_head():
    assert methods_for_head("softmax", stochastic_passes=10) == ["softmax", "mc_dropout", "openmax"]
    assert methods_for_head("softmax") == ["softmax", "openmax"]  # no passes, no BALD
    assert methods_for_head("dear", stochastic_passes=10) == ["dear"]
    rows = ("knn", "scale", "mpu", "mutual_info")  # detectors for softmax classifiers, Dirichlet scores for EDL
    assert methods_for_head("sdn", posthoc=rows) == ["sdn", "sdn+knn", "sdn+scale"]
    assert methods_for_head("dear", posthoc=rows) == ["dear", "dear+mpu", "dear+mutual_info"]
    assert methods_for_head("rpl", posthoc=rows) == ["rpl"]
    with pytest.raises(ValueError, match="unknown head 'mc_dropout'"):
        methods_for_head("mc_dropout")


def test_default_scores():
    assert [default_score(m) for m in ("softmax", "mc_dropout", "openmax", "dear", "rpl")] == \
        ["msp", "bald", "openmax", "vacuity", "rpl"]
    with pytest.raises(ValueError, match="unknown method 'foo'"):
        default_score("foo")

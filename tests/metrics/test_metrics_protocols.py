"""The `psl` protocol (Jun-CEN/PSL evaluation_code) on small stores with known answers."""

import numpy as np
import pytest
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve

from dear_ray.metrics.evaluate import evaluate_stores
from dear_ray.metrics.protocols import (
    hmdb51_class_ids,
    hmdb51_classes,
    psl_overlap_classes,
    psl_slices,
    psl_unknown,
)
from dear_ray.scores import StoreMeta, compute_scores, read_score_store, write_score_store

K = 3
PSL_REPEATED = [35, 29, 15, 26, 30, 34, 43, 31]  # PSL compare_openness_new_hmdb.py `repeated_clss`


def test_the_shipped_overlap_list_is_psls_class_ids():
    names = psl_overlap_classes()
    assert names == ["shoot_bow", "pushup", "golf", "pullup", "ride_bike", "shoot_ball", "swing_baseball",
                     "ride_horse"]
    assert hmdb51_class_ids(names, "mmaction2").tolist() == PSL_REPEATED
    # dear-ray's own lists order classes by split file name: other ids for climb_stairs etc.,
    # but the same ids for the 8 overlapping classes
    assert hmdb51_class_ids(names, "lists").tolist() == PSL_REPEATED
    assert hmdb51_classes("mmaction2")[5:7] == ["climb", "climb_stairs"]
    assert hmdb51_classes("lists")[5:7] == ["climb_stairs", "climb"] and len(hmdb51_classes()) == 51
    with pytest.raises(ValueError, match="not HMDB-51 class names"):
        hmdb51_class_ids(["Archery"])


def _write(path, split, dataset, labels, logits, run, head="softmax", ids=None):
    meta = StoreMeta(split=split, dataset=dataset, num_known=K, head=head, checkpoint="c", run=run)
    ids = ids if ids is not None else [f"{dataset}_{i:03d}" for i in range(len(labels))]
    return write_score_store(path, video_ids=ids, labels=np.asarray(labels), logits=logits,
                             features=np.abs(logits), scores=compute_scores(head, logits), meta=meta)


def _model(tmp_path, run, head, rng, mit_ids=None):
    """Known splits with confident logits; an HMDB-51 set whose overlap classes look KNOWN (confident)
    and whose other classes look unknown (flat); a MiT-v2 set of 25 videos."""
    folder = tmp_path / run
    confident = lambda y: rng.normal(0, 0.5, (len(y), K)) + 4 * np.eye(K)[np.asarray(y) % K]  # noqa: E731
    train, test = np.arange(30) % K, np.arange(15) % K
    hmdb = np.array([15, 26, 29, 0, 1, 2, 40, 50, 35, 3, 4, 5])  # 4 overlap videos first + 1 later
    overlap = np.isin(hmdb, PSL_REPEATED)
    hmdb_logits = np.where(overlap[:, None], confident(hmdb), rng.normal(0, 0.5, (hmdb.size, K)))
    mit = np.arange(25) % 7
    mit_logits = rng.normal(0, 1.0, (25, K)) + 2.0 * (np.arange(25)[:, None] % 5 == 0) * np.eye(K)[mit % K]
    return [_write(folder / "train.parquet", "train", "ucf101", train, confident(train), run, head),
            _write(folder / "test.parquet", "test", "ucf101", test, confident(test), run, head),
            _write(folder / "unknown_hmdb51.parquet", "unknown", "hmdb51", hmdb, hmdb_logits, run, head),
            _write(folder / "unknown_mit_v2.parquet", "unknown", "mit_v2", mit, mit_logits, run, head, ids=mit_ids)]


def _psl_reference(known, unknown):
    """PSL's eval_osr on one known / unknown pair: AUROC, trapezoidal AUPR, FPR at argmin |TPR - 0.95|."""
    y = np.r_[np.zeros(known.size), np.ones(unknown.size)]
    s = np.r_[known, unknown]
    precision, recall, _ = precision_recall_curve(y, s)
    fpr, tpr, _ = roc_curve(y, s, pos_label=1)
    return roc_auc_score(y, s), auc(recall, precision), fpr[np.abs(tpr - 0.95).argmin()]


def test_hmdb_loses_the_overlap_classes_and_mit_averages_ten_subsamples(tmp_path):
    rng = np.random.default_rng(0)
    paths = _model(tmp_path, "soft", "softmax", rng)
    stores = {p.stem: read_score_store(p) for p in paths}
    kept = psl_unknown(stores["unknown_hmdb51"])
    assert sorted(kept.labels.tolist()) == [0, 1, 2, 3, 4, 5, 40, 50]  # 15, 26, 29, 35 removed
    assert psl_unknown(stores["unknown_mit_v2"]) is stores["unknown_mit_v2"]  # only HMDB-51 loses classes

    table = evaluate_stores(paths, tmp_path / "out", protocol="psl", num_trials=2, posthoc=(), resamples=50,
                            mit_known_rows=None)
    assert (table["protocol"] == "psl").all() and table["open_maf1"].isna().all()
    assert sorted(table["method"]) == ["openmax", "openmax", "softmax", "softmax"]
    row = table[table["method"] == "softmax"].set_index("unknown_set")
    ks = stores["test"].score("msp")
    hmdb = stores["unknown_hmdb51"]
    auroc, aupr, fpr = _psl_reference(ks, kept.score("msp"))
    assert row.loc["hmdb51", "auroc"] == pytest.approx(auroc)
    assert row.loc["hmdb51", "aupr_out_trapz"] == pytest.approx(aupr)
    assert row.loc["hmdb51", "fpr_at_95_tpr_nearest"] == pytest.approx(fpr)
    assert auroc > _psl_reference(ks, hmdb.score("msp"))[0]  # the confident overlap videos are gone
    # MiT-v2: 10 consecutive slices of int(25 / 10) = 2 videos in video-id order, the rest dropped
    mit = stores["unknown_mit_v2"]
    order = np.argsort(mit.video_ids.astype(str))
    parts = [_psl_reference(ks, mit.score("msp")[order[2 * i:2 * i + 2]]) for i in range(10)]
    for j, key in enumerate(("auroc", "aupr_out_trapz", "fpr_at_95_tpr_nearest")):
        assert row.loc["mit_v2", key] == pytest.approx(np.mean([p[j] for p in parts])), key
    assert row.loc["mit_v2", "auroc"] != pytest.approx(_psl_reference(ks, mit.score("msp"))[0])
    assert row.loc["mit_v2", "auroc_ci_low"] <= row.loc["mit_v2", "auroc"] <= row.loc["mit_v2", "auroc_ci_high"]
    assert (tmp_path / "out" / "results.md").is_file() and not (tmp_path / "out" / "openness_curves.parquet").exists()


def test_the_mit_subsamples_are_the_same_for_every_method(tmp_path):
    rng = np.random.default_rng(1)
    ids = [f"mit_v2_{i:03d}" for i in range(25)]
    a = read_score_store(_model(tmp_path, "a", "softmax", rng, mit_ids=ids)[3])
    b = read_score_store(_model(tmp_path, "b", "edl", rng, mit_ids=ids[::-1])[3])  # another row order
    known = np.arange(15).astype(str)

    def slices(store, **options):
        return psl_slices(known, store.video_ids, "mit_v2", mit_known_rows=None, **options)

    for order in ("released", "shuffled"):
        sa, sb = slices(a, mit_order=order, seed=3), slices(b, mit_order=order, seed=3)
        assert len(sa) == 10 and all(s.unknown.size == 2 and s.known.size == 15 for s in sa)
        assert [a.video_ids[s.unknown].tolist() for s in sa] == [b.video_ids[s.unknown].tolist() for s in sb]
    released = [a.video_ids[s.unknown].tolist() for s in slices(a)]
    assert released[0] == ["mit_v2_000", "mit_v2_001"] and released[-1] == ["mit_v2_018", "mit_v2_019"]

    def shuffled(seed):
        return [a.video_ids[s.unknown].tolist() for s in slices(a, mit_order="shuffled", seed=seed)]

    assert shuffled(3) == shuffled(3) != shuffled(4) != released
    table = evaluate_stores([*(tmp_path / "a").glob("*.parquet"), *(tmp_path / "b").glob("*.parquet")],
                            tmp_path / "out", protocol="psl", posthoc=(), resamples=0, plots=False,
                            mit_known_rows=None)
    assert sorted(table["method"]) == ["edl", "edl", "openmax", "openmax", "softmax", "softmax"]
    with pytest.raises(ValueError, match="protocol='openood'"):
        evaluate_stores(list((tmp_path / "a").glob("*.parquet")), tmp_path / "x", protocol="openood")

"""Tests of dear_ray.train.evaluation: stores per split, sharding over workers, released view
averaging, precision, bnn predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dear_ray.config import load_config
from dear_ray.models import build_recognizer
from dear_ray.scores.store import read_score_store
from dear_ray.train.data import build_eval_loader, num_known_classes
from dear_ray.train.evaluation import (
    Shard,
    average_clips_for,
    eval_autocast,
    evaluate_splits,
    mean_probability_logits,
    merge_shards,
    predict_shard,
    predict_split,
    shard_range,
    stores_dir,
)
from dear_ray.train.loop import predict


def _spy_predict(monkeypatch, spy) -> None:
    """Replace `predict` where the evaluation calls it (per-split and sharded prediction)."""
    from dear_ray.train import prediction, sharding

    monkeypatch.setattr(prediction, "predict", spy)
    monkeypatch.setattr(sharding, "predict", spy)


def _config(root, tmp_path, **overrides):
    base = {"name": "t", "data": {"data_root": str(root), "crop_size": 32, "scale_short": 32,
                                  "clip_len": 8, "batch_size": 4,
                                  "test_views": {"num_clips": 2, "num_crops": 1}},
            "model": {"backbone": "i3d_tiny", "head": "softmax"},
            "optim": {"epochs": 2, "lr": 0.01},
            "eval": {"stochastic_passes": 3},
            "tracking": {"run_dir": str(tmp_path / "runs")}}
    return load_config(base, overrides=overrides)


def test_released_view_averaging_per_head_and_split():
    # DEAR configs/recognition/*/inference_*_{enn,dnn,bnn,rpl}.py test_cfg.average_clips;
    # baseline_softmax.py ('prob' on the training set) vs baseline_openmax.py ('score', then
    # softmax) for the test sets; SDN libs/test.py softmax per clip then the mean
    table = {(h, s): average_clips_for(h, s, "released", backbone="i3d_r50")
             for h in ("edl", "edl_avu", "dear", "dear_alt", "softmax", "bnn", "rpl", "sdn")
             for s in ("train", "test", "unknown")}
    for h in ("edl", "edl_avu", "dear", "dear_alt"):
        assert {table[h, s] for s in ("train", "test", "unknown")} == {"score"}
    for h in ("bnn", "rpl", "sdn"):
        assert {table[h, s] for s in ("train", "test", "unknown")} == {"prob"}
    assert (table["softmax", "train"], table["softmax", "test"], table["softmax", "unknown"]) == \
        ("prob", "score", "score")
    # MC dropout (ood_detection.py / get_threshold.py with inference_*_dnn.py): prob everywhere
    assert average_clips_for("softmax", "test", "released", backbone="i3d_r50",
                             stochastic=True) == "prob"
    assert average_clips_for("edl", "train", "prob", backbone="i3d_r50") == "prob"
    assert average_clips_for("softmax", "train", "score", backbone="r3d18_a",
                             stochastic=True) == "score"
    # the demo's network is not SDN's: its softmax trial keeps DEAR's rule
    assert average_clips_for("softmax", "test", "released", backbone="r3d18_tiny") == "score"
    with pytest.raises(ValueError, match="eval.average_clips must be one of"):
        average_clips_for("edl", "test", "evidence", backbone="i3d_r50")
    with pytest.raises(ValueError, match="no released view averaging known for head 'x'"):
        average_clips_for("x", "test", "released", backbone="i3d_r50")


def test_sdn_baseline_averages_the_clips_softmax_as_sdn_test_does(synth_root, tmp_path,
                                                                   monkeypatch):
    # SDN libs/test.py: every model's output goes through F.softmax per clip, the clips of a video
    # are averaged (calculate_video_results), top-1 of the mean. Three clips of a 2-class video,
    # logits (10, 0), (0, 2), (0, 2): by hand the per-clip softmax is (1 - 4.5e-5, 4.5e-5) and
    # twice (0.1192, 0.8808), mean (0.4128, 0.5872): SDN predicts class 1; the mean logits
    # (3.33, 1.33) of DEAR's SoftMax test rule would predict class 0.
    from dear_ray.models.recognizer import average_views

    clips = torch.tensor([[10.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    p = torch.tensor([[1 - 4.54e-5, 4.54e-5], [0.11920, 0.88080], [0.11920, 0.88080]])
    for split in ("train", "test", "unknown"):
        for stochastic in (False, True):
            how = average_clips_for("softmax", split, "released", backbone="r3d18_a",
                                    stochastic=stochastic)
            pooled = average_views(clips, 3, how).softmax(-1)
            assert torch.allclose(pooled, p.mean(0, keepdim=True), atol=1e-4), (split, how)
            assert pooled.argmax(-1).item() == 1
    assert average_views(clips, 3, "score").argmax(-1).item() == 0
    # and the evaluation passes it on: one prediction, prob for the logits and the passes
    cfg = _config(synth_root, tmp_path, **{
        "model.backbone": "r3d18_a", "model.dropout": 0.0,
        "model.backbone_options": {"stage_blocks": [1, 1, 1, 1], "base_channels": 4}})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="r3d18_a", head="softmax", num_classes=k, dropout=0.0,
                             backbone_options=cfg.model.backbone_options)
    calls = []

    def spy(*args, **kw):
        calls.append((kw["average_clips"], kw.get("stochastic_passes", 1)))
        return predict(*args, **kw)

    _spy_predict(monkeypatch, spy)
    predict_split(model, build_eval_loader(cfg, "test", num_classes=k), cfg, "test",
                  device=torch.device("cpu"), amp=False)
    assert calls == [("prob", 3)]


def test_stores_are_fp32_unless_eval_precision_amp(synth_root, tmp_path, monkeypatch):
    cfg = _config(synth_root, tmp_path, **{"eval.splits": ["test"], "model.head": "edl"})
    assert cfg.eval.precision == "fp32" and cfg.resources.amp  # the defaults
    assert not eval_autocast(cfg, True)
    assert eval_autocast(cfg.override({"eval.precision": "amp"}), True)
    assert not eval_autocast(cfg.override({"eval.precision": "amp"}), False)  # no GPU
    seen = []

    def spy(*args, **kw):
        seen.append(kw["amp"])
        return predict(*args, **kw)

    _spy_predict(monkeypatch, spy)
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="edl", num_classes=k)
    evaluate_splits(model, cfg, "p", k, torch.device("cpu"), True)  # training autocast on
    evaluate_splits(model, cfg.override({"eval.precision": "amp"}), "p", k,
                    torch.device("cpu"), True)
    assert seen == [False, True]
    assert read_score_store(stores_dir(cfg, "p") / "test.parquet").meta.extra["precision"] == "amp"


def test_softmax_test_split_averages_logits_by_score_and_passes_by_prob(synth_root, tmp_path,
                                                                        monkeypatch):
    torch.manual_seed(0)
    cfg = _config(synth_root, tmp_path)
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=k, dropout=0.5)
    calls = []

    def spy(*args, **kw):
        calls.append((kw["average_clips"], kw.get("stochastic_passes", 1)))
        return predict(*args, **kw)

    _spy_predict(monkeypatch, spy)
    loader = build_eval_loader(cfg, "test", num_classes=k)
    preds = predict_split(model, loader, cfg, "test", device=torch.device("cpu"), amp=False)
    assert calls == [("score", 1), ("prob", 3)]
    # the logits are the mean over the 2 views; each pass is log(mean softmax): normalised
    ref = predict(model, loader, device=torch.device("cpu"), average_clips="score")
    np.testing.assert_allclose(preds.logits, ref.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(preds.sample_logits).sum(-1), 1.0, rtol=1e-5)
    calls.clear()
    predict_split(model, build_eval_loader(cfg, "train", num_classes=k), cfg, "train",
                  device=torch.device("cpu"), amp=False)
    assert calls == [("prob", 3)]


def test_bnn_prediction_is_the_mean_probability_over_passes():
    # two passes: p1 = (0.9, 0.1, 0), p2 = (0, 0.5, 0.5): DEAR's mean (0.45, 0.3, 0.25)
    # predicts class 0; the mean of the log-probabilities (dear_ray before) predicts class 1
    p = np.array([[[0.9, 0.1, 1e-6]], [[1e-6, 0.5, 0.5]]])
    z = np.log(p)
    out = mean_probability_logits(z)
    np.testing.assert_allclose(np.exp(out), p.mean(0), rtol=1e-5)
    assert out.argmax(1).tolist() == [0] and z.mean(0).argmax(1).tolist() == [1]
    # logits that are not log-probabilities: the mean of each pass's softmax
    y = np.array([[[2.0, 0.0]], [[0.0, 1.0]]])
    sm = np.exp(y) / np.exp(y).sum(-1, keepdims=True)
    np.testing.assert_allclose(np.exp(mean_probability_logits(y)), sm.mean(0), rtol=1e-5)


def test_bnn_store_logits_follow_the_passes(synth_root, tmp_path):
    torch.manual_seed(0)
    cfg = _config(synth_root, tmp_path, **{"model.head": "bnn", "model.dropout": 0.0,
                                           "eval.splits": ["test"]})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="bnn", num_classes=k, dropout=0.0)
    evaluate_splits(model, cfg, "b", k, torch.device("cpu"), False)
    store = read_score_store(stores_dir(cfg, "b") / "test.parquet")
    assert store.meta.extra["average_clips"] == "prob/prob"
    assert store.meta.extra["data_root"] == str(cfg.data.data_root)  # pairs it with its baseline
    sm = np.exp(store.sample_logits - store.sample_logits.max(-1, keepdims=True))
    sm /= sm.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.exp(store.logits), sm.mean(0), rtol=1e-4, atol=1e-6)


def test_evaluate_splits_writes_one_store_per_split(synth_root, tmp_path):
    torch.manual_seed(0)
    cfg = _config(synth_root, tmp_path, **{"eval.splits": ["test", "unknown"]})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=k)
    metrics = evaluate_splits(model, cfg, "trial0", k, torch.device("cpu"), False)
    out = stores_dir(cfg, "trial0")
    assert sorted(p.name for p in out.iterdir()) == ["classifier.npz", "test.parquet", "unknown.parquet"]
    test = read_score_store(out / "test.parquet")
    unknown = read_score_store(out / "unknown.parquet")
    assert test.meta.split == "test" and unknown.meta.split == "unknown"
    assert unknown.meta.dataset == "unknown" and test.meta.num_known == k
    assert test.meta.checkpoint == "trial0/epoch_1"
    assert test.sample_logits.shape == (3, len(test.video_ids), k)  # MC-dropout passes kept
    assert {"msp", "bald"} <= set(test.scores)
    assert metrics["test_top1"] == pytest.approx(np.mean(test.logits.argmax(1) == test.labels))
    assert "unknown_top1" not in metrics and metrics["unknown_bad_videos"] == 0
    assert metrics["test_eval_time_s"] > 0 and metrics["unknown_eval_time_s"] > 0
    # the store holds what the model predicts (MSP = 1 - max softmax)
    p = torch.softmax(torch.tensor(test.logits), 1).numpy()
    assert np.allclose(test.scores["msp"], 1 - p.max(1), atol=1e-5)


def test_unknown_sets_other_than_unknown_get_their_own_file(synth_root, tmp_path):
    cfg = _config(synth_root, tmp_path, **{"data.unknown": {"other": "unknown.txt"},
                                           "eval.splits": ["other"],
                                           "model.head": "edl"})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="edl", num_classes=k)
    evaluate_splits(model, cfg, "t1", k, torch.device("cpu"), False)
    store = read_score_store(stores_dir(cfg, "t1") / "unknown_other.parquet")
    assert (store.meta.split, store.meta.dataset, store.meta.head) == ("unknown", "other", "edl")
    assert store.sample_logits is None and "vacuity" in store.scores


# --------------------------------------------------------------------------------------------
# sharding


def test_shards_are_whole_batches_that_cover_every_video_once():
    from torch.utils.data import DistributedSampler

    for n in range(0, 23):
        for batch in (1, 2, 4, 5):
            for world in (1, 2, 3, 4, 8):
                shards = [shard_range(n, batch, r, world) for r in range(world)]
                covered = [i for indices, _ in shards for i in indices]
                assert covered == list(range(n)), (n, batch, world)  # in order, once each
                for indices, first in shards:
                    assert indices.start == first * batch or not indices
                sizes = [-(-len(ix) // batch) for ix, _ in shards]
                assert max(sizes) - min(sizes) <= 1
    # what DistributedSampler would do instead: 5 videos on 2 ranks -> 6 indices, one twice
    padded = [i for r in range(2) for i in DistributedSampler(range(5), num_replicas=2, rank=r,
                                                              shuffle=False)]
    assert len(padded) == 6 and len(set(padded)) == 5
    assert [list(shard_range(5, 2, r, 2)[0]) for r in range(2)] == [[0, 1, 2, 3], [4]]
    assert [list(shard_range(3, 4, r, 2)[0]) for r in range(2)] == [[0, 1, 2], []]
    with pytest.raises(ValueError, match="rank 2 is not in"):
        shard_range(5, 2, 2, 2)


@pytest.mark.parametrize("head", ["softmax", "bnn"])
def test_shards_of_any_number_of_workers_merge_into_the_one_worker_predictions(synth_root,
                                                                              tmp_path, head):
    # batch size 2 over the 12 training videos: 6 batches, split 6 / 3+3 / 2+2+1+1 ways; the
    # stochastic passes (MC dropout masks, BNN weight draws) are seeded per batch
    cfg = _config(synth_root, tmp_path, **{"data.batch_size": 2, "model.head": head})
    k = num_known_classes(cfg.data)
    torch.manual_seed(0)
    model = build_recognizer(backbone="i3d_tiny", head=head, num_classes=k, dropout=0.5)
    cpu = torch.device("cpu")
    torch.manual_seed(123)
    state = torch.get_rng_state()

    def merged(world):
        shards = [predict_shard(model, cfg, "train", num_classes=k, rank=r, world_size=world,
                                device=cpu, amp=False) for r in range(world)]
        return merge_shards(shards, "train", 12)

    one = merged(1)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    assert one.sample_logits.shape == (3, 12, k)
    assert len(set(one.video_ids)) == 12
    for world in (2, 4):
        many = merged(world)
        assert many.video_ids == one.video_ids
        np.testing.assert_allclose(many.logits, one.logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(many.sample_logits, one.sample_logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(many.features, one.features, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(many.labels, one.labels)
    # the passes do differ from each other (dropout / weight sampling really is on)
    assert not np.allclose(one.sample_logits[0], one.sample_logits[1])


def test_merge_refuses_shards_that_miss_or_repeat_videos(synth_root, tmp_path):
    cfg = _config(synth_root, tmp_path, **{"data.batch_size": 2, "model.head": "edl"})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="edl", num_classes=k)
    cpu = torch.device("cpu")
    a, b = (predict_shard(model, cfg, "train", num_classes=k, rank=r, world_size=2, device=cpu,
                          amp=False) for r in range(2))
    assert (a.start, a.num_videos, b.start, b.num_videos) == (0, 6, 6, 6)
    with pytest.raises(RuntimeError, match="the shards cover 6 dataset positions .* of 12"):
        merge_shards([a], "train", 12)
    with pytest.raises(RuntimeError, match="cover 12 dataset positions \\(6 distinct\\)"):
        merge_shards([a, Shard(0, 6, a.preds)], "train", 12)
    with pytest.raises(ValueError, match="no decodable video"):
        merge_shards([Shard(0, 12, None)], "train", 12)
    assert merge_shards([a, b], "train", 12).logits.shape == (12, k)


def test_skipped_videos_are_listed_with_their_reason(synth_root, tmp_path):
    """Issue 15 item 11: the bad videos of a run are a CSV (file, reason), not only a count."""
    import shutil

    from dear_ray.train.bad_videos import bad_videos_dir, read_bad_videos

    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    first = (root / "test.txt").read_text().split()[0]
    (root / first).write_bytes(b"not a video at all")
    cfg = _config(root, tmp_path, **{"eval.splits": ["test"], "data.max_bad_fraction": 0.5})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=k)
    metrics = evaluate_splits(model, cfg, "trial0", k, torch.device("cpu"), False)
    assert metrics["test_bad_videos"] == 1
    rows = read_bad_videos(bad_videos_dir(cfg.run_root(), "trial0"))
    assert len(rows) == 1 and rows[0]["split"] == "test" and rows[0]["path"].endswith(first)
    assert rows[0]["reason"] and rows[0]["video_id"] == first.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def test_softmax_stores_name_their_classifier_file(synth_root, tmp_path):
    """The post-hoc detectors that need the classifier (ViM, ReAct, ASH) find it beside the
    stores: logits = features @ W.T + b on a score-averaged split."""
    from dear_ray.scores import read_classifier

    torch.manual_seed(0)
    cfg = _config(synth_root, tmp_path, **{"eval.splits": ["test"]})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=k)
    evaluate_splits(model, cfg, "c", k, torch.device("cpu"), False)
    store = read_score_store(stores_dir(cfg, "c") / "test.parquet")
    assert store.meta.extra["classifier"] == "classifier.npz"
    clf = read_classifier(store)
    assert np.allclose(store.features @ clf.weight.T + clf.bias, store.logits, atol=1e-4)


def test_evidential_stores_use_and_record_the_heads_evidence(synth_root, tmp_path):
    """A head trained with `relu` evidence is scored with it: vacuity K / sum(relu(z) + 1), and
    the store says which evidence it used (the post-hoc evidential rows read it)."""
    torch.manual_seed(0)
    cfg = _config(synth_root, tmp_path, **{"eval.splits": ["test"], "model.head": "edl",
                                           "model.head_options": {"evidence": "relu"}})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="edl", num_classes=k, head_options={"evidence": "relu"})
    evaluate_splits(model, cfg, "trial0", k, torch.device("cpu"), False)
    test = read_score_store(stores_dir(cfg, "trial0") / "test.parquet")
    assert test.meta.extra["evidence"] == "relu"
    alpha = np.maximum(test.logits, 0) + 1
    assert np.allclose(test.scores["vacuity"], k / alpha.sum(1), atol=1e-5)


def test_the_validation_unknowns_and_val_are_scored_when_configured(synth_root, tmp_path):
    """`data.val_unknown` adds `val` and `val_unknown` to the default splits; the validation
    unknowns are stored as split `val_unknown` (never an unknown test set)."""
    cfg = _config(synth_root, tmp_path, **{"data.val_unknown": "val_unknown.txt"})
    assert cfg.eval_splits()[-3:] == ["val", "val_unknown", "unknown"]
    assert "val" not in cfg.override({"data.val_unknown": None}).eval_splits()
    cfg = cfg.override({"eval.splits": ["val", "val_unknown"]})
    k = num_known_classes(cfg.data)
    model = build_recognizer(backbone="i3d_tiny", head="softmax", num_classes=k)
    metrics = evaluate_splits(model, cfg, "t2", k, torch.device("cpu"), False)
    out = stores_dir(cfg, "t2")
    val_unknown = read_score_store(out / "val_unknown.parquet")
    assert (val_unknown.meta.split, val_unknown.meta.dataset) == ("val_unknown", "val_unknown")
    assert len(val_unknown) == 3 * 1 and set(val_unknown.labels) == {0, 1, 2}  # 3 motions, n/3 = 1 each
    assert read_score_store(out / "val.parquet").meta.split == "val"
    assert "val_top1" in metrics and "val_unknown_top1" not in metrics

"""Tests of dear_ray.train.data: loaders built from the config over the synthetic data set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dear_ray.config import load_config
from dear_ray.data.annotations import read_annotation_list, read_class_names
from dear_ray.data.sampling import DenseSampleFrames, SampleFrames, SegmentSampler
from dear_ray.train.data import (
    build_eval_loader,
    build_masked_loader,
    build_sampler,
    build_train_loader,
    build_transform,
    load_side_inputs,
    num_known_classes,
)


def _config(root, **overrides):
    base = {"data": {"data_root": str(root), "crop_size": 32, "scale_short": 32, "clip_len": 8,
                     "batch_size": 2, "test_views": {"num_clips": 2, "num_crops": 3}}}
    return load_config(base, overrides=overrides)


def test_num_known_classes_from_file_or_config(synth_root, tmp_path):
    cfg = _config(synth_root)
    assert num_known_classes(cfg.data) == len(read_class_names(synth_root / "classes.txt"))
    assert num_known_classes(cfg.override({"data.num_classes": 7}).data) == 7
    (tmp_path / "one.txt").write_text("only\n")
    with pytest.raises(ValueError, match=r"one\.txt: 1 class name"):
        num_known_classes(cfg.override({"data.classes_file": str(tmp_path / "one.txt")}).data)


def test_samplers_follow_the_config(synth_root):
    cfg = _config(synth_root, **{"data.frame_interval": 2})
    train = build_sampler(cfg.data, test_mode=False)
    test = build_sampler(cfg.data, test_mode=True)
    assert isinstance(train, SampleFrames) and (train.clip_len, train.frame_interval) == (8, 2)
    assert train.num_views == 1 and test.num_views == 2 and test.test_mode
    dense = build_sampler(cfg.override({"data.sampler": "dense", "data.sample_range": 16}).data,
                          test_mode=True)
    assert isinstance(dense, DenseSampleFrames) and dense.sample_range == 16
    assert dense.num_views == 2
    seg = build_sampler(cfg.override({"data.sampler": "segments", "data.num_segments": 4,
                                      "data.test_views.num_clips": 1}).data, test_mode=False)
    assert isinstance(seg, SegmentSampler) and seg(40, np.random.default_rng(0)).shape == (4,)
    tsm = build_sampler(cfg.override({"data.sampler": "segments", "data.num_segments": 4,
                                      "data.sample_range": 32}).data, test_mode=True)
    assert (tsm.num_views, tsm.clip_len) == (2, 4)  # test_views.num_clips dense windows
    np.testing.assert_array_equal(tsm(40, None), [0, 8, 16, 24, 8, 16, 24, 32])
    # DEAR's TSM: dense windows in training too (a random start, frames 32 // 4 = 8 apart)
    dense_cfg = cfg.override({"data.sampler": "segments", "data.num_segments": 4,
                              "data.sample_range": 32, "data.segment_sampling": "dense"}).data
    dense_train = build_sampler(dense_cfg, test_mode=False)
    assert dense_train.dense and (dense_train.num_views, dense_train.clip_len) == (1, 4)
    inds = dense_train(40, np.random.default_rng(0))
    assert 0 <= inds[0] < 40 - 32 and np.array_equal(np.diff(inds), [8, 8, 8])
    np.testing.assert_array_equal(build_sampler(dense_cfg, test_mode=True)(40, None),
                                  [0, 8, 16, 24, 8, 16, 24, 32])
    uniform_train = build_sampler(dense_cfg.model_copy(update={"segment_sampling": "uniform"}),
                                  test_mode=False)
    assert not uniform_train.dense
    # DEAR's I3D: dense window in training, centred SampleFrames clips at test time
    i3d = cfg.override({"data.sampler": "dense", "data.test_sampler": "sample_frames"}).data
    assert isinstance(build_sampler(i3d, test_mode=False), DenseSampleFrames)
    centred = build_sampler(i3d, test_mode=True)
    assert type(centred) is SampleFrames and centred.num_views == 2
    # 8 frames at interval 2 (span 16), 2 clips: avg (40 - 16 + 1) / 2 = 12.5, offsets 6 and 18
    np.testing.assert_array_equal(centred(40, None), [*range(6, 22, 2), *range(18, 34, 2)])


def test_train_loader_batches_and_distributed_shards(synth_root):
    cfg = _config(synth_root)
    k = num_known_classes(cfg.data)
    loader, sampler = build_train_loader(cfg, num_classes=k)
    assert sampler is None
    batch = next(iter(loader))
    assert batch["clip"].shape == (2, 3, 8, 32, 32) and batch["clip"].dtype == torch.float32
    assert batch["bad"] == [] and all(0 <= int(y) < k for y in batch["label"])
    n = len(read_annotation_list(synth_root / "train.txt", synth_root))
    shards = [build_train_loader(cfg, num_classes=k, rank=r, world_size=2)[1] for r in (0, 1)]
    idx = [set(iter(s)) for s in shards]
    assert len(shards[0]) == len(shards[1]) == -(-n // 2)
    assert idx[0] | idx[1] == set(range(n))


def test_eval_loader_has_multi_view_clips_and_keeps_unknown_labels(synth_root):
    cfg = _config(synth_root)
    k = num_known_classes(cfg.data)
    loader = build_eval_loader(cfg, "unknown", num_classes=k)
    batch = next(iter(loader))
    assert batch["clip"].shape[1:] == (6, 3, 8, 32, 32)  # 2 clips x 3 crops
    records = read_annotation_list(synth_root / "unknown.txt", synth_root)
    assert batch["video_id"] == [r.video_id for r in records[:2]]
    with pytest.raises(ValueError, match="'hmdb' has no list file"):
        build_eval_loader(cfg, "hmdb", num_classes=k)


def test_test_views_use_the_test_resolution(synth_root):
    # DEAR: train at 224, test resized to 256 and cropped at 256 (here 24 -> 40 / 40)
    cfg = _config(synth_root, **{"data.crop_size": 24, "data.test_scale_short": 40,
                                 "data.test_crop_size": 40, "data.sampler": "segments",
                                 "data.num_segments": 4, "data.sample_range": 8,
                                 "data.test_views": {"num_clips": 2, "num_crops": 1}})
    k = num_known_classes(cfg.data)
    batch = next(iter(build_eval_loader(cfg, "test", num_classes=k)))
    assert batch["clip"].shape[1:] == (2, 3, 4, 40, 40)  # 2 windows x 1 crop, 4 segments
    train = next(iter(build_train_loader(cfg, num_classes=k)[0]))
    assert train["clip"].shape[1:] == (3, 4, 24, 24)
    with pytest.raises(ValueError, match="data.test_crop_size 48 is larger than "
                                         "data.test_scale_short 40"):
        cfg.override({"data.test_crop_size": 48})


def test_worker_processes_use_forkserver(synth_root):
    cfg = _config(synth_root, **{"data.num_workers": 1})
    loader = build_eval_loader(cfg, "test", num_classes=num_known_classes(cfg.data))
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
    n = sum(len(b["video_id"]) for b in loader)
    assert n == len(loader.dataset)


def test_transforms_normalise_with_the_data_config(synth_root):
    # SDN: subtract the ActivityNet mean, divide by nothing
    cfg = _config(synth_root, **{"data.mean": [114.77, 107.74, 99.48], "data.std": [1, 1, 1]})
    for test_mode in (False, True):
        t = build_transform(cfg.data, test_mode=test_mode)
        assert t.mean == [114.77, 107.74, 99.48] and t.std == [1, 1, 1]
    clip = np.full((8, 32, 32, 3), 100, np.uint8)
    out = build_transform(cfg.data, test_mode=True)(clip)
    np.testing.assert_allclose(out[0, :, 0, 0, 0].numpy(), [-14.77, -7.74, 0.52], atol=1e-5)


def _sdn_config(root, **overrides):
    return _config(root, **{"model.head": "sdn", "data.scene_labels": "scene_labels.parquet",
                            "data.detections": "detections.parquet", "data.mask_ratio": 1.0,
                            **overrides})


def test_masked_loader_draws_only_eligible_videos(synth_root):
    # SDN make_dataset_human_det: videos with a box scored > 0.3 in >= 70% of their frames,
    # repeated to the length of the whole training list
    cfg = _sdn_config(synth_root)
    k = num_known_classes(cfg.data)
    records = read_annotation_list(synth_root / "train.txt", synth_root)
    box = np.float32([[0, 0, 16, 16, 0.9]])
    weak = np.float32([[0, 0, 16, 16, 0.3]])
    det = {}
    for i, r in enumerate(records):  # the synthetic videos have 8 frames
        if i % 3 == 0:
            det[r.video_id] = {f: box for f in range(1, 7)}          # 6 / 8 = 0.75: eligible
        elif i % 3 == 1:
            det[r.video_id] = {f: box for f in range(1, 6)}          # 5 / 8 = 0.625: not
        else:
            det[r.video_id] = {f: (weak if f == 1 else box) for f in range(1, 7)}  # 5 strong
    eligible = {r.video_id for i, r in enumerate(records) if i % 3 == 0}
    side = {"scene_labels": load_side_inputs(cfg.data)["scene_labels"], "detections": det}
    masked, sampler = build_masked_loader(cfg, num_classes=k, side_inputs=side)
    assert sampler is None and masked.dataset.masked_only
    ids = [r.video_id for r in masked.dataset.records]
    assert len(ids) == len(records) and set(ids) == eligible
    assert max(ids.count(v) for v in eligible) - min(ids.count(v) for v in eligible) <= 1
    batch = next(iter(masked))
    assert set(batch["video_id"]) <= eligible and "masked_clip" not in batch
    train, _ = build_train_loader(cfg, num_classes=k, side_inputs=side)
    assert "masked_clip" not in next(iter(train)) and len(train) == len(masked)
    # joint: the old single step, masked copies of the same clips, no second loader
    joint = cfg.override({"optim.sdn_mask_step": "joint"})
    assert build_masked_loader(joint, num_classes=k, side_inputs=side) == (None, None)
    assert "masked_clip" in next(iter(build_train_loader(joint, num_classes=k, side_inputs=side)[0]))
    none = {**side, "detections": {r.video_id: {1: box} for r in records}}
    with pytest.raises(ValueError, match=r"no training video .* data.mask_min_box_score \(0.3\)"):
        build_masked_loader(cfg, num_classes=k, side_inputs=none)


def test_hard_scene_labels_are_loaded_for_the_hard_head_option(synth_root):
    cfg = _sdn_config(synth_root)
    soft = load_side_inputs(cfg.data)["scene_labels"]
    hard = load_side_inputs(cfg.data, "hard")["scene_labels"]
    vid = next(iter(soft))
    assert soft[vid].ndim == 1 and hard[vid].ndim == 0 and hard[vid].dtype == np.int64


def test_uint8_handover_loaders_and_the_decoder_field(synth_root):
    from dear_ray.train.data import _worker_init, build_dataset

    cfg = _config(synth_root)
    k = num_known_classes(cfg.data)
    ref = next(iter(build_train_loader(cfg, num_classes=k)[0]))
    batch = next(iter(build_train_loader(cfg, num_classes=k, handover="uint8")[0]))
    assert batch["clip"].dtype == torch.uint8 and batch["clip"].shape == (2, 3, 8, 32, 32)
    assert torch.equal(batch["clip_norm"](batch["clip"]).contiguous(), ref["clip"])
    views = next(iter(build_eval_loader(cfg, "test", num_classes=k, handover="uint8")))
    ref_views = next(iter(build_eval_loader(cfg, "test", num_classes=k)))
    assert torch.equal(views["clip_norm"](views["clip"]).contiguous(), ref_views["clip"])
    # TPN's colour jitter works on float pixels: its training clips stay float
    jitter = _config(synth_root, **{"data.color_jitter": True})
    assert build_transform(jitter.data, test_mode=False, handover="uint8").handover == "float"
    assert build_transform(jitter.data, test_mode=True, handover="uint8").handover == "uint8"
    assert cfg.data.decoder == "pyav"
    ds = build_dataset(_config(synth_root, **{"data.decoder": "torchcodec"}), "val",
                       test_mode=True, num_classes=k) if _has_torchcodec() else None
    if ds is not None:
        assert ds.decoder == "torchcodec"
        assert torch.equal(ds[0]["clip"], build_dataset(cfg, "val", test_mode=True,
                                                        num_classes=k)[0]["clip"])
    with pytest.raises(ValueError, match="decoder"):
        _config(synth_root, **{"data.decoder": "opencv"})
    import cv2

    threads = cv2.getNumThreads()
    try:
        _worker_init(0)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(threads)


def test_in_process_loading_is_set_up_as_a_worker(synth_root):
    import cv2

    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        cfg = _config(synth_root)  # resources num_workers 0: the clips load in this process
        assert cfg.data.num_workers == 0
        build_train_loader(cfg, num_classes=num_known_classes(cfg.data))
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(threads)


def _has_torchcodec() -> bool:
    from dear_ray.data.decode import DecoderUnavailableError, check_decoder

    try:
        check_decoder("torchcodec")
    except DecoderUnavailableError:
        return False
    return True


def test_data_resize_selects_the_resizer_sdn_sweeps_use_antialias():
    """`data.resize`: mmcv's cv2 resize (DEAR) or antialiased bilinear (SDN's PIL resize)."""
    from pathlib import Path

    import numpy as np

    from dear_ray.config import load_config
    from dear_ray.train.data import build_transform
    from dear_ray.tune import expand_trials, load_sweep

    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, size=(2, 96, 128, 3), dtype=np.uint8)
    out = {}
    for resize in ("cv2", "antialias"):
        cfg = load_config({"data": {"resize": resize, "crop_size": 32, "scale_short": 32},
                           "eval": {"every_n_epochs": 0}})
        out[resize] = build_transform(cfg.data, test_mode=True)(clip, np.random.default_rng(0))
    assert out["cv2"].shape == out["antialias"].shape
    assert not np.allclose(np.asarray(out["cv2"]), np.asarray(out["antialias"]))
    repo = Path(__file__).resolve().parents[2]
    for sweep in ("sdn_minikinetics", "sdn_finetune_diving48", "dear_ucf101"):
        plans = expand_trials(load_sweep(repo / "jobs" / "sweeps" / f"{sweep}.yaml"))
        assert {p.config.data.resize for p in plans} == \
            {"cv2" if sweep == "dear_ucf101" else "antialias"}


def test_sdn_sweeps_round_their_test_views_as_sdn():
    """`data.test_rounding`: SDN's test rounding in SDN's sweeps, MMAction2's elsewhere."""
    from pathlib import Path

    from dear_ray.tune import expand_trials, load_sweep

    repo = Path(__file__).resolve().parents[2]
    for sweep in ("sdn_minikinetics", "sdn_finetune_diving48", "dear_ucf101", "demo"):
        plans = expand_trials(load_sweep(repo / "jobs" / "sweeps" / f"{sweep}.yaml"))
        wanted = "sdn" if sweep.startswith("sdn") else "mmaction2"
        assert {p.config.data.test_rounding for p in plans} == {wanted}
        t = build_transform(plans[0].config.data, test_mode=True)
        assert t.ops[0].rounding == wanted
        if plans[0].config.data.test_views.num_crops == 1:
            assert t.ops[1].rounding == wanted


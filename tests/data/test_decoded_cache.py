"""The decoded-frame cache (`data.decoded_cache_mb`): same clips, bounded bytes, LRU order."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import dear_ray.data.decode as decode_module
from dear_ray.config import ConfigError, load_config
from dear_ray.data.annotations import VideoRecord
from dear_ray.data.dataset import VideoDataset
from dear_ray.data.decode import DecodedFramesCache, read_sampled_clip
from dear_ray.data.presets import build_train_transform
from dear_ray.data.sampling import SampleFrames

@pytest.fixture(autouse=True)
def _fresh_shared_caches(monkeypatch):
    """Each test starts as a fresh process would: no shared caches yet."""
    monkeypatch.setattr(decode_module, "_SHARED_CACHES", {})


CLIP_BYTES = 4 * 48 * 64 * 3  # a clip of SampleFrames(4, 2): 4 frames of 48x64 RGB


@pytest.fixture(scope="module")
def videos(tmp_path_factory, make_video):
    root = tmp_path_factory.mktemp("cache_videos")
    return [make_video(root / f"v{i}.mp4", num_frames=10 + i) for i in range(3)]


def dataset(videos, cache_mb=0, handover="float"):
    records = [VideoRecord(p, i % 2, p.stem, None, i + 1) for i, p in enumerate(videos)]
    # 4 frames every 2 of 10-12: a few start offsets, so clips repeat across epochs (hits) and
    # differ too (misses); a random resized crop and a flip: the transform stays random
    return VideoDataset(records, SampleFrames(4, 2, 1),
                        build_train_transform(32, 40, kind="random_resized", handover=handover),
                        decoded_cache_mb=cache_mb)


@pytest.mark.parametrize("handover", ["float", "uint8"])
def test_cached_epochs_give_the_same_tensors(videos, handover):
    plain, cached = dataset(videos, 0, handover), dataset(videos, 1, handover)
    for epoch in range(4):
        for ds in (plain, cached):
            ds.set_epoch(epoch)
        for i in range(len(videos)):
            a, b = plain[i], cached[i]
            assert torch.equal(a["clip"], b["clip"]), (epoch, i)
            assert a["clip"].stride() == b["clip"].stride()
    assert plain.cache is None
    assert cached.cache.hits > 0 and cached.cache.misses > 0  # both paths were taken
    assert cached.cache.nbytes <= cached.cache.max_bytes == 2**20


def test_a_hit_neither_opens_nor_decodes(videos, monkeypatch):
    cache = DecodedFramesCache(2**20)
    sampler = SampleFrames(4, 2, 1, test_mode=True)
    frames, idx = read_sampled_clip(videos[0], sampler, None, cache=cache)
    assert not frames.flags.writeable  # the cached clip cannot be altered downstream

    def no_open(*args, **kwargs):
        raise AssertionError("opened a cached video")

    monkeypatch.setattr(decode_module, "open_video", no_open)
    again, idx2 = read_sampled_clip(videos[0], sampler, None, cache=cache)
    assert again is frames and np.array_equal(idx, idx2)
    assert (cache.hits, len(cache), cache.num_frames(videos[0])) == (1, 1, 10)


def test_budget_is_respected_least_recently_used_first():
    cache = DecodedFramesCache(3 * CLIP_BYTES)
    clip = lambda v: np.full((4, 48, 64, 3), v, np.uint8)  # noqa: E731
    idx = np.array([0, 2, 4, 6])
    for v in range(3):
        cache.put(f"v{v}.mp4", idx, clip(v))
    assert cache.nbytes == 3 * CLIP_BYTES and len(cache) == 3
    assert cache.get("v0.mp4", idx)[0, 0, 0, 0] == 0  # v0 is now the most recently used
    cache.put("v3.mp4", idx, clip(3))  # evicts v1, the least recently used
    assert cache.get("v1.mp4", idx) is None
    assert [cache.get(f"v{v}.mp4", idx) is not None for v in (0, 2, 3)] == [True, True, True]
    assert cache.get("v0.mp4", idx + 1) is None  # other frames of a cached video: a miss
    cache.put("big.mp4", idx, np.zeros((16, 48, 64, 3), np.uint8))  # larger than the budget
    assert cache.get("big.mp4", idx) is None and cache.nbytes == 3 * CLIP_BYTES
    # a real epoch: never above the budget
    assert cache.nbytes <= cache.max_bytes


def test_dataset_budget_holds_over_epochs(videos):
    ds = dataset(videos)
    ds.cache = DecodedFramesCache(2 * CLIP_BYTES)  # room for two of the three videos' clips
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(videos)):
            ds[i]
            assert ds.cache.nbytes <= 2 * CLIP_BYTES and len(ds.cache) <= 2


def test_pickled_cache_keeps_only_the_budget(videos, monkeypatch):
    from dear_ray.data import decode

    monkeypatch.setattr(decode, "_SHARED_CACHES", {})
    ds = dataset(videos, 1)
    ds[0]
    assert len(ds.cache) == 1
    blob = pickle.dumps(ds)  # what a DataLoader worker receives
    # unpickled in this process: this process's shared cache of that budget and decoder
    assert pickle.loads(blob).cache is ds.cache
    # in a fresh process (no shared caches yet): an empty cache of the same budget
    monkeypatch.setattr(decode, "_SHARED_CACHES", {})
    copy = pickle.loads(blob)
    assert len(copy.cache) == 0 and copy.cache.max_bytes == 2**20 and copy.cache.nbytes == 0
    assert copy.cache is decode.DecodedFramesCache.shared(2**20, ds.decoder)
    private = decode.DecodedFramesCache(2**20)
    private.put("v.mp4", np.arange(2), np.zeros((2, 2, 2, 3), np.uint8))
    assert len(pickle.loads(pickle.dumps(private))) == 0  # a private cache: an empty copy


def test_datasets_of_one_process_share_one_cache(videos, monkeypatch):
    from dear_ray.data import decode

    monkeypatch.setattr(decode, "_SHARED_CACHES", {})
    first, second = dataset(videos, 1), dataset(videos, 1)
    assert first.cache is second.cache
    first[0]
    misses = second.cache.misses
    second[0]  # the same clip through the other dataset: a hit
    assert second.cache.misses == misses and second.cache.hits >= 1


def test_negative_budgets_are_refused(videos):
    with pytest.raises(ConfigError) as info:
        load_config({}, overrides={"data.decoded_cache_mb": -1})
    message = str(info.value)
    assert all(piece in message for piece in ("data.decoded_cache_mb", "-1", ">= 0")), message
    assert load_config({}, overrides={"data.decoded_cache_mb": 64}).data.decoded_cache_mb == 64
    assert load_config({}).data.decoded_cache_mb == 0
    with pytest.raises(ValueError, match="decoded_cache_mb must be >= 0"):
        dataset(videos, -5)


def test_training_datasets_from_the_config_carry_the_cache(videos, tmp_path):
    from dear_ray.train.data import build_dataset

    root = videos[0].parent
    (tmp_path / "train.txt").write_text("".join(f"{p.name} {i % 2}\n" for i, p in enumerate(videos)))
    (tmp_path / "classes.txt").write_text("a\nb\n")
    data = {"data_root": str(root), "train_list": str(tmp_path / "train.txt"),
            "val_list": str(tmp_path / "train.txt"), "classes_file": str(tmp_path / "classes.txt"), "crop_size": 32, "scale_short": 40, "clip_len": 4,
            "decoded_cache_mb": 8}
    cfg = load_config({"data": data})
    train = build_dataset(cfg, "train", test_mode=False, num_classes=2)
    val = build_dataset(cfg, "val", test_mode=True, num_classes=2)
    assert train.cache.max_bytes == 8 * 2**20 and val.cache is None
    # the evaluation's test-mode pass over the training split reads through the same cache
    assert build_dataset(cfg, "train", test_mode=True, num_classes=2).cache is train.cache
    assert build_dataset(cfg.override({"data.decoded_cache_mb": 0}), "train", test_mode=False,
                         num_classes=2).cache is None

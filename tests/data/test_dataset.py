import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dear_ray.data.annotations import read_annotation_list
from dear_ray.data.dataset import (
    BadSample,
    BadVideoReport,
    TooManyBadVideosError,
    VideoDataset,
    collate_skip_bad,
)
from dear_ray.data.presets import build_test_transform, build_train_transform
from dear_ray.data.sampling import SampleFrames
from dear_ray.data.transforms import MEAN_RGB, STD_RGB

MEAN = torch.tensor(MEAN_RGB).view(3, 1, 1, 1)
STD = torch.tensor(STD_RGB).view(3, 1, 1, 1)
BROKEN = ["random.mp4", "empty.mp4", "truncated.mp4", "truncated.mkv", "zero.mp4"]


def records(video_dir, names):
    lst = video_dir / "list.txt"
    lst.write_text("".join(f"{n} {i % 3}\n" for i, n in enumerate(names)))
    return read_annotation_list(lst, video_dir, num_classes=3)


def train_dataset(video_dir, names, **kw):
    return VideoDataset(
        records(video_dir, names), SampleFrames(4, 2, 1), build_train_transform(32, 40), **kw
    )


def test_train_item(video_dir):
    ds = train_dataset(video_dir, ["good/v_good.mp4", "good/v_good2.mp4"])
    item = ds[1]
    assert set(item) == {"clip", "label", "index", "video_id"}
    assert item["clip"].shape == (3, 4, 32, 32) and item["clip"].dtype == torch.float32
    assert (item["label"], item["index"], item["video_id"]) == (1, 1, "v_good2")
    torch.testing.assert_close(ds[1]["clip"], item["clip"])  # same epoch, same item
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["clip"], item["clip"])


def test_test_mode_views_carry_the_right_frames(video_dir):
    sampler = SampleFrames(4, 2, 2, test_mode=True)
    ds = VideoDataset(
        records(video_dir, ["good/v_good.mp4"]), sampler, build_test_transform(32, 48, crops=3),
        test_mode=True,
    )
    clip = ds[0]["clip"]
    assert clip.shape == (6, 3, 4, 32, 32)
    # 20 frames, span 8, 2 clips: offsets int(3.25) = 3 and int(9.75) = 9
    red = (clip * STD + MEAN)[:, 0, :, 16, 16]  # (V, T)
    expected = 12 * torch.tensor([[3, 5, 7, 9]] * 3 + [[9, 11, 13, 15]] * 3, dtype=torch.float32)
    torch.testing.assert_close(red, expected, atol=6, rtol=0)
    ds.set_epoch(3)
    torch.testing.assert_close(ds[0]["clip"], clip)


@pytest.mark.parametrize("name", BROKEN)
def test_bad_videos_become_bad_samples(video_dir, name):
    ds = train_dataset(video_dir, ["good/v_good.mp4", f"bad/{name}"])
    bad = ds[1]
    assert isinstance(bad, BadSample)
    assert (bad.index, bad.video_id, bad.path) == (1, name.split(".")[0], str(video_dir / "bad" / name))
    assert bad.reason


def test_collate_skips_bad_and_handles_all_bad(video_dir):
    ds = train_dataset(video_dir, ["good/v_good.mp4", "bad/random.mp4", "good/v_good2.mp4"])
    batch = collate_skip_bad([ds[0], ds[1], ds[2]])
    assert batch["clip"].shape == (2, 3, 4, 32, 32)
    assert batch["label"].tolist() == [0, 2] and batch["index"].tolist() == [0, 2]
    assert batch["video_id"] == ["v_good", "v_good2"]
    assert [b.index for b in batch["bad"]] == [1]
    empty = collate_skip_bad([ds[1]])
    assert empty["clip"] is None and empty["label"].shape == (0,) and empty["video_id"] == []
    assert len(empty["bad"]) == 1


def test_epoch_with_bad_videos_and_report(video_dir):
    names = ["good/v_good.mp4", "good/v_good2.mp4", "bad/zero.mp4", "good/v_good.mkv", "bad/random.mp4"]
    ds = train_dataset(video_dir, names)
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_skip_bad)
    report = BadVideoReport(len(ds), max_bad_fraction=0.4, name="toy")
    seen = []
    for batch in loader:
        report.update(batch)
        seen += batch["index"].tolist()
    assert seen == [0, 1, 3]
    assert report.count == 2 and report.fraction == pytest.approx(0.4)
    report.update(ds[2])  # the same video again is not counted twice
    assert report.count == 2

    strict = BadVideoReport(len(ds), max_bad_fraction=0.05, name="toy")
    strict.update([])
    with pytest.raises(TooManyBadVideosError) as err:
        for batch in loader:
            strict.update(batch)
    msg = str(err.value)
    assert "1 of 5 videos in toy could not be decoded (20.0%; max_bad_fraction=5.0%)" in msg
    assert str(video_dir / "bad" / "zero.mp4") in msg


@pytest.mark.parametrize(
    "context", ["fork", pytest.param("forkserver", marks=pytest.mark.slow)]  # forkserver: ~10-25 s
)
def test_dataloader_workers(video_dir, context):
    ds = train_dataset(video_dir, ["good/v_good.mp4", "bad/empty.mp4", "good/v_good2.mp4"])
    loader = DataLoader(
        ds, batch_size=3, num_workers=2, collate_fn=collate_skip_bad, multiprocessing_context=context
    )
    (batch,) = list(loader)
    torch.testing.assert_close(batch["clip"][1], ds[2]["clip"])  # workers draw the same streams
    assert [b.video_id for b in batch["bad"]] == ["empty"]


def test_sdn_side_inputs(video_dir):
    recs = records(video_dir, ["good/v_good.mp4", "good/v_good2.mp4"])
    scene = {"v_good": np.float32([0.2, 0.8]), "v_good2": np.float32([1, 0])}
    # a box over the top-left 16x24 px of every frame of v_good (1-based frames 1..20)
    det = {"v_good": {f: np.float32([[0, 0, 24, 16, 0.95]]) for f in range(1, 21)}}
    sampler = SampleFrames(4, 2, 1, test_mode=True)
    test_t = build_test_transform(48, 48, crops=1)  # no resize, centre crop 48x48 from 48x64
    ds = VideoDataset(recs, sampler, test_t, test_mode=True, scene_labels=scene, detections=det, mask_ratio=1.0)
    item = ds[0]
    torch.testing.assert_close(item["scene"], torch.tensor([0.2, 0.8]))
    clip, masked = item["clip"][0] * STD + MEAN, item["masked_clip"][0] * STD + MEAN
    # crop left = 8: the box covers crop columns 0..15, rows 0..15
    inside = masked[:, :, 2:14, 2:14]
    # frame mean colour: R = 12 i, G = mean of 4x over 64 columns = 126, B = mean of 5y = 117.5
    t_idx = torch.tensor([6, 8, 10, 12], dtype=torch.float32)
    torch.testing.assert_close(inside[0].mean(dim=(1, 2)), 12 * t_idx, atol=4, rtol=0)
    torch.testing.assert_close(inside[1].mean(), torch.tensor(126.0), atol=4, rtol=0)
    torch.testing.assert_close(inside[2].mean(), torch.tensor(117.5), atol=4, rtol=0)
    torch.testing.assert_close(masked[:, :, 20:, :], clip[:, :, 20:, :])  # untouched outside
    assert (clip[1, :, 2:14, 2:14] - 126).abs().mean() > 20  # the clip itself is not masked
    # v_good2 has no detections; no masking when mask_ratio is 0
    torch.testing.assert_close(ds[1]["masked_clip"], ds[1]["clip"])
    ds0 = VideoDataset(recs, sampler, test_t, test_mode=True, detections=det, mask_ratio=0.0)
    torch.testing.assert_close(ds0[0]["masked_clip"], ds0[0]["clip"])
    assert "scene" not in ds0[0]


def test_sdn_train_crop_is_shared(video_dir):
    recs = records(video_dir, ["good/v_good.mp4"])
    det = {"v_good": {f: np.float32([[0, 0, 1, 1, 0.1]]) for f in range(1, 21)}}  # below threshold
    ds = VideoDataset(recs, SampleFrames(4, 2, 1), build_train_transform(32, 40), detections=det, mask_ratio=1.0)
    for epoch in range(3):
        ds.set_epoch(epoch)
        item = ds[0]
        torch.testing.assert_close(item["masked_clip"], item["clip"])


def test_argument_errors(video_dir):
    recs = records(video_dir, ["good/v_good.mp4", "good/v_good2.mp4"])
    with pytest.raises(ValueError, match=r"1 of 2 videos have no scene label, e.g. \['v_good2'\]"):
        VideoDataset(recs, SampleFrames(4), build_train_transform(32, 40), scene_labels={"v_good": np.ones(2)})
    with pytest.raises(ValueError, match="num_clips=1 but the sampler .* yields 3 clips"):
        VideoDataset(recs, SampleFrames(4, num_clips=3), build_train_transform(32, 40), num_clips=1)
    with pytest.raises(ValueError, match="mask_ratio must lie in"):
        VideoDataset(recs, SampleFrames(4), build_train_transform(32, 40), mask_ratio=2)
    with pytest.raises(ValueError, match="max_bad_fraction must lie in"):
        BadVideoReport(10, max_bad_fraction=1.5)


def test_masked_only_items_and_hard_scene_labels(video_dir):
    recs = records(video_dir, ["good/v_good.mp4", "good/v_good2.mp4"])
    det = {"v_good": {f: np.float32([[0, 0, 24, 16, 0.95]]) for f in range(1, 21)}}
    sampler = SampleFrames(4, 2, 1, test_mode=True)
    test_t = build_test_transform(48, 48, crops=1)
    both = VideoDataset(recs, sampler, test_t, test_mode=True, detections=det, mask_ratio=1.0)
    hard = {"v_good": np.int64(3), "v_good2": np.int64(0)}
    only = VideoDataset(recs, sampler, test_t, test_mode=True, detections=det, mask_ratio=1.0,
                        masked_only=True, scene_labels=hard)
    item = only[0]
    assert "masked_clip" not in item
    torch.testing.assert_close(item["clip"], both[0]["masked_clip"])  # SDN's separate masked clip
    assert item["scene"].dtype == torch.int64 and item["scene"].shape == ()
    batch = collate_skip_bad([only[0], only[1]])
    assert batch["scene"].tolist() == [3, 0]  # (B,) class indices for the hard scene loss
    with pytest.raises(ValueError, match="masked_only=True needs detections"):
        VideoDataset(recs, sampler, test_t, masked_only=True)


def test_uint8_handover_batches_normalise_to_the_float_batches(video_dir):
    from dear_ray.train.loop import _to_device

    names = ["good/v_good.mp4", "good/v_good2.mp4", "bad/empty.mp4"]
    det = {"v_good": {f: np.array([[8, 8, 40, 30, 0.9]]) for f in range(1, 21)}}
    kw = {"detections": det, "mask_ratio": 1.0}
    as_float = train_dataset(video_dir, names, **kw)
    as_uint8 = VideoDataset(records(video_dir, names), SampleFrames(4, 2, 1),
                            build_train_transform(32, 40, handover="uint8"), **kw)
    for epoch in range(3):
        as_float.set_epoch(epoch)
        as_uint8.set_epoch(epoch)
        ref = collate_skip_bad([as_float[i] for i in range(3)])
        batch = collate_skip_bad([as_uint8[i] for i in range(3)])
        assert len(batch["bad"]) == 1 and "clip_norm" not in ref
        for key in ("clip", "masked_clip"):
            raw = batch[key]
            assert raw.dtype == torch.uint8 and raw.shape == ref[key].shape == (2, 3, 4, 32, 32)
            # stacked in the clips' own memory layout: (B, T, H, W, C), no transposing copy
            assert raw.permute(0, 2, 3, 4, 1).is_contiguous()
            out = _to_device(raw, torch.device("cpu"), False, batch["clip_norm"])
            assert out.is_contiguous() and torch.equal(out, ref[key])
            last = _to_device(raw, torch.device("cpu"), True, batch["clip_norm"])
            assert last.is_contiguous(memory_format=torch.channels_last_3d)
            assert torch.equal(last, ref[key])


def test_uint8_handover_through_a_dataloader_worker(video_dir):
    names = ["good/v_good.mp4", "good/v_good2.mp4", "good/v_good.mkv"]
    sampler = SampleFrames(4, 2, 2, test_mode=True)
    make = lambda handover: VideoDataset(  # noqa: E731
        records(video_dir, names), sampler, build_test_transform(32, 48, 3, handover=handover),
        test_mode=True)
    ref = collate_skip_bad([make("float")[i] for i in range(3)])
    loader = DataLoader(make("uint8"), batch_size=3, num_workers=1, collate_fn=collate_skip_bad,
                        multiprocessing_context="fork")  # forkserver: the same transfer, ~10-25 s
    (batch,) = list(loader)
    raw = batch["clip"]
    assert raw.shape == (3, 6, 3, 4, 32, 32) and raw.movedim(-4, -1).is_contiguous()
    assert torch.equal(batch["clip_norm"](raw).contiguous(), ref["clip"])


def test_decoder_is_passed_to_the_reader(video_dir, monkeypatch):
    import dear_ray.data.dataset as dataset_module

    seen = []
    real = dataset_module.read_clip

    def spy(*args, **kwargs):
        seen.append(kwargs["decoder"])
        return real(*args, **{**kwargs, "decoder": "decord"})

    with pytest.raises(ValueError,
                       match="unknown data.decoder 'opencv'; known: pyav, decord, torchcodec"):
        train_dataset(video_dir, ["good/v_good.mp4"], decoder="opencv")
    monkeypatch.setattr(dataset_module, "read_clip", spy)
    monkeypatch.setattr(dataset_module, "check_decoder", lambda name: None)  # not installed: fine
    ds = train_dataset(video_dir, ["good/v_good.mp4"], decoder="torchcodec")
    assert ds[0]["clip"].shape == (3, 4, 32, 32) and seen == ["torchcodec"]


@pytest.mark.parametrize("handover", ["float", "uint8"])
def test_a_batch_of_one_is_the_clip_itself(video_dir, handover):
    ds = VideoDataset(records(video_dir, ["good/v_good.mp4"]), SampleFrames(4, 2, 2, test_mode=True),
                      build_test_transform(32, 48, 3, handover=handover), test_mode=True)
    item = ds[0]
    batch = collate_skip_bad([item])
    clip = batch["clip"]
    assert clip.shape == (1, 6, 3, 4, 32, 32) and torch.equal(clip[0], item["clip"])
    assert clip.data_ptr() == item["clip"].data_ptr()  # no copy (189 MB uint8 at DEAR's size)
    assert (clip.is_contiguous() if handover == "float" else clip.movedim(-4, -1).is_contiguous())
    loader = DataLoader(ds, batch_size=1, num_workers=1, collate_fn=collate_skip_bad,
                        multiprocessing_context="fork")
    (through,) = list(loader)  # from a worker: the clip's memory moved to shared memory
    assert torch.equal(through["clip"], clip)

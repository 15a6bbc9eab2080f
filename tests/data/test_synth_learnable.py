"""The synthetic data set: the bias it is configured with, its new knobs, and that its motion is
learnable by the demo's backbone (docs/synthetic_data.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dear_ray.data.synth import SynthParams, check_bias, generate_dataset, plan_videos
from dear_ray.data.synth.generate import IN_PROGRESS
from dear_ray.data.synth.scenes import scene_palette

REPO = Path(__file__).resolve().parents[2]
DEMO_SWEEP = REPO / "jobs/sweeps/demo.yaml"


def test_biased_split_scene_agreement_is_as_configured(tmp_path):
    """10 videos a class at bias 0.7: exactly 7 of each class's train/val/test videos show the
    class's scene (so 70%), test_shifted is balanced over the K scenes (1/K), unknown classes show
    their paired scene 70% of the time."""
    root = tmp_path / "biased"
    generate_dataset(root, known_classes=4, unknown_classes=2, videos_per_class=10, frames=4,
                     size=32, bias=0.7, split_sizes={"val": 10, "test": 10, "test_shifted": 8,
                                                     "unknown": 10}, workers=1, progress=False)
    rates = check_bias(root)
    assert rates["train"] == rates["val"] == rates["test"] == rates["unknown"] == pytest.approx(0.7)
    # 8 test_shifted videos a class over 4 scenes: each scene twice, so its own scene 2/8 = 1/K
    assert rates["test_shifted"] == pytest.approx(0.25) == pytest.approx(rates["chance"])
    # the unbiased control copy (bias = 1/K): train matches at chance, like test_shifted
    params = SynthParams(known_classes=4, unknown_classes=2, videos_per_class=8, bias=0.25)
    train = [t for t in plan_videos(params) if t.split == "train"]
    assert np.mean([t.scene == t.label for t in train]) == pytest.approx(0.25)
    assert {t.scene for t in train} == set(range(4))


def test_palettes_are_shared_round_robin_and_knobs_are_validated():
    assert np.array_equal(scene_palette(1, 3), scene_palette(4, 3))
    assert not np.array_equal(scene_palette(1, 3), scene_palette(2, 3))
    assert not np.array_equal(scene_palette(1), scene_palette(4))  # default: one palette a type
    assert np.array_equal(scene_palette(3, 11), scene_palette(3))  # more palettes than types
    for bad in ({"palettes": 0}, {"palettes": 2.0}, {"actor_radius": 0.0}, {"actor_speed": -1.0},
                {"rim": "2"}):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=name):
            SynthParams(**bad)


def test_interrupted_generation_can_be_started_again(tmp_path):
    """A run killed while rendering leaves videos and the in-progress marker but no manifest; the
    next run replaces it (a foreign videos/ folder is still refused)."""
    root = tmp_path / "synth"
    (root / "videos" / "move_left").mkdir(parents=True)
    (root / "videos" / "move_left" / "half.mp4").write_bytes(b"")
    with pytest.raises(FileExistsError, match="not a synthetic data set"):
        generate_dataset(root, known_classes=2, unknown_classes=0, videos_per_class=1, frames=4,
                         size=32, workers=1, progress=False)
    (root / IN_PROGRESS).write_text("interrupted\n")
    generate_dataset(root, known_classes=2, unknown_classes=0, videos_per_class=1, frames=4,
                     size=32, workers=1, progress=False)
    assert (root / "manifest.json").is_file() and not (root / IN_PROGRESS).exists()
    assert not (root / "videos" / "move_left" / "half.mp4").exists()


def test_demo_regenerates_only_data_sets_with_other_parameters(tmp_path, capsys):
    from dear_ray.demo import ensure_dataset

    small = dict(known_classes=2, unknown_classes=1, videos_per_class=2, frames=4, size=32)
    root = tmp_path / "synth"
    assert ensure_dataset(root, workers=1, **small) == "absent"
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert ensure_dataset(root, workers=1, **small) is None  # same parameters: kept
    assert (root / "manifest.json").stat().st_mtime_ns == stamp
    reason = ensure_dataset(root, workers=1, **{**small, "bias": 0.5})
    assert "other parameters" in reason
    assert json.loads((root / "manifest.json").read_text())["params"]["bias"] == 0.5
    assert "generating the synthetic data set" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# learnability (slow): the demo's own model and sampling, trained in-process on a smaller copy


def _demo_config(root: Path, **overrides):
    from dear_ray.config import load_config

    base = yaml.safe_load(DEMO_SWEEP.read_text())["base"]
    base["data"]["data_root"] = str(root)
    base["resources"] = {"num_workers": 0}
    return load_config(base, overrides)


def _train_and_score(cfg, splits: tuple[str, ...]) -> dict[str, float]:
    import torch

    from dear_ray.losses import annealing_coefficient
    from dear_ray.models import build_recognizer
    from dear_ray.train.data import build_eval_loader, build_train_loader, num_known_classes
    from dear_ray.train.loop import TrainingStep, predict, train_one_epoch
    from dear_ray.train.optim import build_optimizer, build_scheduler

    torch.manual_seed(cfg.seed)
    k = num_known_classes(cfg.data)
    m = cfg.model
    model = build_recognizer(backbone=m.backbone, head=m.head, num_classes=k,
                             backbone_options=m.backbone_options, head_options=m.head_options,
                             dropout=m.dropout)
    loader, _ = build_train_loader(cfg, num_classes=k)
    optimizer = build_optimizer(model, cfg.optim, None)
    scheduler = build_scheduler(optimizer, cfg.optim, len(loader))
    step, global_step = TrainingStep(model), 0
    epochs = cfg.optim.epochs
    for epoch in range(epochs):
        loader.dataset.set_epoch(epoch)
        loader.generator.manual_seed(cfg.seed * 100_003 + epoch)
        global_step = train_one_epoch(step, loader, optimizer, scheduler, epoch=epoch,
                                      anneal=annealing_coefficient(epoch, epochs),
                                      global_step=global_step, device=torch.device("cpu")).global_step
    return {s: predict(model, build_eval_loader(cfg, s, num_classes=k),
                       device=torch.device("cpu")).top1() for s in splits}


@pytest.mark.slow
def test_demo_backbone_learns_the_motion_of_the_unbiased_copy(tmp_path):
    """The demo's backbone, sampling and optimiser on a smaller unbiased copy (bias = 1/K) reach
    top-1 far above chance (10%) on test_shifted; its biased twin shows its bias as configured.

    Measured: see SLOW_THRESHOLD below; a generator or backbone change that makes the motion
    unlearnable drops this to chance and fails.
    """
    import torch

    torch.set_num_threads(1)
    unbiased, biased = tmp_path / "unbiased", tmp_path / "biased"
    generate_dataset(unbiased, bias=0.1, videos_per_class=SLOW_VIDEOS, workers=1, progress=False,
                     split_sizes={"val": 1, "test": 1, "test_shifted": 10, "unknown": 1})
    generate_dataset(biased, bias=0.9, videos_per_class=10, workers=1, progress=False,
                     split_sizes={"val": 1, "test": 10, "test_shifted": 10, "unknown": 1})
    n = SLOW_VIDEOS
    assert check_bias(unbiased)["train"] == pytest.approx(round(0.1 * n) / n)
    assert check_bias(biased)["train"] == check_bias(biased)["test"] == pytest.approx(0.9)
    assert check_bias(biased)["test_shifted"] == pytest.approx(0.1)
    cfg = _demo_config(unbiased, **{"optim.epochs": SLOW_EPOCHS})
    top1 = _train_and_score(cfg, ("test_shifted",))
    print("slow learnability:", top1)
    assert top1["test_shifted"] >= SLOW_THRESHOLD, top1


# 24 training videos a class (240 clips), 8 epochs, seed 0, 1 thread: measured 29% test_shifted
# top-1 with the default 2 palettes (38% with one palette a scene type); chance is 10%, the full
# demo budget reaches ~85-89%. The threshold (2x chance) leaves a margin for library versions while
# a motion the model cannot see (chance) still fails. ~40 s alone, 155 s on 2 busy cores.
SLOW_VIDEOS, SLOW_EPOCHS, SLOW_THRESHOLD = 24, 8, 0.2

"""The `data` section: where the videos are, how clips are sampled and transformed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from dear_ray.config._base import NAME as _NAME
from dear_ray.config._base import Section as _Section
from dear_ray.splits import KNOWN_SPLITS


class TestViews(_Section):
    """Test-time views: `num_clips` temporal clips x `num_crops` spatial crops (1, 3 or 10)."""

    num_clips: int = Field(1, ge=1)
    num_crops: Literal[1, 3, 10] = 1


class MultiScaleCropConfig(_Section):
    """`train_crop: multiscale` (MMAction2 `MultiScaleCrop`): crop sides are the short side times
    one of `scales` (width and height levels at most `max_wh_scale_gap` apart; 0 = square crops),
    placed at one of `num_fixed_crops` positions (5: corners and centre), then resized to
    `crop_size`. Defaults are MMAction2's TSM training crop; DEAR's I3D uses scales (1, 0.8) with
    gap 0 and 5 positions, SDN's corner crop five scales 0.84 apart with gap 0 and 5 positions."""

    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_wh_scale_gap: int = Field(1, ge=0)
    num_fixed_crops: Literal[5, 13] = 13

    @field_validator("scales")
    @classmethod
    def _scales(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0.0 < s <= 1.0 for s in value):
            raise ValueError(f"expected one or more scales in (0, 1], got {list(value)}")
        return value


class StaticBiasLists(_Section):
    """`data.static_bias`: SCUBA- and SCUFO-style test lists (StillMix, ICCV 2023; docs/static_bias.md).

    MMAction2 lists of KNOWN-class videos (``path label`` or ``path num_frames label``, labels in
    [0, K), paths relative to `data_root` unless absolute), scored as the splits `test_scuba` and
    `test_scufo` (docs/static_bias.md: StillMix's files, Mimetics).
    `scuba`: the actions on backgrounds the training videos never show (StillMix's SCUBA;
    Mimetics, mimed actions without their objects and scenes, is SCUBA-like).
    `scufo`: for each SCUBA video, one of its frames repeated for its length (StillMix's SCUFO);
    None (Mimetics has none): `scufo_top1` and `contrast_acc` are then not computed.
    Pairing: a SCUFO video pairs with the SCUBA video of the SAME VIDEO ID (file stem), as StillMix
    evaluates SCUFO on SCUBA's own list (so its lists also pair line by line); every SCUBA id once
    in each list, with the same label (`check_static_bias_lists` checks the files).
    """

    scuba: str
    scufo: str | None = None

    @model_validator(mode="after")
    def _check(self) -> StaticBiasLists:
        for name in ("scuba", "scufo"):
            if getattr(self, name) == "":
                raise ValueError(f"{name}: expected a list file path, got an empty string")
        if self.scufo is not None and Path(self.scufo).expanduser() == Path(self.scuba).expanduser():
            raise ValueError(f"scuba and scufo name the same list {self.scuba!r}; "
                             "the SCUFO list names the still videos (one frame of each SCUBA video)")
        return self


#: The `data.*` fields a backbone preset sets (`dear_ray.data.backbone_presets`).
PRESET_FIELDS = ("sampler", "clip_len", "frame_interval", "scale_short", "crop_size", "mean",
                 "std", "resize", "test_scale_short")

def _plain(value):
    """Tuples as lists, for comparing a YAML / JSON value with a preset's."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


#: `model_dump` context key: leave out the `PRESET_FIELDS` a preset filled or the defaults gave,
#: so that a `preset` set on top of the dump fills them (`ExperimentConfig.to_dict(sparse=True)`).
SPARSE_DUMP = "sparse_preset_fields"

#: The synthetic generator's SCUBA / SCUFO lists (`data.static_bias` resolves to them for `synth`).
SYNTH_STATIC_BIAS = StaticBiasLists(scuba="test_scuba.txt", scufo="test_scufo.txt")


class DataConfig(_Section):
    """Where the videos are and how clips are drawn from them.

    `unknown` maps an unknown data set's name (the name of its score store split) to its list file.
    The classifier's width is `num_classes` when given, else the number of lines of `classes_file`.
    Samplers (MMAction2): `sample_frames` draws a clip of `clip_len` frames every `frame_interval`
    (at test time `test_views.num_clips` evenly spaced clips); `dense` draws it inside a
    `sample_range`-frame window (at test time `test_views.num_clips` window positions); `segments`
    takes `num_segments` frames as one clip (TSN/TSM): with `segment_sampling: uniform` one frame
    of each of `num_segments` equal segments (random in training, centres at test), with `dense`
    frames `sample_range // num_segments` apart in a `sample_range`-frame window at a random start
    (DEAR's TSM, MMAction2 `DenseSampleFrames(clip_len=1, num_clips=num_segments)`); at test time
    `test_views.num_clips` > 1 gives that many evenly spaced dense windows in both modes (DEAR's
    TSM test). Training takes one clip a video. `test_sampler` (default: `sampler`) draws the test
    views (val, test, unknown sets): DEAR trains I3D with `dense` and tests it with
    `sample_frames` (a centred clip). Test views are resized to `test_scale_short` and cropped to
    `test_crop_size` (default: `scale_short` / `crop_size`), the long side and the centre crop's
    offset rounded as `test_rounding` says (`mmaction2`, or `sdn`: SDN's test, docs/fidelity.md).
    `train_crop`: `random_resized` (SlowFast/TPN), `multiscale` (TSN/TSM, DEAR's I3D, SDN; see
    `multiscale`) or `center`. `color_jitter`: MMAction2's `ColorJitter(color_space_aug=True)`
    on training clips (TPN's configs; `dear_ray.data.color`).

    Normalisation (`mean`, `std`; RGB on the 0-255 scale, applied as (x - mean) / std after the
    crop): the defaults are MMAction2 0.x's `img_norm_cfg` in every DEAR config; SDN
    (libs/mean.py `get_mean(1, 'activitynet')`, `Normalize(mean, [1, 1, 1])` without its
    `--std_norm`) subtracts the ActivityNet mean (114.7748, 107.7354, 99.4750) and divides by
    nothing: its sweeps set that.
    `flip`: random horizontal flip of training clips. None (the default) resolves at validation to
    False for `dataset: synth` (its motion classes come in mirror pairs, left/right and cw/ccw, so
    a flip changes the label) and True otherwise (MMAction2's `Flip(flip_ratio=0.5)`, SDN's
    `MultiScaleCornerCrop` + `RandomHorizontalFlip`); consumers always read a bool. A resolved
    value is written back as null, so overriding `dataset` re-resolves it.
    SDN's masked batch (`mask_min_human_fraction`, `mask_min_box_score`; SDN
    datasets/kinetics.py `is_video_valid_det`): a frame counts when one of its human boxes scores
    strictly above `mask_min_box_score`; a video may give masked clips when counted frames /
    frames >= `mask_min_human_fraction`. (Masking itself fills boxes scoring >= 0.3.)
    `decoder`: `pyav` (default: decord's frames and frame counts, decoded by PyAV without the
    pictures no sampled frame needs; files other than h264 go to decord), `decord` (a pip wheel)
    or `torchcodec` (PyTorch's decoder: the same pixels and frame counts, but it needs the
    `[torchcodec]` extra and the system's FFmpeg libraries; `dear_ray.data.decode`).
    `decoded_cache_mb`: MiB of decoded training clips kept in memory by each loading process
    (least recently used out; 0 = off): a clip of the same video and frame indices is not decoded
    again, and is bit for bit the decoded one (random crops and flips are still drawn per sample).
    For small data sets read in-process (`num_workers: 0`, the demo): a DataLoader worker's cache
    ends with the worker, at the end of each epoch.
    `static_bias` (`StaticBiasLists`: SCUBA / SCUFO-style lists, splits `test_scuba` and
    `test_scufo`): None (the default) resolves at validation to the generator's lists
    (`test_scuba.txt`, `test_scufo.txt`) for `dataset: synth` and to none otherwise; like `flip`,
    a resolved value is written back as null.
    `val_unknown`: a list of held-out unknown videos (classes that are neither known nor in any
    `unknown` set; the synthetic generator writes `val_unknown.txt`): scored as split
    `val_unknown`, with `val`, so that the report chooses the post-hoc detectors'
    hyper-parameters on them, never on a test unknown set (docs/scores.md).
    `preset`: the name of a backbone's published input pipeline
    (`dear_ray.data.backbone_presets.BACKBONE_PIPELINES`, docs/backbones.md): it fills the
    sampler, frames, interval, sizes, mean / std and resize that the config does not set itself
    (a value the config sets wins). A saved config holds every field; the dump that overrides
    build on (`ExperimentConfig.override`, a sweep's cases and stages) leaves out the
    `PRESET_FIELDS` the config did not set itself, so a `preset` set there (a sweep case on its
    base) takes the preset's values.
    """

    dataset: str = "synth"
    data_root: str = "data/synth"
    train_list: str | None = "train.txt"
    val_list: str | None = "val.txt"
    test_list: str | None = "test.txt"
    test_shifted_list: str | None = "test_shifted.txt"
    unknown: dict[str, str] = Field(default_factory=lambda: {"unknown": "unknown.txt"})
    classes_file: str | None = "classes.txt"
    num_classes: int | None = Field(None, ge=2)
    sampler: Literal["sample_frames", "dense", "segments"] = "sample_frames"
    test_sampler: Literal["sample_frames", "dense", "segments"] | None = None
    clip_len: int = Field(8, ge=1)
    frame_interval: int = Field(1, ge=1)
    num_segments: int = Field(8, ge=1)
    segment_sampling: Literal["uniform", "dense"] = "uniform"
    sample_range: int = Field(64, ge=1)
    test_views: TestViews = Field(default_factory=TestViews)
    train_crop: Literal["random_resized", "multiscale", "center"] = "random_resized"
    multiscale: MultiScaleCropConfig = Field(default_factory=MultiScaleCropConfig)
    color_jitter: bool = False
    flip: bool | None = None
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    crop_size: int = Field(56, ge=8)
    scale_short: int = Field(64, ge=8)
    test_crop_size: int | None = Field(None, ge=8)
    test_scale_short: int | None = Field(None, ge=8)
    batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0)
    decoder: Literal["pyav", "decord", "torchcodec"] = "pyav"
    decoded_cache_mb: int = 0
    # frame resize: `cv2` = mmcv.imresize (cv2 INTER_LINEAR, no antialiasing; MMAction2 0.x / DEAR),
    # `antialias` = antialiased bilinear (torchvision; near PIL's bilinear, which SDN's
    # spatial_transforms use when downscaling)
    resize: Literal["cv2", "antialias"] = "cv2"
    # test views' rounding: `mmaction2` (keep-ratio long side int(x + 0.5), centre-crop offset
    # rounded down; DEAR) or `sdn` (SDN's test Scale + CenterCrop: long side rounded down, offset
    # rounded half to even; vt-vl-lab/SDN libs/spatial_transforms.py)
    test_rounding: Literal["mmaction2", "sdn"] = "mmaction2"
    multiprocessing_context: Literal["forkserver", "spawn"] = "forkserver"
    max_bad_fraction: float = Field(0.05, ge=0.0, le=1.0)
    scene_labels: str | None = None
    detections: str | None = None
    mask_ratio: float = Field(0.0, ge=0.0, le=1.0)
    mask_min_human_fraction: float = Field(0.7, ge=0.0, le=1.0)
    mask_min_box_score: float = Field(0.3, ge=0.0, le=1.0)

    static_bias: StaticBiasLists | None = None
    val_unknown: str | None = None
    preset: str | None = None

    _preset_fields: frozenset = PrivateAttr(frozenset())  # the fields `preset` filled
    _flip_auto: bool = PrivateAttr(False)  # flip was None and resolved from the dataset
    _static_bias_auto: bool = PrivateAttr(False)  # static_bias was None and resolved from it

    @field_validator("mean")
    @classmethod
    def _mean(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not 0.0 <= m <= 255.0 for m in value):
            raise ValueError(f"expected three per-channel RGB means on the 0-255 scale, got "
                             f"{list(value)}")
        return value

    @field_validator("decoded_cache_mb")
    @classmethod
    def _cache_mb(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"expected a budget in MiB >= 0 (0 = no decoded-frame cache), got "
                             f"{value}")
        return value

    @field_validator("std")
    @classmethod
    def _std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not s > 0.0 for s in value):
            raise ValueError(f"expected three per-channel RGB stds > 0 on the 0-255 scale (1 = no "
                             f"division, as SDN), got {list(value)}")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _apply_preset(cls, data, handler):
        filled: list[str] = []
        if isinstance(data, dict) and data.get("preset") is not None:
            from dear_ray.data.backbone_presets import pipeline_overrides

            try:
                values = pipeline_overrides(str(data["preset"]))
            except KeyError as err:
                raise ValueError(f"data.preset: {err.args[0]}") from None
            values = {dotted.split(".", 1)[1]: v for dotted, v in values.items()}
            # a value equal to the preset's counts as the preset's (a saved config re-read)
            filled = [name for name in values
                      if name not in data or _plain(data[name]) == _plain(values[name])]
            data = {**data, **{name: values[name] for name in filled}}
        out = handler(data)
        out._preset_fields = frozenset(filled)
        return out

    @model_serializer(mode="wrap")
    def _dump(self, handler, info):
        out = handler(self)
        if (info.context or {}).get(SPARSE_DUMP):  # a dict that further overrides build on
            for name in PRESET_FIELDS:  # filled by a preset, or left at the default: left out
                if name in self._preset_fields or name not in self.model_fields_set:
                    out.pop(name, None)
        return out

    @field_serializer("flip")
    def _dump_flip(self, value: bool) -> bool | None:
        return None if self._flip_auto else value

    @field_serializer("static_bias")
    def _dump_static_bias(self, value: StaticBiasLists | None) -> dict | None:
        return None if self._static_bias_auto or value is None else value.model_dump()

    @field_validator("data_root")
    @classmethod
    def _absolute_root(cls, value: str) -> str:
        if not value:
            raise ValueError("expected a folder path, got an empty string")
        return str(Path(value).expanduser().absolute())

    @field_validator("unknown")
    @classmethod
    def _unknown_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name in KNOWN_SPLITS or name == "val_unknown" or not _NAME.match(name):
                raise ValueError(f"unknown set name {name!r}: expected letters, digits, '_.=-' and "
                                 f"not one of the known split names {list(KNOWN_SPLITS)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.flip is None:  # frozen model: set the resolved value once, here
            object.__setattr__(self, "flip", self.dataset != "synth")
            self._flip_auto = True
        if self.static_bias is None and self.dataset == "synth":
            object.__setattr__(self, "static_bias", SYNTH_STATIC_BIAS)
            self._static_bias_auto = True
        if self.num_classes is None and self.classes_file is None:
            raise ValueError("give data.num_classes or data.classes_file (one class name a line)")
        if self.crop_size > self.scale_short:
            raise ValueError(f"data.crop_size {self.crop_size} is larger than data.scale_short "
                             f"{self.scale_short}: the short side is resized before cropping")
        test_crop = self.test_crop_size or self.crop_size
        test_scale = self.test_scale_short or self.scale_short
        if test_crop > test_scale:
            raise ValueError(f"data.test_crop_size {test_crop} is larger than data.test_scale_short "
                             f"{test_scale} (unset fields take crop_size / scale_short)")
        frames = {"segments": self.num_segments}  # frames a clip, by sampler
        train_t = frames.get(self.sampler, self.clip_len)
        test_t = frames.get(self.test_sampler or self.sampler, self.clip_len)
        if train_t != test_t:
            raise ValueError(f"data.test_sampler {self.test_sampler!r} gives clips of {test_t} "
                             f"frames, data.sampler {self.sampler!r} of {train_t}: the model "
                             "expects the same clip length (set clip_len = num_segments)")
        windows = self.segment_sampling == "dense" or self.test_views.num_clips > 1
        uses_segments = "segments" in (self.sampler, self.test_sampler)
        if uses_segments and windows and self.sample_range < self.num_segments:
            raise ValueError(f"data.sample_range {self.sample_range} is smaller than "
                             f"data.num_segments {self.num_segments}: the segments sampler's dense "
                             "windows (segment_sampling dense, or test_views.num_clips > 1) need "
                             "sample_range >= num_segments")
        if self.mask_ratio > 0 and self.detections is None:
            raise ValueError(f"data.mask_ratio {self.mask_ratio} > 0 needs data.detections "
                             "(human boxes to mask)")
        return self

    def resolve(self, path: str | None) -> Path | None:
        """A list/classes/side-input path made absolute against `data_root`."""
        if path is None:
            return None
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.data_root) / p

    def split_lists(self) -> dict[str, Path]:
        """Every configured split -> its list file: train, val, test, test_shifted, test_scuba,
        test_scufo (`static_bias`), unknown sets, val_unknown."""
        bias = self.static_bias
        known = {"train": self.train_list, "val": self.val_list, "test": self.test_list,
                 "test_shifted": self.test_shifted_list,
                 "test_scuba": bias.scuba if bias else None, "test_scufo": bias.scufo if bias else None}
        out = {k: self.resolve(v) for k, v in known.items() if v is not None}
        out.update({k: self.resolve(v) for k, v in self.unknown.items()})
        if self.val_unknown is not None:
            out["val_unknown"] = self.resolve(self.val_unknown)
        return out


def check_static_bias_lists(data: DataConfig, num_classes: int | None = None) -> list[str]:
    """The problems of `data.static_bias`'s list files, one line each naming the field and file
    (empty: none; no static-bias lists: none). Checked: the files exist and parse, labels lie in
    [0, `num_classes`) when given, video ids (file stems, the pairing key) are unique in each
    list, and the SCUFO list has exactly the SCUBA list's ids, each with its SCUBA video's label.
    Video files themselves are not opened (`dear-ray data check` does that)."""
    from dear_ray.data.annotations import AnnotationError, read_annotation_list

    bias = data.static_bias
    if bias is None:
        return []
    problems: list[str] = []
    records = {}
    for name in ("scuba", "scufo"):
        path = data.resolve(getattr(bias, name))
        if path is None:
            continue
        field = f"data.static_bias.{name}"
        if not path.is_file():
            problems.append(f"{field}: list file {path} does not exist")
            continue
        try:
            found = read_annotation_list(path, data.data_root, num_classes=num_classes, check_exists=False)
        except AnnotationError as err:
            problems.append(f"{field}: {err}")
            continue
        seen: dict[str, int] = {}
        for r in found:
            if r.video_id in seen:
                problems.append(f"{field}: {path}:{r.line}: video id {r.video_id!r} again (first on line "
                                f"{seen[r.video_id]}); ids pair SCUBA and SCUFO videos, so each must be unique")
            seen.setdefault(r.video_id, r.line)
        if not found:
            problems.append(f"{field}: {path} lists no video")
        records[name] = (path, {r.video_id: r for r in found})
    if len(records) == 2 and not problems:
        (scuba_path, scuba), (scufo_path, scufo) = records["scuba"], records["scufo"]
        if len(scufo) != len(scuba):
            problems.append(f"data.static_bias.scufo: {scufo_path} has {len(scufo)} videos, "
                            f"data.static_bias.scuba {scuba_path} has {len(scuba)}: a SCUFO list has "
                            "one still video per SCUBA video, with the same video id")
        missing = [vid for vid in scuba if vid not in scufo]
        extra = [vid for vid in scufo if vid not in scuba]
        if missing:
            problems.append(f"data.static_bias.scufo: {scufo_path} has no video of id {missing[0]!r} "
                            f"({scuba_path}:{scuba[missing[0]].line})" + (f" nor of {len(missing) - 1} "
                                                                          "more SCUBA ids" if len(missing) > 1 else ""))
        if extra:
            problems.append(f"data.static_bias.scufo: {scufo_path}:{scufo[extra[0]].line}: video id "
                            f"{extra[0]!r} is not in {scuba_path}" + (f" ({len(extra) - 1} more such ids)"
                                                                     if len(extra) > 1 else ""))
        for vid, rec in scufo.items():
            if vid in scuba and rec.label != scuba[vid].label:
                problems.append(f"data.static_bias.scufo: {scufo_path}:{rec.line}: label {rec.label}, but its "
                                f"SCUBA video ({scuba_path}:{scuba[vid].line}) has label {scuba[vid].label}")
                break
    return problems

"""The feature cache of a frozen backbone: its outputs over a split, extracted once, on disk.

With `model.feature_cache: on` (docs/backbones.md) every split a trial reads is one cache ENTRY:
the backbone's outputs for each item of the split's dataset, in dataset order. An entry is
identified by a key, the SHA-256 of every input its numbers depend on (`entry_inputs`): the
backbone's name and options and a hash of its loaded tensors (weights, whatever file or folder
they came from), the split list's content and the data root, the pipeline settings of the
mode (training: sampler, frames, crop, flip, jitter, sizes, normalisation, the seed and the epoch
of the view; test: the test sampler, views, sizes, rounding, normalisation), what is stored
(`maps` or `vectors`) and the precision. A changed input gives another key; any other field (the
head, the learning rate, the trial's seed when `feature_cache_seed` is set) does not enter it.

Entry folder `<dir>/<key>/`: `features.npy` (one row a dataset item; `(V, C, T, H, W)` rows in
test mode; rows of undecodable videos are zeros and listed in the manifest as bad) and
`manifest.json` (key, inputs, shape, dtype, bad items). It is written under a temporary name and
renamed into place, under a file lock (`<dir>/<key>.lock`), so concurrent trials never see half
an entry; an entry whose manifest or array is missing or does not match is rebuilt with a warning.

What is stored: heads that read the maps (the CED branch of dear / dear_alt, the attentive
probe) get the backbone's map in float16; the others the pooled vector in float32 (as a
`(C, 1, 1, 1)` map, per frame `(C, T, 1, 1)` for a segmental backbone), which pools to the very
numbers the recognizer pools from the live backbone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dear_ray.config import ExperimentConfig
from dear_ray.data.dataset import BadSample
from dear_ray.splits import KNOWN_SPLITS

log = logging.getLogger(__name__)
FORMAT = 1
MANIFEST, FEATURES = "manifest.json", "features.npy"


def cache_dir(cfg: ExperimentConfig) -> Path:
    """`model.feature_cache_dir`, else `<tracking.run_dir>/feature_cache` (shared by every sweep
    writing under that run folder)."""
    if cfg.model.feature_cache_dir is not None:
        return Path(cfg.model.feature_cache_dir)
    return Path(cfg.tracking.run_dir).expanduser().absolute() / "feature_cache"


def view_seed(cfg: ExperimentConfig) -> int:
    """The seed of the cached training views: `model.feature_cache_seed`, else the trial's."""
    seed = cfg.model.feature_cache_seed
    return cfg.seed if seed is None else seed


def stored_kind(model) -> str:
    """`maps` when the head reads the backbone's map (CED branch, attentive probe), else
    `vectors`."""
    needs_maps = model.probe is not None or model.cls_head.uses_debias_map
    return "maps" if needs_maps else "vectors"


def weights_hash(backbone: torch.nn.Module) -> str:
    """SHA-256 of the backbone's state (names, dtypes, shapes and bytes of every tensor)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pipeline_inputs(cfg: ExperimentConfig, *, test_mode: bool) -> dict:
    """The `data.*` settings the clips of one mode depend on (see the module docstring)."""
    d = cfg.data
    common = {"clip_len": d.clip_len, "frame_interval": d.frame_interval,
              "num_segments": d.num_segments, "segment_sampling": d.segment_sampling,
              "sample_range": d.sample_range, "mean": list(d.mean), "std": list(d.std),
              "resize": d.resize, "decoder": d.decoder}
    if test_mode:
        return {**common, "sampler": d.test_sampler or d.sampler,
                "test_views": d.test_views.model_dump(),
                "crop_size": d.test_crop_size or d.crop_size,
                "scale_short": d.test_scale_short or d.scale_short, "rounding": d.test_rounding}
    return {**common, "sampler": d.sampler, "train_crop": d.train_crop,
            "multiscale": d.multiscale.model_dump(mode="json"), "color_jitter": d.color_jitter,
            "flip": d.flip, "crop_size": d.crop_size, "scale_short": d.scale_short}


def entry_inputs(cfg: ExperimentConfig, split: str, *, weights: str, kind: str, precision: str,
                 view: int | None = None) -> dict:
    """Everything one entry's numbers depend on; `view`: the training epoch of the views (None:
    the split in test mode)."""
    lists = cfg.data.split_lists()
    test_mode = view is None
    out = {"format": FORMAT, "kind": kind, "precision": precision,
           "backbone": cfg.model.backbone,
           "backbone_options": json.loads(json.dumps(cfg.model.backbone_options, default=str)),
           "weights": weights, "list": _file_hash(lists[split]),
           "data_root": str(cfg.data.data_root), "known": split in KNOWN_SPLITS,
           "mode": "test" if test_mode else "train",
           "pipeline": pipeline_inputs(cfg, test_mode=test_mode)}
    if not test_mode:
        out.update(seed=view_seed(cfg), view=int(view))
    return out


def entry_key(inputs: dict) -> str:
    """The entry's key: SHA-256 of its inputs as canonical JSON."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def check_entry(folder: Path, key: str) -> str | None:
    """None when `folder` holds the complete entry `key`; else what is wrong with it."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        return f"no readable {MANIFEST} ({err.__class__.__name__})"
    if manifest.get("key") != key or manifest.get("format") != FORMAT:
        return f"its {MANIFEST} names another key or format"
    try:
        array = np.load(folder / FEATURES, mmap_mode="r")
    except (OSError, ValueError) as err:
        return f"no readable {FEATURES} ({err})"
    if list(array.shape) != manifest.get("shape") or str(array.dtype) != manifest.get("dtype"):
        return (f"{FEATURES} is {array.dtype} {list(array.shape)}, its manifest says "
                f"{manifest.get('dtype')} {manifest.get('shape')}")
    return None


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def ensure_entry(root: Path, inputs: dict, build) -> Path:
    """The folder of the entry of `inputs`, built by `build(tmp_folder) -> manifest fields` when
    it is missing or broken (a broken one is logged and replaced). Safe across processes: the
    check and the build run under the entry's file lock, the build in a temporary folder renamed
    into place."""
    from filelock import FileLock

    key = entry_key(inputs)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / key
    with FileLock(str(root / f"{key}.lock")):
        if folder.exists():
            problem = check_entry(folder, key)
            if problem is None:
                return folder
            log.warning("feature cache entry %s is incomplete or corrupt (%s): rebuilding it",
                        folder, problem)
            shutil.rmtree(folder)
        for stale in root.glob(f".tmp-{key}-*"):  # a builder that died (we hold its lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            fields = build(tmp)
            manifest = {"key": key, "format": FORMAT, "inputs": inputs, **fields}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return folder


class CachedFeatureDataset(Dataset):
    """The items of a split with the cached outputs as `clip` (float32), in dataset order.

    Args:
        records: the split's `VideoRecord`s (labels, ids), as the uncached dataset reads them.
        folders: the entry of each training epoch (training), or the one test-mode entry.
        test_mode: one entry whatever the epoch.
        scene_labels: SDN's scene pseudo-labels by video id (training), or None.
    """

    def __init__(self, records, folders: list[Path], *, test_mode: bool,
                 scene_labels: dict | None = None) -> None:
        self.records, self.folders = list(records), list(folders)
        self.test_mode, self.scene_labels = test_mode, scene_labels
        self.epoch = 0
        self.bad = [{b[0]: BadSample(*b) for b in read_manifest(f)["bad"]} for f in folders]
        self._arrays: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}  # memory maps are reopened in each worker

    def set_epoch(self, epoch: int) -> None:
        if not self.test_mode and not 0 <= epoch < len(self.folders):
            raise ValueError(f"the feature cache holds training views for epochs "
                             f"0..{len(self.folders) - 1}, not epoch {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict | BadSample:
        view = 0 if self.test_mode else self.epoch
        if index in self.bad[view]:
            return self.bad[view][index]
        if view not in self._arrays:
            self._arrays[view] = np.load(self.folders[view] / FEATURES, mmap_mode="r")
        record = self.records[index]
        clip = torch.from_numpy(np.array(self._arrays[view][index], dtype=np.float32))
        item = {"label": record.label, "index": index, "video_id": record.video_id, "clip": clip}
        if self.scene_labels is not None:
            label = np.asarray(self.scene_labels[record.video_id])
            item["scene"] = torch.as_tensor(label.astype(np.float32 if label.ndim else np.int64))
        return item


__all__ = ["FEATURES", "MANIFEST", "CachedFeatureDataset", "cache_dir", "check_entry", "ensure_entry", "entry_inputs",
           "entry_key", "pipeline_inputs", "read_manifest", "stored_kind", "view_seed",
           "weights_hash"]

"""Reading a generated data set back: measured bias, checksum verification, a printable summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from dear_ray.data.synth.generate import GENERATOR, SPLITS, sha256_file


def _manifest(root: Path) -> dict:
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a complete synthetic data set "
                                "(the manifest is written last; generate it with `dear-ray data synth`)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("generator") != GENERATOR:
        raise ValueError(f"{path}: generator {manifest.get('generator')!r}, expected {GENERATOR!r}")
    return manifest


def _metadata(root: Path) -> list[dict]:
    with open(root / "videos.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_bias(out_dir: str | Path) -> dict:
    """Scene-class agreement measured from the written data (``videos.csv``), per split.

    Args:
        out_dir: a generated data set.

    Returns:
        ``{split: rate}`` for train/val/test/test_shifted: the fraction of videos whose scene is
        their class's scene; ``unknown``, ``val_unknown``: the fraction whose scene is their
        class's paired known scene; ``test_scuba`` / ``test_scufo``: the same as the known splits, 0 by construction
        (held-out scene types); ``chance``: 1/P (P scene types), the rate of a scene drawn
        independently of the class; ``bias``: the generator's parameter.
    """
    root = Path(out_dir)
    manifest = _manifest(root)
    own = {**manifest["class_scene"], **manifest["unknown_scene"],
           **manifest.get("val_unknown_scene", {})}
    hits = {s: [0, 0] for s in SPLITS}  # a data set of an older version lacks the last splits
    for row in _metadata(root):
        h = hits[row["split"]]
        h[0] += int(row["scene"]) == own[row["class_name"]]
        h[1] += 1
    out = {s: (h[0] / h[1] if h[1] else float("nan")) for s, h in hits.items()}
    out["chance"] = 1.0 / len(manifest["scenes"])
    out["bias"] = float(manifest["params"]["bias"])
    return out


def verify_checksums(out_dir: str | Path, *, videos: bool = True) -> list[str]:
    """Compare every checksummed file with the manifest.

    Args:
        out_dir: a generated data set.
        videos: also hash the videos.

    Returns:
        One line per missing or changed file; empty when everything matches.
    """
    root = Path(out_dir)
    sums = _manifest(root)["checksums"]
    expected = dict(sums["files"])
    if videos:
        expected.update(sums["videos"])
    problems = []
    for rel, digest in expected.items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != digest:
            problems.append(f"{path}: sha256 differs from the manifest")
    return problems


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def summarize_dataset(out_dir: str | Path) -> str:
    """A human-readable summary: classes, split sizes, measured bias, video format, disk size."""
    root = Path(out_dir)
    m = _manifest(root)
    rates = check_bias(root)
    v = m["video"]
    known, unknown = m["classes"], m["unknown_classes"]
    lines = [
        f"synthetic biased actions ({m['generator']} v{m['version']}, seed {m['seed']}) in {root}",
        f"  known classes ({len(known)}): {', '.join(known)}",
        f"  unknown classes ({len(unknown)}): {', '.join(unknown) or '-'}",
        f"  validation unknown classes: {', '.join(m.get('val_unknown_classes', [])) or '-'}",
        f"  scene types: {len(m['scenes'])} (known class i's own: type i); unknown classes' paired scenes: "
        + (", ".join(f"{c}->{m['scenes'][s]}" for c, s in m["unknown_scene"].items()) or "-"),
        f"  held-out scene types (test_scuba; test_scufo = one frame of each, repeated): "
        + (", ".join(m.get("scuba_scenes", {})) or "-"),
        f"  videos: {v['frames']} frames {v['width']}x{v['height']} @ {v['fps']} fps, {v['codec']} "
        f"{v['pix_fmt']}; {sum(m['counts'].values())} files, {_disk_bytes(root) / 2**20:.1f} MiB on disk",
        "  split          videos  per class  scene matches class",
    ]
    per_class = m["videos_per_class"]
    empty = [s for s in SPLITS if m["counts"].get(s) == 0]
    for split in (s for s in SPLITS if m["counts"].get(s)):
        what = {"unknown": "paired scene", "val_unknown": "paired scene", "test_scuba": "held-out scenes",
                "test_scufo": "held-out scenes, still"}.get(split, "own scene")
        lines.append(f"  {split:<14} {m['counts'][split]:>6}  {per_class[split]:>9}  "
                     f"{100 * rates[split]:5.1f}% ({what})")
    if empty:
        lines.append(f"  no videos in {', '.join(empty)}")
    lines.append(f"  bias parameter {rates['bias']:.2f}; an independent scene matches with chance "
                 f"{100 * rates['chance']:.1f}%")
    return "\n".join(lines)

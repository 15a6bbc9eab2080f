"""The classifier file beside a trial's score stores: the final linear layer's weight and bias.

ViM, ReAct, ASH (and the energy / max-logit rows of a train split stored with prob averaging) need
the classifier, not only its outputs. The training driver writes it once per trial:

- file: `classifier.npz` in the folder of the trial's stores (`<sweep>/stores/<trial>/`), written
  with `numpy.savez` (no pickle): `weight` float32 `(K, F)` (`cls_head.fc_cls.weight`), `bias`
  float32 `(K,)` (`cls_head.fc_cls.bias`; zeros when the layer has none).
- store metadata: `StoreMeta.extra["classifier"] = "classifier.npz"`, the file name relative to the
  store file's folder, in EVERY store of the trial.

What the file means: for the `softmax` and `sdn` heads (a plain `fc_cls` on the pooled features,
`dear_ray/models/heads/softmax.py`, `sdn.py`), a store's `features` are the per-view pooled
features averaged over views, and the head is linear, so

    logits = features @ weight.T + bias

holds exactly for every split whose views are averaged as `score` (mean of logits), on every
backbone: TSM's consensus is the mean over segments of fc(x_t) = fc(mean_t x_t), which the
recognizer computes as fc of the segment-mean feature. It does NOT hold for a split stored with
`prob` averaging (`eval.average_clips: released` stores a softmax trial's TRAIN split as the log of
the mean per-view softmax; SDN's every split), for the stochastic passes (dropout before fc), nor
for heads that are not one linear layer (RPL's reciprocal points, BNN's weight draws). For those
splits `store_logits` RECOMPUTES the score-averaged logits from the features, which is what every
post-hoc logit scorer here uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dear_ray.scores.store import ScoreStore

CLASSIFIER_FILE = "classifier.npz"
CLASSIFIER_KEY = "classifier"  # StoreMeta.extra key naming the file
# |stored - recomputed| logits allowed on a score-averaged split, relative to max(1, max |logit|):
# fp32 sums differ by ~1e-6, `eval.precision: amp` (bf16) by ~1e-2; another trial's file by O(1)
_MISMATCH_TOLERANCE = 0.05


class ClassifierError(ValueError):
    """A classifier file that is missing, unreadable, or does not match its stores."""


@dataclass(frozen=True)
class Classifier:
    """The final linear layer: `weight` `(K, F)`, `bias` `(K,)`, float64."""

    weight: np.ndarray
    bias: np.ndarray

    def logits(self, features) -> np.ndarray:
        """`features @ weight.T + bias`, `(N, K)` float64, from `(N, F)` features."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.weight.shape[1]:
            raise ClassifierError(f"classifier: features must be (N, F={self.weight.shape[1]}), got {x.shape}")
        return x @ self.weight.T + self.bias


def write_classifier(folder: str | Path, weight, bias=None) -> Path:
    """Write `folder/classifier.npz` (what the training driver does once per trial)."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2:
        raise ClassifierError(f"classifier weight must be (K, F), got shape {w.shape}")
    b = np.zeros(w.shape[0], np.float32) if bias is None else np.asarray(bias, dtype=np.float32)
    if b.shape != (w.shape[0],):
        raise ClassifierError(f"classifier bias must be (K={w.shape[0]},), got shape {b.shape}")
    path = Path(folder) / CLASSIFIER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, weight=w, bias=b)
    return path


def read_classifier(store: ScoreStore) -> Classifier | None:
    """The classifier named in `store`'s metadata, or None when the metadata names none.

    Raises:
        ClassifierError: the named file is missing or malformed, or its K differs from the store's.
    """
    name = store.meta.extra.get(CLASSIFIER_KEY)
    if not name:
        return None
    if store.path is None:
        raise ClassifierError(f"<in-memory store>: metadata names classifier {name!r} but the store has no folder")
    path = Path(store.path).parent / name
    if not path.is_file():
        raise ClassifierError(f"{store.path}: metadata names classifier file {name!r}, but {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            weight, bias = np.asarray(data["weight"], np.float64), np.asarray(data["bias"], np.float64)
    except (OSError, KeyError, ValueError) as err:
        raise ClassifierError(f"{path}: not a classifier file with arrays 'weight' (K, F) and 'bias' (K,) "
                              f"({err})") from None
    k = store.meta.num_known
    if weight.ndim != 2 or weight.shape[0] != k or bias.shape != (k,):
        raise ClassifierError(f"{path}: weight {weight.shape} / bias {bias.shape}, expected (K={k}, F) / ({k},)")
    if not (np.all(np.isfinite(weight)) and np.all(np.isfinite(bias))):
        raise ClassifierError(f"{path}: weight or bias has NaN/inf values")
    return Classifier(weight, bias)


def prob_averaged(store: ScoreStore) -> bool:
    """Whether the store's deterministic logits are the log of the mean per-view softmax
    (`StoreMeta.extra["average_clips"]` starts with `prob`; the passes follow after a `/`)."""
    return store.meta.extra.get("average_clips", "score").split("/")[0] == "prob"


def store_logits(store: ScoreStore, classifier: Classifier | None) -> np.ndarray:
    """The score-averaged logits `(N, K)` of a store, float64.

    With a classifier and features: `features @ weight.T + bias` (recomputed, so a prob-averaged
    train split gets the logits its test splits have). Without one: the stored logits.

    Raises:
        ClassifierError: a score-averaged store whose stored logits differ from the recomputed ones
            by more than 5% of the largest logit (the file does not belong to these stores).
    """
    if classifier is None or store.features is None:
        return np.asarray(store.logits, dtype=np.float64)
    z = classifier.logits(store.features)
    if not prob_averaged(store) and len(store):
        gap = float(np.max(np.abs(z - store.logits)))
        if gap > _MISMATCH_TOLERANCE * max(1.0, float(np.max(np.abs(z)))):
            raise ClassifierError(f"{store.path}: features @ weight.T + bias differs from the stored logits by "
                                  f"{gap:.3g}; the classifier file does not belong to this store")
    return z

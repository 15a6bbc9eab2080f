"""How a split's test views and stochastic passes become its predictions.

View averaging (`eval.average_clips`): how the V test views (clips x crops) of a video are
combined, passed to `Recognizer.predict(average_clips=...)`: `score` = mean of the logits, `prob` =
mean of the per-view softmax (stored as its log). `released` reproduces the test code of the
codebase that released the model (`average_clips_for`): SDN's for SDN's network (`r3d18_a`, whose
plain classifier SDN trains as its baseline) and the sdn head, DEAR's scripts for the rest:

| head | deterministic logits | stochastic passes | where (DEAR b752998 / SDN b92b9ca) |
|---|---|---|---|
| edl, edl_avu, dear, dear_alt | score | - | configs/recognition/*/inference_*_enn.py |
| softmax, train split | prob | prob | experiments/baseline_softmax.py (`average_clips='prob'`); get_threshold.py with inference_*_dnn.py |
| softmax, test splits | score | prob | baseline_openmax.py (`'score'`, then softmax) for MSP; ood_detection.py with inference_*_dnn.py (`'prob'`) for MC dropout |
| bnn, rpl | prob | prob | inference_*_bnn.py, inference_*_rpl.py |
| sdn; softmax on `r3d18_a` (SDN's baseline) | prob | prob | SDN libs/test.py: softmax per clip, then the mean, for every model |
| psl | score | - | PSL tests 1 clip x 1 crop (Jun-CEN/PSL tools/test_net_open.py) |

When the logits and the passes of a split need different averaging (softmax test splits with
`eval.stochastic_passes > 1`), the split is predicted twice.

Precision (`eval.precision`): stores are computed in fp32 unless `amp`, whatever
`resources.amp` says for training (bf16 autocast moves vacuity by ~1%, docs/metrics.md).
Validation during training keeps the training autocast (its top-1 is not a stored score).
"""

from __future__ import annotations

import numpy as np

from dear_ray.config import ExperimentConfig
from dear_ray.methods import HEAD_ROWS, head_spec, released_average_clips
from dear_ray.train.loop import Predictions, predict

AVERAGE_CLIPS_SETTINGS = ("released", "score", "prob")
# SDN's network: only SDN's code trains it, and its test (libs/test.py) averages the per-clip
# softmax for every model it trains (the baseline classifier too)
SDN_BACKBONES = ("r3d18_a",)


def average_clips_for(head: str, split: str, setting: str, *, backbone: str,
                      stochastic: bool = False) -> str:
    """How the test views of `split` are averaged for a model with `head` on `backbone`: `score`
    or `prob`.

    Args:
        head: the trained head (`model.head`).
        split: the evaluated split (`train` is the threshold split; every other is a test split).
        setting: `eval.average_clips`: `score` / `prob` as given, `released` per the module table.
        backbone: `model.backbone`: a softmax head on SDN's network (`SDN_BACKBONES`) follows
            SDN's test code, on any other DEAR's scripts.
        stochastic: for the stochastic passes (`sample_logits`) instead of the deterministic logits
            (they differ only for DEAR's softmax test splits: MC dropout uses `prob`).
    """
    if setting not in AVERAGE_CLIPS_SETTINGS:
        raise ValueError(f"eval.average_clips must be one of {AVERAGE_CLIPS_SETTINGS}, got {setting!r}")
    if setting != "released":
        return setting
    spec = HEAD_ROWS.get(head)
    if spec is None:
        raise ValueError(f"average_clips_for: no released view averaging known for head {head!r}")
    if spec.average_clips == "by_split" and backbone in SDN_BACKBONES:
        return "prob"
    return released_average_clips(head, split, stochastic=stochastic)


def eval_autocast(cfg: ExperimentConfig, amp: bool) -> bool:
    """Whether the score stores run under autocast: only with `eval.precision: amp` and the
    training autocast available (`amp`: `resources.amp` on a GPU)."""
    return bool(amp) and cfg.eval.precision == "amp"


def mean_probability_logits(sample_logits: np.ndarray) -> np.ndarray:
    """``log(mean_s softmax(z_s))`` over the passes ``(S, N, K) -> (N, K)``: logits whose softmax is
    the mean probability over the passes, so their argmax is DEAR's stochastic prediction
    (experiments/ood_detection.py `run_stochastic_inference`: argmax of the mean of the passes'
    scores). The mean of the pass logits, used before, has another argmax in general."""
    z = np.asarray(sample_logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    m = log_p.max(axis=0)
    out = m + np.log(np.exp(log_p - m).mean(axis=0))
    return out.astype(np.float32)


def predict_split(model, loader, cfg: ExperimentConfig, split: str, *, device, amp: bool,
                  bad_report=None) -> Predictions:
    """One split's predictions with the head's stochastic passes and view averaging; bnn logits
    are the passes' mean probability (`mean_probability_logits`)."""
    head, setting = cfg.model.head, cfg.eval.average_clips
    passes = cfg.eval.stochastic_passes if head_spec(head).stochastic else 1
    how = average_clips_for(head, split, setting, backbone=cfg.model.backbone)
    how_passes = average_clips_for(head, split, setting, backbone=cfg.model.backbone,
                                   stochastic=True)
    if passes > 1 and how_passes != how:
        preds = predict(model, loader, device=device, amp=amp, bad_report=bad_report,
                        average_clips=how)
        sampled = predict(model, loader, device=device, stochastic_passes=passes, amp=amp,
                          bad_report=bad_report, average_clips=how_passes)
        if sampled.video_ids != preds.video_ids:
            raise RuntimeError(f"split {split}: the two prediction passes decoded different "
                               "videos (a flaky decoder?)")
        preds.sample_logits = sampled.sample_logits
    else:
        preds = predict(model, loader, device=device, stochastic_passes=passes, amp=amp,
                        bad_report=bad_report, average_clips=how)
    if head_spec(head).logits_from_passes:  # DEAR's BNN: the mean over weight draws of their softmax
        preds.logits = mean_probability_logits(preds.sample_logits)
    return preds

"""Closed-set accuracy and the open-set confusion matrix (docs/metrics.md)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix

from dear_ray.metrics._checks import labels_1d, positive_int, same_length, scores_1d


MEAN_CLASS_FORMS = ("mmaction2", "balanced")


def mean_class_accuracy(labels, preds, *, form: str = "mmaction2") -> float:
    """Mean per-class recall.

    Args:
        labels: `(N,)` true classes.
        preds: `(N,)` predicted classes (may include K, "unknown", for open-set decisions).
        form: `mmaction2` (MMAction2 0.x `mean_class_accuracy`, which DEAR forked): the mean over
            the UNION of true and predicted classes, where a class that is predicted but has no
            true sample counts 0; `balanced`: the mean over the classes present in `labels` only
            (sklearn's `balanced_accuracy_score`).
    """
    y = labels_1d(labels, "labels")
    p = labels_1d(preds, "preds")
    same_length(labels=y, preds=p)
    size = int(max(y.max(), p.max())) + 1
    support = np.bincount(y, minlength=size)
    hits = np.bincount(y[p == y], minlength=size)
    if form == "balanced":
        present = support > 0
    elif form == "mmaction2":
        present = (support > 0) | (np.bincount(p, minlength=size) > 0)
    else:
        raise ValueError(f"mean class accuracy form {form!r}; expected one of {', '.join(MEAN_CLASS_FORMS)}")
    recall = np.divide(hits, support, out=np.zeros(size), where=support > 0)
    return float(recall[present].mean())


def closed_set_accuracy(labels, preds, topk_logits=None, *, k: int = 5,
                        mean_class: str = "mmaction2") -> dict[str, float]:
    """Top-1, top-k and mean class accuracy on the known test split.

    Args:
        labels: `(N,)` true classes.
        preds: `(N,)` predicted classes.
        topk_logits: optional `(N, K)` logits or probabilities for top-k accuracy; without them
            `top5` is NaN.
        k: the k of top-k (the key stays `top5`); with K <= k classes top-k is 1.
        mean_class: the form of `mean_class_accuracy` (default MMAction2's).

    Returns:
        `top1`, `top5`, `mean_class_acc`, fractions.
    """
    y = labels_1d(labels, "labels")
    p = labels_1d(preds, "preds")
    same_length(labels=y, preds=p)
    out = {"top1": float(np.mean(p == y)), "top5": float("nan"),
           "mean_class_acc": mean_class_accuracy(y, p, form=mean_class)}
    if topk_logits is not None:
        z = np.asarray(topk_logits, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] != y.size:
            raise ValueError(f"topk_logits: expected shape ({y.size}, K), got {z.shape}")
        if y.max() >= z.shape[1]:
            raise ValueError(f"labels: class id {y.max()} outside [0, {z.shape[1]}) (topk_logits has "
                             f"{z.shape[1]} columns)")
        k = min(positive_int(k, "k"), z.shape[1])
        # a label counts when fewer than k classes score strictly higher (ties resolved in its favour)
        higher = (z > z[np.arange(y.size), y][:, None]).sum(axis=1)
        out["top5"] = float(np.mean(higher < k))
    return out


def open_set_confusion_matrix(known_labels, known_preds, known_scores, unknown_preds, unknown_scores,
                              threshold: float, *, num_known: int) -> np.ndarray:
    """The (K+1) x (K+1) confusion matrix with unknown last; rows = truth, columns = prediction.

    Samples with score > threshold are predicted as class K; every unknown sample's truth is K.
    """
    k = positive_int(num_known, "num_known")
    y = labels_1d(known_labels, "known_labels", num_classes=k)
    p = labels_1d(known_preds, "known_preds", num_classes=k)
    s = scores_1d(known_scores, "known_scores")
    same_length(known_labels=y, known_preds=p, known_scores=s)
    q = labels_1d(unknown_preds, "unknown_preds", num_classes=k, allow_empty=True)
    su = scores_1d(unknown_scores, "unknown_scores", allow_empty=True)
    same_length(unknown_preds=q, unknown_scores=su)
    return confusion_of_decisions(y, np.where(s > threshold, k, p), np.where(su > threshold, k, q), num_known=k)


def confusion_of_decisions(known_labels, known_decisions, unknown_decisions, *, num_known: int) -> np.ndarray:
    """The (K+1) x (K+1) confusion matrix of open-set decisions in [0, K] (K = unknown)."""
    k = positive_int(num_known, "num_known")
    y = labels_1d(known_labels, "known_labels", num_classes=k)
    d = labels_1d(known_decisions, "known_decisions", num_classes=k + 1)
    same_length(known_labels=y, known_decisions=d)
    du = labels_1d(unknown_decisions, "unknown_decisions", num_classes=k + 1, allow_empty=True)
    truth = np.concatenate([y, np.full(du.size, k)])
    return confusion_matrix(truth, np.concatenate([d, du]), labels=np.arange(k + 1))

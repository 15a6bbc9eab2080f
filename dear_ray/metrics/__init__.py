"""Open-set evaluation on score arrays (docs/metrics.md): a documented, stable API for notebooks.

Conventions: `scores` are uncertainties (higher = more likely unknown); unknown is the positive
class of every detection metric; known predictions are class ids in [0, K) and "unknown" is class
K; values are fractions, not percent.
"""

from dear_ray.metrics.calibration import ReliabilityBins, ece, reliability_bins
from dear_ray.metrics.closed import closed_set_accuracy, mean_class_accuracy, open_set_confusion_matrix
from dear_ray.metrics.ood import binarized_auc, ood_metrics, open_auc, openness, threshold_from_train
from dear_ray.metrics.openset import (
    OpennessCurve,
    draw_unknown_subsets,
    open_macro_f1,
    open_set_f1_curve,
    open_set_f1_curve_from_decisions,
)
from dear_ray.metrics.report import (
    METRIC_KEYS,
    UNKNOWN_SET_KEYS,
    OpenSetReport,
    combine_unknown_classes,
    open_set_report,
)

__all__ = [
    "METRIC_KEYS", "UNKNOWN_SET_KEYS", "OpenSetReport", "OpennessCurve", "ReliabilityBins", "binarized_auc",
    "closed_set_accuracy", "combine_unknown_classes", "draw_unknown_subsets", "ece", "mean_class_accuracy",
    "ood_metrics", "open_auc", "open_macro_f1", "open_set_confusion_matrix", "open_set_f1_curve",
    "open_set_f1_curve_from_decisions", "open_set_report", "openness", "reliability_bins", "threshold_from_train",
]

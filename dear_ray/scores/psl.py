"""PSL's test-time score: Mahalanobis distance of the embedding to the training embeddings.

PSL (Cen et al., CVPR 2023; github:Jun-CEN/PSL at 6460af2) tests with `OPEN_METHOD:
maha_distance` (configs/projects/openset/tsm/tsm_psl*.yaml): tools/test_net_open.py stores the
L2-normalised embeddings (`logits_nm`, the `unctt` arrays) of the training split, the known test
split and the unknown set, and tools/compute_openness.py scores them (`main`, lines 34-84, with
`clusters=1`):

1. every row is L2-normalised again, x / (||x|| + 1e-10) (`get_eval_results`);
2. each dimension is standardised by the training embeddings' mean m and population std s:
   (x - m) / (s + 1e-10);
3. score(x) = (x - mu)^T pinv(Sigma) (x - mu), mu and Sigma the mean and the biased covariance
   (`np.cov(..., bias=True)`) of the standardised training embeddings: one cluster, class-agnostic
   (`get_scores_one_cluster`, lines 206-247). Higher = more unknown, as the AUROC there uses it.

The released script also has a per-class form (`get_scores_multi_cluster_cuda`, `clusters > 1`
with the training labels as clusters: the minimum over classes of the class-conditional distance,
each class with its own biased covariance); it is `per_class=True` here. PSL's alternative
`get_eval_results_prototype` (1 - max softmax of cos / 0.2) is the `msp` score of the psl head's
logits.

Video notes: PSL keeps one test view (`NUM_ENSEMBLE_VIEWS: 1`, `NUM_SPATIAL_CROPS: 1`) and, of the
two clips its contrastive loader decodes per test video, only the first (`[::2]`), but fits on both
training clips; here the features are the score store's (views averaged, one row a video).
"""

from __future__ import annotations

import numpy as np

from dear_ray.scores._checks import as_logits

_EPS = 1e-10
_RCOND = 1e-15  # numpy 1.x `pinv` default, which PSL ran with


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + _EPS)


def _sq_mahalanobis(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(x - mean)^T pinv(biased cov) (x - mean) of rows x (N, D) against reference rows (M, D)."""
    mean = reference.mean(axis=0, keepdims=True)
    precision = np.linalg.pinv(np.cov(reference.T, bias=True).reshape(x.shape[1], x.shape[1]),
                               rcond=_RCOND)
    d = x - mean
    return np.sum(d * (d @ precision.T), axis=-1)


class PSLMahalanobis:
    """The fitted `psl` score (module docstring): Mahalanobis distance in PSL's standardised space.

    Args:
        per_class: False (PSL's released `clusters=1`): one Gaussian over all training
            embeddings; True: the minimum over classes of the class-conditional distance.
    """

    def __init__(self, *, per_class: bool = False) -> None:
        self.per_class = bool(per_class)
        self.train: np.ndarray | None = None  # standardised training embeddings (N, D)
        self.labels: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.train is not None

    def fit(self, logits, labels, features=None) -> PSLMahalanobis:
        """Fit on the training split's store: `features` (N, D) are the psl head's embeddings
        (`Head.embed`), `labels` (N,) (used by `per_class`); `logits` (N, K) only fix N."""
        z = as_logits(logits)
        feats = self._features(features, z.shape[0], "fit")
        y = np.asarray(labels)
        if y.shape != (z.shape[0],):
            raise ValueError(f"psl.fit: labels must be ({z.shape[0]},) like the logits, got {y.shape}")
        if feats.shape[0] < 2:
            raise ValueError(f"psl.fit: needs at least 2 training embeddings, got {feats.shape[0]}")
        x = _normalise(feats)
        self.mean, self.std = x.mean(axis=0, keepdims=True), x.std(axis=0, keepdims=True)
        self.train, self.labels = (x - self.mean) / (self.std + _EPS), y
        return self

    @staticmethod
    def _features(features, n: int, where: str) -> np.ndarray:
        if features is None:
            raise ValueError(f"psl.{where}: needs the psl head's embeddings as `features` (N, D); "
                             "the store has none")
        feats = np.asarray(features, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] != n:
            raise ValueError(f"psl.{where}: features must be (N={n}, D), got {feats.shape}")
        if not np.all(np.isfinite(feats)):
            raise ValueError(f"psl.{where}: features have non-finite values")
        return feats

    def __call__(self, logits, *, features=None, sample_logits=None) -> np.ndarray:
        """The squared Mahalanobis distance `(N,)`, higher = more unknown; `sample_logits` is
        accepted and ignored."""
        if self.train is None:
            raise ValueError("psl is not fitted: call .fit(train_logits, train_labels, train_features) first")
        z = as_logits(logits)
        x = self._features(features, z.shape[0], "score")
        if x.shape[1] != self.train.shape[1]:
            raise ValueError(f"psl was fitted on {self.train.shape[1]}-d embeddings, got {x.shape[1]}-d")
        x = (_normalise(x) - self.mean) / (self.std + _EPS)
        if not self.per_class:
            return _sq_mahalanobis(x, self.train)
        return np.min([_sq_mahalanobis(x, self.train[self.labels == k])
                       for k in np.unique(self.labels)], axis=0)


def create_psl_score(*, per_class: bool = False) -> PSLMahalanobis:
    """An unfitted `PSLMahalanobis`; call `.fit(train_logits, train_labels, train_features)`
    before scoring (as `openmax`)."""
    return PSLMahalanobis(per_class=per_class)


__all__ = ["PSLMahalanobis", "create_psl_score"]

"""Distance-based detectors on pooled features: RMDS, fDBD, NNGuide, SHE (OpenOOD v1.5).

Scores are UNCERTAINTIES (higher = more likely unknown): OpenOOD's postprocessors return
confidences (`openood/postprocessors/<name>_postprocessor.py`); each is negated here, except RMDS,
whose confidence OpenOOD builds as the negative of a distance that is returned as it is.

Every detector reads a store's `features`: the pooled backbone features, the classifier's input,
averaged over the test views (OpenOOD's `net(x, return_feature=True)` penultimate feature, one per
image). What is fitted comes from the model's TRAINING split, as in OpenOOD (`id_loader_dict['train']`).

- `RMDS`: relative Mahalanobis distance (Ren et al., "A Simple Fix to Mahalanobis Distance for
  Improving Near-OOD Detection", arXiv:2106.09022, 2021), no hyper-parameter.
- `FDBD`: feature distance to the decision boundaries (Liu & Qin, "Fast Decision Boundary based
  Out-of-Distribution Detector", ICML 2024), OpenOOD `distance_as_normalizer: True`.
- `NNGuide`: nearest-neighbour guidance (Park et al., "Nearest Neighbor Guidance for
  Out-of-Distribution Detection", ICCV 2023), OpenOOD k = 100.
- `SHE`: simplified Hopfield energy (Zhang et al., "Out-of-Distribution Detection based on
  In-Distribution Data Patterns Memorization with Modern Hopfield Energy", ICLR 2023), OpenOOD
  metric `inner_product`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from dear_ray.scores._checks import as_classifier, as_features, as_labels, as_logits, need_features
from dear_ray.scores.posthoc import FEATURE_LAYER, Mahalanobis, l2_normalise

_CHUNK = 2048  # query rows a time for NNGuide's similarity matrix
SHE_METRICS = ("inner_product", "euclidean", "cosine")


class RMDS:
    """Relative Mahalanobis distance: `min_k MD_k(x) - MD_0(x)`.

    `MD_k(x) = (x - mu_k)^T P (x - mu_k)` with the class means and the one tied covariance of
    `Mahalanobis` (P its pseudo-inverse); `MD_0` the same distance to a single Gaussian fitted to
    all training videos regardless of label (their mean, and covariance `(1/N) sum (x - mu_0)
    (x - mu_0)^T`, sklearn's `EmpiricalCovariance` as in OpenOOD). The paper's
    `RMD_k = MD_k - MD_0` and confidence `-min_k RMD_k`, of which this is the negative (OpenOOD:
    `max_k (-MD_k + MD_0)`).
    """

    def __init__(self) -> None:
        self.classes = Mahalanobis()
        self.mean: np.ndarray | None = None
        self.precision: np.ndarray | None = None

    def fit(self, *, logits=None, labels=None, features=None) -> RMDS:
        """Class and background Gaussians of the training `features`; K = the logits' width."""
        self.classes.fit(logits=logits, labels=labels, features=features)
        x = as_features(features)
        self.mean = x.mean(axis=0)
        centred = x - self.mean
        self.precision = np.linalg.pinv(centred.T @ centred / x.shape[0], hermitian=True)
        return self

    def __call__(self, logits=None, *, features=None, sample_logits=None, leave_one_out=False) -> np.ndarray:
        if self.mean is None:
            raise ValueError("rmds is not fitted: call .fit(logits=..., labels=..., features=...) first")
        need_features("rmds", features)
        x = as_features(features, width=self.mean.size)
        d = x - self.mean
        return self.classes(None, features=x) - np.sum((d @ self.precision) * d, axis=1)

    def describe(self) -> str:
        if self.mean is None:
            return "rmds: not fitted"
        k, f = self.classes.means.shape
        return (f"{FEATURE_LAYER}, F={f}; {k} class means and one tied covariance, and the background mean "
                f"and covariance, of {self.classes.num_fitted} training videos (pseudo-inverses)")


class FDBD:
    """fDBD: the mean distance of the feature to the decision boundaries of its predicted class.

    With logits `z = x W^T + b` and predicted class `c = argmax z`, the distance of `x` to the
    boundary between c and class j is `|z_c - z_j| / ||w_c - w_j||`; the confidence is their sum
    over j != c divided by `||x - mu||` (`distance_as_normalizer=True`, mu the mean training
    feature; OpenOOD's default) or by `||x||` (`False`). The paper averages over the K - 1
    boundaries; OpenOOD sums them (a constant factor K - 1: same ranking, threshold in other
    units); the sum is used here. Score: minus the confidence.
    """

    def __init__(self, weight, bias, *, distance_as_normalizer: bool = True) -> None:
        self.weight, self.bias = as_classifier("fdbd", weight, bias)
        self.distance_as_normalizer = bool(distance_as_normalizer)
        # ||w_c - w_j|| row by row (exactly 0 for equal rows, unlike the Gram-matrix expansion)
        gaps = np.stack([np.linalg.norm(self.weight - w, axis=1) for w in self.weight])
        np.fill_diagonal(gaps, 1.0)  # z_c - z_c = 0: the own class adds nothing
        same = np.argwhere(gaps == 0)
        if same.size:
            i, j = same[0]
            raise ValueError(f"fdbd: classifier rows {i} and {j} are identical: no decision boundary between them")
        self.gaps = gaps
        self.mean: np.ndarray | None = None
        self.num_fitted = 0

    def fit(self, *, logits=None, labels=None, features=None) -> FDBD:
        """The mean training feature (the normaliser's centre)."""
        need_features("fdbd", features)
        x = as_features(features, width=self.weight.shape[1])
        self.mean = x.mean(axis=0)
        self.num_fitted = x.shape[0]
        return self

    def __call__(self, logits=None, *, features=None, sample_logits=None, leave_one_out=False) -> np.ndarray:
        if self.mean is None:
            raise ValueError("fdbd is not fitted: call .fit(features=train_features) first")
        need_features("fdbd", features)
        x = as_features(features, width=self.weight.shape[1])
        z = x @ self.weight.T + self.bias
        pred = z.argmax(axis=1)
        top = z[np.arange(z.shape[0]), pred]
        boundary = np.sum(np.abs(top[:, None] - z) / self.gaps[pred], axis=1)
        norm = np.linalg.norm(x - self.mean if self.distance_as_normalizer else x, axis=1)
        return -boundary / np.maximum(norm, 1e-12)

    def describe(self) -> str:
        if self.mean is None:
            return "fdbd: not fitted"
        by = (f"||x - mean of {self.num_fitted} training videos||" if self.distance_as_normalizer else "||x||")
        return f"{FEATURE_LAYER}, F={self.weight.shape[1]}; distances to the decision boundaries of W, b over {by}"


class NNGuide:
    """NNGuide: the energy confidence guided by the nearest training neighbours.

    `fit(logits, features)` on the training videos: a bank of their L2-normalised features, each
    times its energy confidence `logsumexp(z)`. Score of x with logits z: minus
    `logsumexp(z) * G(x)`, G the mean of the k largest inner products between the normalised x
    and the bank (OpenOOD's faiss `IndexFlatIP` search). The paper's `S(x) = S_conf(x) G(x)`.

    Hyper-parameters: `k` (OpenOOD 100, capped at the bank size) and `bank_fraction`, the share of
    the training videos in the bank. OpenOOD takes 1% (`alpha: 0.01`, the first batches of its
    shuffled training loader), sized for ImageNet's 1.28M images; a video training split is
    1e3-1e4 videos, where 1% would leave fewer videos than k, so the default here is the whole
    split (1.0); below 1, `ceil(N * bank_fraction)` videos drawn with `seed`. Scoring the training
    videos themselves (`leave_one_out=True`) leaves each out of its own neighbours.
    """

    def __init__(self, *, k: int = 100, bank_fraction: float = 1.0, seed: int = 0) -> None:
        if k < 1:
            raise ValueError(f"nnguide: k={k!r}; expected >= 1")
        if not 0 < bank_fraction <= 1:
            raise ValueError(f"nnguide: bank_fraction={bank_fraction!r}; expected (0, 1]")
        self.k, self.bank_fraction, self.seed = int(k), float(bank_fraction), int(seed)
        self.bank: np.ndarray | None = None
        self.index: np.ndarray | None = None  # training row of each bank row
        self.num_fitted = 0

    def fit(self, *, logits=None, labels=None, features=None) -> NNGuide:
        need_features("nnguide", features)
        if logits is None:
            raise ValueError("nnguide: fit needs the training logits (their energy weighs the bank)")
        x = as_features(features)
        z = as_logits(logits)
        if z.shape[0] != x.shape[0]:
            raise ValueError(f"nnguide: {z.shape[0]} training logits for {x.shape[0]} features")
        n = x.shape[0]
        size = min(n, math.ceil(n * self.bank_fraction))
        self.index = (np.arange(n) if size == n
                      else np.sort(np.random.default_rng(self.seed).choice(n, size, replace=False)))
        self.bank = l2_normalise(x[self.index]) * logsumexp(z[self.index], axis=1)[:, None]
        self.num_fitted = n
        return self

    def __call__(self, logits, *, features=None, sample_logits=None, leave_one_out: bool = False) -> np.ndarray:
        if self.bank is None:
            raise ValueError("nnguide is not fitted: call .fit(logits=train_logits, features=train_features) first")
        need_features("nnguide", features)
        q = l2_normalise(as_features(features, width=self.bank.shape[1]))
        z = as_logits(logits)
        if leave_one_out and q.shape[0] != self.num_fitted:
            raise ValueError(f"nnguide: leave_one_out needs the {self.num_fitted} training features, got {q.shape[0]}")
        k = min(self.k, self.bank.shape[0] - leave_one_out)
        if k < 1:
            raise ValueError("nnguide: needs at least 2 videos in the bank with leave_one_out")
        slot = np.full(self.num_fitted, -1)
        slot[self.index] = np.arange(self.index.size)
        guidance = np.empty(q.shape[0])
        for start in range(0, q.shape[0], _CHUNK):
            sim = q[start:start + _CHUNK] @ self.bank.T
            if leave_one_out:
                rows = np.arange(sim.shape[0])
                own = slot[start + rows]
                sim[rows[own >= 0], own[own >= 0]] = -np.inf
            guidance[start:start + sim.shape[0]] = -np.partition(-sim, k - 1, axis=1)[:, :k].mean(axis=1)
        return -guidance * logsumexp(z, axis=1)

    def describe(self) -> str:
        if self.bank is None:
            return "nnguide: not fitted"
        m, f = self.bank.shape
        return (f"{FEATURE_LAYER}, F={f}, L2-normalised; bank of {m} of {self.num_fitted} training videos "
                f"weighted by their energy confidence, k={min(self.k, m)}; logits")


class SHE:
    """SHE: the similarity of a feature to the stored pattern of its predicted class.

    `fit(logits, labels, features)` on the training videos: the pattern of class c is the mean
    feature of its videos predicted right (label c and argmax of the logits c). Score of x with
    predicted class c = argmax z: minus `x . s_c` (`metric="inner_product"`, the paper's
    simplified Hopfield energy and OpenOOD's default), or minus `-||x - s_c||` (`euclidean`) or
    the cosine (`cosine`), OpenOOD's other two options.
    """

    def __init__(self, *, metric: str = "inner_product") -> None:
        if metric not in SHE_METRICS:
            raise ValueError(f"she: metric={metric!r}; expected one of {', '.join(SHE_METRICS)}")
        self.metric = metric
        self.patterns: np.ndarray | None = None
        self.counts: np.ndarray | None = None

    def fit(self, *, logits=None, labels=None, features=None) -> SHE:
        need_features("she", features)
        if logits is None or labels is None:
            raise ValueError("she: fit needs the training logits (for the predictions) and labels")
        x = as_features(features)
        z = as_logits(logits)
        y = as_labels(labels, x.shape[0])
        if z.shape[0] != x.shape[0]:
            raise ValueError(f"she: {z.shape[0]} training logits for {x.shape[0]} features")
        right = z.argmax(axis=1) == y
        counts = np.bincount(y[right], minlength=z.shape[1])[:z.shape[1]]
        missing = np.flatnonzero(counts == 0).tolist()
        if missing:
            raise ValueError(f"she: no correctly classified training video of class(es) {missing[:10]}")
        self.patterns = np.stack([x[right & (y == c)].mean(axis=0) for c in range(z.shape[1])])
        self.counts = counts
        return self

    def __call__(self, logits, *, features=None, sample_logits=None, leave_one_out=False) -> np.ndarray:
        if self.patterns is None:
            raise ValueError("she is not fitted: call .fit(logits=..., labels=..., features=...) first")
        need_features("she", features)
        x = as_features(features, width=self.patterns.shape[1])
        s = self.patterns[as_logits(logits).argmax(axis=1)]
        if self.metric == "inner_product":
            return -np.sum(x * s, axis=1)
        if self.metric == "euclidean":
            return np.linalg.norm(x - s, axis=1)
        norms = np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(s, axis=1), 1e-12)
        return -np.sum(x * s, axis=1) / norms

    def describe(self) -> str:
        if self.patterns is None:
            return "she: not fitted"
        k, f = self.patterns.shape
        return (f"{FEATURE_LAYER}, F={f}; {k} class patterns, the mean of {int(self.counts.sum())} correctly "
                f"classified training videos ({int(self.counts.min())}-{int(self.counts.max())} a class); "
                f"{self.metric.replace('_', ' ')} with the predicted class's pattern")

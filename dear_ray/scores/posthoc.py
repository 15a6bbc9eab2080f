"""Modern post-hoc detectors on stored logits and pooled features (OpenOOD v1.5's postprocessors).

Every score here is an UNCERTAINTY: higher = more likely unknown (OpenOOD returns confidences; each
is negated). Definitions follow OpenOOD v1.5 `openood/postprocessors/<name>_postprocessor.py` and
the defaults of `configs/postprocessors/<name>.yml`; where a video version differs it is said.

Video inputs: `features` are a store's pooled features averaged over the test views (and, for TSM,
over segments); `logits` are the score-averaged logits (`dear_ray.scores.classifier.store_logits`).
A feature-space detector thus sees one vector per video, where OpenOOD sees one per image; ReAct
clips and ASH prunes the VIEW-AVERAGED feature, not each view's (clipping does not commute with
the mean, so per-view clipping then averaging would give other logits).

- `gen(logits, gamma=0.1, m=100)`: generalised entropy of the top-M softmax probabilities.
- `TemperatureScaling`: 1 - max softmax(z / T), T minimising the NLL of held-out logits.
- `Mahalanobis`: min over classes of the squared Mahalanobis distance, tied covariance.
- `KNN`: squared L2 distance to the k-th nearest training feature, features L2-normalised (k=50).
- `ViM`: virtual logit (norm of the residual off the principal subspace) minus the energy.
- `ReAct`: energy after clipping features at the 90th percentile of the training features.
- `ash_energy` (`ASH`): energy after ASH-B pruning (percentile 90), OpenOOD's `ASHNet.forward_threshold`.

The newer OpenOOD v1.5 detectors are in `dear_ray.scores.distances` (RMDS, fDBD, NNGuide, SHE) and
`dear_ray.scores.shaping` (SCALE, DICE).

Fitted detectors share one interface: `fit(*, logits=None, labels=None, features=None)` (each
uses what it needs, on the training split, or the validation split for the temperature) and
`__call__(logits, *, features=None, sample_logits=None, leave_one_out=False)` -> `(N,)`, like every
registered score; ViM, ReAct and ASH take the classifier's `weight` `(K, F)` and `bias` `(K,)` when
built (`dear_ray.scores.classifier`). Their hyper-parameters are constructor arguments (k,
percentile, dim, ...), and every feature-space detector's `describe()` says which features and
which fitted statistics it uses (one line, recorded with its report row).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from dear_ray.scores._checks import as_classifier, as_features, as_labels, as_logits, need_features
from dear_ray.scores.softmax import energy

_CHUNK = 2048  # query rows a time for the KNN distance matrix
# what every feature-space detector reads: a store's `features`
FEATURE_LAYER = "pooled backbone features (the classifier's input), view-averaged"


def gen(logits, *, gamma: float = 0.1, m: int = 100) -> np.ndarray:
    """GEN (Liu et al. 2023): `sum over the M largest p_k of p_k^gamma (1 - p_k)^gamma`, `(N,)`.

    OpenOOD returns its negative as the confidence; with M >= K every class counts.
    """
    if not gamma > 0 or m < 1:
        raise ValueError(f"gen: gamma={gamma!r} must be > 0 and m={m!r} >= 1")
    p = np.sort(softmax(as_logits(logits), axis=1), axis=1)[:, -m:]
    return np.sum(p ** gamma * (1.0 - p) ** gamma, axis=1)


class TemperatureScaling:
    """Temperature-scaled MSP: `1 - max softmax(z / T)`.

    `fit(logits, labels)` sets T to the minimiser of the mean NLL of `softmax(z / T)` on held-out
    videos (bounded search over log T in [log 0.01, log 100]). OpenOOD runs 50 LBFGS steps (lr
    0.01) from T = 1.5 on its validation split, which approaches the same minimiser.
    """

    def __init__(self) -> None:
        self.temperature: float | None = None

    def fit(self, *, logits=None, labels=None, features=None) -> TemperatureScaling:
        if logits is None or labels is None:
            raise ValueError("temperature scaling: fit needs held-out logits and labels")
        z = as_logits(logits)
        y = as_labels(labels, z.shape[0])
        if z.shape[0] == 0:
            raise ValueError("temperature scaling: no videos to fit on")

        def nll(log_t: float) -> float:
            return float(-np.mean(log_softmax(z / np.exp(log_t), axis=1)[np.arange(y.size), y]))

        best = minimize_scalar(nll, bounds=(np.log(0.01), np.log(100.0)), method="bounded",
                               options={"xatol": 1e-6})
        self.temperature = float(np.exp(best.x))
        return self

    def __call__(self, logits, *, features=None, sample_logits=None, leave_one_out=False) -> np.ndarray:
        if self.temperature is None:
            raise ValueError("temperature scaling is not fitted: call .fit(logits=..., labels=...) first")
        return 1.0 - softmax(as_logits(logits) / self.temperature, axis=1).max(axis=1)


class Mahalanobis:
    """Mahalanobis distance to the closest class mean with one covariance shared by all classes.

    Fit on the training features: class means `mu_k` over every training video of class k, the
    covariance of all videos centred on their class mean (`(1/N) sum (x - mu_y)(x - mu_y)^T`,
    sklearn's `EmpiricalCovariance` as OpenOOD's `mds` uses it), its pseudo-inverse P. Score:
    `min_k (x - mu_k)^T P (x - mu_k)`.
    """

    def __init__(self) -> None:
        self.means: np.ndarray | None = None
        self.precision: np.ndarray | None = None
        self.num_fitted = 0  # training videos the statistics come from

    def fit(self, *, logits=None, labels=None, features=None) -> Mahalanobis:
        """Class means and tied covariance of `features` `(N, F)`; K = the logits' width."""
        if features is None or labels is None or logits is None:
            raise ValueError("mahalanobis: fit needs the training features, labels and logits (for K)")
        x = as_features(features)
        y = as_labels(labels, x.shape[0])
        num_classes = as_logits(logits).shape[1]
        missing = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
        if missing:
            raise ValueError(f"mahalanobis: no training video of class(es) {missing[:10]}")
        self.means = np.stack([x[y == k].mean(axis=0) for k in range(num_classes)])
        centred = x - self.means[y]
        self.precision = np.linalg.pinv(centred.T @ centred / x.shape[0], hermitian=True)
        self.num_fitted = x.shape[0]
        return self

    def describe(self) -> str:
        if self.means is None:
            return "mahalanobis: not fitted"
        k, f = self.means.shape
        return (f"{FEATURE_LAYER}, F={f}; {k} class means and one tied covariance (pseudo-inverse) "
                f"of {self.num_fitted} training videos")

    def __call__(self, logits=None, *, features=None, sample_logits=None, leave_one_out=False) -> np.ndarray:
        if self.means is None:
            raise ValueError("mahalanobis is not fitted: call .fit(logits=..., labels=..., features=...) first")
        need_features("mahalanobis", features)
        x = as_features(features, width=self.means.shape[1])
        xp = x @ self.precision  # (x - mu)^T P (x - mu) expanded: no (N, K, F) array
        mp = self.means @ self.precision
        d = np.sum(xp * x, axis=1)[:, None] - 2 * xp @ self.means.T + np.sum(mp * self.means, axis=1)[None]
        return np.maximum(d, 0.0).min(axis=1)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (a zero row stays zero). OpenOOD's `normalizer` adds 1e-10
    AFTER the division, a constant shift of every coordinate that no distance sees."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class KNN:
    """Deep nearest neighbours (Sun et al. 2022): the k-th nearest training feature's distance.

    Features are L2-normalised; the score is the SQUARED L2 distance to the k-th nearest normalised
    training feature (what OpenOOD's faiss `IndexFlatL2.search` returns; `2 - 2 cos`). Default
    k = 50 (`configs/postprocessors/knn.yml`); k is capped at the number of training videos.
    Scoring the training videos themselves (`leave_one_out=True`) leaves each video out of its own
    neighbours, else each would be its own nearest at distance 0.
    """

    def __init__(self, k: int = 50) -> None:
        if k < 1:
            raise ValueError(f"knn: k={k!r}; expected >= 1")
        self.k = int(k)
        self.bank: np.ndarray | None = None

    def fit(self, *, logits=None, labels=None, features=None) -> KNN:
        need_features("knn", features)
        self.bank = l2_normalise(as_features(features))
        return self

    def describe(self) -> str:
        if self.bank is None:
            return "knn: not fitted"
        n, f = self.bank.shape
        return f"{FEATURE_LAYER}, F={f}, L2-normalised; bank of {n} training videos, k={min(self.k, n)}"

    def __call__(self, logits=None, *, features=None, sample_logits=None, leave_one_out: bool = False) -> np.ndarray:
        if self.bank is None:
            raise ValueError("knn is not fitted: call .fit(features=train_features) first")
        need_features("knn", features)
        q = l2_normalise(as_features(features, width=self.bank.shape[1]))
        if leave_one_out and q.shape[0] != self.bank.shape[0]:
            raise ValueError(f"knn: leave_one_out needs the {self.bank.shape[0]} training features, got {q.shape[0]}")
        k = min(self.k, self.bank.shape[0] - leave_one_out)
        if k < 1:
            raise ValueError("knn: needs at least 2 training videos with leave_one_out")
        out = np.empty(q.shape[0])
        bank_sq = np.sum(self.bank ** 2, axis=1)
        for start in range(0, q.shape[0], _CHUNK):
            block = q[start:start + _CHUNK]
            d = np.maximum(np.sum(block ** 2, axis=1)[:, None] + bank_sq[None] - 2 * block @ self.bank.T, 0.0)
            if leave_one_out:
                rows = np.arange(block.shape[0])
                d[rows, start + rows] = np.inf
            out[start:start + block.shape[0]] = np.partition(d, k - 1, axis=1)[:, k - 1]
        return out


class ViM:
    """Virtual-logit matching (Wang et al. 2022), OpenOOD's `vim` postprocessor.

    Fit on training features X with the classifier (W, b): origin `u = -pinv(W) b`, the principal
    subspace = the `dim` eigenvectors of the largest eigenvalues of `(X - u)^T (X - u) / N`, the
    residual space NS = the others, `alpha = mean_train max_k logit / mean_train ||(x - u) NS||`.
    Score: `alpha ||(x - u) NS|| - logsumexp(x W^T + b)`. `dim`: OpenOOD's 256 when F >= 512
    (its ResNet-50 features are 2048-d, as I3D/TSM's); `F // 2` for narrower features (the demo's
    128-d); it must be below F. The train logits are recomputed from the features, never the
    stored (possibly prob-averaged) ones.
    """

    def __init__(self, weight, bias, *, dim: int | None = None) -> None:
        self.weight, self.bias = as_classifier("vim", weight, bias)
        self.dim = dim
        self.u = self.residual = None
        self.alpha: float | None = None
        self.num_fitted = 0  # training videos the statistics come from

    def fit(self, *, logits=None, labels=None, features=None) -> ViM:
        need_features("vim", features)
        x = as_features(features, width=self.weight.shape[1])
        w, b = self.weight, self.bias
        f = x.shape[1]
        dim = self.dim if self.dim is not None else (256 if f >= 512 else f // 2)
        if not 0 < dim < f:
            raise ValueError(f"vim: dim={dim} must be in (0, F={f})")
        self.u = -np.linalg.pinv(w) @ b
        centred = x - self.u
        values, vectors = np.linalg.eigh(centred.T @ centred / x.shape[0])
        order = np.argsort(-values, kind="stable")
        self.residual = np.ascontiguousarray(vectors[:, order[dim:]])
        self.dim = dim
        self.alpha = float((x @ w.T + b).max(axis=1).mean() / np.linalg.norm(centred @ self.residual, axis=1).mean())
        self.num_fitted = x.shape[0]
        return self

    def describe(self) -> str:
        if self.alpha is None:
            return "vim: not fitted"
        f = self.weight.shape[1]
        return (f"{FEATURE_LAYER}, F={f}; origin -pinv(W) b, principal subspace dim={self.dim} of the covariance "
                f"of {self.num_fitted} training videos, alpha={self.alpha:.4g}; classifier W, b")

    def __call__(self, logits=None, *, features=None, sample_logits=None, leave_one_out=False) -> np.ndarray:
        if self.alpha is None:
            raise ValueError("vim is not fitted: call .fit(features=train_features) first")
        need_features("vim", features)
        x = as_features(features, width=self.weight.shape[1])
        virtual = self.alpha * np.linalg.norm((x - self.u) @ self.residual, axis=1)
        return virtual + energy(x @ self.weight.T + self.bias)


class ReAct:
    """ReAct (Sun et al. 2021): clip features at c, then the energy of the classifier's logits.

    `fit(features)` sets c to the `percentile` (default 90, `configs/postprocessors/react.yml`)
    of all values of the given features: the TRAINING split's, as the ReAct paper (OpenOOD v1.5
    takes its validation split). Score: `-logsumexp(min(x, c) W^T + b)` on the view-averaged x.
    """

    def __init__(self, weight, bias, *, percentile: float = 90.0) -> None:
        if not 0 < percentile <= 100:
            raise ValueError(f"react: percentile={percentile!r}; expected (0, 100]")
        self.weight, self.bias = as_classifier("react", weight, bias)
        self.percentile = float(percentile)
        self.clip: float | None = None
        self.num_fitted = 0  # training videos the statistics come from

    def fit(self, *, logits=None, labels=None, features=None) -> ReAct:
        need_features("react", features)
        x = as_features(features)
        self.clip = float(np.percentile(x.ravel(), self.percentile))
        self.num_fitted = x.shape[0]
        return self

    def describe(self) -> str:
        if self.clip is None:
            return "react: not fitted"
        return (f"{FEATURE_LAYER}, F={self.weight.shape[1]}; clipped at c={self.clip:.4g}, the "
                f"{self.percentile:g}th percentile of the values of {self.num_fitted} training videos; classifier W, b")

    def __call__(self, logits=None, *, features=None, sample_logits=None, leave_one_out=False) -> np.ndarray:
        if self.clip is None:
            raise ValueError("react is not fitted: call .fit(features=train_features) first")
        need_features("react", features)
        x = np.minimum(as_features(features, width=self.weight.shape[1]), self.clip)
        return energy(x @ self.weight.T + self.bias)


def ash_b(features, percentile: float = 90.0) -> np.ndarray:
    """ASH-B (Djurisic et al. 2023) on `(N, F)` features: keep the `F - round(F p / 100)` largest
    values of each row, each set to the row's sum divided by that count, zero the rest
    (OpenOOD `networks/ash_net.py` `ash_b`; `np.round` as there, half to even)."""
    x = as_features(features)
    if not 0 <= percentile < 100:
        raise ValueError(f"ash: percentile={percentile!r}; expected [0, 100)")
    n = x.shape[1]
    keep = n - int(np.round(n * percentile / 100.0))
    top = np.argpartition(-x, keep - 1, axis=1)[:, :keep]
    out = np.zeros_like(x)
    np.put_along_axis(out, top, (x.sum(axis=1) / keep)[:, None], axis=1)
    return out


def ash_energy(features, weight, bias, *, percentile: float = 90.0) -> np.ndarray:
    """ASH's score: `-logsumexp(ash_b(x) W^T + b)`; percentile 90 (`configs/postprocessors/ash.yml`)."""
    return energy(ash_b(features, percentile) @ np.asarray(weight, np.float64).T + np.asarray(bias, np.float64))


class ASH:
    """`ash_energy` with the classifier and percentile bound; nothing is fitted (ASH-B prunes each
    video's own feature vector)."""

    def __init__(self, weight, bias, *, percentile: float = 90.0) -> None:
        if not 0 <= percentile < 100:
            raise ValueError(f"ash: percentile={percentile!r}; expected [0, 100)")
        self.weight, self.bias = as_classifier("ash", weight, bias)
        self.percentile = float(percentile)

    def __call__(self, logits=None, *, features=None, sample_logits=None, leave_one_out=False) -> np.ndarray:
        need_features("ash", features)
        return ash_energy(as_features(features, width=self.weight.shape[1]), self.weight, self.bias,
                          percentile=self.percentile)

    def describe(self) -> str:
        return (f"{FEATURE_LAYER}, F={self.weight.shape[1]}; ASH-B pruning of each video's vector at the "
                f"{self.percentile:g}th percentile; classifier W, b")

"""OpenMax (Bendale & Boult 2016) as DEAR ran it (docs/methods.md#openmax; DEAR's
experiments/baseline_openmax.py), post hoc on stored logits/features.

Fit, per known class k, on the correctly classified TRAINING videos: the mean activation vector
(MAV) and a Weibull model of the largest distances to it. At test time the top `alpha_rank` logits
are damped by the Weibull CDF of the sample's distance to their class mean, and the removed mass
becomes the logit of an extra "unknown" class.

The Weibull tail fit replicates libMR's `MetaRecognition::FitHigh` (libMR itself is not
installable here): take the `tail_size` largest values, translate them so the smallest of them
lands at `translate_amount` (10000 in libMR), fit a two-parameter Weibull (location 0) by maximum
likelihood, and evaluate the CDF at `x + translate_amount - small_score`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import softmax
from scipy.stats import weibull_min

from dear_ray.scores._checks import as_logits

LIBMR_TRANSLATE_AMOUNT = 10000.0
ACTIVATIONS = ("features", "logits")


class OpenMaxFitError(ValueError):
    """OpenMax cannot be fitted on the given training data (the message says which class)."""


def fit_weibull(samples) -> tuple[float, float]:
    """Maximum-likelihood two-parameter Weibull (location fixed at 0).

    Args:
        samples: positive values `(n,)`, n >= 2, not all equal.

    Returns:
        `(shape, scale)` of `scipy.stats.weibull_min`.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size < 2 or not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise OpenMaxFitError(f"Weibull fit needs >= 2 finite positive samples, got {x.size}: {x[:5]}")
    if np.ptp(x) <= 0:
        raise OpenMaxFitError(f"Weibull fit needs samples that are not all equal (all are {x[0]:g})")
    shape, _, scale = weibull_min.fit(x, floc=0.0)
    if not (np.isfinite(shape) and np.isfinite(scale)):
        raise OpenMaxFitError(f"Weibull fit did not converge on {x.size} samples in [{x.min():g}, {x.max():g}]")
    return float(shape), float(scale)


@dataclass(frozen=True)
class WeibullTail:
    """libMR's `FitHigh` model: a Weibull on the translated largest values."""

    shape: float
    scale: float
    small_score: float  # the smallest value of the fitted tail
    translate_amount: float = LIBMR_TRANSLATE_AMOUNT

    def w_score(self, x) -> np.ndarray:
        """Weibull CDF of `x` after libMR's translation; in [0, 1], increasing in `x`."""
        shifted = np.asarray(x, dtype=np.float64) + self.translate_amount - self.small_score
        return weibull_min.cdf(shifted, self.shape, scale=self.scale)


def fit_high(values, tail_size: int = 20, *, translate_amount: float = LIBMR_TRANSLATE_AMOUNT) -> WeibullTail:
    """Fit libMR's `FitHigh` model on the `tail_size` largest of `values` `(n,)`."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())[::-1][:tail_size]
    small = float(x[-1])
    shape, scale = fit_weibull(x + translate_amount - small)
    return WeibullTail(shape=shape, scale=scale, small_score=small, translate_amount=translate_amount)


def eucos_distance(x, means) -> np.ndarray:
    """OpenMax's `eucos` distance: euclidean / 200 + cosine distance.

    Args:
        x: activation vectors `(N, D)`.
        means: class mean vectors `(K, D)`.

    Returns:
        `(N, K)` distances.
    """
    return cdist(x, means, "euclidean") / 200.0 + cdist(x, means, "cosine")


class OpenMax:
    """The fitted `openmax` score: `P(unknown)` of the (K+1)-way revised softmax.

    Args:
        tail_size: number of largest training distances per class the Weibull is fitted to.
        alpha_rank: how many of the top-ranked classes are revised (DEAR effectively used 1).
        on: activation vectors, `features` (pooled features averaged over views, DEAR's variant)
            or `logits` (the original Bendale & Boult form).
        translate_amount: libMR's shift of the tail before fitting.
    """

    def __init__(self, *, tail_size: int = 20, alpha_rank: int = 1, on: str = "features",
                 translate_amount: float = LIBMR_TRANSLATE_AMOUNT) -> None:
        if on not in ACTIVATIONS:
            raise ValueError(f"openmax: on={on!r}; expected one of {', '.join(ACTIVATIONS)}")
        if tail_size < 2:
            raise ValueError(f"openmax: tail_size={tail_size}; expected >= 2")
        if alpha_rank < 1:
            raise ValueError(f"openmax: alpha_rank={alpha_rank}; expected >= 1")
        self.tail_size = int(tail_size)
        self.alpha_rank = int(alpha_rank)
        self.on = on
        self.translate_amount = float(translate_amount)
        self.means: np.ndarray | None = None  # (K, D)
        self.tails: list[WeibullTail] = []

    @property
    def fitted(self) -> bool:
        return self.means is not None

    def _activations(self, logits: np.ndarray, features) -> np.ndarray:
        if self.on == "logits":
            return logits
        if features is None:
            raise ValueError("openmax(on='features') needs the pooled features (N, F); the store has none "
                             "(write stores with features, or use on='logits')")
        feats = np.asarray(features, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] != logits.shape[0]:
            raise ValueError(f"openmax: features must be (N, F) with N={logits.shape[0]}, got {feats.shape}")
        return feats

    def fit(self, logits, labels, features=None) -> OpenMax:
        """Fit class means and Weibull tails on training outputs.

        Args:
            logits: training logits `(N, K)` (views averaged).
            labels: training labels `(N,)` in [0, K).
            features: pooled training features `(N, F)` (needed when `on='features'`).
        """
        z = as_logits(logits)
        y = np.asarray(labels)
        if y.shape != (z.shape[0],):
            raise ValueError(f"openmax.fit: labels must be ({z.shape[0]},) like the logits, got {y.shape}")
        acts = self._activations(z, features)
        correct = z.argmax(axis=1) == y
        means, tails = [], []
        for k in range(z.shape[1]):
            members = acts[correct & (y == k)]
            if len(members) < 2:
                raise OpenMaxFitError(f"openmax: class {k} has {len(members)} correctly classified training "
                                      "video(s); at least 2 are needed for a mean vector and a Weibull tail")
            mean = members.mean(axis=0)
            dist = eucos_distance(members, mean[None])[:, 0]
            try:
                tails.append(fit_high(dist, self.tail_size, translate_amount=self.translate_amount))
            except OpenMaxFitError as err:
                raise OpenMaxFitError(f"openmax: class {k}: {err}") from None
            means.append(mean)
        self.means, self.tails = np.stack(means), tails
        return self

    def revised_logits(self, logits, features=None) -> np.ndarray:
        """The (K+1) revised activations `(N, K+1)`: `s_k (1 - w_k)` and, last, the unknown logit."""
        if self.means is None:
            raise ValueError("openmax is not fitted: call .fit(train_logits, train_labels, train_features) first")
        z = as_logits(logits)
        num_classes = len(self.tails)
        if z.shape[1] != num_classes:
            raise ValueError(f"openmax was fitted on {num_classes} classes, got logits with {z.shape[1]}")
        dist = eucos_distance(self._activations(z, features), self.means)  # (N, K)
        shape = np.array([t.shape for t in self.tails])
        scale = np.array([t.scale for t in self.tails])
        shift = self.translate_amount - np.array([t.small_score for t in self.tails])
        w = weibull_min.cdf(dist + shift, shape, scale=scale)  # (N, K)
        rank = min(self.alpha_rank, num_classes)
        order = np.argsort(-z, axis=1, kind="stable")[:, :rank]
        alpha = np.zeros_like(z)
        weights = (rank + 1 - np.arange(1, rank + 1)) / rank  # rank 1: top class weight 1
        np.put_along_axis(alpha, order, np.broadcast_to(weights, order.shape), axis=1)
        revised = z * (1.0 - w * alpha)
        unknown = np.sum(z - revised, axis=1, keepdims=True)
        return np.concatenate([revised, unknown], axis=1)

    def probabilities(self, logits, features=None) -> np.ndarray:
        """Softmax over the K+1 revised activations, `(N, K+1)`, unknown last."""
        return softmax(self.revised_logits(logits, features), axis=1)

    def predict(self, logits, features=None) -> np.ndarray:
        """Argmax over K+1 classes, `(N,)`; index K means unknown."""
        return self.probabilities(logits, features).argmax(axis=1)

    def __call__(self, logits, *, features=None, sample_logits=None) -> np.ndarray:
        """The score `P(unknown)`, `(N,)`; `sample_logits` is accepted and ignored."""
        return self.probabilities(logits, features)[:, -1]

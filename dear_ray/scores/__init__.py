"""Post-hoc uncertainty scores on saved logits/features: higher = more likely unknown.

Every created score is a callable `score(logits (N, K), *, features=None, sample_logits=None)
-> (N,)`; a score that needs an input the caller did not give raises an error saying which.

    energy = create_score("energy")
    u = energy(logits)                                       # (N,)
    om = create_score("openmax", tail_size=20).fit(train_logits, train_labels, train_features)
    p_unknown = om(logits, features=features)                # (N,)
    knn = create_score("knn", k=50).fit(features=train_features)
    u = knn(logits, features=features)                       # (N,)

Post-hoc detectors (OpenOOD v1.5): `gen`, `temp_msp`, `mahalanobis`, `knn`, `vim`, `react`, `ash`
(`dear_ray.scores.posthoc`), `rmds`, `fdbd`, `nnguide`, `she` (`dear_ray.scores.distances`),
`scale`, `dice` (`dear_ray.scores.shaping`); the fitted ones have `.fit(*, logits, labels,
features)`, those that recompute the logits (`vim`, `react`, `ash`, `scale`, `dice`, `fdbd`) take
the classifier's `weight` `(K, F)` and `bias` `(K,)` when created, every hyper-parameter is a
keyword of `create_score`, and each feature-space detector's `describe()` names the features and
statistics it uses. Evidential heads also have `mpu`, `diff_entropy` and `mutual_info`
(`dear_ray.scores.evidential`; docs/scores.md defines them all).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dear_ray.methods import (
    DEFAULT_SCORES,
    EVIDENTIAL_HEADS,
    HEADS,
    POSTHOC_HEADS,
    head_spec,
)
from dear_ray.registry import Registry
from dear_ray.scores import bald as _bald
from dear_ray.scores import evidential as _evidential
from dear_ray.scores import softmax as _softmax
from dear_ray.scores.classifier import (
    CLASSIFIER_FILE,
    CLASSIFIER_KEY,
    Classifier,
    ClassifierError,
    read_classifier,
    store_logits,
    write_classifier,
)
from dear_ray.scores.openmax import OpenMax, OpenMaxFitError, WeibullTail, fit_high, fit_weibull
from dear_ray.scores.psl import PSLMahalanobis, create_psl_score
from dear_ray.scores.distances import FDBD, RMDS, SHE, NNGuide
from dear_ray.scores.posthoc import ASH, KNN, Mahalanobis, ReAct, TemperatureScaling, ViM, gen
from dear_ray.scores.shaping import DICE, Scale
from dear_ray.scores.predictions import (
    PREDICTION_RULES,
    class_probabilities,
    closed_predictions,
    default_prediction_rule,
)
from dear_ray.scores.store import (
    ScoreStore,
    ScoreStoreError,
    StoreMeta,
    read_score_store,
    write_score_store,
)

ScoreFn = Callable[..., np.ndarray]
SCORES: Registry[Callable[..., ScoreFn]] = Registry("score")
register_score = SCORES.register

# Dirichlet scores computed post hoc from an evidential head's stored logits (report rows)
EVIDENTIAL_POSTHOC = ("mpu", "diff_entropy", "mutual_info")


def _logit_score(fn: Callable[[np.ndarray], np.ndarray]) -> ScoreFn:
    def score(logits, *, features=None, sample_logits=None) -> np.ndarray:
        return fn(logits)

    score.__name__ = score.__qualname__ = fn.__name__
    score.__doc__ = fn.__doc__
    return score


@register_score("msp")
def _create_msp(*, probability: str = "softmax", evidence: str = "exp") -> ScoreFn:
    """`1 - max p`; `probability='softmax'` or `'dirichlet'` (p = alpha / S of an evidential head)."""
    if probability == "softmax":
        return _logit_score(_softmax.msp)
    if probability == "dirichlet":
        return _logit_score(lambda z: _evidential.evidential_msp(z, evidence))
    raise ValueError(f"msp: probability={probability!r}; expected 'softmax' or 'dirichlet'")


@register_score("entropy")
def _create_entropy() -> ScoreFn:
    return _logit_score(_softmax.entropy)


@register_score("energy")
def _create_energy() -> ScoreFn:
    return _logit_score(_softmax.energy)


@register_score("maxlogit")
def _create_maxlogit() -> ScoreFn:
    return _logit_score(_softmax.maxlogit)


@register_score("rpl")
def _create_rpl() -> ScoreFn:
    return _logit_score(_softmax.rpl)


@register_score("vacuity")
def _create_vacuity(*, evidence: str = "exp") -> ScoreFn:
    """Vacuity K / S; `evidence` is `exp` (default), `relu` or `softplus`."""
    if evidence not in _evidential.EVIDENCE_FUNCTIONS:
        raise ValueError(f"vacuity: evidence={evidence!r}; expected one of "
                         f"{', '.join(_evidential.EVIDENCE_FUNCTIONS)}")
    return _logit_score(lambda z: _evidential.vacuity(z, evidence))


def _evidential_score(name: str, fn: Callable[[np.ndarray, str], np.ndarray], evidence: str) -> ScoreFn:
    if evidence not in _evidential.EVIDENCE_FUNCTIONS:
        raise ValueError(f"{name}: evidence={evidence!r}; expected one of {', '.join(_evidential.EVIDENCE_FUNCTIONS)}")
    score = _logit_score(lambda z: fn(z, evidence))
    score.__name__ = score.__qualname__ = name
    score.__doc__ = fn.__doc__
    return score


@register_score("mpu")
def _create_mpu(*, evidence: str = "exp") -> ScoreFn:
    """Minus the margin-aware predictive uncertainty, `S - K max alpha` (higher = more unknown)."""
    return _evidential_score("mpu", _evidential.mpu, evidence)


@register_score("diff_entropy")
def _create_diff_entropy(*, evidence: str = "exp") -> ScoreFn:
    """Differential entropy of Dir(alpha)."""
    return _evidential_score("diff_entropy", _evidential.differential_entropy, evidence)


@register_score("mutual_info")
def _create_mutual_info(*, evidence: str = "exp") -> ScoreFn:
    """Mutual information between the label and p ~ Dir(alpha)."""
    return _evidential_score("mutual_info", _evidential.mutual_information, evidence)


@register_score("bald")
def _create_bald() -> ScoreFn:
    def bald(logits=None, *, features=None, sample_logits=None) -> np.ndarray:
        if sample_logits is None:
            raise ValueError("bald needs sample_logits (S, N, K) from S stochastic passes "
                             "(MC dropout or BNN); none were given")
        return _bald.bald(sample_logits)

    return bald


@register_score("openmax")
def _create_openmax(*, tail_size: int = 20, alpha_rank: int = 1, on: str = "features") -> OpenMax:
    """An unfitted `OpenMax`; call `.fit(train_logits, train_labels, train_features)` before scoring."""
    return OpenMax(tail_size=tail_size, alpha_rank=alpha_rank, on=on)


@register_score("psl")
def _create_psl(*, per_class: bool = False) -> PSLMahalanobis:
    """PSL's test score: Mahalanobis distance of the embedding to the training embeddings (fitted
    on the train store, like OpenMax; `dear_ray.scores.psl`)."""
    return create_psl_score(per_class=per_class)


@register_score("gen")
def _create_gen(*, gamma: float = 0.1, m: int = 100) -> ScoreFn:
    """Generalised entropy of the top-`m` softmax probabilities (OpenOOD: gamma 0.1, M 100)."""
    return _logit_score(lambda z: gen(z, gamma=gamma, m=m))


@register_score("temp_msp")
def _create_temp_msp() -> TemperatureScaling:
    """An unfitted temperature-scaled MSP; `.fit(logits=val_logits, labels=val_labels)`."""
    return TemperatureScaling()


@register_score("mahalanobis")
def _create_mahalanobis() -> Mahalanobis:
    """Unfitted; `.fit(logits=, labels=, features=)` on the training split (tied covariance)."""
    return Mahalanobis()


@register_score("knn")
def _create_knn(*, k: int = 50) -> KNN:
    """Unfitted; `.fit(features=train_features)`; k-th neighbour distance (OpenOOD k = 50)."""
    return KNN(k)


@register_score("vim")
def _create_vim(*, weight, bias, dim: int | None = None) -> ViM:
    """Unfitted; `.fit(features=train_features)`; needs the classifier's `weight`, `bias`."""
    return ViM(weight, bias, dim=dim)


@register_score("react")
def _create_react(*, weight, bias, percentile: float = 90.0) -> ReAct:
    """Unfitted; `.fit(features=train_features)` sets the clip at `percentile` (OpenOOD 90)."""
    return ReAct(weight, bias, percentile=percentile)


@register_score("ash")
def _create_ash(*, weight, bias, percentile: float = 90.0) -> ASH:
    """ASH-B pruning at `percentile` (OpenOOD 90), then the energy; needs `weight`, `bias`."""
    return ASH(weight, bias, percentile=percentile)


@register_score("rmds")
def _create_rmds() -> RMDS:
    """Unfitted; `.fit(logits=, labels=, features=)` on the training split (class + background Gaussians)."""
    return RMDS()


@register_score("fdbd")
def _create_fdbd(*, weight, bias, distance_as_normalizer: bool = True) -> FDBD:
    """Unfitted; `.fit(features=train_features)` (mean feature); needs `weight`, `bias`."""
    return FDBD(weight, bias, distance_as_normalizer=distance_as_normalizer)


@register_score("nnguide")
def _create_nnguide(*, k: int = 100, bank_fraction: float = 1.0, seed: int = 0) -> NNGuide:
    """Unfitted; `.fit(logits=train_logits, features=train_features)`; k-nearest guidance (OpenOOD k=100)."""
    return NNGuide(k=k, bank_fraction=bank_fraction, seed=seed)


@register_score("she")
def _create_she(*, metric: str = "inner_product") -> SHE:
    """Unfitted; `.fit(logits=, labels=, features=)` (class patterns of correctly classified videos)."""
    return SHE(metric=metric)


@register_score("scale")
def _create_scale(*, weight, bias, percentile: float = 85.0) -> Scale:
    """SCALE at `percentile` (OpenOOD 85), then the energy; needs `weight`, `bias`; nothing fitted."""
    return Scale(weight, bias, percentile=percentile)


@register_score("dice")
def _create_dice(*, weight, bias, percentile: float = 90.0) -> DICE:
    """Unfitted; `.fit(features=train_features)` sets the weight mask at `percentile` (OpenOOD 90)."""
    return DICE(weight, bias, percentile=percentile)


def create_score(name: str, **options) -> ScoreFn:
    """Build the score registered as `name` (see `list_scores()`)."""
    return SCORES.create(name, **options)


def list_scores() -> list[str]:
    """Registered score names."""
    return SCORES.names()


def scores_for_head(head: str, *, sample_logits: bool = False, openmax: bool = False) -> list[str]:
    """The scores a trained head supports (its row of `dear_ray.methods.HEAD_ROWS`).

    Args:
        head: the trained head's registry name.
        sample_logits: whether stochastic passes exist (adds `bald` to `softmax`; `bnn` needs them).
        openmax: whether an OpenMax model was fitted (adds `openmax` to `softmax`).
    """
    spec = head_spec(head)
    derived = {d.name for d in spec.derived}
    return list(spec.scores) + list(spec.pass_scores) * sample_logits \
        + ["openmax"] * (openmax and "openmax" in derived)


def methods_for_head(head: str, *, stochastic_passes: int = 1, posthoc=()) -> list[str]:
    """The methods (result rows) a model trained with `head` is reported as by `dear-ray evaluate`.

    A `softmax` model also yields MC Dropout (its stored `bald`, which needs `stochastic_passes`
    > 1) and OpenMax (fitted post hoc on its train store): the row's `derived` methods; every other
    head is its own method. `posthoc`: the post-hoc rows evaluated
    (`dear_ray.metrics.posthoc.POSTHOC_SCORES` by `evaluate_stores`' default): each detector a row
    `<head>+<detector>` of a `softmax` or `sdn` model (those that need the classifier file only
    when the trial has it), each of `EVIDENTIAL_POSTHOC` a row `<head>+<score>` of an evidential
    model.
    """
    spec = head_spec(head)
    if spec.posthoc:
        extra = [f"{head}+{name}" for name in posthoc if name not in EVIDENTIAL_POSTHOC]
    elif spec.evidential:
        extra = [f"{head}+{name}" for name in posthoc if name in EVIDENTIAL_POSTHOC]
    else:
        extra = []
    derived = [d.name for d in spec.derived if not d.needs_passes or stochastic_passes > 1]
    return [head] + derived + extra


def compute_scores(head: str, logits, *, sample_logits=None, evidence: str = "exp") -> dict[str, np.ndarray]:
    """Every logit-based score of `head`, as written into score stores by the training loop.

    Args:
        head: the trained head.
        logits: view-averaged logits `(N, K)` (for `bnn`, the mean over passes).
        sample_logits: optional `(S, N, K)` stochastic passes (required for `bnn`).
        evidence: evidence function of evidential heads.

    Returns:
        name -> `(N,)` uncertainty. For evidential heads `msp` is `1 - max alpha / S`. OpenMax is
        not included: it needs a fit on the training store (see `OpenMax`).
    """
    spec = head_spec(head)
    names = [s for s in scores_for_head(head, sample_logits=sample_logits is not None) if s != "openmax"]
    if spec.passes_required and sample_logits is None:
        raise ValueError(f"head {head!r} needs sample_logits (S, N, K) for its "
                         f"{spec.default_score!r} score")
    builders = {"msp": lambda: create_score("msp", probability="dirichlet", evidence=evidence),
                "vacuity": lambda: create_score("vacuity", evidence=evidence)} \
        if spec.evidential else {}
    out = {}
    for name in names:
        fn = builders.get(name, lambda n=name: create_score(n))()
        out[name] = fn(logits, sample_logits=sample_logits)
    return out


def default_score(method: str) -> str:
    """The score a method is reported with (`softmax` -> msp, `dear` -> vacuity, ...)."""
    if method not in DEFAULT_SCORES:
        raise ValueError(f"unknown method {method!r}; methods: {', '.join(sorted(DEFAULT_SCORES))}")
    return DEFAULT_SCORES[method]


__all__ = [
    "ASH", "CLASSIFIER_FILE", "CLASSIFIER_KEY", "DEFAULT_SCORES", "DICE", "EVIDENTIAL_HEADS", "EVIDENTIAL_POSTHOC",
    "FDBD", "HEADS", "KNN", "POSTHOC_HEADS", "PREDICTION_RULES", "RMDS", "SHE", "Classifier", "ClassifierError",
    "Mahalanobis", "NNGuide", "OpenMax", "OpenMaxFitError", "ReAct", "Scale", "ScoreStore", "ScoreStoreError",
    "StoreMeta", "TemperatureScaling", "ViM", "WeibullTail", "class_probabilities",
    "closed_predictions", "compute_scores", "create_score", "default_prediction_rule", "default_score", "fit_high",
    "fit_weibull", "list_scores", "methods_for_head", "read_classifier", "read_score_store", "register_score",
    "scores_for_head", "store_logits", "write_classifier", "write_score_store",
]

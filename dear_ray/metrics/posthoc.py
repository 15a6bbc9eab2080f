"""The post-hoc detector rows of a model: `softmax+knn`, `softmax+vim`, ... (SPEC 2, issue 12).

For a model whose head is a softmax classifier (`POSTHOC_HEADS`: `softmax`, `sdn`), each detector
of `POSTHOC_SCORES` is fitted on the model's own stores and becomes a row with method
`<method>+<detector>` and score `<detector>`, evaluated like every other row (same unknown-class
subsets, same metric names). A row keeps the model's closed-set predictions (argmax of its
stored logits): the detector only replaces the unknown score.

What each detector is fitted on and needs (`dear_ray.scores.posthoc`):

| detector | fitted on | needs |
|---|---|---|
| energy, maxlogit | - | score-averaged train logits: the classifier file when the train split is prob-averaged |
| gen | - | logits |
| temp_msp | `val` store, else the known `test` store (the score says which: `temp_msp(val)`; T is logged) | logits |
| mahalanobis | train features and labels | features |
| knn | train features (a train video is left out of its own neighbours) | features |
| vim, react, ash | train features | features and the classifier file |

Logits are always `store_logits(store, classifier)`: recomputed from the features when the trial
has a classifier file (`dear_ray.scores.classifier`), so a train split stored with `prob` view
averaging (DEAR's released softmax train split, whose stored energy is 0) gets the score-averaged
logits of its test splits. A detector that cannot run on a trial is skipped with a one-line
reason (returned, and warned once by `evaluate_stores`), never an error.

Under the `dear` protocol the threshold comes from the TRAIN split's scores, the split the
feature-space detectors were fitted on: Mahalanobis (and ViM's subspace) see their training videos
in-sample, closer than any test video, so their thresholds reject more known test videos than
5% (their threshold-free metrics are unaffected); KNN leaves each training video out of its own
neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from dear_ray.metrics.groups import ModelStores, Plan
from dear_ray.scores import POSTHOC_HEADS, ScoreStore, create_score
from dear_ray.scores.classifier import ClassifierError, prob_averaged, read_classifier, store_logits
from dear_ray.scores.softmax import energy, maxlogit

log = logging.getLogger(__name__)
POSTHOC_SCORES = ("energy", "maxlogit", "gen", "temp_msp", "mahalanobis", "knn", "vim", "react", "ash")
_FEATURES = ("mahalanobis", "knn", "vim", "react", "ash")
_CLASSIFIER = ("vim", "react", "ash")


def posthoc_plans(group: ModelStores, names: Sequence[str] = POSTHOC_SCORES, *,
                  knn_k: int = 50) -> tuple[list[Plan], list[str]]:
    """The post-hoc rows of one model and the reasons for the detectors left out.

    Args:
        group: the model's stores.
        names: detectors to fit (a subset of `POSTHOC_SCORES`).
        knn_k: KNN's k (OpenOOD default 50).

    Returns:
        `(plans, skipped)`: one `Plan` per detector that could run (`fewer_resamples=True`), and
        one line `run 'r': no softmax+knn row: <reason>` per detector that could not (one line
        `no softmax+vim/react/ash row: ...` for those that lack the classifier file, one
        `no softmax+energy/maxlogit row: ...` for a prob-averaged train split without it).
    """
    unknown_names = sorted(set(names) - set(POSTHOC_SCORES))
    if unknown_names:
        raise ValueError(f"post-hoc detectors {unknown_names}; expected some of {', '.join(POSTHOC_SCORES)}")
    head = group.train.meta.head
    if head not in POSTHOC_HEADS:
        return [], []
    skipped: list[str] = []

    def skip(name: str, reason: str) -> None:
        skipped.append(f"run {group.run!r}: no {group.method}+{name} row: {reason}")

    try:
        classifier = read_classifier(group.train)
    except ClassifierError as err:
        classifier, bad = None, str(err)
    else:
        bad = "no classifier file named in the stores' metadata (extra['classifier'])"
    stores = group.all + ([group.val] if group.val is not None else [])
    try:
        logits = {id(s): store_logits(s, classifier) for s in stores}
    except ClassifierError as err:
        classifier, bad = None, str(err)
        logits = {id(s): np.asarray(s.logits, np.float64) for s in stores}
    has_features = all(s.features is not None for s in stores)
    train = group.train
    plans, no_classifier, stale = [], [], []
    for name in names:
        if name in _FEATURES and not has_features:
            skip(name, "the stores have no pooled features")
            continue
        if name in _CLASSIFIER and classifier is None:
            no_classifier.append(name)
            continue
        if name in ("energy", "maxlogit") and classifier is None and prob_averaged(train):
            stale.append(name)
            continue
        try:
            label, fn = _detector(name, group, classifier, logits, knn_k)
        except (ValueError, np.linalg.LinAlgError) as err:
            skip(name, str(err))
            continue
        plans.append(Plan(f"{group.method}+{name}", label, group.with_scores(label, fn), fewer_resamples=True))
    if stale:  # one line for both
        skip("/".join(stale), "the train store holds prob-averaged logits (log of the mean softmax: energy 0, "
                              f"max-logit in other units than the test splits'); {bad}")
    if no_classifier:  # one line for all the detectors that need the classifier file
        skip("/".join(no_classifier), bad)
    return plans, skipped


def _detector(name: str, group: ModelStores, classifier, logits: dict, knn_k: int):
    """`(score label, store -> (N,) uncertainties)` of one fitted detector."""
    train = group.train
    z = lambda s: logits[id(s)]  # noqa: E731
    if name == "energy":
        return name, lambda s: energy(z(s))
    if name == "maxlogit":
        return name, lambda s: maxlogit(z(s))
    if name == "gen":
        score = create_score("gen")
        return name, lambda s: score(z(s))
    if name == "temp_msp":
        held_out = group.val if group.val is not None else group.known
        score = create_score("temp_msp").fit(logits=z(held_out), labels=held_out.labels)
        split = "val" if group.val is not None else "test"
        log.info("run %r: temp_msp temperature T=%.4g fitted on its %s split", group.run, score.temperature, split)
        return f"temp_msp({split})", lambda s: score(z(s))
    options = {"k": knn_k} if name == "knn" else {}
    if name in _CLASSIFIER:
        options.update(weight=classifier.weight, bias=classifier.bias)
    score = create_score(name, **options)
    if name != "ash":
        score.fit(logits=z(train), labels=train.labels, features=train.features)

    def apply(s: ScoreStore) -> np.ndarray:
        return score(z(s), features=s.features, leave_one_out=name == "knn" and s is train)

    return name, apply

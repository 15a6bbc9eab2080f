"""The post-hoc rows of a model: `softmax+knn`, `softmax+vim`, `dear+mpu`, ... (docs/scores.md).

For a model whose head is a softmax classifier (`POSTHOC_HEADS`: `softmax`, `sdn`), each detector
of `DETECTORS` is fitted on the model's own stores and becomes a row with method
`<method>+<detector>` and score `<detector>`; for an evidential model (`EVIDENTIAL_HEADS`), each
Dirichlet score of `EVIDENTIAL_POSTHOC` (`mpu`, `diff_entropy`, `mutual_info`) is computed from
its stored logits and becomes a row `<method>+<score>`. Rows are evaluated like every other row
(same unknown-class subsets, same metric names) and keep the model's closed-set predictions: the
post-hoc score only replaces the unknown score. No model is run: everything comes from the stores
(and the classifier file).

What each detector is fitted on and needs (`dear_ray.scores.posthoc`, `.distances`, `.shaping`):

| detector | fitted on | needs |
|---|---|---|
| energy, maxlogit | - | score-averaged train logits: the classifier file when the train split is prob-averaged |
| gen | - | logits |
| temp_msp | `val` store, else the known `test` store (the score says which: `temp_msp(val)`; T is logged) | logits |
| mahalanobis, rmds | train features and labels | features |
| knn | train features (a train video is left out of its own neighbours) | features |
| nnguide | train features and score-averaged train logits (left out as knn) | features |
| she | train features, labels and logits (correctly classified videos) | features |
| vim, react, dice, fdbd | train features | features and the classifier file |
| ash, scale | - | features and the classifier file |
| mpu, diff_entropy, mutual_info | - | an evidential model's logits; evidence `extra["evidence"]`, else `exp` |

Logits are always `store_logits(store, classifier)`: recomputed from the features when the trial
has a classifier file (`dear_ray.scores.classifier`), so a train split stored with `prob` view
averaging (DEAR's released softmax train split, whose stored energy is 0) gets the score-averaged
logits of its test splits. A row that cannot be computed for a trial is skipped with a one-line
reason (returned, and warned once by `evaluate_stores`), never an error.

Hyper-parameters: the defaults are OpenOOD v1.5's (`create_score`'s); `options` sets any of them
per detector (`{"scale": {"percentile": 90}}`). With `tune="val"` (the default where the model
has `val` and `val_unknown` stores) those of KNN, ReAct, ASH, SCALE, GEN, ViM and fDBD are chosen
on those two stores by AUROC over OpenOOD's grids (`dear_ray.metrics.posthoc_tune`), never on a
test split. Each row's `Plan.description` says which features and fitted statistics its score
used, with its hyper-parameters (`describe()` of the feature-space detectors) and how they were
chosen, and is logged; `Plan.params` holds the hyper-parameters themselves.

Under the `dear` protocol the threshold comes from the TRAIN split's scores, the split the
feature-space detectors were fitted on: Mahalanobis, RMDS (and ViM's subspace) see their training
videos in-sample, closer than any test video, so their thresholds reject more known test videos
than 5% (their threshold-free metrics are unaffected); KNN and NNGuide leave each training video
out of its own neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from dear_ray.metrics.groups import ModelStores, Plan
from dear_ray.metrics.posthoc_tune import GRIDS, TUNE_MODES, Choice, candidates, choose, effective_params
from dear_ray.scores import EVIDENTIAL_HEADS, EVIDENTIAL_POSTHOC, POSTHOC_HEADS, ScoreStore, create_score
from dear_ray.scores.classifier import ClassifierError, prob_averaged, read_classifier, store_logits

log = logging.getLogger(__name__)
DETECTORS = ("energy", "maxlogit", "gen", "temp_msp", "mahalanobis", "knn", "vim", "react", "ash",
             "rmds", "scale", "fdbd", "nnguide", "she", "dice")
POSTHOC_SCORES = DETECTORS + EVIDENTIAL_POSTHOC
_FEATURES = ("mahalanobis", "knn", "vim", "react", "ash", "rmds", "scale", "fdbd", "nnguide", "she", "dice")
_CLASSIFIER = ("vim", "react", "ash", "scale", "fdbd", "dice")
_TRAIN_ENERGY = ("energy", "maxlogit", "nnguide")  # read the train split's logits in score units
_UNFITTED = ("ash", "scale")
_LEAVE_ONE_OUT = ("knn", "nnguide")


def posthoc_plans(group: ModelStores, names: Sequence[str] = POSTHOC_SCORES, *, knn_k: int = 50,
                  options: Mapping[str, Mapping[str, object]] | None = None,
                  tune: str | None = None) -> tuple[list[Plan], list[str]]:
    """The post-hoc rows of one model and the reasons for those left out.

    Args:
        group: the model's stores.
        names: rows to compute (a subset of `POSTHOC_SCORES`); those that do not apply to the
            model's head (a detector for an evidential model, a Dirichlet score for a softmax
            one) are passed over in silence.
        knn_k: KNN's k (OpenOOD default 50), unless `options["knn"]["k"]` is given.
        options: hyper-parameters per row name, the keywords of `create_score(name, ...)`.
        tune: `val`: the hyper-parameters of the detectors of `posthoc_tune.GRIDS` are chosen on
            the model's `val` and `val_unknown` stores (`dear_ray.metrics.posthoc_tune`; a
            keyword given in `options` is kept fixed); `none`: the defaults (and `options`);
            None: `val` where the model has both stores, else `none`.

    Returns:
        `(plans, skipped)`: one `Plan` per row that could be computed (`fewer_resamples=True`,
        `description` and `params` set), and one line `run 'r': no softmax+knn row: <reason>` per row that could
        not (one line `no softmax+vim/react/...: ...` for those that lack the classifier file, one
        `no softmax+energy/maxlogit/nnguide row: ...` for a prob-averaged train split without it).
    """
    unknown_names = sorted(set(names) - set(POSTHOC_SCORES))
    bad_options = sorted(set(options or {}) - set(POSTHOC_SCORES))
    if unknown_names or bad_options:
        raise ValueError(f"post-hoc rows {unknown_names or bad_options}; expected some of {', '.join(POSTHOC_SCORES)}")
    fixed = {name: dict((options or {}).get(name, {})) for name in POSTHOC_SCORES}
    options = {name: dict(value) for name, value in fixed.items()}
    options["knn"].setdefault("k", knn_k)
    tune = _tune_mode(group, tune)
    head = group.train.meta.head
    if head in EVIDENTIAL_HEADS:
        return _evidential_plans(group, [n for n in names if n in EVIDENTIAL_POSTHOC], options)
    if head not in POSTHOC_HEADS:
        return [], []
    names = [n for n in names if n in DETECTORS]
    skipped: list[str] = []

    def skip(name: str, reason: str) -> None:
        skipped.append(f"run {group.run!r}: no {group.method}+{name} row: {reason}")

    classifier, bad, logits = _classifier_and_logits(group)
    evaluated = group.all + ([group.val] if group.val is not None else [])
    has_features = all(s.features is not None for s in evaluated)
    plans, no_classifier, stale = [], [], []
    for name in names:
        if name in _FEATURES and not has_features:
            skip(name, "the stores have no pooled features")
            continue
        if name in _CLASSIFIER and classifier is None:
            no_classifier.append(name)
            continue
        if name in _TRAIN_ENERGY and classifier is None and prob_averaged(group.train):
            stale.append(name)
            continue
        try:
            chosen = _tuned(name, group, classifier, logits, options[name], fixed[name]) if tune == "val" else None
            given = {**options[name], **(chosen.params if chosen else {})}
            label, fn, description, fitted = _detector(name, group, classifier, logits, given)
            if chosen is not None:
                description += f"; {chosen.describe()}"
            elif tune == "val" and name in GRIDS:
                description += "; defaults (no candidate of the validation grid applies)"
            plan = Plan(f"{group.method}+{name}", label, group.with_scores(label, fn), fewer_resamples=True,
                        description=description, params=_resolved(effective_params(name, given), fitted))
        except (ValueError, np.linalg.LinAlgError) as err:
            skip(name, str(err))
            continue
        log.info("run %r: %s+%s: %s", group.run, group.method, name, description)
        plans.append(plan)
    if stale:  # one line for all of them
        skip("/".join(stale), "the train store holds prob-averaged logits (log of the mean softmax: energy 0, "
                              f"max-logit in other units than the test splits'); {bad}")
    if no_classifier:  # one line for all the detectors that need the classifier file
        skip("/".join(no_classifier), bad)
    return plans, skipped


def _classifier_and_logits(group: ModelStores):
    """`(classifier or None, why there is none, id(store) -> score-averaged logits)` of a model."""
    try:
        classifier = read_classifier(group.train)
    except ClassifierError as err:
        classifier, bad = None, str(err)
    else:
        bad = "no classifier file named in the stores' metadata (extra['classifier'])"
    stores = group.all + [s for s in (group.val, group.val_unknown) if s is not None]
    try:
        logits = {id(s): store_logits(s, classifier) for s in stores}
    except ClassifierError as err:
        classifier, bad = None, str(err)
        logits = {id(s): np.asarray(s.logits, np.float64) for s in stores}
    return classifier, bad, logits


def _resolved(params: dict, fitted) -> dict:
    """`params` with what the fitted detector resolved (ViM's default dim: None -> F/2; the
    fitted temperature of temp_msp)."""
    if getattr(fitted, "temperature", None) is not None:
        params = {**params, "temperature": float(fitted.temperature)}
    return {k: (getattr(fitted, k) if v is None and getattr(fitted, k, None) is not None else v)
            for k, v in params.items()}


def _tune_mode(group: ModelStores, tune: str | None) -> str:
    """`val` or `none` for this model (None: `val` where it has `val` and `val_unknown` stores)."""
    if tune is not None and tune not in TUNE_MODES:
        raise ValueError(f"posthoc tune={tune!r}; expected one of {', '.join(TUNE_MODES)}")
    has_val = group.val is not None and group.val_unknown is not None
    if tune == "val" and not has_val:
        missing = " and ".join(n for n, s in (("val", group.val), ("val_unknown", group.val_unknown)) if s is None)
        log.warning("run %r: no %s store: its post-hoc detectors keep their default hyper-parameters",
                    group.run, missing)
        return "none"
    return tune or ("val" if has_val else "none")


def _tuned(name: str, group: ModelStores, classifier, logits: dict, options: Mapping[str, object],
           fixed: Mapping[str, object]) -> Choice | None:
    """The hyper-parameters of detector `name` chosen on the `val` / `val_unknown` stores (the
    keywords in `fixed`, given by the caller, stay as given); None when it is not tuned."""
    train_features = group.train.features
    grid = [p for p in candidates(name, num_train=len(group.train),
                                  num_features=None if train_features is None else train_features.shape[1])
            if not set(p) & set(fixed)]
    if not grid:
        return None
    build = lambda params: _detector(name, group, classifier, logits, {**options, **params})[1]  # noqa: E731
    return choose(grid, build, group.val, group.val_unknown)


def _evidential_plans(group: ModelStores, names: Sequence[str],
                      options: Mapping[str, Mapping[str, object]]) -> tuple[list[Plan], list[str]]:
    """The Dirichlet-score rows of an evidential model, from its stored (view-averaged) logits."""
    evidence = group.train.meta.extra.get("evidence", "exp")
    plans, skipped = [], []
    for name in names:
        try:
            score = create_score(name, **{"evidence": evidence, **options[name]})
            plan = Plan(f"{group.method}+{name}", name, group.with_scores(name, lambda s, f=score: f(s.logits)),
                        fewer_resamples=True,
                        description=f"Dirichlet of the stored view-averaged logits, {evidence} evidence")
        except ValueError as err:
            skipped.append(f"run {group.run!r}: no {group.method}+{name} row: {err}")
            continue
        log.info("run %r: %s+%s: %s", group.run, group.method, name, plan.description)
        plans.append(plan)
    return plans, skipped


def _detector(name: str, group: ModelStores, classifier, logits: dict, options: Mapping[str, object]):
    """`(score label, store -> (N,) uncertainties, description, the fitted detector or None)`."""
    train = group.train
    z = lambda s: logits[id(s)]  # noqa: E731
    source = "score-averaged logits" + (" (recomputed from the classifier file)" if classifier is not None else "")
    if name in ("energy", "maxlogit", "gen"):
        score = create_score(name, **options)
        given = ", ".join(f"{key}={value}" for key, value in options.items())
        return name, lambda s: score(z(s)), source + (f"; {given}" if given else ""), None
    if name == "temp_msp":
        held_out = group.val if group.val is not None else group.known
        score = create_score("temp_msp", **options).fit(logits=z(held_out), labels=held_out.labels)
        split = "val" if group.val is not None else "test"
        return (f"temp_msp({split})", lambda s: score(z(s)),
                f"{source} / T, T={score.temperature:.4g} minimising the NLL of the {split} split", score)
    if name in _CLASSIFIER:
        options = {**options, "weight": classifier.weight, "bias": classifier.bias}
    score = create_score(name, **options)
    if name not in _UNFITTED:
        score.fit(logits=z(train), labels=train.labels, features=train.features)

    def apply(s: ScoreStore) -> np.ndarray:
        return score(z(s), features=s.features, leave_one_out=name in _LEAVE_ONE_OUT and s is train)

    return name, apply, score.describe(), score

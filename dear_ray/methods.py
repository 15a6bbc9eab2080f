"""The table of methods: one `HeadSpec` per trained head, read by every part of the package that
treats heads differently (training-time scoring, view averaging, the report's rows, thresholds,
closed-set predictions). Torch- and numpy-free, so the config, the scores and the CLI can read it.

The definitions and the released behaviours behind each field are in docs/methods.md and
docs/metrics.md. Adding a head is its file under `dear_ray/models/heads/` (the model registry) and
one row here; `tests/test_methods.py` holds the two together.
"""

from __future__ import annotations

from dataclasses import dataclass

# how the test views (clips x crops) of a split are combined under `eval.average_clips: released`
# (DEAR's `test_cfg.average_clips` and test scripts; SDN's libs/test.py): the mean logits, the mean
# per-view softmax, or DEAR's SoftMax scripts' split rule (softmax on the threshold split and on
# stochastic passes, logits on the test splits)
AVERAGE_CLIPS = ("score", "prob", "by_split")


@dataclass(frozen=True)
class DerivedMethod:
    """A method evaluated on another head's model, without training (MC dropout, OpenMax on a
    `softmax` model): its result-row name, its score, and whether it needs stochastic passes."""

    name: str
    score: str
    needs_passes: bool = False


@dataclass(frozen=True)
class HeadSpec:
    """What the package needs to know about a trained head (docs/methods.md).

    Attributes:
        name: the head's registry name (`model.head`), also its result-row method name.
        scores: the scores the training loop stores for it, the reported one first.
        default_score: the score its result row reports.
        evidential: its logits are Dirichlet evidence: `msp` and `vacuity` use the evidence
            function, predictions are `argmax alpha / S`, the Dirichlet post-hoc rows apply.
        stochastic: `eval.stochastic_passes` stochastic passes are stored (`sample_logits`).
        pass_scores: scores added when stochastic passes are stored (MC dropout's `bald`).
        passes_required: the scores cannot be computed without the passes (BNN).
        logits_from_passes: the stored logits are the passes' mean probability (DEAR's BNN
            prediction) rather than one deterministic pass.
        average_clips: the released view averaging, one of `AVERAGE_CLIPS`.
        posthoc: a plain linear softmax classifier: the post-hoc detector rows apply.
        derived: the methods evaluated on its model besides itself.
    """

    name: str
    scores: tuple[str, ...]
    default_score: str
    evidential: bool = False
    stochastic: bool = False
    pass_scores: tuple[str, ...] = ()
    passes_required: bool = False
    logits_from_passes: bool = False
    average_clips: str = "score"
    posthoc: bool = False
    derived: tuple[DerivedMethod, ...] = ()

    def __post_init__(self) -> None:
        if self.average_clips not in AVERAGE_CLIPS:
            raise ValueError(f"HeadSpec {self.name}: average_clips {self.average_clips!r}; expected "
                             f"one of {AVERAGE_CLIPS}")
        if self.default_score not in self.scores + tuple(d.score for d in self.derived) + ("psl",):
            raise ValueError(f"HeadSpec {self.name}: default score {self.default_score!r} is not "
                             f"among its scores {self.scores}")


_SOFTMAX_SCORES = ("msp", "entropy", "energy", "maxlogit")


def _evidential(name: str) -> HeadSpec:
    return HeadSpec(name, scores=("vacuity", "msp"), default_score="vacuity", evidential=True)


HEAD_ROWS: dict[str, HeadSpec] = {spec.name: spec for spec in (
    HeadSpec("softmax", scores=_SOFTMAX_SCORES, default_score="msp", stochastic=True,
             pass_scores=("bald",), average_clips="by_split", posthoc=True,
             derived=(DerivedMethod("mc_dropout", "bald", needs_passes=True),
                      DerivedMethod("openmax", "openmax"))),
    HeadSpec("bnn", scores=("bald", "msp"), default_score="bald", stochastic=True,
             passes_required=True, logits_from_passes=True, average_clips="prob"),
    HeadSpec("rpl", scores=("rpl", "msp"), default_score="rpl", average_clips="prob"),
    HeadSpec("sdn", scores=_SOFTMAX_SCORES, default_score="msp", average_clips="prob", posthoc=True),
    # PSL tests one clip x one crop (tools/test_net_open.py); its reported `psl` score (a
    # Mahalanobis distance) is fitted on the train store by the report
    HeadSpec("psl", scores=("msp",), default_score="psl"),
    _evidential("edl"),
    _evidential("edl_avu"),
    _evidential("dear"),
    _evidential("dear_alt"),
)}

HEADS: tuple[str, ...] = tuple(HEAD_ROWS)
EVIDENTIAL_HEADS: tuple[str, ...] = tuple(h for h, s in HEAD_ROWS.items() if s.evidential)
STOCHASTIC_HEADS: tuple[str, ...] = tuple(h for h, s in HEAD_ROWS.items() if s.stochastic)
POSTHOC_HEADS: tuple[str, ...] = tuple(h for h, s in HEAD_ROWS.items() if s.posthoc)
# the score each method (head or derived method) is reported with
DEFAULT_SCORES: dict[str, str] = {
    **{h: s.default_score for h, s in HEAD_ROWS.items()},
    **{d.name: d.score for s in HEAD_ROWS.values() for d in s.derived},
}


def head_spec(head: str) -> HeadSpec:
    """The row of `head`; a ValueError naming the known heads otherwise."""
    if head not in HEAD_ROWS:
        raise ValueError(f"unknown head {head!r}; heads with scores: {', '.join(HEADS)}")
    return HEAD_ROWS[head]


def is_evidential(head: str) -> bool:
    """Whether `head` is evidential; False for a head outside the table (an imported model)."""
    spec = HEAD_ROWS.get(head)
    return spec is not None and spec.evidential


def default_prediction_rule(head: str, score: str) -> str:
    """The closed-set prediction rule DEAR's scripts use for a model trained with `head` and
    reported under `score`: evidential heads `dirichlet` (argmax alpha / S); a `bald` score (MC
    dropout, BNN) `mean_passes` (argmax of the passes' mean softmax); otherwise `logits`."""
    if is_evidential(head):
        return "dirichlet"
    if score == "bald":
        return "mean_passes"
    return "logits"


def default_threshold_rank(head: str, score: str) -> str:
    """DEAR's rank of the 95% training threshold: SoftMax and RPL threshold the max softmax
    (`experiments/baseline_softmax.py`, `baseline_rpl.py`): `baseline_softmax` for the `msp` /
    `rpl` score of a non-evidential head; EDL/DEAR vacuity and BALD go through
    `experiments/get_threshold.py`, as does every other score (docs/metrics.md)."""
    return "baseline_softmax" if score in ("msp", "rpl") and not is_evidential(head) \
        else "get_threshold"


def released_average_clips(head: str, split: str, *, stochastic: bool = False) -> str:
    """`score` or `prob`: how the released code combines the test views of `split` for `head`."""
    rule = head_spec(head).average_clips
    if rule != "by_split":
        return rule
    return "prob" if stochastic or split == "train" else "score"

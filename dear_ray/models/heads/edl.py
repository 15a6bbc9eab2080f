"""Evidential heads: `edl`, `edl_avu` (+ AvU), and the classifier part of `dear` /
`dear_alt` (+ the CED branch, built in `debias.py`).

Logits are the raw scores z; the evidence function is applied by the loss here and, at test time,
by the `vacuity` score after averaging logits over views (docs/methods.md#edl).
"""

from __future__ import annotations

import torch
from torch import nn

from dear_ray.losses._checks import accuracy
from dear_ray.losses.avu import avu_loss
from dear_ray.losses.ced import CED_WEIGHT, ced_alternating_loss, ced_joint_loss
from dear_ray.losses.edl import EDL_LOSS_TYPES, EVIDENCE_FUNCTIONS, dirichlet_alpha, edl_loss
from dear_ray.models.heads.base import Head, HeadInputs, check_positive, linear_classifier, register_head

CED_MODES = ("joint", "alternating")


class EDLHead(Head):
    """Linear logits trained with the evidential loss, optionally + AvU and + a CED debias branch.

    Total loss: L_edl (+ lambda_t KL when `kl`) (+ L_avu when `avu`) (+ L_ced when a debias head is
    given). `anneal` (lambda_t) weights the KL term and the AvU halves.

    Args:
        fc_cls: Linear(F, K).
        evidence: `exp`, `relu` or `softplus`.
        loss_type: `log`, `digamma` or `mse`.
        kl: add the annealed KL(Dir(alpha~) || Dir(1)) term.
        avu: add the AvU calibration loss (weight 1).
        disentangle: AvU's disentangled variant.
        debias_head: the CED branch (`DebiasHead`), or None.
        ced_mode: `joint` (`dear`) or `alternating` (`dear_alt`).
        ced_weight: the CED loss factor (0.1).
        ced_hsic_normalised: alternating mode only: divide HSIC_u by N(N-3)
        (docs/methods.md#dear_alt, default) or
            not (False, the released DEAR alternating mode; see `ced_alternating_loss`).
        mse_avu: with `loss_type="mse"`, still add the AvU term. DEAR's EvidenceLoss.mse_loss
            (losses/edl_loss.py at b752998) computes none (its AvU lines there are a stub), so the
            released default is False: `avu` applies to the `log` and `digamma` forms only.
    """

    def __init__(self, fc_cls: nn.Linear, *, evidence: str, loss_type: str, kl: bool, avu: bool,
                 disentangle: bool, debias_head: nn.Module | None = None, ced_mode: str = "joint",
                 ced_weight: float = CED_WEIGHT, mse_avu: bool = False,
                 ced_hsic_normalised: bool = True) -> None:
        super().__init__(fc_cls.out_features)
        self.fc_cls = fc_cls
        self.evidence = evidence
        self.loss_type = loss_type
        self.kl = kl
        self.avu = avu
        self.disentangle = disentangle
        self.debias_head = debias_head
        self.ced_mode = ced_mode
        self.ced_weight = ced_weight
        self.mse_avu = mse_avu
        self.ced_hsic_normalised = bool(ced_hsic_normalised)
        self.uses_debias_map = debias_head is not None

    def forward(self, features: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        return self.fc_cls(features)

    def loss(self, inputs: HeadInputs) -> tuple[torch.Tensor, dict[str, float]]:
        labels = inputs.labels
        logits = self.fc_cls(inputs.features)
        alpha = dirichlet_alpha(logits.float(), self.evidence)  # S overflows float16 under AMP
        loss, edl_stats = edl_loss(alpha, labels, loss_type=self.loss_type,
                                   kl_weight=inputs.anneal if self.kl else 0.0)
        stats = {"loss_cls": edl_stats["loss_edl"], "loss_kl": edl_stats["loss_kl"],
                 "uncertainty": edl_stats["uncertainty"], "evidence": edl_stats["evidence"],
                 "acc": accuracy(logits, labels)}
        if self.avu and (self.loss_type != "mse" or self.mse_avu):
            loss_avu, avu_stats = avu_loss(alpha, labels, anneal=inputs.anneal,
                                           disentangle=self.disentangle)
            loss = loss + loss_avu
            stats.update(avu_stats)
        if self.debias_head is not None:
            if inputs.debias_map is None:
                raise ValueError("EDLHead.loss: this head has a CED branch and needs "
                                 "HeadInputs.debias_map (B, C, T, H, W)")
            branches = self.debias_head(inputs.debias_map)
            if self.ced_mode == "joint":
                loss_ced, ced_stats = ced_joint_loss(branches.alphas, labels, weight=self.ced_weight)
            else:
                loss_ced, ced_stats = ced_alternating_loss(
                    branches.alphas, branches.features, labels, iteration=inputs.iteration,
                    weight=self.ced_weight, hsic_normalised=self.ced_hsic_normalised)
            loss = loss + loss_ced
            stats.update(ced_stats)
        return loss, stats

    def classifier_parameter_names(self) -> set[str]:
        names = {"fc_cls.weight", "fc_cls.bias"}
        if self.debias_head is not None:
            names |= {f"debias_head.{n}" for n in self.debias_head.classifier_parameter_names()}
        return names


def create_edl_head(
    *,
    in_features: int,
    num_classes: int,
    evidence: str = "exp",
    loss_type: str = "log",
    kl: bool = False,
    avu: bool = False,
    disentangle: bool = False,
    init_std: float = 0.01,
    debias_head: nn.Module | None = None,
    ced_mode: str = "joint",
    ced_weight: float = CED_WEIGHT,
    mse_avu: bool = False,
    ced_hsic_normalised: bool = True,
) -> EDLHead:
    """The one builder behind `edl`, `edl_avu`, `dear` and `dear_alt` (see EDLHead for the args;
    `init_std` is fc_cls's normal-init std)."""
    check_positive("create_edl_head", in_features=in_features, num_classes=num_classes)
    for field, value, allowed in (("evidence", evidence, EVIDENCE_FUNCTIONS),
                                  ("loss_type", loss_type, EDL_LOSS_TYPES), ("ced_mode", ced_mode, CED_MODES)):
        if value not in allowed:
            raise ValueError(f"create_edl_head: {field} must be one of {allowed}, got {value!r}")
    if disentangle and not avu:
        raise ValueError("create_edl_head: disentangle=True needs avu=True (use the edl_avu head)")
    return EDLHead(linear_classifier(in_features, num_classes, init_std), evidence=evidence,
                   loss_type=loss_type, kl=kl, avu=avu, disentangle=disentangle,
                   debias_head=debias_head, ced_mode=ced_mode, ced_weight=ced_weight,
                   mse_avu=bool(mse_avu), ced_hsic_normalised=ced_hsic_normalised)


@register_head("edl")
def edl(*, in_features: int, num_classes: int, evidence: str = "exp", loss_type: str = "log",
        kl: bool = False, init_std: float = 0.01) -> EDLHead:
    """EDL head (DEAR's "edlnokl" by default; `kl=True` adds the annealed KL term)."""
    return create_edl_head(in_features=in_features, num_classes=num_classes, evidence=evidence,
                           loss_type=loss_type, kl=kl, init_std=init_std)


@register_head("edl_avu")
def edl_avu(*, in_features: int, num_classes: int, evidence: str = "exp", loss_type: str = "log",
            kl: bool = False, disentangle: bool = False, init_std: float = 0.01,
            mse_avu: bool = False) -> EDLHead:
    """EDL + AvU calibration loss (`disentangle` picks docs/methods.md#edl_avu's variant; with
    `loss_type: mse`
    DEAR adds no AvU term unless `mse_avu`)."""
    return create_edl_head(in_features=in_features, num_classes=num_classes, evidence=evidence,
                           loss_type=loss_type, kl=kl, avu=True, disentangle=disentangle,
                           init_std=init_std, mse_avu=mse_avu)

"""The Recognizer: backbone -> global average pool -> dropout -> head (docs/architecture.md).

Module names follow MMAction2: `backbone.*`, `cls_head.fc_cls.*`, `cls_head.debias_head.*`, and TPN's
auxiliary head `aux_head.*` (MMAction2: `neck.aux_head.*`).

Pooling follows the MMAction2 0.x head of each backbone (DEAR's fork):
- 3D backbones (I3DHead, SlowFastHead, TPNHead): average-pool each map over (T, H, W), concatenate
  (SlowFast: fast first, the backbone returns its maps in that order), dropout, fc.
- TSM (`backbone.segmental`, TSMHead and DEAR's TSM BNN/RPL heads): pool each frame over (H, W),
  dropout EACH SEGMENT with its own mask, fc per segment, average the T segments' scores
  (AvgConsensus). All heads here are linear in their features for a fixed weight draw (fc_cls,
  reciprocal-point dot products, a BNN draw shared by all rows), so the head is applied once to
  the consensus feature mean_t dropout(x_t), which gives the same logits as per-segment fc then
  averaging, and is exactly DEAR's TSMRPLHead `feature` (aggregate of the dropped segments). The
  EDL/DEAR heads on TSM thus see the consensus of the segments' logits and apply the evidence to
  it, as DEAR's TSMHead + EvidenceLoss do. The one non-linear head form, RPL `metric: l2` (ARPL's,
  never run by DEAR), is computed on that consensus feature too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dear_ray.models.backbones import create_backbone
from dear_ray.models.heads import HEADS, Head, HeadInputs, create_aux_head, create_head, head_option_names
from dear_ray.models.heads.attentive import AttentivePooler, create_attentive_pooler

POOLINGS = ("avg", "attentive")  # model.pooling: global average pool, or the attentive pooler

AVERAGE_CLIPS = ("score", "prob")  # MMAction2 0.x test_cfg.average_clips, as DEAR's configs use it


class RecognizerOutput(NamedTuple):
    """logits (B, K); features (B, num_features): pooled backbone features before dropout."""

    logits: torch.Tensor
    features: torch.Tensor


class PredictOutput(NamedTuple):
    """View-averaged test outputs.

    Attributes:
        logits: (B, K) deterministic logits (dropout off, Bayesian weights at their means), averaged
            over views as `average_clips` says (`prob`: log of the mean per-view softmax).
        features: (B, F) pooled features averaged over views (each view's `cls_head.embed`: the
            pooled features themselves, psl's L2-normalised embedding).
        sample_logits: (S, B, K) each stochastic pass's view-averaged logits (same averaging), or
            None when S = 1.
    """

    logits: torch.Tensor
    features: torch.Tensor
    sample_logits: torch.Tensor | None


def pool_maps(maps: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Global-average-pool each (B, C_i, T, H, W) map and concatenate in the given order:
    (B, sum_i C_i)."""
    return torch.cat([m.mean(dim=(2, 3, 4)) for m in maps], dim=1)


def average_views(logits: torch.Tensor, num_views: int, how: str = "score") -> torch.Tensor:
    """Combine per-view logits into one row per video (MMAction2 0.x `BaseRecognizer.average_clip`).

    Args:
        logits: (B * V, K), the V views of a video consecutive.
        num_views: V.
        how: `score`: mean of the logits; `prob`: mean of the per-view softmax, returned as its log,
            log(mean_v softmax(z_v)) (computed as logsumexp_v log_softmax(z_v) - log V), so that
            softmax of the result is the mean probability and argmax / MSP / entropy / BALD on it
            are those of DEAR's `average_clips='prob'` scores.

    Returns:
        (B, K).
    """
    if how not in AVERAGE_CLIPS:
        raise ValueError(f"average_clips must be one of {AVERAGE_CLIPS}, got {how!r}")
    z = logits.reshape(-1, num_views, logits.shape[-1])
    if how == "score":
        return z.mean(dim=1)
    return torch.logsumexp(F.log_softmax(z.float(), dim=-1), dim=1) - math.log(num_views)


def shuffle_frames(clips: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> the same clips with their frames in one random order, the same for the
    whole batch (PSL datasets/utils/mixup.py `mixup_contrastive_shuffle`: one `random.shuffle` of
    the T indices a batch; it may be the identity, with probability 1/T!)."""
    return clips[:, :, torch.randperm(clips.shape[2], device=clips.device)]


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run the body under `torch.manual_seed(seed)` and restore the RNG state after; no-op for None."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class Recognizer(nn.Module):
    """A video classifier. Build it with `build_recognizer`.

    Args:
        backbone: a module following the backbone contract.
        cls_head: a `Head`.
        dropout: probability of the dropout between pooling and the head.
        aux_head: TPN's auxiliary head (`AuxHead`), or None.
        probe: an `AttentivePooler` that replaces the average pool (`model.pooling: attentive`):
            the features of every head are its output, one vector a clip (also on TSM), or None.
        freeze_backbone: train the head (and probe) only: the backbone's parameters get
            `requires_grad=False` (so no graph is recorded through it and optimisers built from
            trainable parameters skip it) and it stays in eval mode (BatchNorm running
            statistics, no dropout / stochastic depth) whatever `train()` says.
    """

    def __init__(self, backbone: nn.Module, cls_head: Head, *, dropout: float,
                 aux_head: nn.Module | None = None, probe: AttentivePooler | None = None,
                 freeze_backbone: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.cls_head = cls_head
        self.dropout = nn.Dropout(dropout)
        self.aux_head = aux_head
        self.probe = probe
        self.num_classes = cls_head.num_classes
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            backbone.requires_grad_(False)
            backbone.eval()

    def train(self, mode: bool = True) -> Recognizer:
        """As `nn.Module.train`; a frozen backbone stays in eval mode."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def _segments(self, maps: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The units dropout acts on: (B, T, F) per-segment features of a segmental backbone
        (TSM: each frame pooled over H, W), else (B, 1, F) pooled features (averaged, or the
        attentive probe's output)."""
        if self.probe is not None:
            return self.probe(maps).unsqueeze(1)
        if self.backbone.segmental:
            if len(maps) != 1:
                raise ValueError(f"a segmental backbone must return one map, got {len(maps)}")
            # contiguous (B, T, F): the element order of DEAR's (B*T, F) frame features
            return maps[0].mean(dim=(3, 4)).transpose(1, 2).contiguous()
        return pool_maps(maps).unsqueeze(1)

    def _dropped(self, units: torch.Tensor, *, active: bool) -> torch.Tensor:
        """(B, T, F) -> (B, F): dropout (an independent mask per segment) when `active`, then the
        segment consensus (mean over T)."""
        return F.dropout(units, self.dropout.p, training=active).mean(dim=1)

    def forward(self, clips: torch.Tensor) -> RecognizerOutput:
        """clips (B, 3, T, H, W) -> RecognizerOutput. In train mode the dropout is active."""
        units = self._segments(self.backbone.forward_features(clips).maps)
        features = units.mean(dim=1)
        return RecognizerOutput(self.cls_head(self._dropped(units, active=self.training)), features)

    def training_loss(
        self,
        clips: torch.Tensor,
        labels: torch.Tensor,
        *,
        anneal: float,
        iteration: int,
        scene: torch.Tensor | None = None,
        masked_clips: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of one batch.

        Args:
            clips: (B, 3, T, H, W).
            labels: (B,) class indices in [0, K).
            anneal: lambda_t of docs/methods.md#edl (`dear_ray.losses.annealing_coefficient`).
            iteration: global iteration (CED alternating parity).
            scene: (B, P) soft scene labels; required by `sdn`, ignored by other heads.
            masked_clips: (B, 3, T, H, W) human-masked clips; used by `sdn` in the `joint` mask
                step (the mask-confusion loss added to this step's loss); SDN's released
                `separate` step calls `mask_confusion_loss` on its own batch instead. Ignored by
                other heads.

        A head with `uses_shuffled_clip` (psl) also gets `HeadInputs.shuffled_features`: the
        backbone runs once on the clips and `shuffle_frames(clips)` together (2B clips).

        Returns:
            The scalar loss and stats (python floats): `loss` and the head's terms (`loss_cls`,
            `loss_avu`, `loss_ced`, `hsic_*`, `loss_scene`, `loss_mask`, ...), `loss_aux` for TPN,
            and `acc` (top-1 on this batch).
        """
        if labels.dim() != 1 or labels.shape[0] != clips.shape[0]:
            raise ValueError(f"training_loss: labels must be ({clips.shape[0]},), got {tuple(labels.shape)}")
        # checked on the host only: on a GPU `labels.min()` would wait for the device every step
        # (the training loop checks each batch's labels before moving them)
        lo, hi = (int(labels.min()), int(labels.max())) if labels.device.type == "cpu" \
            else (0, 0)
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"training_loss: labels must be in [0, {self.num_classes}), got values "
                             f"in [{lo}, {hi}]")
        b, shuffle = clips.shape[0], self.cls_head.uses_shuffled_clip
        # psl: one backbone pass over the clips and their shuffled copies (BatchNorm sees both, as
        # PSL's batch of 2 clips a video); rows [b:] are the shuffled clips
        out = self.backbone.forward_features(torch.cat([clips, shuffle_frames(clips)]) if shuffle
                                             else clips)
        features = self._dropped(self._segments(out.maps), active=self.training)
        shuffled_features = features[b:] if shuffle else None
        debias_map, aux_map = (m[:b] if shuffle and m is not None else m
                               for m in (out.debias_map, out.aux_map))
        masked_features = None
        if masked_clips is not None and self.cls_head.uses_masked_features:
            if masked_clips.shape != clips.shape:
                raise ValueError(f"training_loss: masked_clips must have the clips' shape "
                                 f"{tuple(clips.shape)}, got {tuple(masked_clips.shape)}")
            masked = self._segments(self.backbone.forward_features(masked_clips).maps)
            masked_features = self._dropped(masked, active=self.training)
        inputs = HeadInputs(
            features=features[:b], labels=labels, anneal=float(anneal),
            iteration=int(iteration), debias_map=debias_map if self.cls_head.uses_debias_map else None,
            scene=scene if self.cls_head.uses_scene else None, masked_features=masked_features,
            shuffled_features=shuffled_features)
        loss, stats = self.cls_head.loss(inputs)
        if self.aux_head is not None:
            loss_aux, aux_stats = self.aux_head.loss(aux_map, labels)
            loss = loss + loss_aux
            stats.update(aux_stats)
        stats["loss"] = float(loss.detach())
        return loss, stats

    def mask_confusion_loss(self, masked_clips: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """SDN's mask-confusion term alone, for its separate second SGD step on an independent
        masked batch (vt-vl-lab/SDN libs/train_epoch.py; docs/methods.md#sdn).

        The masked clips go through the backbone and the recognizer's dropout as in training, then
        `fc_cls`; the loss is `mask_weight * (-H(softmax(z_masked)))`, averaged over the batch. In
        train mode the scene MLP's BatchNorm statistics also move on the batch, unless
        `head_options.mask_step_scene_bn` is false (SDN's whole-model forward; heads/sdn.py).

        Args:
            masked_clips: (B, 3, T, H, W) human-masked clips.

        Returns:
            The scalar loss and stats `loss` (weighted), `loss_mask` (unweighted -H, as
            `training_loss` reports it) and `mask_entropy` (mean H, nats).

        Raises:
            ValueError: the head has no mask-confusion term (only `sdn` has one), or bad clips.
        """
        if not self.cls_head.uses_masked_features:
            raise ValueError(f"mask_confusion_loss: head {type(self.cls_head).__name__} has no "
                             "mask-confusion term (only the sdn head has)")
        if masked_clips.dim() != 5:
            raise ValueError(f"mask_confusion_loss: expected masked_clips (B, 3, T, H, W), got "
                             f"{tuple(masked_clips.shape)}")
        units = self._segments(self.backbone.forward_features(masked_clips).maps)
        loss, stats = self.cls_head.mask_loss(self._dropped(units, active=self.training),
                                              separate_step=True)
        stats["loss"] = float(loss.detach())
        return loss, stats

    @torch.no_grad()
    def predict(self, clips: torch.Tensor, *, stochastic_passes: int = 1,
                average_clips: str = "score", pass_seeds: Sequence[int] | None = None) -> PredictOutput:
        """Test-time outputs, combined over views as MMAction2 0.x's `average_clip` does.

        The backbone runs once per view in eval mode (BatchNorm uses running statistics); the
        stochastic passes repeat only the dropout and the head, which is where all randomness lives
        (as DEAR's experiments/ood_detection.py: each pass is one forward of all views, combined
        over views, and BALD is computed across the passes' combined scores):
        - MC dropout (heads with `mc_dropout`, e.g. softmax): the recognizer's dropout on, a fresh
          mask per pass (per segment for TSM, per view);
        - bnn: no dropout; one pass = `cls_head(f, sample=True)` (one weight draw shared by all
          views and videos, averaged with the posterior-mean logits as DEAR does).
        The module's train/eval mode is restored afterwards.

        Args:
            clips: (B, V, 3, T, H, W), V views (clips x crops) per video.
            stochastic_passes: S >= 1; S > 1 also returns each pass's logits.
            average_clips: `score` (mean of the per-view logits; DEAR's EDL/DEAR inference configs)
                or `prob` (mean of the per-view softmax, returned as its log; DEAR's SoftMax,
                MC-dropout, BNN and RPL configs), applied to the deterministic logits and to every
                pass alike.
            pass_seeds: None (the passes continue the global RNG), or one seed a pass: pass n then
                runs under `torch.manual_seed(pass_seeds[n])` inside `torch.random.fork_rng` (the
                caller's RNG state is untouched). DEAR's scripts reseed every pass of every batch
                with `update_seed(n * 1234)`, so pass n draws the same weights (bnn) and the same
                dropout masks for every batch; `[n * 1234 for n in range(S)]` reproduces that.
        """
        if clips.dim() != 6:
            raise ValueError(f"predict: expected clips (B, V, C, T, H, W), got {tuple(clips.shape)}")
        if not isinstance(stochastic_passes, int) or stochastic_passes < 1:
            raise ValueError(f"predict: stochastic_passes must be an integer >= 1, got {stochastic_passes!r}")
        if average_clips not in AVERAGE_CLIPS:
            raise ValueError(f"predict: average_clips must be one of {AVERAGE_CLIPS}, got {average_clips!r}")
        if pass_seeds is not None and len(pass_seeds) != stochastic_passes:
            raise ValueError(f"predict: pass_seeds must have one seed per pass "
                             f"(stochastic_passes={stochastic_passes}), got {len(pass_seeds)}")
        b, v = clips.shape[:2]
        was_training = self.training
        self.eval()
        try:
            units = self._segments(self.backbone.forward_features(clips.flatten(0, 1)).maps)
            features = units.mean(dim=1)
            logits = average_views(self.cls_head(features), v, average_clips)
            stored = self.cls_head.embed(features)  # in eval mode (psl: BatchNorm running stats)
            samples = None
            if stochastic_passes > 1:
                drop = self.cls_head.mc_dropout
                samples = []
                for n in range(stochastic_passes):
                    with _seeded(None if pass_seeds is None else int(pass_seeds[n]), clips.device):
                        z = self.cls_head(self._dropped(units, active=drop), sample=True)
                    samples.append(average_views(z, v, average_clips))
                samples = torch.stack(samples)
        finally:
            self.train(was_training)
        return PredictOutput(logits, stored.view(b, v, -1).mean(dim=1), samples)

    def classifier_parameter_names(self) -> set[str]:
        """Full names of the parameters of the layers that output class scores (`cls_head.fc_cls.*`,
        the CED branches' fcs, `aux_head.fc.*`): the classifier lr multiplier applies to them."""
        names = {f"cls_head.{n}" for n in self.cls_head.classifier_parameter_names()}
        if self.aux_head is not None:
            names |= {"aux_head.fc.weight", "aux_head.fc.bias"}
        return names


def build_recognizer(
    *,
    backbone: str,
    head: str,
    num_classes: int,
    backbone_options: dict[str, Any] | None = None,
    head_options: dict[str, Any] | None = None,
    dropout: float = 0.5,
    pooling: str = "avg",
    pooling_options: dict[str, Any] | None = None,
    freeze_backbone: bool = False,
) -> Recognizer:
    """Build a recognizer from registered names.

    The head builder receives `in_features = backbone.num_features`, `num_classes` and, when it
    declares it (`dear`, `dear_alt`), `debias_channels = backbone.debias_channels`, plus
    `head_options`. A head that takes `init_std` (its classifier's normal-init std: fc_cls, or RPL's
    reciprocal points) gets `backbone.head_init_std` unless `head_options` sets it: 0.001 on TSM
    (MMAction2's TSMHead and DEAR's TSM configs, also their RPL points), 0.01 otherwise. TPN's
    auxiliary head is added when `backbone.aux_channels > 0`.

    Args:
        backbone: one of `list_backbones()`.
        head: one of `list_heads()`.
        num_classes: K >= 1.
        backbone_options: keyword options of the backbone builder.
        head_options: keyword options of the head builder (not `in_features`, `num_classes`,
            `debias_channels`: those come from the backbone).
        dropout: between pooling and the head, in [0, 1).
        pooling: `avg` (global average pool, MMAction2's heads) or `attentive` (V-JEPA 2's
            attentive pooler, `create_attentive_pooler(width=num_features, **pooling_options)`).
        pooling_options: keyword options of the attentive pooler (`depth`, `num_heads`,
            `mlp_ratio`).
        freeze_backbone: train the head (and the probe) only (see `Recognizer`).

    Raises:
        UnknownNameError: an unknown backbone or head name (the message lists the known ones).
        ValueError: a bad option, or a head whose needs the backbone cannot meet (a CED head on a
            backbone without a debias map).
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"build_recognizer: num_classes must be a positive integer, got {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"build_recognizer: dropout must be in [0, 1), got {dropout}")
    if pooling not in POOLINGS:
        raise ValueError(f"build_recognizer: pooling must be one of {POOLINGS}, got {pooling!r}")
    if pooling_options and pooling != "attentive":
        raise ValueError(f"build_recognizer: pooling_options {pooling_options} need pooling "
                         "'attentive'")
    HEADS.get(head)  # an unknown head fails before the (possibly large) backbone is built
    head_options = dict(head_options or {})
    supplied = {"in_features", "num_classes", "debias_channels"} & set(head_options)
    if supplied:
        raise ValueError(f"build_recognizer: head_options may not set {sorted(supplied)}; they come "
                         f"from the backbone and num_classes")
    net = create_backbone(backbone, **(backbone_options or {}))
    context = {"in_features": net.num_features, "num_classes": num_classes}
    if "init_std" in head_option_names(head) and "init_std" not in head_options:
        context["init_std"] = net.head_init_std
    if "debias_channels" in head_option_names(head):
        if net.debias_channels < 1:
            raise ValueError(f"head {head!r} needs a backbone with a debias map for its CED branch; "
                             f"backbone {backbone!r} has debias_channels={net.debias_channels}")
        context["debias_channels"] = net.debias_channels
    cls_head = create_head(head, **context, **head_options)
    aux_head = None
    if net.aux_channels > 0:
        aux_head = create_aux_head(in_channels=net.aux_channels, num_classes=num_classes)
    probe = (create_attentive_pooler(width=net.num_features, **(pooling_options or {}))
             if pooling == "attentive" else None)
    return Recognizer(net, cls_head, dropout=dropout, aux_head=aux_head, probe=probe,
                      freeze_backbone=freeze_backbone)


__all__ = ["AVERAGE_CLIPS", "POOLINGS", "PredictOutput", "Recognizer", "RecognizerOutput", "average_views",
           "build_recognizer", "pool_maps", "shuffle_frames"]

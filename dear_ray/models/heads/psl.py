"""The PSL head: prototypical similarity learning with temporally shuffled negatives (Cen et al.,
CVPR 2023; github:Jun-CEN/PSL at 6460af2). Loss: `dear_ray.losses.psl_loss`.

Released model (configs/projects/openset/tsm/tsm_psl*.yaml, `MODEL.NAME: PrototypeModel`,
`VIDEO.HEAD.NAME: VideoMLPHead`):
- embedding: the pooled backbone feature through PSL's `MLP` (models/module_zoo/heads/
  contrastive_head.py:12-66): Linear(F, 1024) -> BatchNorm (`MID_BN: true`; BatchNorm3d on
  (N, C, 1, 1, 1), i.e. BatchNorm1d, momentum 0.1, eps 1e-5) -> ReLU -> Linear(1024, 128)
  (`FINAL_BN: false`, no final ReLU) -> L2 normalisation. The K400 fine-tuning config
  (tsm_psl_ft.yaml, `OPTIMIZER.FREEZE: true`) keeps every BatchNorm2d/3d of a TSM model but the
  first in eval mode (models/base/models.py:73-81), the MLP's too: its running statistics stay at
  their init (mean 0, var 1), so it acts as a learnable per-channel affine map (`mid_bn:
  frozen`). Linear layers keep PyTorch's default init (PSL's `_init_convnet_weights` runs on the
  backbone only). `DROPOUT_RATE: 0`: the sweeps set `model.dropout: 0`.
- prototypes: (K, 128) ~ N(0.005, 0.005^2) (models/base/models.py:322), learnable
  (`LEARNABLE_PROTOTYPE: true`; models/utils/optimizer.py:101-102 gives them weight decay 0),
  L2-normalised at every use.
- logits: cos(z, p_k) / 0.2, so softmax(logits) is PSL's `pred` (models/base/models.py:343-346).
- training: every clip of the batch and its temporally shuffled copy go through the backbone
  and the MLP together (one BatchNorm batch, as PSL's two clips a video); the shuffled clips'
  embeddings enter the loss as each clip's own negative (`Recognizer.training_loss` builds them).

What differs from the released run: PSL's second clip is a separately sampled and augmented clip
of the same video (NUM_CLIPS_PER_VIDEO 2, datasets/base/base_dataset.py) which it then shuffles
(datasets/utils/mixup.py:72-92); here the shuffled clip is the training clip itself with its
frames permuted (the loader gives one clip a video).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dear_ray.losses.psl import psl_logits, psl_loss
from dear_ray.models.heads.base import Head, HeadInputs, check_positive, register_head

MID_BN = ("batch", "frozen", "none")


class PSLHead(Head):
    """Prototype logits on an L2-normalised MLP embedding; PSL's loss with shuffled negatives.

    Args:
        mlp: (B, F) -> (B, D) projection (normalised by `embed`).
        prototypes: (K, D) parameter.
        temperature: tau of the logits and the loss.
        theta: target similarity to the own prototype and same-class clips (PSL `THRE_2`).
        theta_shuffled: target similarity to the own shuffled clip (PSL `THRE_1`).
        shuffle: use the shuffled negative (`uses_shuffled_clip`); False trains without it.
        frozen_bn: the MLP's BatchNorm stays in eval mode whatever `train()` says.
    """

    mc_dropout = False  # PSL has no dropout; the sweeps set model.dropout 0 anyway

    def __init__(self, mlp: nn.Module, prototypes: nn.Parameter, *, temperature: float, theta: float,
                 theta_shuffled: float, shuffle: bool, frozen_bn: bool = False) -> None:
        super().__init__(prototypes.shape[0])
        self.mlp = mlp
        self.prototypes = prototypes
        self.temperature = temperature
        self.theta = theta
        self.theta_shuffled = theta_shuffled
        self.uses_shuffled_clip = shuffle
        self.frozen_bn = frozen_bn
        self.train(self.training)

    def train(self, mode: bool = True) -> PSLHead:
        super().train(mode)
        if self.frozen_bn:
            for m in self.mlp.modules():
                if isinstance(m, nn.BatchNorm1d):
                    m.eval()
        return self

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F) pooled features -> (B, D) L2-normalised embeddings (PSL's `logits_nm`)."""
        return F.normalize(self.mlp(features), p=2, dim=1)

    def forward(self, features: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        return psl_logits(self.embed(features), self.prototypes, self.temperature)

    def loss(self, inputs: HeadInputs) -> tuple[torch.Tensor, dict[str, float]]:
        b, shuffled = inputs.features.shape[0], None
        if self.uses_shuffled_clip:
            if inputs.shuffled_features is None:
                raise ValueError("PSLHead.loss: shuffle=True needs HeadInputs.shuffled_features "
                                 "(Recognizer.training_loss passes them)")
            both = self.embed(torch.cat([inputs.features, inputs.shuffled_features]))
            z, shuffled = both[:b], both[b:]
        else:
            z = self.embed(inputs.features)
        return psl_loss(z, self.prototypes, inputs.labels, shuffled=shuffled,
                        temperature=self.temperature, theta=self.theta,
                        theta_shuffled=self.theta_shuffled)

    def classifier_parameter_names(self) -> set[str]:
        return {"prototypes"}


@register_head("psl")
def create_psl_head(
    *,
    in_features: int,
    num_classes: int,
    embed_dim: int = 128,
    hidden_dim: int = 1024,
    mid_bn: str = "batch",
    temperature: float = 0.2,
    theta: float = 0.7,
    theta_shuffled: float = 0.7,
    shuffle: bool = True,
    prototype_mean: float = 0.005,
    prototype_std: float = 0.005,
) -> PSLHead:
    """A PSL head with the released defaults (module docstring).

    Args:
        in_features: F, the pooled feature width.
        num_classes: K.
        embed_dim: D (`VIDEO.HEAD.MLP.OUT_DIM`, 128).
        hidden_dim: the MLP's middle width (`MID_DIM`, 1024).
        mid_bn: the BatchNorm after the first Linear (`MID_BN: true`): `batch` (trains with batch
            statistics; PSL's from-scratch config), `frozen` (always in eval mode with its running
            statistics at mean 0, var 1; PSL's K400 fine-tuning config on TSM, `OPTIMIZER.FREEZE`)
            or `none` (no BatchNorm).
        temperature: tau > 0 (`PRETRAIN.CONTRASTIVE.TEMPERATURE`, 0.2).
        theta: `THRE_2` (0.7), in [-1, 1].
        theta_shuffled: `THRE_1` (0.7), in [-1, 1].
        shuffle: train with the temporally shuffled negative (`SHUFFLE: true`, `SHUFFLE_P: 1`).
        prototype_mean: mean of the prototypes' normal init (0.005).
        prototype_std: std of the prototypes' normal init (0.005), > 0.
    """
    check_positive("create_psl_head", in_features=in_features, num_classes=num_classes,
                   embed_dim=embed_dim, hidden_dim=hidden_dim)
    if temperature <= 0:
        raise ValueError(f"create_psl_head: temperature must be > 0, got {temperature}")
    for key, value in (("theta", theta), ("theta_shuffled", theta_shuffled)):
        if not -1.0 <= value <= 1.0:
            raise ValueError(f"create_psl_head: {key} is a target cosine similarity and must be in "
                             f"[-1, 1], got {value}")
    if mid_bn not in MID_BN:
        raise ValueError(f"create_psl_head: mid_bn must be one of {MID_BN}, got {mid_bn!r}")
    if prototype_std <= 0:
        raise ValueError(f"create_psl_head: prototype_std must be > 0, got {prototype_std}")
    layers: list[nn.Module] = [nn.Linear(in_features, hidden_dim)]
    if mid_bn != "none":
        layers.append(nn.BatchNorm1d(hidden_dim, eps=1e-5, momentum=0.1))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, embed_dim)]
    prototypes = nn.Parameter(prototype_mean + prototype_std * torch.randn(num_classes, embed_dim))
    return PSLHead(nn.Sequential(*layers), prototypes, temperature=temperature, theta=theta,
                   theta_shuffled=theta_shuffled, shuffle=shuffle, frozen_bn=mid_bn == "frozen")

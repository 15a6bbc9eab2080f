"""Prototypical similarity learning (PSL; Cen et al., CVPR 2023, github:Jun-CEN/PSL at 6460af2).

The released configuration (configs/projects/openset/tsm/tsm_psl*.yaml: `LOSS: PROTOTYPE`,
`THRE: true`, `NUM_CLIPS_PER_VIDEO: 2`, `SHUFFLE: true`, `SHUFFLE_P: 1`) trains with
`nce_prototype_thre_double_4` (models/utils/contrastive_losses.py:1611-1679). With z_i the
L2-normalised embedding of video i's clip, z'_i that of its temporally shuffled clip, p_k the
L2-normalised prototypes, tau = 0.2 (`TEMPERATURE`), theta = 0.7 (`THRE_2`) and theta' = 0.7
(`THRE_1`), every original clip i (the even rows there; the shuffled rows' own terms are dropped,
line 1672) contributes

    L_i = -a_i + log( exp(a_i) + sum_{k != y_i} exp(z_i.p_k / tau)       (prototypes)
                      + sum_{j != i} exp(s_ij / tau)                     (other originals)
                      + exp(|z_i.z'_i - theta'| / tau) )                 (own shuffled clip)

    a_i = (1 - |z_i.p_{y_i} - theta|) / tau      (line 1651: the positive peaks at theta, not 1)
    s_ij = |z_i.z_j - theta| if y_j = y_i else z_i.z_j     (line 1641: same class -> theta)

and L = mean_i L_i. The only positive is the own prototype (`mask_all`, line 1656); the other
originals of the batch and the own shuffled clip are negatives only (`logits_mask_labels_2`, lines
1640-1645); other videos' shuffled clips take no part. The released code subtracts the row maximum
(including the masked self-similarity) before the exponentials, which cancels; here logsumexp.

Differences to the released run, not behaviour of this function: PSL all-gathers the embeddings of
every GPU before the loss (models/utils/losses.py `Loss_PROTOTYPE`), so its "other originals" span
the global batch (4 x 32 videos); here they span the batch the function is given.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dear_ray.losses._checks import accuracy, check_scores_labels


def psl_logits(embeddings: torch.Tensor, prototypes: torch.Tensor,
               temperature: float = 0.2) -> torch.Tensor:
    """Cosine similarity to each prototype over the temperature: (B, D), (K, D) -> (B, K).

    `softmax` of the result is PSL's `pred` (models/base/models.py `PrototypeModel.forward`).
    `embeddings` are used as given (PSL's MLP head already L2-normalises them); the prototypes are
    L2-normalised here, as PSL does at every use.
    """
    if embeddings.dim() != 2 or prototypes.dim() != 2 or embeddings.shape[1] != prototypes.shape[1]:
        raise ValueError(f"psl_logits: expected embeddings (B, D) and prototypes (K, D), got "
                         f"{tuple(embeddings.shape)} and {tuple(prototypes.shape)}")
    if temperature <= 0:
        raise ValueError(f"psl_logits: temperature must be > 0, got {temperature}")
    return embeddings @ F.normalize(prototypes, p=2, dim=1).t() / temperature


def psl_loss(
    embeddings: torch.Tensor,
    prototypes: torch.Tensor,
    labels: torch.Tensor,
    *,
    shuffled: torch.Tensor | None = None,
    temperature: float = 0.2,
    theta: float = 0.7,
    theta_shuffled: float = 0.7,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PSL's loss (module docstring), mean over the B original clips.

    Args:
        embeddings: (B, D) L2-normalised embeddings of the original clips.
        prototypes: (K, D) learnable prototypes (normalised inside).
        labels: (B,) class indices in [0, K).
        shuffled: (B, D) L2-normalised embeddings of the temporally shuffled clips (row i: video
            i's), or None: then the shuffled term is absent, as in the released loss for a
            video whose second clip was not shuffled (`SHUFFLE_P` < 1).
        temperature: tau > 0 (`PRETRAIN.CONTRASTIVE.TEMPERATURE`, 0.2).
        theta: target similarity of a clip to its prototype and to same-class clips (`THRE_2`, 0.7).
        theta_shuffled: target similarity of a clip to its shuffled clip (`THRE_1`, 0.7).

    Returns:
        The scalar loss and stats `loss_psl`, `acc` (argmax of `psl_logits`), `sim_prototype`
        (mean cosine to the own prototype) and, with `shuffled`, `sim_shuffled` (mean cosine of a
        clip to its shuffled clip).
    """
    logits = psl_logits(embeddings, prototypes, temperature)
    check_scores_labels("psl_loss", logits, labels)
    b = embeddings.shape[0]
    cos_proto = logits * temperature
    own = F.one_hot(labels, logits.shape[1]).bool()
    positive = (1.0 - (cos_proto[own] - theta).abs()) / temperature  # (B,)
    proto_terms = torch.where(own, positive.unsqueeze(1), logits)
    cos_samples = embeddings @ embeddings.t()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    sample_terms = torch.where(same, (cos_samples - theta).abs(), cos_samples) / temperature
    eye = torch.eye(b, dtype=torch.bool, device=embeddings.device)
    sample_terms = sample_terms.masked_fill(eye, float("-inf"))
    terms = [proto_terms, sample_terms]
    stats: dict[str, float] = {}
    if shuffled is not None:
        if shuffled.shape != embeddings.shape:
            raise ValueError(f"psl_loss: shuffled must have the embeddings' shape "
                             f"{tuple(embeddings.shape)}, got {tuple(shuffled.shape)}")
        cos_shuffled = (embeddings * shuffled).sum(dim=1)
        terms.append(((cos_shuffled - theta_shuffled).abs() / temperature).unsqueeze(1))
        stats["sim_shuffled"] = float(cos_shuffled.detach().mean())
    loss = (torch.logsumexp(torch.cat(terms, dim=1), dim=1) - positive).mean()
    return loss, {"loss_psl": float(loss.detach()), "acc": accuracy(logits, labels),
                  "sim_prototype": float(cos_proto[own].detach().mean()), **stats}

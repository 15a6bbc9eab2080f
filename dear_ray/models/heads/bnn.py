"""The BNN baseline: a Bayes-by-backprop last layer (SPEC 1.6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dear_ray.losses.bnn import PRIOR_PI, PRIOR_SIGMA1, PRIOR_SIGMA2, bnn_kl, bnn_loss
from dear_ray.models.heads.base import Head, HeadInputs, check_positive, register_head


class BayesianLinear(nn.Module):
    """A linear layer with a factorised Gaussian posterior over its weight and bias.

    sigma = softplus(rho). Init as DEAR: mu ~ U(-0.2, 0.2), rho ~ U(-5, -4).

    Args:
        in_features: F.
        out_features: K.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-0.2, 0.2))
        self.weight_rho = nn.Parameter(torch.empty(out_features, in_features).uniform_(-5.0, -4.0))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-0.2, 0.2))
        self.bias_rho = nn.Parameter(torch.empty(out_features).uniform_(-5.0, -4.0))

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One reparameterised draw (weight (K, F), bias (K,)), differentiable w.r.t. mu and rho."""
        weight = self.weight_mu + F.softplus(self.weight_rho) * torch.randn_like(self.weight_mu)
        bias = self.bias_mu + F.softplus(self.bias_rho) * torch.randn_like(self.bias_mu)
        return weight, bias

    def forward(self, features: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """(B, F) -> (B, K) with the posterior means, or one weight draw when `sample`."""
        if sample:
            return F.linear(features, *self.sample())
        return F.linear(features, self.weight_mu, self.bias_mu)


class BNNHead(Head):
    """Bayesian last layer. `forward` uses the posterior mean (one draw with `sample=True`); the
    loss averages the logits of `num_train_samples` draws and adds `kl_weight` times the mean
    one-sample KL estimate of those draws (SPEC 1.6).

    Args:
        fc_cls: the Bayesian layer.
        num_train_samples: weight draws per training step (2).
        kl_weight: factor of the complexity cost (1e-6).
        prior_pi, prior_sigma1, prior_sigma2: the scale-mixture prior.
    """

    def __init__(self, fc_cls: BayesianLinear, *, num_train_samples: int, kl_weight: float,
                 prior_pi: float, prior_sigma1: float, prior_sigma2: float) -> None:
        super().__init__(fc_cls.out_features)
        self.fc_cls = fc_cls
        self.num_train_samples = num_train_samples
        self.kl_weight = kl_weight
        self.prior = {"pi": prior_pi, "sigma1": prior_sigma1, "sigma2": prior_sigma2}

    def forward(self, features: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        return self.fc_cls(features, sample=sample)

    def loss(self, inputs: HeadInputs) -> tuple[torch.Tensor, dict[str, float]]:
        layer = self.fc_cls
        logits, kls = [], []
        for _ in range(self.num_train_samples):
            weight, bias = layer.sample()
            logits.append(F.linear(inputs.features, weight, bias))
            kls.append(bnn_kl([weight, bias], [layer.weight_mu, layer.bias_mu],
                              [layer.weight_rho, layer.bias_rho], **self.prior))
        mean_logits = torch.stack(logits).mean(dim=0)
        return bnn_loss(mean_logits, inputs.labels, torch.stack(kls).mean(), kl_weight=self.kl_weight)

    def classifier_parameter_names(self) -> set[str]:
        return {f"fc_cls.{n}" for n in ("weight_mu", "weight_rho", "bias_mu", "bias_rho")}


@register_head("bnn")
def create_bnn_head(
    *,
    in_features: int,
    num_classes: int,
    num_train_samples: int = 2,
    kl_weight: float = 1e-6,
    prior_pi: float = PRIOR_PI,
    prior_sigma1: float = PRIOR_SIGMA1,
    prior_sigma2: float = PRIOR_SIGMA2,
) -> BNNHead:
    """A Bayes-by-backprop head (defaults are DEAR's: 2 samples, 1e-6, 0.5 N(0,1) + 0.5 N(0,e^-12)).

    Args:
        in_features: F.
        num_classes: K.
        num_train_samples: weight draws averaged per training step.
        kl_weight: factor of log q - log p.
        prior_pi: mixture weight of the wide prior component.
        prior_sigma1: std of the wide component.
        prior_sigma2: std of the narrow component.
    """
    check_positive("create_bnn_head", in_features=in_features, num_classes=num_classes,
                   num_train_samples=num_train_samples)
    if not 0.0 < prior_pi < 1.0 or prior_sigma1 <= 0 or prior_sigma2 <= 0 or kl_weight < 0:
        raise ValueError(f"create_bnn_head: need 0 < prior_pi < 1, sigmas > 0, kl_weight >= 0; got "
                         f"prior_pi={prior_pi}, prior_sigma1={prior_sigma1}, "
                         f"prior_sigma2={prior_sigma2}, kl_weight={kl_weight}")
    return BNNHead(BayesianLinear(in_features, num_classes), num_train_samples=num_train_samples,
                   kl_weight=kl_weight, prior_pi=prior_pi, prior_sigma1=prior_sigma1,
                   prior_sigma2=prior_sigma2)

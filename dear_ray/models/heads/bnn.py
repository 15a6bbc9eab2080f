"""The BNN baseline: a Bayes-by-backprop last layer (docs/methods.md#bnn).

Test passes as DEAR computes them (Cogito2012/DEAR b752998): `experiments/ood_detection.py` and
`get_threshold.py` set `test_cfg.npass = 1` for BNN configs and run 10 seeded forward passes; in each,
`BayesianPredictor.forward(npass=1, testing=True)` (heads/bnn.py) stacks `npass` sampled-weight
logits and ONE posterior-mean logit and the `*BNNHead` returns their mean (`pred_mean`), which the
recognizer then averages over views (`average_clips='prob'`). So one pass is
(z(w_sampled) + z(mu)) / 2 per view, with no dropout (the BNN configs have `dropout_ratio=0`, and the
scripts switch dropout on only for "dnn" configs).
"""

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
    """Bayesian last layer. `forward` uses the posterior mean; `forward(sample=True)` is one test
    pass (see the module docstring). The loss averages the logits of `num_train_samples` draws and
    adds `kl_weight` times the mean one-sample KL estimate of those draws (Blundell et al. 2015;
    docs/methods.md#bnn).

    Args:
        fc_cls: the Bayesian layer.
        num_train_samples: weight draws per training step (2).
        kl_weight: factor of the complexity cost (1e-6).
        prior_pi, prior_sigma1, prior_sigma2: the scale-mixture prior.
        test_samples: weight draws in one test pass (DEAR's scripts: `test_cfg.npass = 1`).
        test_mean_weight: a test pass averages its draws' logits together with the posterior-mean
            logits, (sum of draws + z(mu)) / (test_samples + 1), as DEAR's
            `BayesianPredictor(testing=True)` (the released behaviour); False: the mean of the
            draws alone (the textbook Bayes-by-backprop pass).
    """

    mc_dropout = False

    def __init__(self, fc_cls: BayesianLinear, *, num_train_samples: int, kl_weight: float,
                 prior_pi: float, prior_sigma1: float, prior_sigma2: float, test_samples: int = 1,
                 test_mean_weight: bool = True) -> None:
        super().__init__(fc_cls.out_features)
        self.fc_cls = fc_cls
        self.num_train_samples = num_train_samples
        self.kl_weight = kl_weight
        self.prior = {"pi": prior_pi, "sigma1": prior_sigma1, "sigma2": prior_sigma2}
        self.test_samples = test_samples
        self.test_mean_weight = test_mean_weight

    def forward(self, features: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """(B, F) -> (B, K): posterior-mean logits, or with `sample` one test pass: the mean of
        `test_samples` draws' logits (and of the posterior-mean logits when `test_mean_weight`).
        One draw is shared by all B rows (DEAR draws once per forward call)."""
        if not sample:
            return self.fc_cls(features)
        logits = [self.fc_cls(features, sample=True) for _ in range(self.test_samples)]
        if self.test_mean_weight:
            logits.append(self.fc_cls(features))
        return torch.stack(logits).mean(dim=0)

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
    test_samples: int = 1,
    test_mean_weight: bool = True,
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
        test_samples: weight draws in one stochastic test pass (DEAR: 1).
        test_mean_weight: average each test pass with the posterior-mean logits (DEAR: True).
    """
    check_positive("create_bnn_head", in_features=in_features, num_classes=num_classes,
                   num_train_samples=num_train_samples, test_samples=test_samples)
    if not 0.0 < prior_pi < 1.0 or prior_sigma1 <= 0 or prior_sigma2 <= 0 or kl_weight < 0:
        raise ValueError(f"create_bnn_head: need 0 < prior_pi < 1, sigmas > 0, kl_weight >= 0; got "
                         f"prior_pi={prior_pi}, prior_sigma1={prior_sigma1}, "
                         f"prior_sigma2={prior_sigma2}, kl_weight={kl_weight}")
    return BNNHead(BayesianLinear(in_features, num_classes), num_train_samples=num_train_samples,
                   kl_weight=kl_weight, prior_pi=prior_pi, prior_sigma1=prior_sigma1,
                   prior_sigma2=prior_sigma2, test_samples=test_samples,
                   test_mean_weight=bool(test_mean_weight))

"""Pure loss functions on tensors (docs/methods.md). Each loss returns `(loss, stats)`: the tensor to
optimise and a dict of python floats for logging; estimators (`hsic_*`) and `grad_reverse` return
tensors."""

from dear_ray.losses.avu import avu_loss
from dear_ray.losses.bnn import bnn_kl, bnn_loss, gaussian_log_prob, scale_mixture_log_prob
from dear_ray.losses.ced import ced_alternating_loss, ced_joint_loss
from dear_ray.losses.edl import (
    dirichlet_alpha,
    dirichlet_kl_to_uniform,
    edl_loss,
    evidence,
    vacuity,
)
from dear_ray.losses.grl import GradReverse, grad_reverse
from dear_ray.losses.hsic import hsic_biased, hsic_unbiased, hsic_unbiased_from_kernels, rbf_kernel
from dear_ray.losses.psl import psl_logits, psl_loss
from dear_ray.losses.rpl import rpl_logits, rpl_loss
from dear_ray.losses.schedule import annealing_coefficient
from dear_ray.losses.sdn import sdn_mask_loss, sdn_scene_loss

__all__ = [
    "GradReverse", "annealing_coefficient", "avu_loss", "bnn_kl", "bnn_loss", "ced_alternating_loss",
    "ced_joint_loss", "dirichlet_alpha", "dirichlet_kl_to_uniform", "edl_loss", "evidence",
    "gaussian_log_prob", "grad_reverse", "hsic_biased", "hsic_unbiased", "hsic_unbiased_from_kernels",
    "psl_logits", "psl_loss", "rbf_kernel", "rpl_logits", "rpl_loss", "scale_mixture_log_prob",
    "sdn_mask_loss", "sdn_scene_loss", "vacuity",
]

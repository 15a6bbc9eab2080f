"""Classification heads, one method a file, behind one flat registry (`list_heads`, `create_head`).

Names: `softmax`, `bnn`, `rpl`, `edl`, `edl_avu`, `dear`, `dear_alt`, `sdn` (docs/methods.md) and `psl`
(PSL, CVPR 2023). MC dropout and OpenMax are evaluation methods on a `softmax` model, not heads.
"""

from dear_ray.models.heads import bnn, debias, edl, psl, rpl, sdn, softmax  # noqa: F401  (registers)
from dear_ray.models.heads.base import (
    HEADS,
    Head,
    HeadInputs,
    create_head,
    head_option_names,
    list_heads,
    register_head,
)
from dear_ray.models.heads.bnn import BayesianLinear, BNNHead, create_bnn_head
from dear_ray.models.heads.debias import CEDOutput, DebiasHead, create_debias_head
from dear_ray.models.heads.edl import EDLHead, create_edl_head
from dear_ray.models.heads.psl import PSLHead, create_psl_head
from dear_ray.models.heads.rpl import RPLHead, create_rpl_head
from dear_ray.models.heads.sdn import SDNHead, create_sdn_head
from dear_ray.models.heads.softmax import SoftmaxHead, create_softmax_head
from dear_ray.models.heads.tpn_aux import AuxHead, create_aux_head

__all__ = [
    "HEADS", "AuxHead", "BNNHead", "BayesianLinear", "CEDOutput", "DebiasHead", "EDLHead", "Head",
    "HeadInputs", "PSLHead", "RPLHead", "SDNHead", "SoftmaxHead", "create_aux_head", "create_bnn_head",
    "create_debias_head", "create_edl_head", "create_head", "create_psl_head", "create_rpl_head",
    "create_sdn_head", "create_softmax_head", "head_option_names", "list_heads", "register_head",
]

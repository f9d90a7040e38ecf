"""Contrastive losses: pure per-example functions and their `keras.losses.Loss` classes."""

from keras_contrastive.losses._base import LossContract, contract_of
from keras_contrastive.losses.barlow_twins_loss import BarlowTwinsLoss, barlow_twins_loss
from keras_contrastive.losses.clip_loss import CLIPLoss, clip_loss
from keras_contrastive.losses.contrastive_margin_loss import (
    ContrastiveMarginLoss,
    contrastive_margin_loss,
)
from keras_contrastive.losses.dino_loss import DINOLoss, dino_loss
from keras_contrastive.losses.info_nce_loss import InfoNCELoss, info_nce_loss
from keras_contrastive.losses.nnclr_loss import NNCLRLoss, nnclr_loss
from keras_contrastive.losses.ntxent_loss import NTXentLoss, ntxent_loss
from keras_contrastive.losses.prediction_losses import (
    BYOLLoss,
    SimSiamLoss,
    byol_loss,
    simsiam_loss,
)
from keras_contrastive.losses.siglip_loss import SigLIPLoss, siglip_loss
from keras_contrastive.losses.supcon_loss import SupConLoss, supcon_loss
from keras_contrastive.losses.triplet_loss import TripletLoss, triplet_loss
from keras_contrastive.losses.vicreg_loss import VICRegLoss, vicreg_loss

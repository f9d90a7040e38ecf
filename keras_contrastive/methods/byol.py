"""BYOL's method: an online predictor regresses onto a momentum target network."""

import math

import keras
from keras import ops

from keras_contrastive.layers import MomentumEncoder
from keras_contrastive.losses.prediction_losses import BYOLLoss
from keras_contrastive.methods.simsiam import SimSiam, online_towers
from keras_contrastive.ops import _validation as v


@keras.saving.register_keras_serializable(package="keras_contrastive")
class BYOL(SimSiam):
    """Bootstrap Your Own Latent: an online network predicts a slowly moving target's projections.

    The online network is the model's `encoder` and `projection_head` and
    the method's `predictor`; the target network, `target_encoder`, is a
    `kc.layers.MomentumEncoder` copy of the encoder and the head, made with
    the model and updated after each optimizer step as
    `ξ ← τ ξ + (1 − τ) θ`. With `total_steps=K`, `τ` follows BYOL's cosine
    schedule from `momentum` (`τ_base`) to 1: the update after step `k`
    (0-based, `model.optimizer.iterations − 1`; a resumed run continues the
    schedule) uses `τ_k = 1 − (1 − τ_base)(cos(π k / K) + 1) / 2`, and
    `τ = 1` (no change) once `k >= K`; with `total_steps=None`, `τ = momentum`
    throughout. A BatchNormalization of the target normalizes each batch with
    its own statistics, as BYOL's code runs the target network
    (`kc.layers.MomentumEncoder(batch_statistics=True)`): with the moving
    statistics, which lag behind the batches early in training, the targets
    hardly differ between images (measured on digits: kNN 62% instead of
    the raw pixels' 97%).

    Each view's online prediction `p_v` regresses onto the target projection
    `z'_v` of the other view. The loss (default `kc.losses.BYOLLoss()`,
    `2 − 2·cos`) is the mean of the two directions,
    `½ [L(p1, z'2) + L(p2, z'1)]`, in `[0, 4]` like one direction's. The
    paper sums them (`L + L̃`), twice this value: the same optimum, and,
    for SGD, the gradient of twice the learning rate (Adam and LARS, which
    normalize the update, nearly ignore the factor); the mean is lightly's
    choice and reads like one direction's loss. The rows the loss receives,
    the metrics (the online projections; default `kc.metrics.EmbeddingStd()`)
    and the batch layout are `kc.methods.SimSiam`'s. Predictor and target
    towers are saved with the model (the EMA state included) and not
    exported (`kc.export.export_encoder` exports the encoder).

    Args:
        predictor: `None` (default), or a layer `(B, D) -> (B, D)`. `None`
            builds BYOL's predictor from the projection dim `D`:
            `Dense(H, no bias) -> BatchNormalization -> ReLU -> Dense(D)`,
            `H = min(16·D, 4096)`: BYOL's 4096 hidden units (for `D = 256`),
            scaled down for smaller projections.
        momentum: `τ_base` in `[0, 1)`, the EMA factor at the first step (the
            constant one without `total_steps`). BYOL: 0.996.
        total_steps: `None` (default: constant `τ`), or `K`, an int >= 1, the
            number of training steps over which `τ` rises to 1.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import keras_contrastive as kc
    >>> model = kc.ContrastiveModel(
    ...     encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8),
    ...     projection_head=kc.layers.ProjectionHead(hidden_dims=(32,), output_dim=16),
    ...     augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16)),
    ...     method=kc.methods.BYOL(momentum=0.996, total_steps=1000),
    ... )
    >>> model.compile(optimizer="sgd")
    >>> round(float(model.method.momentum_at(500)), 6)  # halfway: τ_base + (1 − τ_base) / 2
    0.998

    Reference: Grill et al., "Bootstrap Your Own Latent: A New Approach to
    Self-Supervised Learning", NeurIPS 2020 (τ_base = 0.996, the cosine
    schedule of τ).
    """

    def __init__(self, predictor=None, momentum=0.996, total_steps=None, **kwargs):
        super().__init__(predictor=predictor, **kwargs)
        self.momentum = v.check_number("momentum", momentum, min=0, max=1, max_inclusive=False)
        self.total_steps = v.check_int("total_steps", total_steps, min=1, allow_none=True)
        self.target_encoder = None

    def attach(self, model):
        super().attach(model)
        self.target_encoder = MomentumEncoder.copy_of(
            online_towers(model), self.momentum, name="target_encoder", batch_statistics=True
        )

    def predictor_hidden_dim(self, dim):
        """The hidden width of the default predictor on `dim`-d projections: `min(16·dim, 4096)`."""
        return min(16 * dim, 4096)

    def default_loss(self):
        return BYOLLoss()

    def towers(self, model, views, training):
        """SimSiam's online outputs, and the target projections `(B, 2, D)` of the two views."""
        embedded = super().towers(model, views, training)
        flat = ops.reshape(views, (-1, *ops.shape(views)[2:]))
        targets = self.target_encoder(flat)  # batch statistics, under stop_gradient
        embedded["targets"] = ops.reshape(targets, (-1, 2, targets.shape[-1]))
        return embedded

    def targets(self, embedded):
        return embedded["targets"]

    def momentum_at(self, step):
        """`τ_k`, the EMA factor of the update after optimizer step `k = step` (0-based).

        `1 − (1 − τ_base)(cos(π k / K) + 1) / 2` for `k` in `[0, K]`, 1 after;
        `momentum` when `total_steps` is None. A float32 tensor for a schedule.
        """
        return cosine_momentum(step, self.momentum, self.total_steps)

    def after_step(self, model, step):
        """The EMA of the target towers, by `momentum_at` the step just taken."""
        momentum = None
        if self.total_steps is not None:
            momentum = self.momentum_at(model.optimizer.iterations - 1)
        self.target_encoder.update(online_towers(model), momentum=momentum)

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "total_steps": self.total_steps,
        }


def cosine_momentum(step, base, total_steps):
    """BYOL's (and DINO's) EMA factor at step `k`: `1 − (1 − base)(cos(π k / K) + 1) / 2`.

    Clipped to `k` in `[0, K]` (1 after `K` steps); `base` when `total_steps`
    is None. A float32 tensor for a schedule.
    """
    if total_steps is None:
        return base
    k = ops.clip(ops.cast(step, "float32"), 0.0, float(total_steps))
    cosine = ops.cos(k * (math.pi / total_steps))
    return 1.0 - (1.0 - base) * (cosine + 1.0) / 2.0

"""DINO's loss: the student's softmax over prototypes against the centered, sharpened teacher's."""

import keras
from keras import ops

from keras_contrastive.losses._base import ContrastiveLoss, LossContract, views
from keras_contrastive.ops import _validation as v

_LAYOUT = "(B, G + V, K): the teacher's logits of the G global views, then the student's of all V"
# Scaled logits are floored here: finite, and `0 · floor` is 0 where a probability underflows.
_FLOOR = -1e30


def _log_softmax(logits, temperature):
    """`log softmax(logits / τ)` over the last axis, finite for any finite logits.

    The row's maximum is subtracted before dividing by `τ` (a difference that
    overflows float32 becomes `-inf`, which the floor makes finite).
    """
    shifted = logits - ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
    scaled = ops.maximum(shifted / ops.cast(temperature, logits.dtype), _FLOOR)
    return scaled - ops.logsumexp(scaled, axis=-1, keepdims=True)


def _check_center(center, logits):
    center = ops.convert_to_tensor(center)
    num_prototypes = logits.shape[-1]
    if len(center.shape) != 1 or (
        center.shape[0] is not None
        and num_prototypes is not None
        and center.shape[0] != num_prototypes
    ):
        raise ValueError(
            f"`center` must be a (K,) vector, K = {num_prototypes} the prototypes of "
            f"`y_pred` {tuple(logits.shape)}. Received: center.shape={tuple(center.shape)}"
        )
    return v.check_finite("center", ops.cast(center, logits.dtype))


def dino_loss(
    y_true,
    y_pred,
    student_temperature=0.1,
    teacher_temperature=0.07,
    center=None,
    num_global_views=2,
):
    """DINO's cross-entropy between teacher and student views, for each of B examples.

    With `t_g` the teacher's logits of global view `g`, `s_v` the student's
    logits of view `v` (the `G` global views first, then the local ones) and
    `c` the center, the teacher's targets are `P_t,g = softmax((t_g − c) / τ_t)`
    (centered and sharpened, under `stop_gradient`), the student's
    `P_s,v = softmax(s_v / τ_s)`, and example `i`'s loss is the mean over the
    pairs of a global view and another view,
    `(1 / (G·V − G)) Σ_g Σ_{v ≠ g} −Σ_k P_t,g[k] log P_s,v[k]`: the student
    never predicts the teacher's output of the same view. The batch mean is
    the loss of DINO's code (`DINOLoss.forward`: each pair's batch mean,
    averaged over pairs). The softmaxes are computed in float32 (float64
    for float64 input) and stay finite for any finite logits.

    Args:
        y_true: ignored (may be None).
        y_pred: `(B, G + V, K)`: the teacher's logits of the `G` global
            views, then the student's logits of all `V` views, its first `G`
            of the same global views in the same order (`kc.methods.DINO`
            builds it). Needs `V >= G` and at least one pair.
        student_temperature: `τ_s > 0`. Default 0.1 (DINO).
        teacher_temperature: `τ_t > 0`, a float or a scalar tensor (a
            warm-up schedule's value). Default 0.07, DINO's value after its
            warm-up from 0.04.
        center: `None` (zeros) or the `(K,)` center subtracted from the
            teacher's logits before sharpening.
        num_global_views: `G >= 1`, the views the teacher sees. Default 2.

    Returns:
        `(B,)` float32 (float64 for float64 input) per-example losses.

    Example:

    >>> import numpy as np
    >>> logits = np.random.default_rng(0).normal(size=(8, 4, 16)).astype("float32")
    >>> dino_loss(None, logits).shape  # 2 teacher rows, then 2 student views
    TensorShape([8])

    Reference: Caron et al., "Emerging Properties in Self-Supervised Vision
    Transformers", ICCV 2021 (Algorithm 1, eq. 3-4; τ_s = 0.1, τ_t from 0.04
    to 0.07).
    """
    del y_true
    v.check_positive("student_temperature", student_temperature)
    v.check_positive("teacher_temperature", teacher_temperature)
    num_global = v.check_int("num_global_views", num_global_views, min=1)
    logits = views(y_pred, num_views=None, layout=_LAYOUT, min_batch=1)
    num_views = logits.shape[1] - num_global  # the student's
    if num_views < num_global or num_global * (num_views - 1) < 1:
        raise ValueError(
            f"`y_pred` must be {_LAYOUT}, with V >= G = {num_global} and a view besides each "
            f"global one (G + V >= {2 * num_global + (num_global == 1)}). "
            f"Received: y_pred.shape={tuple(logits.shape)}"
        )
    teacher, student = logits[:, :num_global], logits[:, num_global:]
    if center is not None:
        # Clipped: `t − c` of two finite float32 values may overflow.
        limit = 3.0e38 if logits.dtype == "float32" else 1.0e308
        teacher = ops.clip(teacher - _check_center(center, logits), -limit, limit)
    targets = ops.stop_gradient(ops.exp(_log_softmax(teacher, teacher_temperature)))
    log_student = _log_softmax(student, student_temperature)
    cross_entropy = -ops.einsum("bgk,bvk->bgv", targets, log_student)
    others = 1.0 - ops.eye(num_global, num_views, dtype=cross_entropy.dtype)  # v ≠ g
    pairs = num_global * (num_views - 1)
    return ops.sum(cross_entropy * others, axis=(1, 2)) / pairs


@keras.saving.register_keras_serializable(package="keras_contrastive")
class DINOLoss(ContrastiveLoss):
    """DINO's loss: the student's views predict the centered, sharpened teacher's global views.

    `y_pred` is `(B, G + V, K)`: the teacher's logits over `K` prototypes
    of the `G` global views, then the student's logits of all `V` views (see
    `kc.losses.dino_loss`). Non-contrastive: no negatives, `y_true` is
    ignored and a batch of one example is fine. Calling the loss returns
    the mean over the B examples. `kc.methods.DINO` feeds it.

    State inputs: `kc.methods.DINO` passes `y_pred` as a dict
    `{"embeddings": (B, G + V, K), "teacher_temperature": τ_t, "center": c}`:
    its warm-up schedule's `τ_t` and its `(K,)` center (the moving average
    of the teacher's mean logits) for that call, in place of the configured
    `teacher_temperature` and a zero center.

    Args:
        student_temperature: `τ_s > 0`. Default 0.1 (DINO).
        teacher_temperature: `τ_t > 0`, used where no state gives one.
            Default 0.07 (DINO's value after the warm-up).
        num_global_views: `G >= 1`, the views the teacher sees. Default 2.
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> logits = np.random.default_rng(0).normal(size=(8, 4, 16)).astype("float32")
    >>> center = np.zeros(16, "float32")
    >>> loss = DINOLoss()
    >>> float(loss(None, {"embeddings": logits, "teacher_temperature": 0.04, "center": center})) > 0
    True

    Reference: Caron et al., "Emerging Properties in Self-Supervised Vision
    Transformers", ICCV 2021.
    """

    contract = LossContract(
        labels="ignored", y_pred="views", state=("teacher_temperature", "center")
    )

    def __init__(
        self,
        student_temperature=0.1,
        teacher_temperature=0.07,
        num_global_views=2,
        reduction="sum_over_batch_size",
        name="dino_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.student_temperature = v.check_positive("student_temperature", student_temperature)
        self.teacher_temperature = v.check_positive("teacher_temperature", teacher_temperature)
        self.num_global_views = v.check_int("num_global_views", num_global_views, min=1)

    def call(self, y_true, y_pred):
        y_pred, state = self._split_state(y_pred)
        return dino_loss(
            y_true,
            y_pred,
            self.student_temperature,
            state.get("teacher_temperature", self.teacher_temperature),
            state.get("center"),
            self.num_global_views,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "student_temperature": float(self.student_temperature),
            "teacher_temperature": float(self.teacher_temperature),
            "num_global_views": self.num_global_views,
        }

"""Debiased (Chuang et al. 2020), hard-weighted (Robinson et al. 2021) and decoupled negatives."""

import math

from keras import ops

from keras_contrastive.ops import _validation as v
from keras_contrastive.ops.softmax import (
    MASK_VALUE,
    masked_logsumexp,
    multi_positive_cross_entropy,
)


def check_hard_negatives(tau_plus, beta, decoupled):
    """Validates the three options of the softmax losses; returns them."""
    tau_plus = v.check_number("tau_plus", tau_plus, min=0, max=1, max_inclusive=False)
    beta = v.check_number("beta", beta, min=0)
    return tau_plus, beta, v.check_bool("decoupled", decoupled)


def is_plain(tau_plus, beta, decoupled):
    """Whether the options leave the loss as it is (the plain softmax cross-entropy)."""
    return tau_plus == 0 and beta == 0 and not decoupled


def hard_negative_nll(
    logits, positives, negatives, tau_plus=0.0, beta=0.0, decoupled=False, min_logit=None
):
    """Per row: the loss of each positive against an estimate of its negatives, averaged.

    With `ℓ` the logits (similarity / τ) of a row, `pos = e^{ℓ_p}` for a
    positive `p`, and `ℓ_j` over its `N` negatives, the negatives' term is
    (Robinson et al. 2021, the reference code joshr17/HCL):

    - hardness weights `imp_j = e^{β ℓ_j}`, `reweight = Σ_j imp_j e^{ℓ_j} / mean_j(imp_j)`
      (`β = 0`: the plain sum `Σ_j e^{ℓ_j}`);
    - debiasing for a false-negative prior `τ⁺` (Chuang et al. 2020):
      `Ng = max((reweight − τ⁺ N pos) / (1 − τ⁺), N e^{min_logit})`
      (`τ⁺ = 0`: `Ng = reweight`, no clamp);

    and the loss of `p` is `−log(pos / (pos + Ng))`, or with `decoupled`
    (DCL, Yeh et al. 2021: the positive leaves the denominator)
    `−ℓ_p + log Ng`. A row's value is the mean over its positives. All in log
    space (log-sum-exp with the weights folded in): finite for any finite
    logits; with `τ⁺ = 0, β = 0` and not decoupled it is the softmax
    cross-entropy of `p` against itself and the negatives. A row without
    negatives has loss 0.

    Args:
        logits: `(n, M)` float logits, similarities divided by the temperature.
        positives: `(n, M)` bool, each row's positives (at least one).
        negatives: `(n, M)` bool, each row's negatives, disjoint from the
            positives (the anchor itself and the other positives are neither).
        tau_plus: `τ⁺` in `[0, 1)`, the prior probability that a negative
            is of the anchor's class. Default 0.
        beta: `β >= 0`, the concentration on hard negatives. Default 0.
        decoupled: bool, drop the positive from the denominator. Default False.
        min_logit: the smallest logit a negative can have (`−1 / τ` for
            cosine similarities): the floor of `Ng` is `N e^{min_logit}`.
            Required when `tau_plus > 0`.

    Returns:
        `(n,)` float, one loss per row.

    Example:

    >>> import numpy as np
    >>> logits = np.array([[2.0, 1.0, 0.0]], "float32")
    >>> positives, negatives = np.array([[True, False, False]]), np.array([[False, True, True]])
    >>> hard_negative_nll(logits, positives, negatives)  # softmax cross-entropy: [0.408]
    >>> hard_negative_nll(logits, positives, negatives, decoupled=True)  # [-0.687]

    References:
        - Chuang et al., "Debiased Contrastive Learning", NeurIPS 2020.
        - Robinson et al., "Contrastive Learning with Hard Negative Samples", ICLR 2021.
        - Yeh et al., "Decoupled Contrastive Learning", ECCV 2022 (arXiv 2021).
    """
    logits = ops.convert_to_tensor(logits)
    count = ops.sum(ops.cast(negatives, logits.dtype), axis=-1, keepdims=True)
    log_count = ops.log(ops.maximum(count, 1.0))
    log_ng = masked_logsumexp((1.0 + beta) * logits, negatives)[:, None]
    if beta:
        log_ng = log_ng - masked_logsumexp(beta * logits, negatives)[:, None] + log_count
    if tau_plus:
        if min_logit is None:
            raise ValueError("`tau_plus` > 0 needs `min_logit`, the logit of the least similar.")
        # log(reweight − τ⁺ N pos) where positive, else below the floor.
        excess = math.log(tau_plus) + log_count + logits - log_ng
        remainder = log_ng + ops.log(-ops.expm1(ops.minimum(excess, -1e-6)))
        remainder = ops.where(excess < 0, remainder, MASK_VALUE)
        floor = log_count + ops.cast(min_logit, logits.dtype)
        log_ng = ops.maximum(remainder - math.log1p(-tau_plus), floor)
    if decoupled:
        per_positive = log_ng - logits
    else:
        per_positive = ops.logaddexp(logits, log_ng) - logits
    per_positive = ops.where(count > 0, per_positive, 0.0)  # nothing to contrast: 0
    num_positives = ops.sum(ops.cast(positives, logits.dtype), axis=-1)
    total = ops.sum(ops.where(positives, per_positive, 0.0), axis=-1)
    return total / ops.maximum(num_positives, 1.0)


def softmax_rows(
    options,
    multi_positive,
    anchors,
    positive_index,
    ids,
    own_negatives,
    candidates,
    candidate_ids,
    shared_negatives,
    min_logit,
):
    """Per anchor: the loss of its positives against its negatives, in three groups of columns.

    The row function of the softmax losses' `kc.ops.map_row_chunks`:

    - the `(M, D)` `candidates` (the batch, of all replicas): the positive of
      anchor `i` is column `positive_index[i]`, or, where that is negative,
      every candidate of its id. Other candidates of its id are neither
      positives nor negatives (accidental hits: the anchor itself, a duplicate
      caption, an example of its class); the rest are negatives;
    - the `(Q, D)` `shared_negatives` of every anchor (a MoCo queue);
    - the `(n, H, D)` `own_negatives` of each anchor, scored for it alone
      (mined hard negatives).

    `anchors` are `(n, D)`, already divided by the temperature; `ids` `(n,)`
    and `candidate_ids` `(M,)`. With `multi_positive` the row is CLIP's
    cross-entropy against a uniform target over its positives (every column
    in the normaliser); else `hard_negative_nll` with `options`
    `(tau_plus, beta, decoupled)` and `min_logit`.
    """
    logits = ops.concatenate(
        [
            ops.matmul(anchors, ops.transpose(candidates)),
            ops.matmul(anchors, ops.transpose(shared_negatives)),
            ops.einsum("nd,nhd->nh", anchors, own_negatives),
        ],
        axis=-1,
    )
    columns = ops.arange(ops.shape(candidates)[0], dtype=positive_index.dtype)[None, :]
    same = ids[:, None] == candidate_ids[None, :]
    by_index = positive_index[:, None] >= 0
    positives = ops.where(by_index, columns == positive_index[:, None], same)
    extra = ops.ones_like(logits[:, ops.shape(candidates)[0] :], dtype="bool")
    positives = ops.concatenate([positives, ~extra], axis=-1)
    if multi_positive:
        return multi_positive_cross_entropy(logits, positives)
    negatives = ops.concatenate([~same, extra], axis=-1)
    return hard_negative_nll(logits, positives, negatives, *options, min_logit=min_logit)

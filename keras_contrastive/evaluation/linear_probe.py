"""Linear evaluation of a frozen encoder."""

import numpy as np
import tensorflow as tf

from keras_contrastive.evaluation._data import check_k, embed_labeled, top_k_accuracy
from keras_contrastive.ops._validation import check_non_negative, check_positive


@tf.function(reduce_retracing=True)
def _train_softmax(features, labels, num_classes, steps, learning_rate, l2):
    """Full-batch Adam on `T` zero-initialized, L2-penalized softmax classifiers at once.

    `features` is `(T, n, D)`, `labels` `(T, n)`: trial `t` trains its own
    `(D, C)` kernel and `(C,)` bias on its own rows, with the loss and update
    of `keras.optimizers.Adam` on the mean cross-entropy plus `l2 · Σw²` (the
    kernel only), as a Keras `Dense` layer with an `L2` regularizer would; all
    trials run in one traced loop instead of one Keras model (and one trace)
    each. Returns the `(T, D, C)` kernels and `(T, C)` biases.
    """
    trials, dim = tf.shape(features)[0], tf.shape(features)[2]
    one_hot = tf.one_hot(labels, num_classes)
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-7  # Keras' Adam defaults

    def loss_fn(kernel, bias):
        logits = tf.einsum("tnd,tdc->tnc", features, kernel) + bias[:, None, :]
        cross_entropy = tf.nn.softmax_cross_entropy_with_logits(one_hot, logits)
        # Trials are independent: the sum of their losses has each trial's gradient.
        return tf.reduce_sum(tf.reduce_mean(cross_entropy, axis=1)) + l2 * tf.reduce_sum(
            tf.square(kernel)
        )

    def step(t, params, moments):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = loss_fn(*params)
        grads = tape.gradient(loss, params)
        t = t + 1.0
        alpha = learning_rate * tf.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        new_params, new_moments = [], []
        for param, grad, (m, v) in zip(params, grads, moments, strict=True):
            m = m + (grad - m) * (1 - beta_1)
            v = v + (tf.square(grad) - v) * (1 - beta_2)
            new_params.append(param - alpha * m / (tf.sqrt(v) + epsilon))
            new_moments.append((m, v))
        return t, new_params, new_moments

    params = [tf.zeros([trials, dim, num_classes]), tf.zeros([trials, num_classes])]
    moments = [(tf.zeros_like(p), tf.zeros_like(p)) for p in params]
    _, params, _ = tf.while_loop(
        lambda t, *_: t < tf.cast(steps, tf.float32),
        step,
        (tf.constant(0.0), params, moments),
    )
    return params


def _sample_per_class(labels, labels_per_class, seed):
    """Indices of `labels_per_class` random examples of each class present."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < labels_per_class:
            raise ValueError(
                f"`labels_per_class` must be at most the size of the smallest "
                f"class in `train_data`, but class {label} has {len(members)} "
                f"examples. Received: labels_per_class={labels_per_class}"
            )
        chosen.append(rng.choice(members, labels_per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def linear_probe(
    encoder,
    train_data,
    test_data,
    labels_per_class=None,
    num_trials=5,
    seed=0,
    steps=500,
    learning_rate=0.01,
    l2=1e-4,
    batch_size=256,
):
    """Top-1/top-5 test accuracy of a linear classifier on frozen features.

    The encoder is run once over each split (`batch_size` inputs at a time,
    inference mode); features are standardized with the training mean and
    standard deviation; a zero-initialized softmax layer with an L2 weight
    penalty is trained on all training features at once (full batch) with
    Adam for a fixed number of `steps`. No randomness is involved, so the
    result is deterministic. In the few-labels mode (`labels_per_class=k`),
    each of `num_trials` trials draws `k` training examples per class with
    seed `seed + trial`, and the mean and standard deviation over trials are
    returned.

    Args:
        encoder: a callable (a `keras.Model`) mapping an input batch to
            `(batch, D)` features, or `None` when the data already are
            features.
        train_data: `(x, y)` arrays, or a `tf.data.Dataset` of `(x, y)`
            batches, with integer labels `y`.
        test_data: the same for the test split.
        labels_per_class: `None` (default) to train on every labelled
            example, or the number of labels per class to sample.
        num_trials: subsets drawn in the few-labels mode. Default 5.
        seed: seed of the first subset. Default 0.
        steps: full-batch Adam steps. Default 500.
        learning_rate: Adam learning rate. Default 0.01.
        l2: L2 penalty on the weights (`l2 · Σw²`). Default 1e-4.
        batch_size: inputs per encoder call for `(x, y)` arrays. Default 256.

    Returns:
        `{"top1": float, "top5": float}` test accuracies in `[0, 1]`; in the
        few-labels mode these are means over trials and `"top1_std"` and
        `"top5_std"` are added. With fewer than 5 classes `"top5"` is 1.0.

    Example:

    >>> import numpy as np
    >>> x = np.random.normal(size=(60, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> linear_probe(None, (x, y), (x, y))["top1"] > 0.9
    True

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of
    Visual Representations" (SimCLR), ICML 2020, linear evaluation protocol;
    Kolesnikov et al., "Revisiting Self-Supervised Visual Representation
    Learning", CVPR 2019.
    """
    check_positive("steps", steps)
    check_positive("learning_rate", learning_rate)
    check_non_negative("l2", l2)
    train_x, train_y = embed_labeled(encoder, train_data, "train_data", batch_size)
    test_x, test_y = embed_labeled(encoder, test_data, "test_data", batch_size)
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            "`test_data` must give features of the dimension of `train_data`. "
            f"Received: {test_x.shape[1]} and {train_x.shape[1]}"
        )
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    num_classes = int(max(train_y.max(), test_y.max())) + 1

    def evaluate(rows):
        """Top-k test accuracies of the classifiers trained on `rows` (`(T, n)` indices)."""
        kernels, biases = _train_softmax(
            tf.constant(train_x[rows]),
            tf.constant(train_y[rows]),
            num_classes,
            tf.constant(int(steps)),
            float(learning_rate),
            float(l2),
        )
        scores = np.einsum("nd,tdc->tnc", test_x, kernels.numpy()) + biases.numpy()[:, None]
        return [top_k_accuracy(trial_scores, test_y) for trial_scores in scores]

    if labels_per_class is None:
        return evaluate(np.arange(len(train_y))[None])[0]
    labels_per_class = check_k(
        "labels_per_class", labels_per_class, len(train_y), "training examples"
    )
    check_k("num_trials", num_trials, np.inf, "trials")
    trials = evaluate(
        np.stack(
            [
                _sample_per_class(train_y, labels_per_class, seed + trial)
                for trial in range(num_trials)
            ]
        )
    )
    results = {}
    for key in ("top1", "top5"):
        values = [trial[key] for trial in trials]
        results[key], results[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
    return results

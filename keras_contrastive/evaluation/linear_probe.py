"""Linear evaluation of a frozen encoder."""

import keras
import numpy as np
import tensorflow as tf

from keras_contrastive.evaluation._data import check_k, embed_labeled, top_k_accuracy
from keras_contrastive.ops._validation import check_non_negative, check_positive


def _fit_linear_classifier(features, labels, num_classes, steps, learning_rate, l2):
    """A zero-initialized, L2-regularized softmax classifier, full-batch Adam."""
    classifier = keras.Sequential(
        [
            keras.Input((features.shape[1],)),
            keras.layers.Dense(
                num_classes,
                kernel_initializer="zeros",
                kernel_regularizer=keras.regularizers.L2(l2),
            ),
        ]
    )
    classifier.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=steps,
    )
    batches = tf.data.Dataset.from_tensors((features, labels)).repeat(steps)
    classifier.fit(batches, epochs=1, shuffle=False, verbose=0)
    return classifier


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
        classifier = _fit_linear_classifier(
            train_x[rows], train_y[rows], num_classes, int(steps), learning_rate, l2
        )
        return top_k_accuracy(classifier.predict(test_x, batch_size=4096, verbose=0), test_y)

    if labels_per_class is None:
        return evaluate(slice(None))
    labels_per_class = check_k(
        "labels_per_class", labels_per_class, len(train_y), "training examples"
    )
    check_k("num_trials", num_trials, np.inf, "trials")
    trials = [
        evaluate(_sample_per_class(train_y, labels_per_class, seed + trial))
        for trial in range(num_trials)
    ]
    results = {}
    for key in ("top1", "top5"):
        values = [trial[key] for trial in trials]
        results[key], results[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
    return results

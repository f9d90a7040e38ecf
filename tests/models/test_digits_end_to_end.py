"""SimCLR on real digits learns: with few labels, the trained encoder beats a random one."""

import keras
import numpy as np

import keras_contrastive as kc


def test_simclr_on_digits_beats_random_initialisation():
    split = kc.datasets.digits(image_size=16)
    (x_train, y_train), (x_test, y_test) = split.train, split.test
    # Three labelled images per class: the label-efficiency SimCLR is for. (With every
    # label, a random CNN is already a ~93% kNN feature on digits, which leaves no margin.)
    # Ten draws of the labelled images: one draw's 1-NN accuracy varies by a few points.
    rng = np.random.default_rng(0)
    draws = [
        np.concatenate(
            [rng.choice(np.flatnonzero(y_train == c), 3, replace=False) for c in range(10)]
        )
        for _ in range(10)
    ]

    def encoder():
        keras.utils.set_random_seed(0)
        return kc.encoders.small_cnn(input_shape=(16, 16, 3), width=16, batch_norm=False)

    def few_label_accuracies(model):
        train, test = np.asarray(model.embed(x_train)), model.embed(x_test)
        nearest = np.mean(
            [
                kc.evaluation.knn_accuracy(train[few], y_train[few], test, y_test, k=1)["top1"]
                for few in draws
            ]
        )
        linear = kc.evaluation.linear_probe(
            model.encoder,
            (x_train, y_train),
            (x_test, y_test),
            labels_per_class=3,
            num_trials=3,
            steps=300,
        )["top1"]
        return np.array([nearest, linear])

    random = kc.ContrastiveModel(encoder=encoder())
    model = kc.ContrastiveModel(
        encoder=encoder(),
        projection_head=kc.layers.ProjectionHead(hidden_dims=(64,), output_dim=32),
        augmenter=kc.layers.SimCLRAugmentation(
            image_size=(16, 16),
            value_range=(0, 1),
            flip_rate=0.0,
            crop_area=(0.4, 1.0),
            blur_rate=0.0,
        ),
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=kc.losses.NTXentLoss(0.1))
    data = kc.datasets.to_dataset(x_train, batch_size=128, shuffle=True, drop_remainder=True)
    model.fit(data, epochs=12, verbose=0)
    learned, baseline = few_label_accuracies(model), few_label_accuracies(random)
    # Measured over 3 runs on one machine (training is not bit-reproducible across thread
    # schedules): 1-NN (mean of 10 draws) 0.77-0.80 vs 0.70, linear 0.77-0.80 vs 0.69; the
    # run that failed the old single-draw check had 1-NN 0.73 and linear 0.75.
    assert np.all(learned > baseline + 0.01), (learned, baseline)
    assert np.mean(learned - baseline) > 0.035, (learned, baseline)

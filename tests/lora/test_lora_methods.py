"""`kc.lora` in every training method of `kc.ContrastiveModel`, on replicas and with GradCache.

What a momentum target holds with LoRA: the online network's **effective**
weights. A target tower (MoCo's key encoder, BYOL's target, DINO's teacher)
is a plain copy, no adapters, whose kernels are the moving average of the
online kernels as the online layers compute with them, `W + (alpha / rank) A B`.
Copying the adapters and averaging `A` and `B` apart would give a target
whose kernel is `W + s · avg(A) · avg(B)`, not the average of the online
kernels (and one whose structure depends on whether LoRA was enabled before
or after the model was built).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy
from towers import Record, captions, clip_model, features, head, mlp, pair_dataset, view_pairs

import keras_contrastive as kc
from keras_contrastive import losses
from keras_contrastive.lora import _layers as lora_layers

BATCH = 4
RANK, ALPHA = 2, 4  # scale alpha / rank = 2, so a merge that forgets it shows


def labelled_dataset(kind, n=2 * BATCH, batch=BATCH):
    """`(views, labels)` or `(pairs, similar)` of `view_pairs(n)`, in a fixed order."""
    a, b = view_pairs(n)
    labels = (np.arange(n) % 3).astype("int32")
    if kind == "supervised":
        data = ((a, b), labels)
    else:  # pairs: each view with another example's second view, flagged by class
        data = ((a, b[::-1]), (labels == labels[::-1]).astype("float32"))
    return tf.data.Dataset.from_tensor_slices(data).batch(batch)


def dual_dataset(batch=BATCH):
    """`{"image": (8, 6) features, "text": raw captions}`: the CLIP model of `towers`."""
    data = {"image": features(), "text": captions()}
    return tf.data.Dataset.from_tensor_slices(data).batch(batch)


def dual_mlp():
    """A CLIP model of two `mlp()` towers (6-d images, 5-d "texts"), a learned temperature."""
    return kc.ContrastiveModel(
        image_encoder=mlp(),
        text_encoder=mlp(5),
        image_head=head(),
        text_head=head(),
        logit_scale="learnable",
    )


def dual_mlp_dataset(batch=BATCH):
    a, b = view_pairs(2 * batch)
    return tf.data.Dataset.from_tensor_slices({"image": a, "text": b[:, :5]}).batch(batch)


# name -> (model factory, dataset factory, loss or None for the method's default)
METHODS = {
    "two_view": (lambda: single(), pair_dataset, lambda: losses.NTXentLoss(0.2)),
    "supervised": (
        lambda: single(),
        lambda: labelled_dataset("supervised"),
        lambda: losses.SupConLoss(0.2),
    ),
    "pairs": (
        lambda: single(),
        lambda: labelled_dataset("pairs"),
        lambda: losses.ContrastiveMarginLoss(),
    ),
    # LoRA on a text transformer (Embedding, MultiHeadAttention) fed raw strings.
    "dual_encoder": (lambda: clip_model(head(), head()), dual_dataset, lambda: losses.CLIPLoss()),
    "dual_encoder_mlp": (dual_mlp, dual_mlp_dataset, lambda: losses.CLIPLoss()),
    "moco": (lambda: single(momentum=0.5, queue_size=3 * BATCH), pair_dataset, lambda: None),
    "byol": (lambda: single(method=kc.methods.BYOL(momentum=0.5)), pair_dataset, lambda: None),
    "simsiam": (lambda: single(method=kc.methods.SimSiam()), pair_dataset, lambda: None),
    "nnclr": (lambda: single(method=kc.methods.NNCLR(queue_size=8)), pair_dataset, lambda: None),
    "dino": (
        lambda: single(method=kc.methods.DINO(num_prototypes=8, momentum=0.5)),
        pair_dataset,
        lambda: None,
    ),
    "barlow_twins": (lambda: single(), pair_dataset, lambda: losses.BarlowTwinsLoss()),
    "vicreg": (lambda: single(), pair_dataset, lambda: losses.VICRegLoss()),
}


def single(**kwargs):
    """`mlp()` encoder, a 4-d `head()`: the one-encoder model of the model tests."""
    return kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), **kwargs)


def encoders(model):
    """The towers LoRA adapts: the encoder, or both towers of the dual encoder."""
    if model.encoder is not None:
        return [model.encoder]
    return [model.image_encoder, model.text_encoder]


def with_lora(model):
    for encoder in encoders(model):
        kc.lora.enable_lora(encoder, rank=RANK, alpha=ALPHA)
    return model


def compile_(model, loss=None, lr=1e-2):
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    return model


def targets(model):
    """The method's momentum target (a `kc.layers.MomentumEncoder`), or None."""
    method = model.method
    for name in ("key_encoder", "target_encoder", "teacher"):
        if getattr(method, name, None) is not None:
            return getattr(method, name)
    return None


def factors(tower):
    return [
        f.numpy() for _, layer in lora_layers.adapted(tower) for f in lora_layers.factors(layer)
    ]


def frozen(tower):
    return [w.numpy() for w in tower.weights if not w.trainable]


def merged(tower):
    """The weights a plain copy of `tower` holds, in NumPy: each kernel `W + alpha/rank · A B`.

    Written from the variable paths alone: the factors of `x/kernel` are
    `x/lora_kernel_a` and `x/lora_kernel_b` (`x/embeddings`: `x/lora_embeddings_*`).
    """
    values = {w.path: w.numpy() for w in tower.weights}
    out = []
    for path, value in values.items():
        if "/lora_" in path:
            continue
        prefix, name = path.rsplit("/", 1)
        a = values.get(f"{prefix}/lora_{name}_a")
        if a is not None:
            b = values[f"{prefix}/lora_{name}_b"]
            value = value.astype("float64") + ALPHA / RANK * np.matmul(a, b)
        out.append(value)
    return out


def sources(model):
    """The online towers a target follows, as the methods list them."""
    towers = [model.encoder, model.projection_head]
    if isinstance(model.method, kc.methods.DINO):
        towers.append(model.method.prototypes)
    return towers


def merged_sources(model):
    return [w for tower in sources(model) for w in merged(tower)]


def target_weights(model):
    return [w.numpy() for tower in targets(model).towers for w in tower.weights]


def sample(model):
    """A batch of the encoders' inputs, to compare their outputs before and after."""
    if model.encoder is not None:
        return [view_pairs(BATCH)[0]]
    if model.text_preprocessor is None:
        return [features(1), features(2)[:, :5]]
    return [features(1), model.text_preprocessor(captions())]


def outputs(model):
    return [enc(x).numpy() for enc, x in zip(encoders(model), sample(model), strict=True)]


# ------------------------------------------------------------------ every method
@pytest.mark.parametrize("name", sorted(set(METHODS) - {"dual_encoder_mlp"}))
def test_lora_trains_only_the_factors_of_the_encoder_in_every_method(name):
    make, data, loss = METHODS[name]
    model = with_lora(make())
    compile_(model, loss())
    towers = encoders(model)
    encoder_ids = {id(w) for tower in towers for w in tower.weights}
    factor_ids = {id(f) for t in towers for _, lay in lora_layers.adapted(t) for f in lay.weights}
    trainable = model.trainable_weights
    # The encoders train through their factors only; heads and the method's layers as before.
    assert {id(w) for w in trainable} & encoder_ids <= factor_ids
    if targets(model) is not None:
        target_ids = {id(w) for w in targets(model).weights}
        assert not target_ids & {id(w) for w in trainable}
    before_trainable = [w.numpy() for w in trainable]
    before_frozen = [frozen(tower) for tower in towers]
    before_factors = [factors(tower) for tower in towers]
    before_outputs = outputs(model)

    history = model.fit(data(), epochs=2, verbose=0, shuffle=False).history
    assert np.all(np.isfinite(history["loss"]))

    for tower, old in zip(towers, before_frozen, strict=True):
        for want, got in zip(old, frozen(tower), strict=True):
            np.testing.assert_array_equal(got, want)  # bit-equal: W, biases, norms
    for tower, old in zip(towers, before_factors, strict=True):
        assert len(old) == 2 * len(lora_layers.adapted(tower)) > 0
        for want, got in zip(old, factors(tower), strict=True):
            assert np.abs(got - want).max() > 1e-4  # A and B both moved
    for want, got in zip(before_outputs, outputs(model), strict=True):
        assert np.abs(np.asarray(got) - np.asarray(want)).max() > 1e-4
    # The rest trains as before: heads, a predictor, prototypes, a temperature (biases
    # aside: the margin loss's distances do not change with the head's output bias).
    for want, got in zip(before_trainable, trainable, strict=True):
        if not got.path.endswith("bias"):
            assert np.abs(got.numpy() - want).max() > 0, got.path


# --------------------------------------------------------------- momentum targets
@pytest.mark.parametrize(
    ("name", "enable"),
    [("moco", "after"), ("moco", "before"), ("byol", "after"), ("dino", "after")],
)
def test_the_target_is_a_plain_copy_following_the_merged_online_weights(name, enable):
    """`enable`: LoRA on the encoder after the model is built, or on the encoder before."""
    make, data, _ = METHODS[name]
    if enable == "before":
        encoder = mlp()
        kc.lora.enable_lora(encoder, rank=RANK, alpha=ALPHA)
        model = kc.ContrastiveModel(
            encoder=encoder, projection_head=head(4), momentum=0.5, queue_size=3 * BATCH
        )
    else:
        model = with_lora(make())
    compile_(model)
    target = targets(model)
    assert all(kc.lora.lora_spec(tower) is None for tower in target.towers)  # no adapters
    assert not any("lora" in w.path for w in target.weights)
    previous = target_weights(model)
    for got, want in zip(previous, merged_sources(model), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-7)  # a copy at the start (B = 0)
    start = merged(model.encoder)[0]
    record = Record(lambda m: (merged_sources(m), target_weights(m)))
    model.fit(data(), epochs=2, verbose=0, shuffle=False, callbacks=[record])
    momentum = model.method.momentum
    for online_after, target_after in record.values:
        for t, o, got in zip(previous, online_after, target_after, strict=True):
            np.testing.assert_allclose(got, momentum * t + (1 - momentum) * o, atol=1e-6)
        previous = target_after
    assert np.abs(merged(model.encoder)[0] - start).max() > 1e-4  # LoRA moved the kernel


def test_a_momentum_encoder_given_lora_towers_merges_them():
    tower = mlp()
    kc.lora.enable_lora(tower, rank=RANK, alpha=ALPHA)
    layer = lora_layers.adapted(tower)[0][1]
    layer.lora_kernel_b.assign(np.ones(layer.lora_kernel_b.shape, "float32"))  # as if trained
    x = view_pairs(BATCH)[0]
    expected = tower(x)
    source = mlp()
    kc.lora.enable_lora(source, rank=RANK, alpha=ALPHA)
    key = kc.layers.MomentumEncoder(tower, momentum=0.0)
    assert kc.lora.lora_spec(tower) is None and not tower.trainable_weights
    np.testing.assert_allclose(key(x), expected, atol=1e-6)
    key.update(source)  # momentum 0: the source's merged weights
    for got, want in zip(tower.get_weights(), merged(source), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


# ---------------------------------------------------------------------- replicas
REPLICATED = {
    "two_view": lambda: single(),
    "moco": lambda: single(momentum=0.5, queue_size=4 * BATCH),
}


@pytest.mark.parametrize("name", sorted(REPLICATED))
def test_two_replicas_train_the_factors_as_one_device(name):
    global_batch = 2 * BATCH

    def compiled(model):
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=losses.InfoNCELoss(0.2))
        return model

    def data():
        return pair_dataset(global_batch, n=2 * global_batch)  # 2 steps: A moves on the second

    one = compiled(with_lora(REPLICATED[name]()))
    initial = one.get_weights()
    want = one.fit(data(), epochs=1, verbose=0, shuffle=False).history
    strategy = cpu_strategy(2)
    with strategy.scope():
        mirrored = REPLICATED[name]()
    # Enabled outside the scope, as a user may: the factors are mirrored as the kernels are.
    with_lora(mirrored).set_weights(initial)
    (_, adapted), *_ = lora_layers.adapted(mirrored.encoder)
    assert isinstance(lora_layers.factors(adapted)[0].value, tf.distribute.DistributedValues)
    with strategy.scope():
        compiled(mirrored)
    got = mirrored.fit(data(), epochs=1, verbose=0, shuffle=False).history
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    for got_factor, want_factor in zip(
        factors(mirrored.encoder), factors(one.encoder), strict=True
    ):
        np.testing.assert_allclose(got_factor, want_factor, atol=1e-5)
    assert np.abs(factors(one.encoder)[1]).max() > 1e-3  # B trained (it starts at zero)
    for got_weight, want_weight in zip(mirrored.get_weights(), one.get_weights(), strict=True):
        np.testing.assert_allclose(got_weight, want_weight, atol=1e-5)  # a key encoder too
    if targets(mirrored) is not None:
        for variable in targets(mirrored).weights:
            first, second = strategy.experimental_local_results(variable.value)
            np.testing.assert_array_equal(first, second)  # every replica made the same update


@pytest.mark.parametrize("name", ["two_view", "dual_encoder_mlp"])
def test_gradient_caching_trains_the_factors_as_the_plain_step(name):
    make, data, loss = METHODS[name]
    plain = with_lora(make())
    initial = plain.get_weights()
    compile_(plain, loss()).fit(data(), epochs=1, verbose=0, shuffle=False)
    cached = kc.ContrastiveModel.from_config({**make().get_config(), "gradient_cache_chunks": 2})
    with_lora(cached).set_weights(initial)
    compile_(cached, loss()).fit(data(), epochs=1, verbose=0, shuffle=False)
    for tower, other in zip(encoders(cached), encoders(plain), strict=True):
        for got, want in zip(factors(tower), factors(other), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)
    for got, want in zip(cached.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


# ------------------------------------------------------------------------ saving
@pytest.mark.parametrize(
    "name",
    [
        "moco",
        "dual_encoder_mlp",
        "dual_encoder",
    ],
)
def test_keras_round_trip_mid_training_continues_to_train(name, tmp_path):
    make, data, loss = METHODS[name]
    model = compile_(with_lora(make()), loss())
    model.fit(data(), epochs=1, verbose=0, shuffle=False)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    for tower, other in zip(encoders(restored), encoders(model), strict=True):
        assert kc.lora.lora_spec(tower) == kc.lora.lora_spec(other)
    before = outputs(model)
    for got, want in zip(outputs(restored), before, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    if targets(model) is not None:  # the EMA state is kept, and still a plain copy
        for got, want in zip(target_weights(restored), target_weights(model), strict=True):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(
            restored.method.key_queue.keys.numpy(), model.method.key_queue.keys.numpy()
        )
    towers = encoders(restored)
    before_frozen = [frozen(tower) for tower in towers]
    record = None
    if targets(restored) is not None:
        record = Record(lambda m: (merged_sources(m), target_weights(m)))
        previous = target_weights(restored)
    restored.fit(data(), epochs=1, verbose=0, shuffle=False, callbacks=[record] if record else [])
    for tower, old in zip(towers, before_frozen, strict=True):
        for want, got in zip(old, frozen(tower), strict=True):
            np.testing.assert_array_equal(got, want)
    for got, want in zip(outputs(restored), before, strict=True):
        assert np.abs(np.asarray(got) - np.asarray(want)).max() > 1e-4  # it trains again
    if record is not None:
        momentum = restored.method.momentum
        for online_after, target_after in record.values:
            for t, o, got in zip(previous, online_after, target_after, strict=True):
                np.testing.assert_allclose(got, momentum * t + (1 - momentum) * o, atol=1e-6)
            previous = target_after

"""`kc.lora`: adapters that train alone, reload ready to train, merge, swap and export."""

import doctest
import inspect
import os
import re
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_contrastive as kc

SIZE = 16
TOKENS = np.random.default_rng(0).integers(1, 20, size=(4, 6)).astype("int32")
IMAGES = np.random.default_rng(1).uniform(size=(8, SIZE, SIZE, 3)).astype("float32")
SEQUENCE_PATHS = ["embed", "conv", "einsum", "head/hidden", "head/out"]


def sequence_model(seed=0, dim=32):
    """Embedding -> Conv1D -> LayerNorm -> EinsumDense -> pool -> nested Dense head."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, dim, name="embed")(tokens)
    x = keras.layers.Conv1D(dim, 3, name="conv")(x)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.EinsumDense(
        "btd,de->bte", output_shape=(None, dim), bias_axes="e", name="einsum"
    )(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    head = keras.Sequential(
        [
            keras.Input((dim,)),
            keras.layers.Dense(dim, activation="relu", name="hidden"),
            keras.layers.Dense(8, name="out"),
        ],
        name="head",
    )
    return keras.Model(tokens, head(x), name="sequence_model")


def as_if_trained(model, seed):
    """Sets every adapter's B (zero after enable_lora) to random values."""
    rng = np.random.default_rng(seed)
    for _, layer in kc.lora._layers.adapted(model):
        _, b = kc.lora._layers.factors(layer)
        b.assign(rng.normal(scale=0.3, size=b.shape).astype("float32"))


def factor_ids(model):
    return {
        id(f) for _, layer in kc.lora._layers.adapted(model) for f in kc.lora._layers.factors(layer)
    }


def contrastive_model(alpha=4):
    """A two-view ContrastiveModel whose small_cnn encoder has LoRA; compiled."""
    model = kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=(SIZE, SIZE, 3), width=4),
        projection_head=kc.layers.ProjectionHead(hidden_dims=(8,), output_dim=4, batch_norm=False),
    )
    kc.lora.enable_lora(model.encoder, rank=2, alpha=alpha)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=kc.losses.NTXentLoss())
    return model


def views():
    """Two views of IMAGES, as the dataset of a model without augmenter: `x = (v1, v2)`."""
    pair = (IMAGES, IMAGES[:, ::-1])
    return tf.data.Dataset.from_tensor_slices((pair,)).batch(4, drop_remainder=True)


def flags(model):
    return [(w.path.split("/")[-1], tuple(w.shape), w.trainable) for w in model.weights]


def frozen_values(model):
    return [w.numpy().copy() for w in model.weights if not w.trainable]


@pytest.fixture
def saved_contrastive(tmp_path):
    """A LoRA ContrastiveModel with adapters as if trained, saved to `model.keras`."""
    model = contrastive_model()
    as_if_trained(model.encoder, 1)
    path = tmp_path / "model.keras"
    model.save(path)
    return model, path


# ------------------------------------------------------------------ enable_lora
@pytest.mark.parametrize("train_bias", [False, True])
def test_only_the_factors_train_and_biases_with_train_bias(train_bias):
    model = sequence_model()
    paths = kc.lora.enable_lora(model, rank=2, train_bias=train_bias)
    assert paths == SEQUENCE_PATHS
    expected = set(factor_ids(model))
    if train_bias:
        biases = [kc.lora._layers.bias(layer) for _, layer in kc.lora._layers.adapted(model)]
        expected |= {id(b) for b in biases if b is not None}
    assert {id(w) for w in model.trainable_weights} == expected
    assert not model.get_layer("norm").trainable  # normalization frozen as a layer
    assert kc.lora.lora_spec(model) == {
        "rank": 2,
        "alpha": 2,
        "paths": SEQUENCE_PATHS,
        "train_bias": train_bias,
    }


def test_target_layers_patterns_search_the_paths():
    def adapt(target):
        return kc.lora.enable_lora(sequence_model(), 2, target_layers=target)

    assert adapt("hidden|out") == ["head/hidden", "head/out"]
    assert adapt(["^embed$", "conv"]) == ["embed", "conv"]
    assert adapt("^head/") == ["head/hidden", "head/out"]
    assert adapt(re.compile("(^|/)out$")) == ["head/out"]
    model = sequence_model()
    kc.lora.enable_lora(model, 2, target_layers="out")
    assert [w.path for w in model.trainable_weights] == [
        "head/out/lora_kernel_a",
        "head/out/lora_kernel_b",
    ]


def test_enabling_again_with_the_same_arguments_changes_nothing():
    model = sequence_model()
    kc.lora.enable_lora(model, 2, alpha=3)
    as_if_trained(model, 1)
    values = [w.numpy() for w in model.weights]
    outputs = model(TOKENS)
    assert kc.lora.enable_lora(model, 2, alpha=3) == SEQUENCE_PATHS
    for old, new in zip(values, model.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    np.testing.assert_allclose(model(TOKENS), outputs, atol=1e-6)
    assert {id(w) for w in model.trainable_weights} == factor_ids(model)


def test_resnet_backbone_gets_every_conv_adapted():
    keras_hub = pytest.importorskip("keras_hub")

    def backbone():
        return keras_hub.models.ResNetBackbone(
            input_conv_filters=[64],  # the first stack's filters must be 64
            input_conv_kernel_sizes=[3],
            stackwise_num_filters=[64, 8],
            stackwise_num_blocks=[1, 1],
            stackwise_num_strides=[1, 2],
            block_type="basic_block",
            use_pre_activation=False,
            image_shape=(SIZE, SIZE, 3),
        )

    stock = backbone()
    stock.enable_lora(2)  # keras-hub's: looks for `query`/`value` layers only
    assert not kc.lora._layers.adapted(stock) and not stock.trainable_weights
    model = backbone()
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 6
    assert sorted(kc.lora.enable_lora(model, rank=2)) == sorted(convs)
    assert {id(w) for w in model.trainable_weights} == factor_ids(model)


def bert_encoder():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
        name="bert_backbone",  # not Keras' per-process counter: the paths below name it
    )
    inputs = {
        name: keras.Input((8,), dtype="int32", name=name)
        for name in ("token_ids", "segment_ids", "padding_mask")
    }
    return keras.Model(inputs, backbone(inputs)["pooled_output"], name="bert_encoder")


def test_bert_attention_layers_are_adapted_and_round_trip(tmp_path):
    model = kc.ContrastiveModel(encoder=bert_encoder())
    paths = kc.lora.enable_lora(model.encoder, rank=2, alpha=8)
    attention = "bert_backbone/transformer_layer_0/self_attention_layer/"
    for name in ("query", "key", "value", "attention_output"):
        assert attention + name in paths
    as_if_trained(model.encoder, 2)
    x = {
        "token_ids": TOKENS[:, :4].repeat(2, axis=1) % 50,
        "segment_ids": np.zeros((4, 8), "int32"),
        "padding_mask": np.ones((4, 8), "int32"),
    }
    before, before_flags = model.predict(x, verbose=0), flags(model)
    model.save(tmp_path / "bert.keras")
    loaded = keras.saving.load_model(tmp_path / "bert.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), before, atol=1e-6)
    assert kc.lora.lora_spec(loaded.encoder) == kc.lora.lora_spec(model.encoder)
    assert flags(loaded) == before_flags
    query = dict(kc.lora._layers.walk(loaded.encoder))[attention + "query"]
    a, b = kc.lora._layers.factors(query)
    assert np.abs(a.numpy()).max() > 0 and not b.numpy().any()  # ready to train
    assert query.lora_alpha == 8


# ---------------------------------------------------------------------- reload
def test_fit_trains_the_adapters_and_a_reload_goes_on_training(tmp_path):
    model = contrastive_model()
    before, frozen = model.predict(IMAGES, verbose=0), frozen_values(model.encoder)
    model.fit(views(), epochs=1, verbose=0)
    trained = model.predict(IMAGES, verbose=0)
    assert np.abs(trained - before).max() > 1e-4
    for old, new in zip(frozen, frozen_values(model.encoder), strict=True):
        np.testing.assert_array_equal(old, new)  # BN statistics too: inference mode
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), trained, atol=1e-6)
    assert kc.lora.lora_spec(loaded.encoder) == kc.lora.lora_spec(model.encoder)
    assert kc.lora.lora_spec(loaded.encoder)["alpha"] == 4
    assert flags(loaded) == flags(model)
    frozen = frozen_values(loaded.encoder)  # the kernels hold W + (alpha / rank) A B now
    loaded.fit(views(), epochs=1, verbose=0)
    assert np.abs(loaded.predict(IMAGES, verbose=0) - trained).max() > 1e-4
    for old, new in zip(frozen, frozen_values(loaded.encoder), strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.slow
def test_contrastive_model_reloads_ready_to_train_in_a_fresh_process(saved_contrastive):
    model, path = saved_contrastive
    np.save(path.parent / "x.npy", IMAGES)
    np.save(path.parent / "before.npy", model.predict(IMAGES, verbose=0))
    code = textwrap.dedent(
        f"""
        import numpy as np, keras, keras_contrastive as kc
        x = np.load({str(path.parent / "x.npy")!r})
        before = np.load({str(path.parent / "before.npy")!r})
        model = keras.saving.load_model({str(path)!r})
        assert np.abs(model.predict(x, verbose=0) - before).max() < 1e-6
        assert kc.lora.lora_spec(model.encoder)["alpha"] == 4
        trainable = {{id(w) for w in model.encoder.trainable_weights}}
        for layer in model.encoder.layers:
            if getattr(layer, "lora_enabled", False):  # A drawn anew, B zero: it trains
                a, b = layer.lora_kernel_a, layer.lora_kernel_b
                assert np.abs(a.numpy()).max() > 0 and not b.numpy().any()
                assert trainable == trainable | {{id(a), id(b)}}
        assert len(trainable) == 8  # the factors of conv1..conv4 alone
        print("ok")
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_a_plain_keras_model_resumes_with_enable_lora_after_load_model(tmp_path):
    model = sequence_model()
    kc.lora.enable_lora(model, 2, alpha=8)
    as_if_trained(model, 1)
    before = model(TOKENS)
    model.save(tmp_path / "plain.keras")
    loaded = keras.saving.load_model(tmp_path / "plain.keras")
    dense = loaded.get_layer("head").get_layer("out")
    # What Keras leaves: merged kernel, both factors zero, alpha = rank (Dense.build).
    assert not any(f.numpy().any() for f in kc.lora._layers.factors(dense))
    assert dense.lora_alpha == 2
    assert kc.lora.enable_lora(loaded, 2, alpha=8) == SEQUENCE_PATHS
    np.testing.assert_allclose(loaded(TOKENS), before, atol=1e-5)
    assert kc.lora.lora_spec(loaded) == kc.lora.lora_spec(model)
    assert flags(loaded) == flags(model)
    a, b = kc.lora._layers.factors(dense)
    assert np.abs(a.numpy()).max() > 0 and not b.numpy().any()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(loaded(TOKENS) ** 2)
    gradients = tape.gradient(loss, loaded.trainable_weights)
    assert all(g is not None for g in gradients) and any(np.abs(g).max() > 0 for g in gradients)


# ---------------------------------------------------------------------- errors
def test_arguments_are_checked_before_anything_changes():
    model = sequence_model()
    with pytest.raises(ValueError, match="`rank` must be an int >= 1. Received: rank=0"):
        kc.lora.enable_lora(model, 0)
    with pytest.raises(TypeError, match="`rank` must be an int"):
        kc.lora.enable_lora(model, 2.0)
    for alpha in (0, -1.0):
        with pytest.raises(ValueError, match="`alpha` must be a finite number > 0"):
            kc.lora.enable_lora(model, 2, alpha=alpha)
    with pytest.raises(TypeError, match="target_layers"):
        kc.lora.enable_lora(model, 2, target_layers=3)
    with pytest.raises(ValueError, match=r"Expected a pattern found in one of: \['embed'"):
        kc.lora.enable_lora(model, 2, target_layers="query")
    assert not kc.lora._layers.adapted(model)
    assert len(model.trainable_weights) == len(model.weights)


def test_unbuilt_constrained_and_unadaptable_models_are_refused():
    with pytest.raises(ValueError, match="must be built"):
        kc.lora.enable_lora(keras.Sequential([keras.layers.Dense(2)]), 2)
    inputs = keras.Input((4,))
    constrained = keras.layers.Dense(2, kernel_constraint="non_neg", name="constrained")
    model = keras.Model(inputs, constrained(keras.layers.Dense(3, name="free")(inputs)))
    with pytest.raises(ValueError, match="'constrained' .*kernel constraint"):
        kc.lora.enable_lora(model, 2)
    assert not kc.lora._layers.adapted(model)  # not even 'free'
    assert kc.lora.enable_lora(model, 2, target_layers="free") == ["free"]
    pooling = keras.Sequential([keras.Input((4, 3)), keras.layers.GlobalAveragePooling1D()])
    with pytest.raises(ValueError, match="no layer LoRA can adapt"):
        kc.lora.enable_lora(pooling, 2)


def test_another_rank_or_a_trained_alpha_is_refused():
    model = sequence_model()
    kc.lora.enable_lora(model, 2, target_layers="out")
    with pytest.raises(ValueError, match="'head/out' already has a LoRA adapter of rank 2"):
        kc.lora.enable_lora(model, 4)
    as_if_trained(model, 1)
    with pytest.raises(ValueError, match="Expected alpha=2. Received: alpha=8"):
        kc.lora.enable_lora(model, 2, alpha=8)
    other = sequence_model()
    kc.lora.enable_lora(other, 2, target_layers="out")
    kc.lora.enable_lora(other, 2, target_layers="hidden")
    other.get_layer("head").get_layer("hidden").lora_alpha = 5
    with pytest.raises(ValueError, match="different ranks or alphas"):
        kc.lora.lora_spec(other)


# ----------------------------------------------------------------------- merge
def test_merge_equals_the_adapted_model_and_removes_the_adapters(tmp_path):
    model = sequence_model()
    kc.lora.enable_lora(model, 2, alpha=6)
    as_if_trained(model, 1)
    adapted = model(TOKENS)
    assert kc.lora.merge_lora(model) == SEQUENCE_PATHS
    np.testing.assert_allclose(model(TOKENS), adapted, atol=1e-5)
    assert not any("lora" in w.path for w in model.weights)
    for path, layer in kc.lora._layers.walk(model):
        if isinstance(layer, kc.lora._layers.ADAPTABLE):
            assert not layer.lora_enabled and "lora_rank" not in layer.get_config(), path
            weight = layer.embeddings if path == "embed" else layer.kernel
            assert weight.trainable, path  # merged kernels train, as in a plain model
    assert kc.lora.lora_spec(model) is None and kc.lora.merge_lora(model) == []
    model.save(tmp_path / "merged.keras")
    loaded = keras.saving.load_model(tmp_path / "merged.keras")
    assert kc.lora.lora_spec(loaded) is None
    np.testing.assert_allclose(loaded(TOKENS), adapted, atol=1e-5)


def test_merge_of_a_conv_encoder():
    encoder = kc.encoders.small_cnn(input_shape=(SIZE, SIZE, 3), width=4)
    kc.lora.enable_lora(encoder, 3)
    as_if_trained(encoder, 2)
    adapted = encoder(IMAGES)
    assert kc.lora.merge_lora(encoder) == ["conv1", "conv2", "conv3", "conv4"]
    np.testing.assert_allclose(encoder(IMAGES), adapted, atol=1e-5)


# --------------------------------------------------------------- adapter files
def test_adapters_swap_on_one_base_and_load_onto_a_fresh_base(tmp_path):
    model = sequence_model()
    kc.lora.enable_lora(model, 2, alpha=4)
    outputs = {}
    for name, seed in (("first", 1), ("second", 2)):
        as_if_trained(model, seed)
        outputs[name] = model(TOKENS).numpy()
        kc.lora.save_lora_weights(model, tmp_path / f"{name}.npz")
    assert np.abs(outputs["first"] - outputs["second"]).max() > 1e-3
    for name in ("first", "second", "first"):
        assert kc.lora.load_lora_weights(model, tmp_path / f"{name}.npz") == SEQUENCE_PATHS
        np.testing.assert_allclose(model(TOKENS), outputs[name], atol=1e-6)
    fresh = sequence_model()  # the same base weights, no LoRA
    kc.lora.load_lora_weights(fresh, tmp_path / "second.npz")
    np.testing.assert_allclose(fresh(TOKENS), outputs["second"], atol=1e-6)
    assert kc.lora.lora_spec(fresh) == kc.lora.lora_spec(model)
    assert {id(w) for w in fresh.trainable_weights} == factor_ids(fresh)
    keras.saving.save_weights(model, tmp_path / "all.weights.h5")
    size = os.path.getsize(tmp_path / "first.npz")
    assert size < os.path.getsize(tmp_path / "all.weights.h5") / 4


def test_train_bias_adapters_carry_their_biases(tmp_path):
    model = sequence_model()
    kc.lora.enable_lora(model, 2, train_bias=True)
    as_if_trained(model, 1)
    out = model.get_layer("head").get_layer("out")
    out.bias.assign(np.full(out.bias.shape, 0.5, "float32"))
    expected = model(TOKENS)
    kc.lora.save_lora_weights(model, tmp_path / "adapter.npz")
    fresh = sequence_model()
    kc.lora.load_lora_weights(fresh, tmp_path / "adapter.npz")
    np.testing.assert_allclose(fresh(TOKENS), expected, atol=1e-6)
    assert kc.lora.lora_spec(fresh)["train_bias"]


def test_adapter_files_that_do_not_fit_are_refused(tmp_path):
    model = sequence_model()
    kc.lora.enable_lora(model, 2)
    kc.lora.save_lora_weights(model, tmp_path / "adapter.npz")
    other_rank = sequence_model()
    kc.lora.enable_lora(other_rank, 4)
    with pytest.raises(ValueError, match="in `rank`. Expected rank=2"):
        kc.lora.load_lora_weights(other_rank, tmp_path / "adapter.npz")
    other_layers = sequence_model()
    kc.lora.enable_lora(other_layers, 2, target_layers="head")
    with pytest.raises(ValueError, match="in `paths`"):
        kc.lora.load_lora_weights(other_layers, tmp_path / "adapter.npz")
    narrow = sequence_model(dim=16)
    with pytest.raises(
        ValueError, match="does not fit layer .embed.: its `b` must have shape \\(2, 16\\)"
    ):
        kc.lora.load_lora_weights(narrow, tmp_path / "adapter.npz")
    assert not kc.lora._layers.adapted(narrow)  # checked before enabling anything
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="is not a LoRA adapter file"):
        kc.lora.load_lora_weights(model, tmp_path / "other.npz")
    with pytest.raises(ValueError, match="no LoRA layers to save"):
        kc.lora.save_lora_weights(sequence_model(), tmp_path / "none.npz")


KILLED_WRITER = """
import os, signal
import keras, numpy as np
import keras_contrastive as kc

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="out")])
kc.lora.enable_lora(model, 2)

def killed_mid_write(file, **arrays):  # half a file on disk, then SIGKILL
    file.write(b"PK\\x03\\x04 half an npz")
    file.flush()
    os.fsync(file.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

np.savez = killed_mid_write
kc.lora.save_lora_weights(model, {path!r})
"""


@pytest.mark.slow
def test_a_write_killed_midway_leaves_the_previous_file(tmp_path):
    model = sequence_model()
    kc.lora.enable_lora(model, 2)
    as_if_trained(model, 1)
    expected = model(TOKENS).numpy()
    path = tmp_path / "adapter.npz"
    kc.lora.save_lora_weights(model, path)
    old = path.read_bytes()
    code = KILLED_WRITER.format(path=str(path))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    worker = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=300)
    assert worker.returncode == -signal.SIGKILL, worker.stderr[-3000:]
    assert path.read_bytes() == old
    assert [n for n in os.listdir(tmp_path) if n.startswith(".adapter.npz.tmp-")]
    fresh = sequence_model()
    kc.lora.load_lora_weights(fresh, path)
    np.testing.assert_allclose(fresh(TOKENS), expected, atol=1e-6)
    kc.lora.save_lora_weights(model, path)  # the next write cleans up
    assert sorted(os.listdir(tmp_path)) == ["adapter.npz"]


# ---------------------------------------------------------------------- export
def l2(x):
    x = np.asarray(x, "float64")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_export_serves_merged_weights_and_leaves_the_model_adapted(tmp_path):
    model = contrastive_model()
    as_if_trained(model.encoder, 3)
    expected = l2(model.embed(IMAGES))
    values = [w.numpy() for w in model.weights]
    kc.export.export_encoder(model, tmp_path / "merged")
    loaded = tf.saved_model.load(str(tmp_path / "merged"))
    assert loaded.variables and not [v.name for v in loaded.variables if "lora" in v.name]
    served = loaded.signatures["serving_default"](images=tf.constant(IMAGES))["embedding"]
    np.testing.assert_allclose(served, expected, atol=1e-5)
    np.testing.assert_allclose(loaded(tf.constant(IMAGES)), expected, atol=1e-5)
    assert kc.lora.lora_spec(model.encoder)["paths"] == ["conv1", "conv2", "conv3", "conv4"]
    for old, new in zip(values, model.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())


def test_export_without_merging_keeps_the_factors_trainable(tmp_path):
    encoder = kc.encoders.small_cnn(input_shape=(SIZE, SIZE, 3), width=4)
    kc.lora.enable_lora(encoder, 2)
    as_if_trained(encoder, 3)
    kc.export.export_encoder(encoder, tmp_path / "adapted", merge_lora=False)
    loaded = tf.saved_model.load(str(tmp_path / "adapted"))
    names = sorted(v.name.split(":")[0] for v in loaded.trainable_variables)
    assert names == sorted(f"conv{i}/lora_kernel_{f}" for i in range(1, 5) for f in "ab")
    served = loaded.signatures["serving_default"](images=tf.constant(IMAGES))["embedding"]
    np.testing.assert_allclose(served, l2(encoder(IMAGES)), atol=1e-5)
    with pytest.raises(TypeError, match="`merge_lora` must be a bool"):
        kc.export.export_encoder(encoder, tmp_path / "bad", merge_lora="yes")


# ------------------------------------------------------------------ docstrings
def _examples():
    parser = doctest.DocTestParser()
    for name in sorted(vars(kc.lora)):
        value = getattr(kc.lora, name)
        if name.startswith("_") or not inspect.isfunction(value):
            continue
        code = [example.source for example in parser.get_examples(inspect.getdoc(value))]
        yield pytest.param(inspect.getmodule(value), code, id=name)


EXAMPLES = list(_examples())


def test_every_public_function_has_an_example():
    assert [p.id for p in EXAMPLES] == [
        "enable_lora",
        "load_lora_weights",
        "lora_spec",
        "merge_lora",
        "save_lora_weights",
    ]
    assert all(p.values[1] for p in EXAMPLES)


@pytest.mark.parametrize(("module", "code"), EXAMPLES)
def test_docstring_example_runs(module, code, tmp_path, monkeypatch):
    # tests/test_docstrings.py runs the subpackages it lists; kc.lora's are run here.
    monkeypatch.chdir(tmp_path)
    namespace = {**vars(module), "kc": kc, "keras": keras, "np": np, "tf": tf}
    for statement in code:
        exec(compile(statement, "<docstring example>", "single"), namespace)


def test_predict_after_enable_and_merge_uses_the_adapters():
    """`predict` traced before `enable_lora` / `merge_lora` is traced anew after each."""
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(inputs))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    model.predict(x, verbose=0)
    kc.lora.enable_lora(model, rank=2)
    model.get_layer("out").lora_kernel_b.assign(np.ones((2, 3)))  # as if trained
    adapted = model(x).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), adapted, atol=1e-6)
    kc.lora.merge_lora(model)
    np.testing.assert_allclose(model.predict(x, verbose=0), adapted, atol=1e-5)

"""Every public constructor refuses bad arguments at once, naming the argument.

One table of (constructor, arguments, error, message fragment): bool is not a number,
strings and other types raise `TypeError`, NaN/inf and out-of-range values `ValueError`,
and a concrete tensor is checked by its value.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
import towers

import keras_contrastive as kc
from keras_contrastive import encoders, layers, methods, metrics
from keras_contrastive import losses as L

INF, NAN = float("inf"), float("nan")
VOCAB = ["[PAD]", "[UNK]", "[START]", "[END]", "[MASK]", "a", "cat"]


def _model(**kwargs):
    return kc.ContrastiveModel(encoder=towers.mlp(), projection_head=towers.head(), **kwargs)


def _text_preprocessor(vocabulary=VOCAB, **kwargs):
    return layers.TextPreprocessor(vocabulary, **kwargs)


def _from_corpus(**kwargs):
    return layers.TextPreprocessor.from_corpus(["a cat", "a dog"], **kwargs)


def _text_transformer(**kwargs):
    return encoders.text_transformer(**{"vocabulary_size": 50, "sequence_length": 8, **kwargs})


def _simclr(**kwargs):
    return layers.SimCLRAugmentation(**{"image_size": 16, **kwargs})


def _momentum_encoder(**kwargs):
    return layers.MomentumEncoder(towers.mlp(), **kwargs)


BAD = [
    # losses: temperatures
    (L.NTXentLoss, {"temperature": INF}, ValueError, "`temperature` must be a finite number > 0"),
    (L.NTXentLoss, {"temperature": NAN}, ValueError, "`temperature`"),
    (L.NTXentLoss, {"temperature": "0.1"}, TypeError, "Received: temperature='0.1'"),
    (L.NTXentLoss, {"temperature": True}, TypeError, "`temperature`"),
    (L.NTXentLoss, {"temperature": tf.constant(-0.1)}, ValueError, "`temperature`"),
    (L.InfoNCELoss, {"temperature": INF}, ValueError, "`temperature`"),
    (L.InfoNCELoss, {"temperature": np.float32(-1)}, ValueError, "`temperature`"),
    (L.SupConLoss, {"temperature": "0.1"}, TypeError, "`temperature`"),
    (L.SupConLoss, {"base_temperature": INF}, ValueError, "`base_temperature`"),
    (L.SupConLoss, {"base_temperature": "1"}, TypeError, "`base_temperature`"),
    (L.CLIPLoss, {"temperature": INF}, ValueError, "`temperature`"),
    (L.CLIPLoss, {"use_group_ids": "yes"}, TypeError, "`use_group_ids`"),
    (L.SigLIPLoss, {"temperature": tf.constant(0.0)}, ValueError, "`temperature`"),
    (L.SigLIPLoss, {"bias": INF}, ValueError, "`bias`"),
    (L.SigLIPLoss, {"bias": "-10"}, TypeError, "`bias`"),
    (L.SigLIPLoss, {"use_group_ids": 1}, TypeError, "`use_group_ids`"),
    # losses: margins and flags
    (L.ContrastiveMarginLoss, {"margin": INF}, ValueError, "`margin` must be a finite number >= 0"),
    (L.ContrastiveMarginLoss, {"margin": "1"}, TypeError, "`margin`"),
    (L.ContrastiveMarginLoss, {"squared": "no"}, TypeError, "`squared`"),
    (L.ContrastiveMarginLoss, {"distance": ["cosine"]}, ValueError, "`distance`"),
    (L.TripletLoss, {"margin": NAN}, ValueError, "`margin`"),
    (L.TripletLoss, {"margin": True}, TypeError, "`margin`"),
    (L.TripletLoss, {"mining": None}, ValueError, "`mining`"),
    # SimCLRAugmentation
    (_simclr, {"image_size": 16.5}, TypeError, "`image_size`"),
    (_simclr, {"image_size": (16, "16")}, TypeError, "`image_size`"),
    (_simclr, {"image_size": True}, TypeError, "`image_size`"),
    (_simclr, {"flip_rate": "0.5"}, TypeError, "Received: flip_rate='0.5'"),
    (_simclr, {"blur_rate": NAN}, ValueError, "`blur_rate`"),
    (_simclr, {"seed": "abc"}, TypeError, "`seed`"),
    (_simclr, {"seed": 1.5}, TypeError, "`seed`"),
    (_simclr, {"seed": -1}, ValueError, "`seed`"),
    (_simclr, {"crop_area": ("0.1", "1")}, TypeError, "`crop_area`"),
    (_simclr, {"value_range": (0, INF)}, ValueError, "`value_range`"),
    (_simclr, {"blur_sigma": (0.1, INF)}, ValueError, "`blur_sigma`"),
    (_simclr, {"jitter_strength": INF}, ValueError, "`jitter_strength`"),
    (_simclr, {"rotation": "15"}, TypeError, "`rotation`"),
    # TextAugmentation
    (layers.TextAugmentation, {"dropout_rate": "0.1"}, TypeError, "`dropout_rate`"),
    (layers.TextAugmentation, {"mask_rate": NAN}, ValueError, "`mask_rate`"),
    (layers.TextAugmentation, {"seed": "abc"}, TypeError, "`seed`"),
    (layers.TextAugmentation, {"mask_token_id": True}, TypeError, "`mask_token_id`"),
    (layers.TextAugmentation, {"pad_token_id": -1}, ValueError, "`pad_token_id`"),
    (layers.TextAugmentation, {"special_token_ids": None}, TypeError, "`special_token_ids`"),
    (layers.TextAugmentation, {"special_token_ids": (2, 3.0)}, TypeError, "`special_token_ids`"),
    # ProjectionHead
    (layers.ProjectionHead, {"output_dim": True}, TypeError, "`output_dim`"),
    (layers.ProjectionHead, {"output_dim": 1.5}, TypeError, "`output_dim`"),
    (layers.ProjectionHead, {"hidden_dims": ("8",)}, TypeError, "`hidden_dims`"),
    (layers.ProjectionHead, {"batch_norm": "yes"}, TypeError, "`batch_norm`"),
    (layers.ProjectionHead, {"synchronized": 1}, TypeError, "`synchronized`"),
    (layers.ProjectionHead, {"use_bias": "no"}, TypeError, "`use_bias`"),
    (layers.ProjectionHead, {"batch_norm_momentum": 1.5}, ValueError, "`batch_norm_momentum`"),
    (layers.ProjectionHead, {"batch_norm_epsilon": INF}, ValueError, "`batch_norm_epsilon`"),
    # LogitScale, SigmoidLogitScale
    (layers.LogitScale, {"initial_temperature": INF}, ValueError, "`initial_temperature`"),
    (layers.LogitScale, {"initial_temperature": True}, TypeError, "`initial_temperature`"),
    (layers.LogitScale, {"max_scale": INF}, ValueError, "`max_scale`"),
    (layers.LogitScale, {"learnable": "yes"}, TypeError, "`learnable`"),
    (layers.SigmoidLogitScale, {"initial_temperature": INF}, ValueError, "`initial_temperature`"),
    (layers.SigmoidLogitScale, {"initial_bias": NAN}, ValueError, "`initial_bias`"),
    (layers.SigmoidLogitScale, {"initial_bias": "-10"}, TypeError, "`initial_bias`"),
    # L2Normalize, MultiView
    (layers.L2Normalize, {"axis": 1.0}, TypeError, "`axis`"),
    (layers.L2Normalize, {"axis": True}, TypeError, "`axis`"),
    (lambda **k: layers.MultiView(_simclr(), **k), {"num_views": 2.0}, TypeError, "`num_views`"),
    (lambda **k: layers.MultiView(_simclr(), **k), {"num_views": True}, TypeError, "`num_views`"),
    (lambda **k: layers.MultiView(_simclr(), **k), {"num_views": 0}, ValueError, "`num_views`"),
    # TextPreprocessor
    (_text_preprocessor, {"vocabulary": None}, TypeError, "`vocabulary`"),
    (_text_preprocessor, {"vocabulary": VOCAB + [7]}, TypeError, "`vocabulary`"),
    (_text_preprocessor, {"vocabulary": VOCAB + [b"dog"]}, TypeError, "`vocabulary`"),
    (_text_preprocessor, {"sequence_length": True}, TypeError, "`sequence_length`"),
    (_text_preprocessor, {"lower_case": "yes"}, TypeError, "`lower_case`"),
    (_text_preprocessor, {"pad_token": None}, TypeError, "`pad_token`"),
    (_text_preprocessor, {"mask_token": 4}, TypeError, "`mask_token`"),
    (_from_corpus, {"vocabulary_size": 50.0}, TypeError, "`vocabulary_size`"),
    (_from_corpus, {"vocabulary_size": True}, TypeError, "`vocabulary_size`"),
    # encoders
    (encoders.small_cnn, {"width": True}, TypeError, "`width`"),
    (encoders.small_cnn, {"width": "8"}, TypeError, "`width`"),
    (encoders.small_cnn, {"width": 8.0}, TypeError, "`width`"),
    (encoders.small_cnn, {"batch_norm": "yes"}, TypeError, "`batch_norm`"),
    (_text_transformer, {"vocabulary_size": 50.5}, TypeError, "`vocabulary_size`"),
    (_text_transformer, {"num_layers": True}, TypeError, "`num_layers`"),
    (_text_transformer, {"dropout": "0.1"}, TypeError, "`dropout`"),
    (_text_transformer, {"dropout": NAN}, ValueError, "`dropout`"),
    (encoders.TransformerEncoderBlock, {"num_heads": 2.0}, TypeError, "`num_heads`"),
    (
        lambda **k: encoders.TransformerEncoderBlock(2, **k),
        {"layer_norm_epsilon": "1e-5"},
        TypeError,
        "`layer_norm_epsilon`",
    ),
    (encoders.PositionEmbedding, {"sequence_length": "8"}, TypeError, "`sequence_length`"),
    # ContrastiveModel's scalar arguments
    (_model, {"seed": "abc"}, TypeError, "`seed`"),
    (_model, {"seed": 1.5}, TypeError, "`seed`"),
    (_model, {"seed": -1}, ValueError, "`seed`"),
    (_model, {"probe_classes": True}, TypeError, "`probe_classes`"),
    (_model, {"probe_classes": 1}, ValueError, "`probe_classes`"),
    # momentum / queue_size: the model's shorthand for kc.methods.MoCo, whose key towers are a
    # kc.layers.MomentumEncoder (they check them: ValueError out of range, TypeError wrong type)
    (_model, {"momentum": 1.5, "queue_size": 8}, ValueError, "`momentum`"),
    (_model, {"momentum": NAN}, ValueError, "`momentum`"),
    (_model, {"momentum": "0.9"}, TypeError, "Received: momentum='0.9'"),
    (_model, {"momentum": 0.9, "queue_size": 8.5}, TypeError, "`queue_size`"),
    (_model, {"momentum": 0.9, "queue_size": 0}, ValueError, "`queue_size`"),
    (_model, {"queue_size": 8}, ValueError, "`queue_size` needs a momentum encoder"),
    # methods
    (methods.MoCo, {"momentum": 1.0}, ValueError, "must be a finite number in [0, 1)"),
    (methods.MoCo, {"momentum": NAN}, ValueError, "`momentum`"),
    (methods.MoCo, {"momentum": True}, TypeError, "`momentum`"),
    (methods.MoCo, {"queue_size": 0}, ValueError, "`queue_size` must be an int >= 1"),
    (methods.MoCo, {"queue_size": 8.5}, TypeError, "`queue_size`"),
    (methods.MoCo, {"queue_size": "8"}, TypeError, "Received: queue_size='8'"),
    # MomentumEncoder, KeyQueue
    (_momentum_encoder, {"momentum": 1.0}, ValueError, "must be a finite number in [0, 1)"),
    (_momentum_encoder, {"momentum": -0.1}, ValueError, "`momentum`"),
    (_momentum_encoder, {"momentum": NAN}, ValueError, "`momentum`"),
    (_momentum_encoder, {"momentum": "0.9"}, TypeError, "`momentum`"),
    (layers.MomentumEncoder, {"towers": []}, ValueError, "`towers`"),
    (layers.MomentumEncoder, {"towers": ["dense"]}, TypeError, "`towers`"),
    (layers.KeyQueue, {"size": 0, "dim": 4}, ValueError, "`size` must be an int >= 1"),
    (layers.KeyQueue, {"size": 8.0, "dim": 4}, TypeError, "`size`"),
    (layers.KeyQueue, {"size": 8, "dim": 0}, ValueError, "`dim`"),
    (layers.KeyQueue, {"size": 8, "dim": True}, TypeError, "`dim`"),
    (layers.KeyQueue, {"size": 8, "dim": 4, "seed": -1}, ValueError, "`seed`"),
    (layers.KeyQueue, {"size": 8, "dim": 4, "seed": 1.5}, TypeError, "`seed`"),
    # metrics
    (metrics.ContrastiveAccuracy, {"queries": "last_view"}, ValueError, "`queries` must be one of"),
    (metrics.ContrastiveAccuracy, {"queries": None}, ValueError, "`queries`"),
    # LossContract
    (L.LossContract, {"labels": "float"}, ValueError, "`labels` must be one of"),
    (L.LossContract, {"labels": None}, ValueError, "`labels`"),
    (L.LossContract, {"y_pred": "triplets"}, ValueError, "`y_pred`"),
    (L.LossContract, {"state": "temperature"}, ValueError, "`state` must be a tuple of names"),
    (L.LossContract, {"state": ("tau",)}, ValueError, "Received: state='tau'"),
    (L.LossContract, {"state": ("bias", "bias")}, ValueError, "`state` must not repeat a name"),
]


def _id(row):
    make, kwargs, _, _ = row
    name = getattr(make, "__name__", "make").lstrip("_")
    return f"{name}-{'-'.join(f'{k}={v!r}' for k, v in kwargs.items())}"[:80]


@pytest.mark.parametrize("make, kwargs, error, fragment", BAD, ids=[_id(r) for r in BAD])
def test_bad_constructor_arguments_are_refused(make, kwargs, error, fragment):
    with pytest.raises(error, match=re.escape(fragment)):
        make(**kwargs)


@pytest.mark.parametrize(
    "make, kwargs",
    [
        (L.NTXentLoss, {"temperature": np.float32(0.2)}),
        (L.NTXentLoss, {"temperature": tf.constant(0.2)}),
        (L.CLIPLoss, {"temperature": np.float64(0.07)}),
        (_simclr, {"image_size": np.int64(16), "seed": np.int64(3), "flip_rate": np.float32(0.5)}),
        (layers.LogitScale, {"initial_temperature": np.float32(0.1)}),
        (_model, {"seed": np.int32(3), "probe_classes": np.int64(3)}),
        (_model, {"momentum": np.float32(0.99), "queue_size": np.int64(8)}),
        (methods.MoCo, {"momentum": tf.constant(0.99), "queue_size": np.int32(8)}),
        (layers.KeyQueue, {"size": np.int64(8), "dim": np.int32(4), "seed": np.int64(1)}),
    ],
)
def test_numpy_scalars_and_concrete_tensors_are_accepted(make, kwargs):
    made = make(**kwargs)
    if isinstance(made, keras.losses.Loss):
        x = np.random.default_rng(0).normal(size=(4, 2, 3)).astype("float32")
        assert np.isfinite(float(made(None, x)))
        assert type(made).from_config(made.get_config()).get_config() == made.get_config()


def test_a_learnable_temperature_variable_is_accepted():
    temperature = keras.Variable(0.5)
    x = np.random.default_rng(0).normal(size=(4, 2, 3)).astype("float32")
    np.testing.assert_allclose(
        L.ntxent_loss(None, x, temperature), L.ntxent_loss(None, x, 0.5), rtol=1e-6
    )
    np.testing.assert_allclose(
        L.NTXentLoss(temperature=temperature)(None, x), L.NTXentLoss(0.5)(None, x), rtol=1e-6
    )

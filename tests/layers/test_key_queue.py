"""`KeyQueue`: MoCo's FIFO queue of keys, its wrap-around, validation and saving."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.layers import KeyQueue


def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def fifo(queue, pointer, keys):
    """NumPy reference: writes the normalized `keys` one by one at `pointer`, wrapping."""
    queue = queue.copy()
    for key in normalize(keys):
        queue[pointer] = key
        pointer = (pointer + 1) % len(queue)
    return queue, pointer


def test_initial_keys_are_seeded_random_unit_vectors():
    queue = KeyQueue(size=16, dim=3, seed=5)
    keys = queue.keys.numpy()
    assert keys.shape == (16, 3) and int(queue.pointer.numpy()) == 0
    np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, rtol=1e-6)
    assert len(np.unique(keys.round(5), axis=0)) == 16  # random, not constant
    np.testing.assert_array_equal(KeyQueue(size=16, dim=3, seed=5).keys.numpy(), keys)
    assert not np.allclose(KeyQueue(size=16, dim=3, seed=6).keys.numpy(), keys)
    assert not queue.trainable_weights


@pytest.mark.parametrize(
    "size, batch_sizes",
    [
        (8, [4, 4, 2, 4, 4]),  # wraps exactly, then a batch straddles the end
        (10, [4, 4, 4]),  # size not a multiple of the batch
        (4, [6, 2, 6]),  # batches larger than the queue keep their newest keys
        (5, [1, 5, 11]),
    ],
)
def test_enqueue_is_fifo_with_wrap_around(size, batch_sizes, rng):
    queue = KeyQueue(size=size, dim=3)
    expected, pointer = queue.keys.numpy(), 0
    for n in batch_sizes:
        keys = rng.normal(size=(n, 3)).astype("float32")
        queue.enqueue(keys)
        expected, pointer = fifo(expected, pointer, keys)
        assert int(queue.pointer.numpy()) == pointer
        np.testing.assert_allclose(queue.keys.numpy(), expected, atol=1e-6)


def test_batch_larger_than_queue_keeps_its_newest_keys(rng):
    queue = KeyQueue(size=4, dim=2)
    queue.enqueue(rng.normal(size=(1, 2)).astype("float32"))  # pointer 1
    keys = rng.normal(size=(6, 2)).astype("float32")
    queue.enqueue(keys)
    # Keys 0..5 go to rows 1, 2, 3, 0, 1, 2: rows 3 and 0 hold keys 2 and 3, rows 1, 2 the
    # newest, 4 and 5; the pointer moved by 6.
    np.testing.assert_allclose(queue.keys.numpy(), normalize(keys[[3, 4, 5, 2]]), atol=1e-6)
    assert int(queue.pointer.numpy()) == 3


def test_enqueue_in_a_tf_function_with_unknown_batch(rng):
    queue = KeyQueue(size=6, dim=3)

    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    def enqueue(keys):
        queue.enqueue(keys)

    expected, pointer = queue.keys.numpy(), 0
    for n in (4, 4, 7):
        keys = rng.normal(size=(n, 3)).astype("float32")
        enqueue(keys)
        expected, pointer = fifo(expected, pointer, keys)
    assert int(queue.pointer.numpy()) == pointer
    np.testing.assert_allclose(queue.keys.numpy(), expected, atol=1e-6)


def test_call_returns_the_keys(rng):
    queue = KeyQueue(size=4, dim=3)
    queue.enqueue(rng.normal(size=(3, 3)).astype("float32"))
    keys = queue()
    assert tf.is_tensor(keys) and keys.shape == (4, 3)
    np.testing.assert_array_equal(np.asarray(keys), queue.keys.numpy())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"size": 0}, ValueError, "`size` must be an int >= 1. Received: size=0"),
        ({"size": 2.5}, TypeError, "`size` must be an int"),
        ({"size": "8"}, TypeError, "`size`"),
        ({"size": True}, TypeError, "`size`"),
        ({"dim": 0}, ValueError, "`dim` must be an int >= 1. Received: dim=0"),
        ({"dim": 4.0}, TypeError, "`dim`"),
        ({"seed": -1}, ValueError, "`seed` must be an int >= 0. Received: seed=-1"),
        ({"seed": 1.5}, TypeError, "`seed`"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        KeyQueue(**{"size": 8, "dim": 4, **kwargs})


def test_keys_of_another_shape_are_refused():
    queue = KeyQueue(size=8, dim=4)
    with pytest.raises(ValueError, match=r"`keys` must have shape \(n, dim\) with 4"):
        queue.enqueue(np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"`keys` must have shape \(n, dim\) \(rank 2\)"):
        queue.enqueue(np.ones((4,), "float32"))
    assert int(queue.pointer.numpy()) == 0


def test_config_round_trips():
    queue = KeyQueue(size=8, dim=3, seed=5, name="queue")
    config = queue.get_config()
    json.dumps(config)
    assert (config["size"], config["dim"], config["seed"]) == (8, 3, 5)
    again = KeyQueue.from_config(config)
    assert (again.size, again.dim, again.seed, again.name) == (8, 3, 5, "queue")
    np.testing.assert_array_equal(again.keys.numpy(), queue.keys.numpy())  # seeded init


def test_keys_and_pointer_survive_keras_save_and_load(tmp_path, rng):
    queue = KeyQueue(size=6, dim=3, seed=1)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, queue(inputs))
    queue.enqueue(rng.normal(size=(4, 3)).astype("float32"))
    model.save(tmp_path / "queue.keras")
    restored = keras.models.load_model(tmp_path / "queue.keras").layers[-1]
    assert (restored.size, restored.dim, restored.seed) == (6, 3, 1)
    assert int(restored.pointer.numpy()) == 4
    np.testing.assert_array_equal(restored.keys.numpy(), queue.keys.numpy())

"""Retrieval Recall@K and ranks against a brute-force NumPy reference."""

import numpy as np
import pytest

from keras_contrastive.evaluation import retrieval_recall


def reference_ranks(queries, candidates, is_positive):
    """Full sort of every query; ties put negatives before positives."""
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    candidates = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    ranks = []
    for i, query in enumerate(queries.astype("float64")):
        scores = candidates.astype("float64") @ query
        positive = is_positive(i)
        order = np.lexsort((positive, -scores))
        ranks.append(np.flatnonzero(positive[order])[0] + 1)
    return np.array(ranks)


def reference_recall(images, texts, text_to_image, ks):
    image_ranks = reference_ranks(images, texts, lambda i: text_to_image == i)
    text_ranks = reference_ranks(
        texts, images, lambda t: np.arange(len(images)) == text_to_image[t]
    )
    result = {}
    for direction, ranks in (("image_to_text", image_ranks), ("text_to_image", text_ranks)):
        for k in ks:
            result[f"{direction}_recall@{k}"] = np.mean(ranks <= k)
        result[f"{direction}_mean_rank"] = np.mean(ranks)
        result[f"{direction}_median_rank"] = np.median(ranks)
    return result


@pytest.mark.parametrize("noise", [0.5, 1.5])
def test_matches_numpy_with_several_captions(rng, noise):
    images = rng.normal(size=(12, 6)).astype("float32")
    text_to_image = np.concatenate([np.repeat(np.arange(12), 3), rng.integers(0, 12, size=5)])
    texts = images[text_to_image] + noise * rng.normal(size=(41, 6)).astype("float32")
    got = retrieval_recall(images, texts, text_to_image, ks=(1, 2, 5), batch_size=5)
    assert got == pytest.approx(reference_recall(images, texts, text_to_image, (1, 2, 5)))


def test_ties_count_against_the_query():
    basis = np.eye(3, dtype="float32")
    images = basis[[0, 1, 1]]  # images 1 and 2 are identical
    texts = basis[[0, 1, 2, 1]]
    text_to_image = np.array([0, 1, 2, 2])
    got = retrieval_recall(images, texts, text_to_image, ks=(1, 2))
    assert got == pytest.approx(reference_recall(images, texts, text_to_image, (1, 2)))
    # Text 1 ties between images 1 and 2: rank 2 whichever is its image.
    assert got["text_to_image_recall@1"] == 0.25
    constant = retrieval_recall(np.ones((4, 2)), np.ones((4, 2)), np.arange(4), ks=(1,))
    assert constant["image_to_text_recall@1"] == 0.0
    assert constant["text_to_image_mean_rank"] == 4.0


def test_perfect_embeddings(rng):
    images = rng.normal(size=(10, 8))
    texts = np.repeat(images, 5, axis=0)
    got = retrieval_recall(images, texts, np.repeat(np.arange(10), 5))
    assert got["image_to_text_recall@1"] == got["text_to_image_recall@1"] == 1.0
    assert got["image_to_text_median_rank"] == 1.0
    assert sorted(got) == sorted(
        f"{d}_{m}"
        for d in ("image_to_text", "text_to_image")
        for m in ("recall@1", "recall@5", "recall@10", "mean_rank", "median_rank")
    )


@pytest.mark.parametrize(
    "change, match",
    [
        ({"text_to_image": np.array([0, 1, 2, 3])}, "text_to_image"),
        ({"text_to_image": np.array([0, 1, -1])}, "text_to_image"),
        ({"text_to_image": np.array([0, 1])}, "text_to_image"),
        ({"text_to_image": np.array([0, 1, 1])}, "text_to_image"),  # image 2 uncaptioned
        ({"text_to_image": np.array([0.0, 1.0, 2.0])}, "text_to_image"),
        ({"ks": (1, 4)}, "ks"),
        ({"ks": 1}, "ks"),
        ({"image_embeddings": np.full((3, 2), np.nan)}, "image_embeddings"),
        ({"text_embeddings": np.ones((3, 5))}, "text_embeddings"),
    ],
)
def test_bad_input_names_the_argument(change, match):
    args = {
        "image_embeddings": np.eye(3, 2),
        "text_embeddings": np.eye(3, 2),
        "text_to_image": np.arange(3),
        "ks": (1,),
    }
    args.update(change)
    with pytest.raises(ValueError, match=f"`{match}`"):
        retrieval_recall(**args)

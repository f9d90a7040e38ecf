"""Plots write PNG files of the documented pixel size."""

import matplotlib.image
import numpy as np
import pytest

from keras_contrastive.evaluation import plot_embeddings, plot_retrieval, plot_similarity_matrix


def png_size(path):
    """(height, width) of a non-empty PNG file."""
    assert path.stat().st_size > 0
    return matplotlib.image.imread(path).shape[:2]


@pytest.mark.parametrize(
    "methods, figsize, size",
    [(("pca",), (3, 2), (200, 300)), (None, None, (500, 1000))],  # None: PCA + t-SNE
)
def test_plot_embeddings(tmp_path, rng, methods, figsize, size):
    labels = np.repeat(np.arange(3), 10)
    x = rng.normal(size=(30, 5)) + 3 * np.eye(5)[labels]
    path = tmp_path / "embeddings.png"
    plot_embeddings(x, labels, path, methods=methods, figsize=figsize, class_names="abc")
    assert png_size(path) == size


def test_plot_retrieval(tmp_path, rng):
    queries = rng.uniform(size=(2, 8, 8, 3))
    results = rng.uniform(size=(2, 4, 8, 8, 3))
    path = tmp_path / "retrieval.png"
    plot_retrieval(
        queries,
        results,
        path,
        scores=rng.uniform(size=(2, 4)),
        matches=rng.uniform(size=(2, 4)) > 0.5,
        cell_size=1.0,
        dpi=50,
    )
    assert png_size(path) == (100, 250)


def test_plot_similarity_matrix(tmp_path, rng):
    images = rng.uniform(size=(3, 8, 8))
    embeddings = rng.normal(size=(3, 4))
    path = tmp_path / "similarity.png"
    plot_similarity_matrix(
        embeddings, embeddings + 0.1, images, ["a cat", "a dog", "a car"], path, dpi=50
    )
    assert png_size(path) == (int(50 * (1.5 + 0.6 * 3)), int(50 * (4 + 0.8 * 3)))


def test_bad_input_names_the_argument(tmp_path, rng):
    path = tmp_path / "x.png"
    with pytest.raises(ValueError, match="`labels`"):
        plot_embeddings(rng.normal(size=(10, 3)), np.zeros(9, "int64"), path)
    with pytest.raises(ValueError, match="`methods`"):
        plot_embeddings(rng.normal(size=(10, 3)), np.zeros(10, "int64"), path, methods=["umap"])
    with pytest.raises(ValueError, match="`class_names`"):
        plot_embeddings(
            rng.normal(size=(10, 3)), np.arange(10), path, methods=["pca"], class_names=["a"]
        )
    with pytest.raises(ValueError, match="`results`"):
        plot_retrieval(rng.uniform(size=(2, 8, 8)), rng.uniform(size=(3, 4, 8, 8)), path)
    with pytest.raises(ValueError, match="`scores`"):
        plot_retrieval(
            rng.uniform(size=(2, 8, 8)),
            rng.uniform(size=(2, 4, 8, 8)),
            path,
            scores=np.zeros((2, 3)),
        )
    with pytest.raises(ValueError, match="`captions`"):
        plot_similarity_matrix(np.eye(2), np.eye(2), np.zeros((2, 4, 4)), ["a"], path)
    assert not path.exists()

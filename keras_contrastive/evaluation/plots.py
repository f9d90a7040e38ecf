"""PNG pictures of embeddings, retrieval results and image–text similarities.

Figures are drawn with matplotlib's object API (`matplotlib.figure.Figure`,
Agg canvas), so plotting never changes the pyplot backend of the caller.
matplotlib (and scikit-learn for t-SNE) are imported only when a function is
called. Each PNG is exactly `figsize × dpi` pixels.
"""

import importlib.util

import numpy as np

from keras_contrastive.evaluation._data import as_embeddings, as_labels, check_same_dimension
from keras_contrastive.evaluation._search import normalize
from keras_contrastive.ops._validation import check_choice

PROJECTIONS = ("pca", "tsne")


def _figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("Plotting needs matplotlib: `pip install matplotlib`.") from error
    return Figure(figsize=figsize, layout="constrained")


def _show_image(ax, image):
    """Draws one image rescaled to [0, 1]; grayscale for 2-D or 1-channel."""
    image = np.asarray(image, dtype="float32")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])


def _colors(count):
    """`count` distinct colours: tab10/tab20, or viridis for more classes."""
    from matplotlib import colormaps

    if count <= 20:
        cmap = colormaps["tab10" if count <= 10 else "tab20"]
        return [cmap(i) for i in range(count)]
    return colormaps["viridis"](np.linspace(0, 1, count))


def _pca(x):
    """The first two principal components of the rows of `x`."""
    centered = x - x.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    return centered @ components[:2].T


def _has_sklearn():
    try:
        return importlib.util.find_spec("sklearn") is not None
    except (ImportError, ValueError):  # an import hook refused it, or a stub in sys.modules
        return False


def _tsne(x, seed):
    try:
        from sklearn.manifold import TSNE
    except ImportError as error:
        raise ImportError(
            "The t-SNE projection needs scikit-learn: `pip install scikit-learn`, "
            'or pass methods=("pca",).'
        ) from error
    perplexity = min(30.0, max(1.0, (len(x) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x)


def plot_embeddings(
    embeddings, labels, path, methods=None, class_names=None, figsize=None, dpi=100, seed=0
):
    """Scatter plots of a 2-D projection of embeddings, coloured by label.

    Args:
        embeddings: `(N, D)` embeddings, `D >= 2`, `N >= 3`.
        labels: `(N,)` integer class ids.
        path: where to write the PNG.
        methods: projections drawn side by side, from `"pca"` and `"tsne"`
            (t-SNE of the L2-normalized embeddings, seeded by `seed`). Default
            `None`: PCA, and t-SNE too when scikit-learn is installed.
        class_names: optional names of the classes for the legend.
        figsize: `(width, height)` in inches. Default `(5 · panels, 5)`.
        dpi: pixels per inch. Default 100.
        seed: t-SNE random state. Default 0.

    Example:

    >>> import numpy as np
    >>> x = np.random.normal(size=(50, 8))
    >>> plot_embeddings(x, np.arange(50) % 3, "/tmp/embeddings.png", methods=("pca",))

    Reference: van der Maaten and Hinton, "Visualizing Data using t-SNE",
    JMLR 2008.
    """
    x = as_embeddings("embeddings", embeddings)
    labels = as_labels("labels", labels, len(x), "embeddings")
    if x.shape[0] < 3 or x.shape[1] < 2:
        raise ValueError(
            "`embeddings` needs at least 3 rows and 2 columns to project. "
            f"Received: embeddings.shape={x.shape}"
        )
    if methods is None:
        methods = PROJECTIONS if _has_sklearn() else ("pca",)
    methods = [check_choice("methods", method, PROJECTIONS) for method in methods]
    if not methods:
        raise ValueError("`methods` must name at least one projection. Received: ()")
    classes = np.unique(labels)
    names = [str(c) for c in range(classes.max() + 1)] if class_names is None else class_names
    if len(names) <= classes.max():
        raise ValueError(
            f"`class_names` must name every label up to {classes.max()}. "
            f"Received: {len(names)} class names"
        )
    colors = _colors(len(classes))
    fig = _figure(figsize or (5 * len(methods), 5))
    for ax, method in zip(fig.subplots(1, len(methods), squeeze=False)[0], methods, strict=True):
        points = _pca(x) if method == "pca" else _tsne(normalize(x), seed)
        for label, color in zip(classes, colors, strict=True):
            ax.scatter(*points[labels == label].T, s=12, alpha=0.8, color=color, label=names[label])
        ax.set_title("PCA" if method == "pca" else "t-SNE")
        ax.set_xticks([])
        ax.set_yticks([])
    if len(classes) <= 20:
        ax.legend(loc="best", fontsize="small", title="label")
    fig.savefig(path, dpi=dpi, format="png")


def plot_retrieval(queries, results, path, scores=None, matches=None, cell_size=1.5, dpi=100):
    """A grid with one query image per row followed by its retrieved images.

    Args:
        queries: `(Q, H, W)` or `(Q, H, W, C)` query images.
        results: `(Q, K, H, W)` or `(Q, K, H, W, C)` the top-K neighbours of
            each query (e.g. the inputs indexed by `EmbeddingIndex.search` ids).
        path: where to write the PNG.
        scores: optional `(Q, K)` similarities, written above the neighbours.
        matches: optional `(Q, K)` booleans; neighbours get a green (True) or
            red (False) frame, e.g. "same label as the query".
        cell_size: inches per image. Default 1.5.
        dpi: pixels per inch. Default 100: the PNG is
            `cell_size · dpi · (K + 1)` by `cell_size · dpi · Q` pixels.

    Example:

    >>> import numpy as np
    >>> images = np.random.uniform(size=(10, 8, 8))
    >>> plot_retrieval(images[:2], images[2:8].reshape(2, 3, 8, 8), "/tmp/r.png")
    """
    queries, results = np.asarray(queries), np.asarray(results)
    if queries.ndim not in (3, 4) or results.ndim != queries.ndim + 1:
        raise ValueError(
            "`queries` must be (Q, H, W[, C]) images and `results` (Q, K, H, W[, C]). "
            f"Received: queries.shape={queries.shape}, results.shape={results.shape}"
        )
    if results.shape[0] != queries.shape[0] or results.shape[2:] != queries.shape[1:]:
        raise ValueError(
            "`results` must hold K images of the query image shape for each of "
            f"the queries. Received: queries.shape={queries.shape}, "
            f"results.shape={results.shape}"
        )
    num_queries, k = results.shape[:2]
    for name, extra in (("scores", scores), ("matches", matches)):
        if extra is not None and np.shape(extra) != (num_queries, k):
            raise ValueError(
                f"`{name}` must have shape ({num_queries}, {k}), one value per "
                f"result. Received: {name}.shape={np.shape(extra)}"
            )
    fig = _figure((cell_size * (k + 1), cell_size * num_queries))
    axes = fig.subplots(num_queries, k + 1, squeeze=False)
    for row in range(num_queries):
        _show_image(axes[row, 0], queries[row])
        axes[row, 0].set_title("query", fontsize="small")
        for col in range(k):
            ax = axes[row, col + 1]
            _show_image(ax, results[row, col])
            if scores is not None:
                ax.set_title(f"{scores[row][col]:.2f}", fontsize="small")
            if matches is not None:
                for spine in ax.spines.values():
                    spine.set_color("tab:green" if matches[row][col] else "tab:red")
                    spine.set_linewidth(3)
    fig.savefig(path, dpi=dpi, format="png")


SIMILARITY_TITLE = "Cosine similarity of each caption (row) to each image (column)"


def plot_similarity_matrix(
    image_embeddings,
    text_embeddings,
    images,
    captions,
    path,
    figsize=None,
    dpi=100,
    title=SIMILARITY_TITLE,
):
    """The cosine similarity of every caption to every image, as in CLIP's figure.

    Rows are the captions (labelled on the left), columns the images (drawn
    above the matrix); each cell shows its similarity, and a colour bar the
    scale, fixed at [-1, 1] so that pictures compare.

    Args:
        image_embeddings: `(N, D)` embeddings of `images`.
        text_embeddings: `(M, D)` embeddings of `captions`.
        images: `(N, H, W)` or `(N, H, W, C)` images.
        captions: the `M` caption strings.
        path: where to write the PNG.
        figsize: `(width, height)` in inches. Default
            `(4 + 0.8 · N, 1.5 + 0.6 · M)`.
        dpi: pixels per inch. Default 100.
        title: the figure's title, or `None` for none. Default: says that the
            cells are cosine similarities of captions (rows) to images (columns).

    Example:

    >>> import numpy as np
    >>> e = np.eye(3)
    >>> plot_similarity_matrix(e, e, np.random.uniform(size=(3, 8, 8)),
    ...                        ["one", "two", "three"], "/tmp/similarity.png")

    Reference: Radford et al., "Learning Transferable Visual Models From
    Natural Language Supervision", ICML 2021 (Figure of zero-shot similarities).
    """
    image_embeddings = as_embeddings("image_embeddings", image_embeddings)
    text_embeddings = as_embeddings("text_embeddings", text_embeddings)
    images, captions = np.asarray(images), [str(c) for c in captions]
    if len(images) != len(image_embeddings):
        raise ValueError(
            "`images` must have one image per row of `image_embeddings`. "
            f"Received: {len(images)} images, image_embeddings.shape="
            f"{image_embeddings.shape}"
        )
    if len(captions) != len(text_embeddings):
        raise ValueError(
            "`captions` must have one caption per row of `text_embeddings`. "
            f"Received: {len(captions)} captions, text_embeddings.shape="
            f"{text_embeddings.shape}"
        )
    check_same_dimension("text_embeddings", text_embeddings, "image_embeddings", image_embeddings)
    similarity = normalize(text_embeddings) @ normalize(image_embeddings).T
    n, m = len(images), len(captions)
    fig = _figure(figsize or (4 + 0.8 * n, 1.5 + 0.6 * m))
    ax = fig.subplots()
    matrix = ax.imshow(
        similarity, cmap="viridis", vmin=-1.0, vmax=1.0, extent=(-0.5, n - 0.5, m - 0.5, -0.5)
    )
    for row in range(m):
        for col in range(n):
            value = similarity[row, col]
            color = "black" if value > 0.25 else "white"  # readable on viridis
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", color=color)
    for col, image in enumerate(images):
        _show_image(ax, image)
        ax.images[-1].set_extent((col - 0.45, col + 0.45, -0.6, -1.5))
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(m - 0.5, -1.55)
    ax.set_yticks(range(m), captions)
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(matrix, ax=ax, shrink=0.8, label="cosine similarity")
    if title is not None:
        ax.set_title(title)
    fig.savefig(path, dpi=dpi, format="png")

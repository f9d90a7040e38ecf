"""Image–text retrieval Recall@K with several captions per image."""

import numpy as np
from keras import ops

from keras_contrastive.evaluation._data import as_embeddings, check_k, check_same_dimension
from keras_contrastive.evaluation._search import normalize


def _ranks(queries, candidates, positives, batch_size):
    """1-based rank of the best positive candidate of each query.

    `positives(start, stop)` gives the `(stop - start, M)` boolean positive
    mask of a batch of queries. Rank = 1 + the number of negatives scoring at
    least as high as the best positive: ties count against the query, so a
    constant encoder gets the worst rank, not the best.
    """
    candidates = ops.convert_to_tensor(candidates)
    ranks = []
    for start in range(0, len(queries), batch_size):
        stop = min(start + batch_size, len(queries))
        scores = ops.matmul(ops.convert_to_tensor(queries[start:stop]), ops.transpose(candidates))
        mask = ops.convert_to_tensor(positives(start, stop))
        best = ops.max(ops.where(mask, scores, -np.inf), axis=1, keepdims=True)
        beaten = ops.logical_and(ops.logical_not(mask), scores >= best)
        ranks.append(ops.convert_to_numpy(ops.sum(ops.cast(beaten, "int64"), axis=1)))
    return np.concatenate(ranks) + 1


def _summary(prefix, ranks, ks):
    metrics = {f"{prefix}_recall@{k}": float(np.mean(ranks <= k)) for k in ks}
    metrics[f"{prefix}_mean_rank"] = float(np.mean(ranks))
    metrics[f"{prefix}_median_rank"] = float(np.median(ranks))
    return metrics


def retrieval_recall(
    image_embeddings, text_embeddings, text_to_image, ks=(1, 5, 10), batch_size=1024
):
    """Image→text and text→image Recall@K, mean and median rank (cosine).

    Text `t` is a caption of image `text_to_image[t]`; an image may have
    several captions (5 in COCO and Flickr30K). An image→text query is a hit
    at K when any of its captions is among the K most similar texts; a
    text→image query when its image is among the K most similar images. The
    rank of a query is 1 + the number of non-matching candidates scoring at
    least as high as its best match (ties count against the query). Queries
    are scored `batch_size` at a time. This is the COCO-5K / Flickr-1K test
    protocol when given the 5,000 (or 1,000) test images and their captions.

    Args:
        image_embeddings: `(I, D)` image embeddings (normalized here).
        text_embeddings: `(T, D)` text embeddings (normalized here).
        text_to_image: `(T,)` integer index into the images of each caption;
            every image needs at least one caption.
        ks: the K of Recall@K, each at most `min(I, T)`. Default (1, 5, 10).
        batch_size: queries scored at once. Default 1024.

    Returns:
        A dict of floats with keys `"image_to_text_recall@K"` and
        `"text_to_image_recall@K"` for each K (fractions in `[0, 1]`), and
        `"image_to_text_mean_rank"`, `"image_to_text_median_rank"`,
        `"text_to_image_mean_rank"`, `"text_to_image_median_rank"` (1 = best).

    Example:

    >>> import numpy as np
    >>> images = np.eye(3, dtype="float32")
    >>> texts = np.repeat(images, 2, axis=0)  # two captions per image
    >>> retrieval_recall(images, texts, [0, 0, 1, 1, 2, 2], ks=(1,))[
    ...     "image_to_text_recall@1"]
    1.0

    References: Karpathy and Fei-Fei, "Deep Visual-Semantic Alignments for
    Generating Image Descriptions", CVPR 2015 (the COCO-5K split); Faghri et
    al., "VSE++", BMVC 2018; Radford et al., "CLIP", ICML 2021.
    """
    images = normalize(as_embeddings("image_embeddings", image_embeddings))
    texts = normalize(as_embeddings("text_embeddings", text_embeddings))
    check_same_dimension("text_embeddings", texts, "image_embeddings", images)
    owner = _text_to_image(text_to_image, len(texts), len(images))
    if not isinstance(ks, (list, tuple)) or not ks:
        raise ValueError(f"`ks` must be a non-empty tuple of integers. Received: ks={ks!r}")
    ks = [check_k("ks", k, min(len(images), len(texts)), "images or texts") for k in ks]
    image_ids = np.arange(len(images))
    image_ranks = _ranks(
        images, texts, lambda a, b: image_ids[a:b, None] == owner[None, :], batch_size
    )
    text_ranks = _ranks(
        texts, images, lambda a, b: owner[a:b, None] == image_ids[None, :], batch_size
    )
    return {
        **_summary("image_to_text", image_ranks, ks),
        **_summary("text_to_image", text_ranks, ks),
    }


def _text_to_image(text_to_image, num_texts, num_images):
    """Checks the caption → image mapping: `(T,)` ids covering every image."""
    owner = np.asarray(ops.convert_to_numpy(text_to_image))
    if owner.shape != (num_texts,) or not np.issubdtype(owner.dtype, np.integer):
        raise ValueError(
            f"`text_to_image` must be ({num_texts},) integer image indices, one per "
            f"row of `text_embeddings`. Received: text_to_image.shape={owner.shape}, "
            f"dtype={owner.dtype}"
        )
    outside = owner[(owner < 0) | (owner >= num_images)]
    if outside.size:
        raise ValueError(
            f"`text_to_image` must index the {num_images} images, in "
            f"[0, {num_images - 1}]. Received out-of-range values: {outside[:5].tolist()}"
        )
    uncaptioned = np.setdiff1d(np.arange(num_images), owner)
    if uncaptioned.size:
        raise ValueError(
            "`text_to_image` must give every image at least one caption. Images "
            f"without a caption: {uncaptioned[:5].tolist()}"
        )
    return owner

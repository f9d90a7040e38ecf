"""Independent NumPy (float64) references for every loss, written with loops.

They follow the papers' formulas directly (no masks or matrix tricks), so that
they share no code or structure with the library.
"""

import math

import numpy as np


def normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def log_sum_exp(values):
    values = np.asarray(values, np.float64)
    top = values.max()
    return top + np.log(np.sum(np.exp(values - top)))


def ntxent(x, temperature):
    """(B, 2) anchor losses; row k = (view 1, view 2) of pair k."""
    b = x.shape[0]
    z = normalize(np.concatenate([x[:, 0], x[:, 1]]))
    out = np.zeros((b, 2))
    for i in range(2 * b):
        j = (i + b) % (2 * b)
        others = [z[i] @ z[k] / temperature for k in range(2 * b) if k != i]
        out[i % b, i // b] = -(z[i] @ z[j] / temperature) + log_sum_exp(others)
    return out


def info_nce(x, temperature, negatives=None):
    q, k = normalize(x[:, 0]), normalize(x[:, 1])
    keys = list(k) + ([] if negatives is None else list(normalize(negatives)))
    out = []
    for i in range(len(q)):
        logits = [q[i] @ key / temperature for key in keys]
        out.append(-(q[i] @ k[i] / temperature) + log_sum_exp(logits))
    return np.array(out)


def supcon(labels, x, temperature, base_temperature=None):
    """Per-anchor losses in (B, V) order and the validity of each anchor."""
    x = x[:, None] if x.ndim == 2 else x
    b, v, _ = x.shape
    feats = normalize(x.reshape(b * v, -1))  # example-major: row = k * v + view
    labs = np.repeat(labels, v)
    factor = 1.0 if base_temperature is None else temperature / base_temperature
    losses, valid = np.zeros(b * v), np.zeros(b * v, bool)
    for i in range(b * v):
        others = [a for a in range(b * v) if a != i]
        positives = [p for p in others if labs[p] == labs[i]]
        if not positives:
            continue
        denominator = log_sum_exp([feats[i] @ feats[a] / temperature for a in others])
        terms = [feats[i] @ feats[p] / temperature - denominator for p in positives]
        losses[i], valid[i] = -factor * np.mean(terms), True
    return losses.reshape(b, v), valid.reshape(b, v)


def clip(x, temperature, group_ids=None):
    images, texts = normalize(x[:, 0]), normalize(x[:, 1])
    b = len(images)
    ids = np.arange(b) if group_ids is None else np.asarray(group_ids)
    out = []
    for i in range(b):
        positives = [j for j in range(b) if ids[j] == ids[i]]
        i2t = [images[i] @ texts[j] / temperature for j in range(b)]
        t2i = [texts[i] @ images[j] / temperature for j in range(b)]
        ce_i2t = log_sum_exp(i2t) - np.mean([i2t[j] for j in positives])
        ce_t2i = log_sum_exp(t2i) - np.mean([t2i[j] for j in positives])
        out.append(0.5 * (ce_i2t + ce_t2i))
    return np.array(out)


def distance(a, b, metric):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if metric == "cosine":
        return 1.0 - normalize(a) @ normalize(b)
    sq = np.sum((a - b) ** 2)
    return sq if metric == "squared_euclidean" else np.sqrt(sq)


def contrastive_margin(q, x, margin, squared, metric):
    out = []
    for k in range(len(q)):
        d = distance(x[k, 0], x[k, 1], metric)
        gap = max(margin - d, 0.0)
        if squared:
            out.append(q[k] * d**2 + (1 - q[k]) * gap**2)
        else:
            out.append(q[k] * d + (1 - q[k]) * gap)
    return np.array(out)


def triplet_explicit(x, margin, metric):
    return np.array(
        [max(distance(a, p, metric) - distance(a, n, metric) + margin, 0.0) for a, p, n in x]
    )


def triplet_mined(labels, x, margin, mining, metric):
    """The scalar mined triplet loss, as defined by each strategy."""
    b = len(labels)
    d = np.array([[distance(x[i], x[j], metric) for j in range(b)] for i in range(b)])
    pos = [[j for j in range(b) if j != i and labels[j] == labels[i]] for i in range(b)]
    neg = [[j for j in range(b) if labels[j] != labels[i]] for i in range(b)]
    if mining == "batch_all":
        values = [
            max(d[a, p] - d[a, n] + margin, 0.0) for a in range(b) for p in pos[a] for n in neg[a]
        ]
        values = [value for value in values if value > 1e-16]
        return np.mean(values) if values else 0.0
    if mining == "batch_hard":
        values = [
            max(max(d[a, pos[a]]) - min(d[a, neg[a]]) + margin, 0.0)
            for a in range(b)
            if pos[a] and neg[a]
        ]
        return np.mean(values) if values else 0.0
    values = []  # semi_hard
    for a in range(b):
        if not neg[a]:
            continue
        for p in pos[a]:
            farther = [d[a, n] for n in neg[a] if d[a, n] > d[a, p]]
            chosen = min(farther) if farther else max(d[a, neg[a]])
            values.append(max(d[a, p] - chosen + margin, 0.0))
    return np.mean(values) if values else 0.0


def siglip(x, temperature, bias, group_ids=None):
    """Per-image sums of -log sigmoid(z * (x_i . y_j / temperature + bias)) over all texts j."""
    images, texts = normalize(x[:, 0]), normalize(x[:, 1])
    b = len(images)
    ids = np.arange(b) if group_ids is None else np.asarray(group_ids)
    out = np.zeros(b)
    for i in range(b):
        for j in range(b):
            sign = 1.0 if ids[i] == ids[j] else -1.0
            logit = images[i] @ texts[j] / temperature + bias
            out[i] += np.logaddexp(0.0, -sign * logit)  # -log(sigmoid(sign * logit))
    return out


# ---------------------------------------------------- hard negatives (issue 16)
PLAIN = (0.0, 0.0, False)  # (tau_plus, beta, decoupled): the plain softmax loss


def hcl_anchor(anchor, positives, negatives, tau, tau_plus, beta, decoupled):
    """Mean over `positives` of the loss of `anchor` against `negatives` (unit vectors)."""
    if len(negatives) == 0:
        return 0.0
    n = len(negatives)
    sims = [float(anchor @ negative) for negative in negatives]
    neg = [math.exp(s / tau) for s in sims]
    imp = [math.exp(beta * s / tau) for s in sims]
    reweight = sum(i * g for i, g in zip(imp, neg, strict=True)) / (sum(imp) / n)
    losses = []
    for positive in positives:
        pos = math.exp(float(anchor @ positive) / tau)
        if tau_plus > 0:
            ng = max((-tau_plus * n * pos + reweight) / (1 - tau_plus), n * math.exp(-1 / tau))
        else:
            ng = reweight
        if decoupled:
            losses.append(-math.log(pos) + math.log(ng))
        else:
            losses.append(-math.log(pos / (pos + ng)))
    return float(np.mean(losses))


def _own(hn, k):
    return [] if hn is None else list(normalize(hn[k])) if hn.shape[1] else []


def _hcl_ntxent(x, tau, options, hn=None, ids=None):
    b = x.shape[0]
    ids = list(range(b)) if ids is None else list(ids)
    z = normalize(np.concatenate([x[:, 0], x[:, 1]]))
    out = np.zeros((b, 2))
    for i in range(2 * b):
        k, p = i % b, (i + b) % (2 * b)
        negatives = [z[j] for j in range(2 * b) if j not in (i, p) and ids[j % b] != ids[k]]
        negatives += _own(hn, k)
        out[k, i // b] = hcl_anchor(z[i], [z[p]], negatives, tau, *options)
    return out


def _hcl_info_nce(x, tau, options, queue=None, hn=None, ids=None):
    q, keys = normalize(x[:, 0]), normalize(x[:, 1])
    b = len(q)
    ids = list(range(b)) if ids is None else list(ids)
    extra = [] if queue is None else list(normalize(queue))
    out = []
    for i in range(b):
        negatives = [keys[j] for j in range(b) if j != i and ids[j] != ids[i]]
        negatives += extra + _own(hn, i)
        out.append(hcl_anchor(q[i], [keys[i]], negatives, tau, *options))
    return np.array(out)


def _hcl_clip(x, tau, options, hn=None, ids=None):
    images, texts = normalize(x[:, 0]), normalize(x[:, 1])
    b = len(images)
    ids = list(range(b)) if ids is None else list(ids)
    out = []
    for i in range(b):
        values = []
        for anchor, others, own in ((images[i], texts, _own(hn, i)), (texts[i], images, [])):
            positives = [others[j] for j in range(b) if ids[j] == ids[i]]
            negatives = [others[j] for j in range(b) if ids[j] != ids[i]] + own
            if options == PLAIN:
                logits = [float(anchor @ c) / tau for c in list(others) + own]
                pos = [float(anchor @ c) / tau for c in positives]
                values.append(log_sum_exp(logits) - float(np.mean(pos)))
            else:
                values.append(hcl_anchor(anchor, positives, negatives, tau, *options))
        out.append(0.5 * sum(values))
    return np.array(out)


def _hcl_supcon(x, labels, tau, hn=None):
    """`(B, V)`; every anchor is assumed to have a positive."""
    b, nv, _ = x.shape
    z = normalize(x)
    out = np.zeros((b, nv))
    for k in range(b):
        for v in range(nv):
            a = z[k, v]
            others = [(j, w) for j in range(b) for w in range(nv) if (j, w) != (k, v)]
            logits = [float(a @ z[j, w]) / tau for j, w in others]
            logits += [float(a @ h) / tau for h in _own(hn, k)]
            norm = log_sum_exp(logits)
            pos = [float(a @ z[j, w]) / tau for j, w in others if labels[j] == labels[k]]
            assert pos
            out[k, v] = float(np.mean([norm - s for s in pos]))
    return out


def hard_negatives(name, x, tau, options=PLAIN, hn=None, ids=None, queue=None):
    x = np.asarray(x, np.float64)
    hn = None if hn is None else np.asarray(hn, np.float64)
    if name == "ntxent":
        return _hcl_ntxent(x, tau, options, hn, ids)
    if name == "info_nce":
        return _hcl_info_nce(x, tau, options, queue, hn, ids)
    if name == "clip":
        return _hcl_clip(x, tau, options, hn, ids)
    return _hcl_supcon(x, ids, tau, hn)


def numeric_gradient(fn, x, eps=1e-6):
    x = np.array(x, np.float64)
    gradient = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        gradient[index] = (fn(up) - fn(down)) / (2 * eps)
    return gradient

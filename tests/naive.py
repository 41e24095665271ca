"""Slow, obviously correct twins of the numba kernels (plain numpy and Python, float64).

Every fast function in ``kernels`` and ``engine.fit.scores`` is compared with one of these.
"""

from __future__ import annotations

import math

import numpy as np


def sq_distances(X, C):
    """(n, k) float64 squared Euclidean distances, computed from differences (no expansion)."""
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    diff = X[:, None, :] - C[None, :, :]
    return (diff * diff).sum(axis=2)


def assign(X, C):
    """Nearest centre of every row (lowest index on ties) and the squared distance to it."""
    D = sq_distances(X, C)
    labels = np.argmin(D, axis=1)  # argmin returns the first minimum
    return labels.astype(np.int64), D[np.arange(D.shape[0]), labels]


def near_ties(X, C, rel=1e-4):
    """Rows whose best and second-best squared distances differ by less than ``rel`` (relative)."""
    D = sq_distances(X, C)
    if D.shape[1] < 2:
        return np.zeros(D.shape[0], dtype=bool)
    two = np.sort(D, axis=1)[:, :2]
    return (two[:, 1] - two[:, 0]) <= rel * np.maximum(two[:, 1], 1e-30)


def lloyd_sums(X, labels, k):
    """Per-cluster coordinate sums (k, d) float64 and member counts (k,) int64."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    sums = np.zeros((k, d))
    counts = np.zeros(k, dtype=np.int64)
    for i in range(n):
        j = int(labels[i])
        sums[j] += X[i]
        counts[j] += 1
    return sums, counts


def sse(X, labels, C, weights=None):
    """Sum of squared distances of every row to its labelled centre (float64), each times its
    weight when ``weights`` are given."""
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    diff = X - C[np.asarray(labels)]
    per_row = (diff * diff).sum(axis=1)
    if weights is not None:
        per_row = per_row * np.asarray(weights, dtype=np.float64)
    return float(per_row.sum())


def weighted_sums(X, weights, labels, k):
    """Per-cluster weighted coordinate sums (k, d) and weight totals (k,), float64, row by row."""
    X = np.asarray(X, dtype=np.float64)
    sums = np.zeros((k, X.shape[1]))
    totals = np.zeros(k)
    for i in range(X.shape[0]):
        j = int(labels[i])
        sums[j] += weights[i] * X[i]
        totals[j] += weights[i]
    return sums, totals


def lloyd_step(X, C):
    """One Lloyd step: assign, then move each non-empty centre to its members' mean.

    Returns the new centres, the labels of the old centres and the SSE of those labels.
    """
    C = np.asarray(C, dtype=np.float64)
    labels, _ = assign(X, C)
    sums, counts = lloyd_sums(X, labels, C.shape[0])
    new = C.copy()
    nz = counts > 0
    new[nz] = sums[nz] / counts[nz, None]
    return new, labels, sse(X, labels, C)


def minibatch_update(Xb, labels, centers, weight_sums, batch_weights=None):
    """Running-mean rule: c_j <- (c_j * w_j + sum of batch members) / (w_j + n_j).

    With ``batch_weights`` a member counts its weight: n_j is the members' total weight and the
    sum is weighted; a centre whose members weigh nothing stays put."""
    Xb = np.asarray(Xb, dtype=np.float64)
    centers = np.array(centers, dtype=np.float64)
    weight_sums = np.array(weight_sums, dtype=np.float64)
    bw = np.ones(Xb.shape[0]) if batch_weights is None else np.asarray(batch_weights, dtype=np.float64)
    k = centers.shape[0]
    for j in range(k):
        mine = np.asarray(labels) == j
        n_j = bw[mine].sum()
        if n_j == 0:
            continue
        w = weight_sums[j]
        centers[j] = (centers[j] * w + (bw[mine, None] * Xb[mine]).sum(axis=0)) / (w + n_j)
        weight_sums[j] = w + n_j
    return centers, weight_sums


def kmeanspp_potential(X, centers):
    """Sum over rows of the squared distance to the nearest centre."""
    return float(sq_distances(X, centers).min(axis=1).sum())


def silhouette_samples(X, labels):
    """Silhouette of every row with explicit loops over rows (float64).

    a(i): mean distance to the other members of its cluster (sum / (n_own - 1));
    b(i): smallest mean distance to the members of another cluster;
    s(i) = (b - a) / max(a, b), and 0 for members of singleton clusters.
    """
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    n = X.shape[0]
    clusters = sorted(set(labels.tolist()))
    s = np.zeros(n)
    for i in range(n):
        totals = {c: 0.0 for c in clusters}
        sizes = {c: 0 for c in clusters}
        for j in range(n):
            totals[labels[j]] += math.sqrt(float(((X[i] - X[j]) ** 2).sum()))
            sizes[labels[j]] += 1
        own = labels[i]
        if sizes[own] <= 1:
            s[i] = 0.0
            continue
        a = totals[own] / (sizes[own] - 1)
        b = min(totals[c] / sizes[c] for c in clusters if c != own)
        denom = max(a, b)
        s[i] = (b - a) / denom if denom > 0 else 0.0
    return s


def kmeanspp(X, first, uniforms, k, weights=None):
    """Greedy k-means++ with the caller's uniforms, as ``kernels.kmeanspp`` documents it.

    Step c draws ``uniforms.shape[1]`` candidates with probability proportional to D(x)^2
    (the first row whose running sum of D^2 exceeds u * total) and keeps the candidate that
    lowers the potential most (the first such on ties; potentials within 1e-9 relative count as
    ties, since the kernel's float32 distances cannot separate them). Stops early when every row coincides
    with a chosen centre. Returns the chosen row indices. With ``weights`` (``kernels.kmeanspp_weighted``)
    every D^2 is multiplied by the row's weight, in the draws and in the potentials.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    chosen = [int(first)]
    closest = ((X - X[first]) ** 2).sum(axis=1)
    for c in range(1, k):
        cum = np.cumsum(w * closest)
        total = cum[-1]
        if total <= 0.0:
            break
        cands = [min(int(np.searchsorted(cum, u * total, side="right")), n - 1) for u in uniforms[c - 1]]
        pots = [(w * np.minimum(closest, ((X - X[t]) ** 2).sum(axis=1))).sum() for t in cands]
        lowest = min(pots)
        best = next(t for t, p in zip(cands, pots) if p <= lowest * (1 + 1e-9))
        chosen.append(best)
        closest = np.minimum(closest, ((X - X[best]) ** 2).sum(axis=1))
    return np.array(chosen, dtype=np.int64)


# The kernel kernels.label_sums computes what lloyd_sums defines: per-cluster sums for given labels.
label_sums = lloyd_sums


def dispersion(X, labels, means):
    """Per cluster: the sum of each member's distance to ``means[label]`` and of its square (float64)."""
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    k = means.shape[0]
    dist_sums = np.zeros(k)
    sq_sums = np.zeros(k)
    for i in range(X.shape[0]):
        j = int(labels[i])
        sq = 0.0
        for f in range(X.shape[1]):
            sq += (X[i, f] - means[j, f]) ** 2
        sq_sums[j] += sq
        dist_sums[j] += math.sqrt(sq)
    return dist_sums, sq_sums


def _clusters(X, labels):
    """The present clusters: {label: (members (m, d) float64, centroid (d,))}, in label order."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    out = {}
    for c in sorted(set(labels.tolist())):
        members = X[labels == c]
        out[c] = (members, members.mean(axis=0))
    return out


def calinski_harabasz(X, labels):
    """Calinski-Harabasz from its definition over the m clusters present among n rows:

        CH = [sum_j n_j ||c_j - c||^2 / (m - 1)] / [sum_j sum_{x in j} ||x - c_j||^2 / (n - m)]

    None when m < 2 or m >= n (undefined); 1.0 when the within-cluster sum is 0 (scikit-learn's
    convention).
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    clusters = _clusters(X, labels)
    m = len(clusters)
    if m < 2 or m >= n:
        return None
    overall = X.mean(axis=0)
    between = 0.0
    within = 0.0
    for members, centre in clusters.values():
        between += members.shape[0] * float(((centre - overall) ** 2).sum())
        for x in members:
            within += float(((x - centre) ** 2).sum())
    if within == 0.0:
        return 1.0
    return (between / (m - 1)) / (within / (n - m))


def davies_bouldin(X, labels):
    """Davies-Bouldin from its definition over the m clusters present among n rows:

        S_i = mean distance of cluster i's members to its centroid c_i
        DB  = (1/m) sum_i max_{j != i} (S_i + S_j) / ||c_i - c_j||

    None when m < 2 or m >= n; pairs with coinciding centroids are left out, and 0.0 when every
    S_i or every centroid gap is 0 (scikit-learn's conventions).
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    clusters = list(_clusters(X, labels).values())
    m = len(clusters)
    if m < 2 or m >= n:
        return None
    spread = [sum(math.sqrt(float(((x - c) ** 2).sum())) for x in members) / members.shape[0]
              for members, c in clusters]
    gaps = [[math.sqrt(float(((ci - cj) ** 2).sum())) for _, cj in clusters] for _, ci in clusters]
    if all(abs(s) <= 1e-8 for s in spread) or all(abs(g) <= 1e-8 for row in gaps for g in row):
        return 0.0
    total = 0.0
    for i in range(m):
        ratios = [(spread[i] + spread[j]) / gaps[i][j] for j in range(m) if j != i and gaps[i][j] > 0]
        total += max(ratios, default=0.0)
    return total / m


def kneedle(ks, sse, tol=1e-9):
    """Knee of a decreasing curve as ``engine.fit.sweep`` documents it: normalise k and SSE to [0, 1],
    draw the chord from the first point to the last, and take the k whose point lies farthest
    (perpendicular distance) below it. None when no point lies more than ``tol`` below the chord
    (a flat curve, a straight line, a curve above its chord)."""
    ks = [float(k) for k in ks]
    sse = [float(v) for v in sse]
    lo, hi = min(sse), max(sse)
    if hi - lo <= 0:
        return None
    xs = [(k - ks[0]) / (ks[-1] - ks[0]) for k in ks]
    ys = [(v - lo) / (hi - lo) for v in sse]
    (x0, y0), (x1, y1) = (xs[0], ys[0]), (xs[-1], ys[-1])
    length = math.hypot(x1 - x0, y1 - y0)
    best, best_dist = None, tol
    for k, x, y in zip(ks, xs, ys):
        # signed distance, positive below the chord (the chord runs down from left to right)
        below = ((x1 - x0) * (y0 - y) - (x0 - x) * (y1 - y0)) / length
        if below > best_dist:
            best, best_dist = int(k), below
    return best


def transformed_value(v, lo, hi, flag, fill):
    """One feature value: missing (not finite) -> fill; else clip (flag 1), then log1p (flag 2)."""
    if not math.isfinite(v):
        return fill
    if flag & 1:
        v = min(max(v, lo), hi)
    if flag & 2:
        v = math.log1p(v)
    return v


def kept_rows(n, kept):
    return [i for i in range(n) if kept.size == 0 or kept[i]]


def column_value(cols, i, j, params, flags):
    """Row i of feature column j through ``transformed_value`` with its row of the parameter
    table (lo, hi, fill) and its flag word."""
    lo, hi, fill = (float(x) for x in params[j])
    return transformed_value(float(cols[i, j]), lo, hi, int(flags[j]), fill)


def feature_matrix(cols, params, flags, scaling, use, kept, codes=None, hot=()):
    """The scaled float32 matrix from float64 feature columns, one value at a time: output
    column t is source column use[t] (missing -> fill; clip, flag 1; log1p, flag 2), then
    (v - scaling[t, 0]) / scaling[t, 1]; output column len(use) + m is 1 where codes[:, hot[m][0]]
    equals hot[m][1], else 0, scaled with scaling[len(use) + m]. Rows with kept False are left
    out (an empty ``kept`` keeps every row)."""
    rows = kept_rows(cols.shape[0], kept)
    out = np.empty((len(rows), len(use) + len(hot)), dtype=np.float32)
    for r, i in enumerate(rows):
        for t, j in enumerate(use):
            v = column_value(cols, i, j, params, flags)
            out[r, t] = np.float32((v - scaling[t][0]) / scaling[t][1])
        for m, (col, level) in enumerate(hot):
            v = 1.0 if codes[i, col] == level else 0.0
            out[r, len(use) + m] = np.float32((v - scaling[len(use) + m][0]) / scaling[len(use) + m][1])
    return out


def transformed_moments(cols, params, flags, kept):
    """Per column over the kept rows: mean, population standard deviation, min and max of the
    filled and transformed values (plain float64 numpy)."""
    d = cols.shape[1]
    values = np.array([[column_value(cols, i, j, params, flags) for j in range(d)]
                       for i in kept_rows(cols.shape[0], kept)])
    return values.mean(axis=0), values.std(axis=0), values.min(axis=0), values.max(axis=0)


def level_counts(codes, n_levels, kept):
    """Kept rows per level of each codes column, the columns one after the other (codes outside
    0..n_levels[c] - 1 are not counted)."""
    out = []
    for c, levels in enumerate(n_levels):
        counts = [0] * int(levels)
        for i in kept_rows(codes.shape[0], kept):
            if 0 <= codes[i, c] < levels:
                counts[codes[i, c]] += 1
        out += counts
    return np.array(out, dtype=np.int64)


def segment_moments(values, labels, k):
    """Per segment and column over the finite values of rows with a label >= 0: count, mean,
    sum of squared deviations from the mean, min, max and sum (numpy on each group)."""
    d = values.shape[1]
    out = np.zeros((6, k, d))
    out[3], out[4] = np.inf, -np.inf
    for s in range(k):
        for j in range(d):
            v = values[labels == s, j]
            v = v[np.isfinite(v)]
            if v.size:
                out[:, s, j] = [v.size, v.mean(), ((v - v.mean()) ** 2).sum(), v.min(), v.max(), v.sum()]
    return out


MASK64 = (1 << 64) - 1


def row_key(seed, row):
    """SplitMix64 of seed * 0x9E3779B97F4A7C15 + row + 1, in Python integers modulo 2**64."""
    z = (seed * 0x9E3779B97F4A7C15 + row + 1) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def bottom_k_rows(n, size, seed):
    """The ``size`` rows of 0..n-1 with the smallest keys (ties: lower row), in row order."""
    return sorted(sorted(range(n), key=lambda r: (row_key(seed, r), r))[:size])


def profile_figures(frame, columns, segment):
    """The old profile code, simplified: one Polars group-by over the rows with a segment, per
    column the mean, variance (ddof 0), median and sum of its non-null values, with each
    segment's size; and the same over every segmented row (the population), in one select."""
    import polars as pl

    seg = frame.filter(pl.col(segment).is_not_null()).with_columns(pl.col(columns).cast(pl.Float64))
    aggs = [pl.len().alias("size")]
    for c in columns:
        aggs += [pl.col(c).mean().alias(f"{c}_mean"), pl.col(c).var(ddof=0).alias(f"{c}_var"),
                 pl.col(c).median().alias(f"{c}_median"), pl.col(c).sum().alias(f"{c}_sum")]
    per_segment = seg.group_by(segment).agg(aggs).sort(segment)
    population = seg.select([pl.col(c).mean().alias(f"{c}_mean") for c in columns]
                            + [pl.col(c).std(ddof=0).alias(f"{c}_std") for c in columns]).row(0, named=True)
    return per_segment, population


def top_share(values, pct):
    """Share of the sum held by the largest ceil(n * pct / 100) values (at least one)."""
    v = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    n = max(1, -(-v.size * pct // 100))
    return float(v[:n].sum() / v.sum())

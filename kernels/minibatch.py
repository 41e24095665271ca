"""Mini-batch k-means centre update (Sculley 2010, per-centre learning rates)."""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.config import JIT


@njit(cache=True, **JIT)
def minibatch_update(Xb, labels, centers, centers32, weight_sums):
    """Move each centre towards the mean of its batch members.

    Centre j with accumulated weight w_j and n_j members in this batch moves by the
    learning rate n_j / (w_j + n_j): the running mean of every point it has seen.

    Xb           f4[:, ::1]  IN     batch rows
    labels       i4[::1]     IN     their nearest centre (from ``assign``)
    centers      f8[:, ::1]  INOUT  centres (float64 master copy)
    centers32    f4[:, ::1]  OUT    float32 copy used for assignment
    weight_sums  f8[::1]     INOUT  rows seen per centre
    Returns the number of centres that moved.
    """
    b, d = Xb.shape
    k = centers.shape[0]
    bsum = np.zeros((k, d), dtype=np.float64)
    bcnt = np.zeros(k, dtype=np.float64)
    for i in range(b):
        j = labels[i]
        bcnt[j] += 1.0
        for f in range(d):
            bsum[j, f] += Xb[i, f]
    moved = 0
    for j in range(k):
        if bcnt[j] == 0.0:
            continue
        moved += 1
        w_old = weight_sums[j]
        w_new = w_old + bcnt[j]
        for f in range(d):
            centers[j, f] = (centers[j, f] * w_old + bsum[j, f]) / w_new
            centers32[j, f] = np.float32(centers[j, f])
        weight_sums[j] = w_new
    return moved

"""Haseman-Elston (HE-CP) regression for all phenotypes and all pairs, as matrix products.

For standardized phenotypes ``y`` (covariates regressed out), HE cross-product
regression fits ``y_i y_j = a + b K_ij + error`` over all ordered pairs ``i != j``; the
slope ``b`` estimates h2. For two phenotypes the same regression of ``y1_i y2_j`` gives
the genetic covariance ``rho_g`` (on the standardized scale), and
``rg = rho_g / sqrt(h2_1 h2_2)``.

Every least-squares sum over pairs is a quadratic form, so one product ``K @ Y`` gives
the slopes of all phenotypes (and ``Y1' K Y2`` of all pairs). Standard errors come from
a delete-a-group jackknife over subjects: the pair sums of each leave-one-group-out
replicate are the full sums minus the pairs that touch the group, obtained from the
same products (no refitting).
"""

from __future__ import annotations

import numpy as np

__all__ = ["he_regression", "jackknife_groups"]


def jackknife_groups(n, n_blocks, random_state=None):
    """Random partition of ``range(n)`` into ``n_blocks`` groups of (almost) equal size."""
    rng = np.random.default_rng(random_state)
    n_blocks = int(min(max(n_blocks, 2), n))
    labels = np.empty(n, dtype=np.intp)
    labels[rng.permutation(n)] = np.arange(n) % n_blocks
    return labels, n_blocks


class _PairSums:
    """Sums over ordered pairs i != j of ``A_ij u_i v_j`` and leave-one-group-out copies.

    ``total[...]`` and ``minus[g, ...]`` (the sum without pairs touching group ``g``).
    """

    @staticmethod
    def bilinear(K, U, V, diagK, labels, G, KV=None, KU=None):
        """Sums of ``K_ij U_ip V_jq`` over i != j: total (P, Q), minus (G, P, Q)."""
        if KV is None:
            KV = K @ V
        if KU is None:
            KU = K @ U
        total = U.T @ KV - (U * diagK[:, None]).T @ V
        minus = np.empty((G,) + total.shape)
        for g in range(G):
            m = labels == g
            Ug, Vg = U[m], V[m]
            dg = diagK[m][:, None]
            row = Ug.T @ KV[m] - (Ug * dg).T @ Vg       # i in g
            col = KU[m].T @ Vg - (Ug * dg).T @ Vg       # j in g
            within = Ug.T @ (K[np.ix_(m, m)].astype(np.float64) @ Vg) - (Ug * dg).T @ Vg
            minus[g] = total - row - col + within
        return total, minus

    @staticmethod
    def outer(U, V, labels, G):
        """Sums of ``U_ip V_jq`` over i != j (the K = 1 case)."""
        su, sv = U.sum(axis=0), V.sum(axis=0)
        total = np.outer(su, sv) - U.T @ V
        minus = np.empty((G,) + total.shape)
        for g in range(G):
            m = labels == g
            sug, svg = U[m].sum(axis=0), V[m].sum(axis=0)
            minus[g] = np.outer(su - sug, sv - svg) - (U.T @ V - U[m].T @ V[m])
        return total, minus


def _grm_sums(K, labels, G, chunk=2048):
    """Pair sums of K and K^2 (i != j): totals and leave-one-group-out copies."""
    n = K.shape[0]
    diagK = np.diag(K).astype(np.float64)
    rs = np.zeros(n)          # row sums of K
    rs2 = np.zeros(n)         # row sums of K**2
    within = np.zeros(G)      # sum of K over pairs inside group g (incl. diagonal)
    within2 = np.zeros(G)
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        B = np.asarray(K[r0:r1], dtype=np.float64)
        rs[r0:r1] = B.sum(axis=1)
        rs2[r0:r1] = np.einsum("ij,ij->i", B, B)
        lab = labels[r0:r1]
        for g in range(G):
            rows = lab == g
            if rows.any():
                sub = B[rows][:, labels == g]
                within[g] += sub.sum()
                within2[g] += np.einsum("ij,ij->", sub, sub)
    out = {}
    for name, r, w, dg in (("a", rs, within, diagK), ("aa", rs2, within2, diagK ** 2)):
        total = r.sum() - dg.sum()
        minus = np.empty(G)
        for g in range(G):
            m = labels == g
            touch = 2.0 * (r[m].sum() - dg[m].sum()) - (w[g] - dg[m].sum())
            minus[g] = total - touch
        out[name] = (total, minus)
    return out, diagK


def _matmul_rows(K, Y, chunk=2048):
    """``K @ Y`` in float64 without a float64 copy of a float32 ``K``."""
    if K.dtype == np.float64:
        return K @ Y
    out = np.empty((K.shape[0], Y.shape[1]))
    for r0 in range(0, K.shape[0], chunk):
        out[r0:r0 + chunk] = K[r0:r0 + chunk].astype(np.float64) @ Y
    return out


def _slope(s_az, s_a, s_z, s_aa, n_pairs):
    """OLS slope with intercept from pair sums."""
    return (s_az - s_a * s_z / n_pairs) / (s_aa - s_a ** 2 / n_pairs)


def _jackknife_se(full, reps):
    G = reps.shape[0]
    mean = np.nanmean(reps, axis=0)
    return np.sqrt((G - 1) / G * np.nansum((reps - mean) ** 2, axis=0))


def he_regression(K, Y1, Y2=None, *, n_blocks=20, random_state=0):
    """HE-CP slopes of all phenotypes (and all pairs) with jackknife standard errors.

    Parameters
    ----------
    K : ndarray (n, n)
        GRM of the samples (float32 or float64; symmetric).
    Y1 : ndarray (n, P1)
        Phenotypes, already residualized on the covariates and standardized to unit
        variance (no missing values).
    Y2 : ndarray (n, P2), optional
        Second set for cross-trait slopes (genetic covariances) and rg.
    n_blocks : int
        Groups of subjects for the delete-a-group jackknife.

    Returns
    -------
    dict with ``h2_1``, ``h2_1_se`` (P1,), and when ``Y2`` is given also ``h2_2``,
    ``h2_2_se`` (P2,), ``cov_g``, ``cov_g_se``, ``rg``, ``rg_se`` (P1, P2). ``rg`` is
    NaN where an h2 estimate is not positive.
    """
    n = K.shape[0]
    labels, G = jackknife_groups(n, n_blocks, random_state)
    sizes = np.bincount(labels, minlength=G)
    n_pairs = n * (n - 1.0)
    n_pairs_g = (n - sizes) * (n - sizes - 1.0)
    gs, diagK = _grm_sums(K, labels, G)
    s_a, s_a_g = gs["a"]
    s_aa, s_aa_g = gs["aa"]

    def slopes(U, V, KU, KV, paired):
        if paired:  # only the diagonal (U_p with V_p): univariate h2
            az_t = np.einsum("ip,ip->p", U, KV) - np.einsum("i,ip,ip->p", diagK, U, V)
            z_t = U.sum(0) * V.sum(0) - np.einsum("ip,ip->p", U, V)
            az_g = np.empty((G, U.shape[1]))
            z_g = np.empty((G, U.shape[1]))
            for g in range(G):
                m = labels == g
                Um, Vm, dm = U[m], V[m], diagK[m][:, None]
                row = np.einsum("ip,ip->p", Um, KV[m]) - np.einsum("ip,ip->p", Um * dm, Vm)
                col = np.einsum("ip,ip->p", KU[m], Vm) - np.einsum("ip,ip->p", Um * dm, Vm)
                within = (np.einsum("ip,ip->p", Um, K[np.ix_(m, m)].astype(np.float64) @ Vm)
                          - np.einsum("ip,ip->p", Um * dm, Vm))
                az_g[g] = az_t - row - col + within
                z_g[g] = ((U.sum(0) - Um.sum(0)) * (V.sum(0) - Vm.sum(0))
                          - (np.einsum("ip,ip->p", U, V) - np.einsum("ip,ip->p", Um, Vm)))
            ex = (slice(None), None)
        else:
            az_t, az_g = _PairSums.bilinear(K, U, V, diagK, labels, G, KV=KV, KU=KU)
            z_t, z_g = _PairSums.outer(U, V, labels, G)
            ex = (slice(None), None, None)
        full = _slope(az_t, s_a, z_t, s_aa, n_pairs)
        reps = _slope(az_g, s_a_g[ex], z_g, s_aa_g[ex], n_pairs_g[ex])
        return full, reps

    Y1 = np.asarray(Y1, dtype=np.float64)
    KY1 = _matmul_rows(K, Y1)
    h1, h1_reps = slopes(Y1, Y1, KY1, KY1, True)
    out = {"h2_1": h1, "h2_1_se": _jackknife_se(h1, h1_reps), "n_blocks": G}
    if Y2 is None:
        return out
    Y2 = np.asarray(Y2, dtype=np.float64)
    KY2 = _matmul_rows(K, Y2)
    h2, h2_reps = slopes(Y2, Y2, KY2, KY2, True)
    cg, cg_reps = slopes(Y1, Y2, KY1, KY2, False)
    with np.errstate(invalid="ignore", divide="ignore"):
        rg = cg / np.sqrt(np.outer(h1, h2))
        rg_reps = cg_reps / np.sqrt(h1_reps[:, :, None] * h2_reps[:, None, :])
    rg = np.where(np.outer(h1 > 0, h2 > 0), rg, np.nan)
    out.update({
        "h2_2": h2, "h2_2_se": _jackknife_se(h2, h2_reps),
        "cov_g": cg, "cov_g_se": _jackknife_se(cg, cg_reps),
        "rg": rg, "rg_se": np.where(np.isnan(rg), np.nan, _jackknife_se(rg, rg_reps)),
    })
    return out

"""Haseman-Elston (HE-CP) regression for all phenotypes and all pairs, as matrix products.

For standardized phenotypes ``y`` (covariates regressed out), HE cross-product
regression fits ``y_i y_j = a + b K_ij + error`` over all ordered pairs ``i != j``; the
slope ``b`` estimates h2. Its closed form is a quadratic form: with ``A`` the GRM with
zero diagonal and its off-diagonal entries centred (``A_ij = K_ij - mean_{k!=l} K_kl``),
``b = y' A y / D`` with ``D = sum_ij A_ij^2``. For two phenotypes ``y1' A y2 / D`` is the
genetic covariance ``rho`` (standardized scale) and ``rg = rho / sqrt(h2_1 h2_2)``. One
product ``K @ Y`` gives all slopes, ``Y1' K Y2`` all cross slopes.

Standard errors are analytic (normal theory): each estimator, linearised around the
estimates (including the scaling of ``y`` by its sample variance), is a quadratic form
``w' R w`` of the Gaussian vector ``w`` with covariance ``Sigma`` built from ``K`` and
the estimated variance components, so ``var = 2 tr(R Sigma R Sigma)``. This only needs
the traces ``tr(AKAK)``, ``tr(A^2 K)``, ``tr(A K^2)``, ``tr(A K)``, ``tr(A^2)``,
``tr(K^2)``, ``tr(K)``: exact (one ``n^3`` product) up to ``exact_max_n`` subjects,
Hutchinson estimates with Rademacher probes above.
"""

from __future__ import annotations

import numpy as np

__all__ = ["he_regression", "he_traces"]


def _matmul_rows(K, Y, chunk=2048):
    """``K @ Y`` in float64 without a float64 copy of a float32 ``K``."""
    if K.dtype == np.float64:
        return K @ Y
    out = np.empty((K.shape[0], Y.shape[1]))
    for r0 in range(0, K.shape[0], chunk):
        out[r0:r0 + chunk] = K[r0:r0 + chunk].astype(np.float64) @ Y
    return out


def _row_chunks(K, chunk=2048):
    for r0 in range(0, K.shape[0], chunk):
        yield r0, np.asarray(K[r0:r0 + chunk], dtype=np.float64)


def he_traces(K, *, exact_max_n=4000, n_probes=100, random_state=0):
    """Centring constant and the traces needed by the HE estimates and their SEs.

    Returns
    -------
    dict with ``abar`` (mean off-diagonal K), ``diag`` (diagonal of K), ``D`` =
    ``tr(A^2)``, ``AKAK``, ``AAK``, ``AKK``, ``AK``, ``KK``, ``K``, ``exact`` (bool).
    """
    n = K.shape[0]
    diag = np.array(np.diag(K), dtype=np.float64)
    tot = kk = 0.0
    rows = np.empty(n)
    for r0, B in _row_chunks(K):
        rows[r0:r0 + B.shape[0]] = B.sum(axis=1)
        kk += np.einsum("ij,ij->", B, B)
    tot = rows.sum()
    n_off = n * (n - 1.0)
    abar = (tot - diag.sum()) / n_off
    off_sq = kk - (diag ** 2).sum()
    D = off_sq - 2 * abar * (tot - diag.sum()) + abar ** 2 * n_off
    AK = (off_sq) - abar * (tot - diag.sum())          # tr(AK) = sum_{i!=j} A_ij K_ij
    out = {"abar": abar, "diag": diag, "D": D, "AK": AK, "KK": kk, "K": diag.sum()}

    def apply_A(V, KV):
        """A @ V from K @ V: A = K - diag(K) - abar (J - I)."""
        return KV - diag[:, None] * V - abar * (V.sum(axis=0)[None, :] - V)

    if n <= exact_max_n:
        Kd = np.asarray(K, dtype=np.float64)
        AKm = apply_A(Kd, Kd @ Kd)                      # A @ K  (K symmetric)
        out["AKAK"] = np.einsum("ij,ji->", AKm, AKm)
        out["AKK"] = np.einsum("ij,ji->", AKm, Kd)
        # tr(A A K) = tr(A (A K)) = sum_ij A_ij (AK)_ji with A_ij = K_ij - abar off-diag
        Aoff = Kd - abar
        np.fill_diagonal(Aoff, 0.0)
        out["AAK"] = np.einsum("ij,ji->", Aoff, AKm)
        out["exact"] = True
        return out
    if isinstance(random_state, np.random.RandomState):  # sklearn-style seed object
        random_state = int(random_state.randint(np.iinfo(np.int32).max))
    rng = np.random.default_rng(random_state)
    V = rng.choice([-1.0, 1.0], size=(n, int(n_probes)))
    KV = _matmul_rows(K, V)
    AV = apply_A(V, KV)
    KAV = _matmul_rows(K, AV)
    KKV = _matmul_rows(K, KV)
    AKV = apply_A(KV, KKV)                                   # A K V
    KAKV = _matmul_rows(K, AKV)
    out["AKAK"] = float(np.mean(np.einsum("ib,ib->b", AV, KAKV)))   # v'A K A K v
    out["AAK"] = float(np.mean(np.einsum("ib,ib->b", AV, KAV)))     # v'A K A v
    out["AKK"] = float(np.mean(np.einsum("ib,ib->b", AV, KKV)))     # v'A K K v
    out["exact"] = False
    return out


def _quadratic_forms(K, U, V, KV, tr):
    """``U' A V`` (P, Q) from ``K V``."""
    diag, abar = tr["diag"], tr["abar"]
    return U.T @ KV - (U * diag[:, None]).T @ V - abar * (
        np.outer(U.sum(axis=0), V.sum(axis=0)) - U.T @ V)


def _var_h2(h, n, tr):
    """Var of the univariate HE slope: 2 tr(A* V A* V) / D^2, A* = A - h D / n I."""
    D = tr["D"]
    c = h * D / n
    g, e = h, 1.0 - h
    t_avav = g * g * tr["AKAK"] + 2 * g * e * tr["AAK"] + e * e * D
    t_avv = g * g * tr["AKK"] + 2 * g * e * tr["AK"]
    t_vv = g * g * tr["KK"] + 2 * g * e * tr["K"] + e * e * n
    return 2.0 * (t_avav - 2 * c * t_avv + c * c * t_vv) / D ** 2


def _var_rg(h1, h2, rho, rp, tr):
    """Var of rg = rho / sqrt(h1 h2) (delta method, all blocks proportional to A)."""
    D = tr["D"]
    rg = rho / np.sqrt(h1 * h2)
    r11 = -rg / (2 * h1 * D)
    r22 = -rg / (2 * h2 * D)
    r12 = 1.0 / (2 * D * np.sqrt(h1 * h2))
    # Sigma blocks: s * K + t * I
    s11, t11 = h1, 1 - h1
    s22, t22 = h2, 1 - h2
    s12, t12 = rho, rp - rho
    Rm = np.array([[r11, r12], [r12, r22]])
    Sg = np.array([[s11, s12], [s12, s22]])
    Te = np.array([[t11, t12], [t12, t22]])
    Rm, Sg, Te = (np.moveaxis(a, (0, 1), (-2, -1)) for a in (Rm, Sg, Te))

    def tr4(a, b, c, d):
        return np.einsum("...ij,...jk,...kl,...li->...", a, b, c, d)

    var = 2.0 * (tr["AKAK"] * tr4(Rm, Sg, Rm, Sg) + 2 * tr["AAK"] * tr4(Rm, Sg, Rm, Te)
                 + D * tr4(Rm, Te, Rm, Te))
    return var


def he_regression(K, Y1, Y2=None, *, exact_max_n=4000, n_probes=100, random_state=0):
    """HE-CP slopes of all phenotypes (and all pairs) with analytic standard errors.

    Parameters
    ----------
    K : ndarray (n, n)
        GRM of the samples (float32 or float64; symmetric).
    Y1 : ndarray (n, P1)
        Phenotypes, already residualized on the covariates and standardized to unit
        variance (no missing values).
    Y2 : ndarray (n, P2), optional
        Second set for cross-trait slopes (genetic covariances) and rg.
    exact_max_n : int
        Up to this many subjects the traces are exact (``n^3`` work); above, Hutchinson
        estimates with ``n_probes`` Rademacher probes (``n^2 * n_probes`` work).

    Returns
    -------
    dict with ``h2_1``, ``h2_1_se`` (P1,), and when ``Y2`` is given also ``h2_2``,
    ``h2_2_se`` (P2,), ``cov_g`` (P1, P2), ``rg``, ``rg_se`` (P1, P2). ``rg`` is NaN
    where an h2 estimate is not positive.
    """
    n = K.shape[0]
    tr = he_traces(K, exact_max_n=exact_max_n, n_probes=n_probes, random_state=random_state)
    D = tr["D"]
    Y1 = np.asarray(Y1, dtype=np.float64)
    KY1 = _matmul_rows(K, Y1)
    diag = tr["diag"]

    def own(U, KU):
        q = (np.einsum("ip,ip->p", U, KU) - np.einsum("i,ip,ip->p", diag, U, U)
             - tr["abar"] * (U.sum(axis=0) ** 2 - (U * U).sum(axis=0)))
        h = q / D
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.maximum(_var_h2(h, n, tr), 0.0))
        return h, se

    h1, se1 = own(Y1, KY1)
    out = {"h2_1": h1, "h2_1_se": se1, "traces_exact": tr["exact"]}
    if Y2 is None:
        return out
    Y2 = np.asarray(Y2, dtype=np.float64)
    KY2 = _matmul_rows(K, Y2)
    h2, se2 = own(Y2, KY2)
    rho = _quadratic_forms(K, Y1, Y2, KY2, tr) / D
    rp = (Y1.T @ Y2) / n
    H1, H2 = np.meshgrid(h1, h2, indexing="ij")
    ok = (H1 > 0) & (H2 > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rg = np.where(ok, rho / np.sqrt(np.abs(H1 * H2)), np.nan)
        var = _var_rg(np.where(ok, H1, 1.0), np.where(ok, H2, 1.0), rho, rp, tr)
        rg_se = np.where(ok, np.sqrt(np.maximum(var, 0.0)), np.nan)
    out.update({"h2_2": h2, "h2_2_se": se2, "cov_g": rho, "rg": rg, "rg_se": rg_se})
    return out

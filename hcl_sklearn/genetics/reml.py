"""REML for the linear mixed model ``y = X b + g + e``, ``g ~ N(0, s2g K)``, ``e ~ N(0, s2e I)``.

All phenotypes share one eigendecomposition ``K = Q diag(s) Q'``. In the eigenbasis the
covariance of ``Q'y`` is diagonal, ``s2 * (h2 * s + 1 - h2)``, so the restricted
log-likelihood profiled over ``s2`` and ``b`` is a cheap function of ``h2`` alone. It is
evaluated for all phenotypes at once (arrays of shape ``(n, P)``) on a grid of ``h2``
and refined by a vectorised golden-section search; the standard error comes from the
expected (Fisher) information of ``(s2g, s2e)`` by the delta method, the p-value from
the REML likelihood-ratio test of ``h2 = 0`` (50:50 mixture of chi2_0 and chi2_1).

:func:`bivariate_reml` fits the two-trait model ``cov(vec Y) = Sg (x) K + Se (x) I`` for
one pair of phenotypes (used to check the Haseman-Elston genetic correlations).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import optimize, stats

logger = logging.getLogger(__name__)

__all__ = ["eigen_grm", "reml_h2", "reml_h2_rotated", "bivariate_reml", "H2_MAX"]

#: upper bound of the h2 search (K is singular after centring: h2 = 1 is degenerate)
H2_MAX = 1.0 - 1e-5
_LOG2PI = np.log(2.0 * np.pi)


def eigen_grm(K, *, psd_tol=1e-6):
    """Eigendecomposition ``K = Q diag(s) Q'`` with small negative eigenvalues set to 0.

    Eigenvalues below ``-psd_tol * max(s)`` mean the matrix is not positive
    semi-definite: they are clipped to 0 with a :class:`UserWarning` (documented fix-up
    of an indefinite GRM, e.g. one estimated from few SNPs or with missing calls).

    Returns
    -------
    Q : ndarray (n, n)
    s : ndarray (n,), non-negative
    """
    K = np.asarray(K, dtype=np.float64)
    s, Q = np.linalg.eigh(K)
    top = max(float(s.max(initial=0.0)), 1e-300)
    n_neg = int((s < -psd_tol * top).sum())
    if n_neg:
        warnings.warn(
            f"The GRM is not positive semi-definite: {n_neg} eigenvalue(s) below "
            f"{-psd_tol:g} x the largest (min {s.min():.3g}). They are set to 0 for REML "
            "(nearest PSD matrix). Build the GRM from more SNPs to avoid this.",
            UserWarning, stacklevel=2,
        )
    return Q, np.clip(s, 0.0, None)


def _restricted_loglik(h, s, Yt, Xt, logdet_xx):
    """Profiled REML log-likelihood for each phenotype at its own ``h`` (shape (P,)).

    Returns ``loglik (P,)`` and the pieces reused elsewhere.
    """
    n, c = Xt.shape
    d = h[None, :] * s[:, None] + (1.0 - h)[None, :]       # (n, P)
    w = 1.0 / d
    C = _weighted_gram(w, Xt)                                # (P, c, c)
    wy = w * Yt
    Xwy = wy.T @ Xt                                          # (P, c)
    ywy = np.einsum("ip,ip->p", wy, Yt)
    beta = np.linalg.solve(C, Xwy[:, :, None])[:, :, 0]
    rwr = ywy - np.einsum("pj,pj->p", Xwy, beta)
    dof = n - c
    sigma2 = np.maximum(rwr, 1e-300) / dof
    _, logdet_c = np.linalg.slogdet(C)
    ll = -0.5 * (dof * (_LOG2PI + np.log(sigma2)) + np.log(d).sum(axis=0) + logdet_c
                 - logdet_xx + dof)
    return ll, beta, sigma2, w, C


def _weighted_gram(w, Xt):
    """``X' diag(w[:, p]) X`` for every column p of ``w`` (n, P) -> (P, c, c), one GEMM."""
    n, c = Xt.shape
    XX = (Xt[:, :, None] * Xt[:, None, :]).reshape(n, c * c)
    return (w.T @ XX).reshape(w.shape[1], c, c)


def _golden_max(f, lo, hi, n_iter):
    """Vectorised golden-section maximisation of ``f`` on ``[lo, hi]`` (arrays (P,))."""
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo.copy(), hi.copy()
    x1 = b - g * (b - a)
    x2 = a + g * (b - a)
    f1, f2 = f(x1), f(x2)
    for _ in range(n_iter):
        left = f1 >= f2                       # maximum in [a, x2]
        b = np.where(left, x2, b)
        a = np.where(left, a, x1)
        new_x1 = b - g * (b - a)
        new_x2 = a + g * (b - a)
        x2n = np.where(left, x1, new_x2)
        x1n = np.where(left, new_x1, x2)
        f2n = np.where(left, f1, np.nan)
        f1n = np.where(left, np.nan, f2)
        need = np.where(left, x1n, x2n)
        fn = f(need)
        f1 = np.where(left, fn, f1n)
        f2 = np.where(left, f2n, fn)
        x1, x2 = x1n, x2n
    x = np.where(f1 >= f2, x1, x2)
    return x


def _trace_pdpd(w, d1, d2, Xt, Cinv):
    """``tr(P D1 P D2)`` for diagonal D1, D2 (n, P) in the eigenbasis, batched over P."""
    t = np.einsum("ip,ip,ip->p", w * w, d1, d2)
    mid = _weighted_gram(w ** 3 * d1 * d2, Xt)
    t -= 2.0 * np.einsum("pjk,pkj->p", Cinv, mid)
    M1 = _weighted_gram(w * w * d1, Xt)
    M2 = _weighted_gram(w * w * d2, Xt)
    t += np.einsum("pab,pbc,pcd,pda->p", Cinv, M1, Cinv, M2)
    return t


def reml_h2(Y, X, Q, s, *, grid=21, n_iter=36, h2_max=H2_MAX):
    """REML heritability of every column of ``Y`` with covariates ``X`` and GRM ``Q, s``.

    Parameters
    ----------
    Y : ndarray (n, P)
        Phenotypes (no missing values; any scale).
    X : ndarray (n, c)
        Fixed-effect design, full column rank (include the intercept).
    Q, s : ndarray (n, n), (n,)
        Eigendecomposition of the GRM (see :func:`eigen_grm`).
    grid : int
        Grid points on ``[0, h2_max]`` before the golden-section refinement.
    n_iter : int
        Golden-section iterations (the bracket shrinks by 0.618 per iteration).

    Returns
    -------
    dict of arrays (P,): ``h2, h2_se, lrt, pvalue, sigma2_g, sigma2_e, loglik,
    loglik_null`` and ``beta`` (P, c) on the scale of ``X`` and ``Y``.
    """
    Y = np.asarray(Y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    scale = Y.std(axis=0)
    scale[scale == 0] = 1.0
    Yt = Q.T @ (Y / scale)
    Xt = Q.T @ X
    logdet_xx = np.linalg.slogdet(X.T @ X)[1]
    return reml_h2_rotated(Yt, Xt, s, logdet_xx=logdet_xx, scale=scale, grid=grid,
                           n_iter=n_iter, h2_max=h2_max)


def reml_h2_rotated(Yt, Xt, s, *, logdet_xx=0.0, scale=None, grid=21, n_iter=36,
                    h2_max=H2_MAX):
    """:func:`reml_h2` on data already in the GRM's eigenbasis.

    ``Yt = Q' Y`` (n, P), ``Xt = Q' X`` (n, c; ``c = 0`` allowed) and the eigenvalues
    ``s``; ``logdet_xx = log |X'X|`` and ``scale`` (the phenotypes' scale, by which
    ``Yt`` was divided) only shift the log-likelihood and rescale the variances.

    With ``Xt`` of zero columns this is REML on *error contrasts*: if ``Yt = U' A' Y``
    with ``A`` an orthonormal basis of the complement of the covariates and
    ``A' K A = U diag(s) U'``, the likelihood equals the REML likelihood of ``Y`` with
    covariates ``X`` (Harville 1974: REML is the likelihood of any full set of error
    contrasts; an orthonormal ``A`` gives the same constant). The mixed-model GWAS uses
    this form (:mod:`hcl_sklearn.genetics.gwas.lmm`).
    """
    Yt = np.asarray(Yt, dtype=np.float64)
    Xt = np.asarray(Xt, dtype=np.float64)
    n, P = Yt.shape
    scale = np.ones(P) if scale is None else np.asarray(scale, dtype=np.float64)

    def f(h):
        return _restricted_loglik(h, s, Yt, Xt, logdet_xx)[0]

    hs = np.linspace(0.0, h2_max, int(grid))
    ll_grid = np.stack([f(np.full(P, h)) for h in hs])          # (grid, P)
    k = ll_grid.argmax(axis=0)
    lo = hs[np.maximum(k - 1, 0)]
    hi = hs[np.minimum(k + 1, len(hs) - 1)]
    h = _golden_max(f, lo, hi, int(n_iter))
    # the boundaries are candidates too (the golden search never reaches them exactly)
    ll_h = f(h)
    for edge in (0.0, h2_max):
        ll_e = f(np.full(P, edge))
        better = ll_e > ll_h
        h = np.where(better, edge, h)
        ll_h = np.where(better, ll_e, ll_h)
    ll, beta, sigma2, w, C = _restricted_loglik(h, s, Yt, Xt, logdet_xx)
    ll0 = f(np.zeros(P))
    lrt = np.maximum(2.0 * (ll - ll0), 0.0)
    pvalue = np.where(lrt > 0, 0.5 * stats.chi2.sf(lrt, 1), 1.0)

    # SE: expected information of (s2g, s2e); W here is 1/d, the covariance is s2 * d
    s2g = sigma2 * h
    s2e = sigma2 * (1.0 - h)
    wv = w / sigma2[None, :]                                  # 1 / V
    Cinv = np.linalg.inv(C) * sigma2[:, None, None]           # (X' V^-1 X)^-1
    S = np.broadcast_to(s[:, None], wv.shape)
    one = np.ones_like(wv)
    i_gg = 0.5 * _trace_pdpd(wv, S, S, Xt, Cinv)
    i_ge = 0.5 * _trace_pdpd(wv, S, one, Xt, Cinv)
    i_ee = 0.5 * _trace_pdpd(wv, one, one, Xt, Cinv)
    det = i_gg * i_ee - i_ge ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        v_gg, v_ee, v_ge = i_ee / det, i_gg / det, -i_ge / det
        tot = s2g + s2e
        dg, de = s2e / tot ** 2, -s2g / tot ** 2
        var_h = dg * dg * v_gg + 2 * dg * de * v_ge + de * de * v_ee
    h2_se = np.sqrt(np.where(var_h > 0, var_h, np.nan))
    return {
        "h2": h, "h2_se": h2_se, "lrt": lrt, "pvalue": pvalue,
        "sigma2_g": s2g * scale ** 2, "sigma2_e": s2e * scale ** 2,
        "loglik": ll, "loglik_null": ll0, "beta": beta * scale[:, None],
    }


def bivariate_reml(y1, y2, X, Q, s, *, start=None):
    """Two-trait REML: genetic and residual covariance matrices and the genetic correlation.

    Model: ``[y1; y2]`` with means ``X b1``, ``X b2`` and covariance
    ``Sg (x) K + Se (x) I``; in the eigenbasis each sample ``i`` is an independent
    2-vector with covariance ``Sg * s_i + Se``. ``Sg``, ``Se`` are parametrised by
    their Cholesky factors and the restricted likelihood is maximised with L-BFGS-B.

    Parameters
    ----------
    y1, y2 : ndarray (n,)
    X : ndarray (n, c)
    Q, s : eigendecomposition of the GRM

    Returns
    -------
    dict: ``rg``, ``Sg`` (2x2), ``Se`` (2x2), ``h2`` (2,), ``loglik``, ``success``.
    """
    y = np.column_stack([y1, y2]).astype(np.float64)
    sd = y.std(axis=0)
    y = (y - y.mean(axis=0)) / sd
    n, c = X.shape
    Yt = Q.T @ y                                   # (n, 2)
    Xt = Q.T @ np.asarray(X, dtype=np.float64)     # (n, c)

    def unpack(theta):
        lg = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
        le = np.array([[theta[3], 0.0], [theta[4], theta[5]]])
        return lg @ lg.T, le @ le.T

    def negll(theta):
        Sg, Se = unpack(theta)
        V = s[:, None, None] * Sg[None] + Se[None] + 1e-10 * np.eye(2)   # (n, 2, 2)
        Vi = np.linalg.inv(V)
        _, logdet_v = np.linalg.slogdet(V)
        # design of sample i: kron(I2, x_i) -> (2, 2c)
        # X' V^-1 X blocks: sum_i Vi[i, a, b] * x_i x_i'
        A = np.einsum("iab,ij,ik->ajbk", Vi, Xt, Xt).reshape(2 * c, 2 * c)
        bvec = np.einsum("iab,ij,ib->aj", Vi, Xt, Yt).reshape(2 * c)
        yVy = np.einsum("ia,iab,ib->", Yt, Vi, Yt)
        sign, logdet_a = np.linalg.slogdet(A)
        if sign <= 0:
            return 1e20
        quad = yVy - bvec @ np.linalg.solve(A, bvec)
        return 0.5 * (logdet_v.sum() + logdet_a + quad)

    if start is None:
        start = np.array([0.7, 0.3, 0.6, 0.7, 0.1, 0.6])
    best = None
    for x0 in (start, np.array([0.5, 0.0, 0.5, 0.8, 0.0, 0.8]),
               np.array([0.3, 0.25, 0.1, 0.9, 0.0, 0.9])):
        res = optimize.minimize(negll, x0, method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    Sg, Se = unpack(best.x)
    with np.errstate(invalid="ignore", divide="ignore"):
        rg = Sg[0, 1] / np.sqrt(Sg[0, 0] * Sg[1, 1])
        h2 = np.diag(Sg) / (np.diag(Sg) + np.diag(Se))
    D = np.diag(sd)
    return {"rg": float(rg), "Sg": D @ Sg @ D, "Se": D @ Se @ D, "h2": h2,
            "loglik": -float(best.fun), "success": bool(best.success)}

"""Tail probabilities of positive quadratic forms in normal variables.

``Q = sum_k lambda_k X_k^2`` with ``X_k`` i.i.d. N(0, 1) and ``lambda_k > 0`` is the null
distribution of the gene-based statistic ``sum_s z_s^2`` (``z ~ N(0, R)``: ``lambda`` are the
eigenvalues of ``R``). :func:`quadform_sf` gives ``P(Q > q)`` with *relative* accuracy from
``p ~ 0.5`` far into the tail (p < 1e-300, through ``log=True``), by three methods:

``'imhof'`` (Imhof 1961)
    ``P(Q > q) = 1/2 + (1/pi) int_0^inf sin(theta(u)) / (u rho(u)) du`` with
    ``theta(u) = sum_k arctan(lambda_k u) / 2 - q u / 2`` and
    ``rho(u) = prod_k (1 + lambda_k^2 u^2)^(1/4)``, integrated adaptively
    (:func:`scipy.integrate.quad_vec`, all ``q`` of one ``lambda`` at once). Its error is
    *absolute* (~1e-13: the ``1/2 +`` cancels), so it is used only where ``p >= 1e-5``
    (relative error then <= ~1e-8).
``'saddlepoint'`` (exact inversion through the saddle point)
    The same inversion integral taken along the vertical line ``Re t = t_hat`` through
    the saddle point ``t_hat`` of ``K(t) - t q`` (``K(t) = -1/2 sum log(1 - 2 lambda_k t)``
    the cumulant generating function, ``K'(t_hat) = q``) instead of the imaginary axis:
    ``P(Q > q) = (1/pi) int_0^inf Re[exp(K(t_hat + iy) - (t_hat + iy) q) / (t_hat + iy)] dy``
    for ``t_hat > 0`` (``q`` above the mean; for ``t_hat < 0`` the same integral is
    ``-P(Q <= q)``). The integrand is largest at ``y = 0``, of the size of the answer, so
    there is no cancellation: the quadrature's *relative* tolerance (1e-10) is the
    result's, however small ``p`` is (the factor ``exp(K(t_hat) - t_hat q)`` is taken out,
    and kept in logs with ``log=True``). Used by ``'auto'`` for ``p < 1e-5``.
``'lugannani-rice'`` (Lugannani & Rice 1980; for quadratic forms Kuonen 1999)
    ``P ~ 1 - Phi(w) + phi(w) (1/v - 1/w)`` with ``w = sign(t_hat) sqrt(2 (t_hat q - K(t_hat)))``
    and ``v = t_hat sqrt(K''(t_hat))``. An approximation (closed-form once ``t_hat`` is
    found: fully vectorised), relative error typically 1e-3 to 1e-2 and shrinking in the
    far tail; MAGMA uses it beyond the reach of Davies' algorithm. Here it is the fallback
    where an integral does not converge (counted in a warning), and available on request.

``method='auto'`` (default) uses Imhof where it returns ``p >= 1e-5`` and the saddle-point
inversion elsewhere (and for ``q`` so far above the mean that Imhof is pointless).
``tests/test_gene_test.py`` checks all three against closed forms (scaled chi-square; two
equal pairs of eigenvalues, whose density is a finite sum of exponentials) and
high-precision mpmath integration, down to p ~ 1e-300.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import integrate, special

__all__ = ["quadform_sf", "saddlepoint_root"]

#: ``'auto'``: Imhof's value is kept when at least this (its absolute error ~1e-13)
IMHOF_MIN_P = 1e-5
#: relative tolerance of the saddle-point inversion integral
SADDLE_EPSREL = 1e-10
_METHODS = ("auto", "imhof", "saddlepoint", "lugannani-rice")


def _check_lambda(lam):
    lam = np.asarray(lam, dtype=np.float64).ravel()
    if lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError("lam must be a non-empty array of finite positive eigenvalues "
                         "(drop zero or negative ones first: they add nothing to Q).")
    return lam


def _cgf(t, lam):
    """K(t), K'(t), K''(t) for real t < 1/(2 max lam); t of any shape (last axis free)."""
    a = 1.0 - 2.0 * lam * t[..., None]
    K = -0.5 * np.log(a).sum(-1)
    K1 = (lam / a).sum(-1)
    K2 = (2.0 * lam ** 2 / a ** 2).sum(-1)
    return K, K1, K2


def saddlepoint_root(q, lam):
    """The saddle point ``t_hat`` solving ``K'(t) = q`` for each ``q > 0``.

    Vectorised bisection on ``log(1 - 2 lam_max t)`` (bracketed: ``K'`` is increasing
    from 0 to infinity on ``t < 1/(2 lam_max)``), then Newton steps.

    Parameters
    ----------
    q : array-like of float > 0
    lam : array-like of float > 0

    Returns
    -------
    ndarray
        ``t_hat`` of the shape of ``q``.

    Examples
    --------
    >>> import numpy as np
    >>> float(saddlepoint_root(2.0, [1.0])) # K'(t) = 1/(1-2t) = 2
    0.25
    """
    lam = _check_lambda(lam)
    q = np.asarray(q, dtype=np.float64)
    lmax = lam.max()
    m = lam.size
    # v = 1 - 2 lmax t; K'(t) >= lmax / v, so v <= lmax / q gives K' >= q; and every term
    # lam/(1 - 2 lam t) < 1/(2|t|) for t < 0 gives K'(-m/(2q)) < q
    lo = np.log(lmax / q)
    hi = np.log1p(lmax * m / q)
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        t = (1.0 - np.exp(mid)) / (2.0 * lmax)
        above = _cgf(t, lam)[1] > q
        lo = np.where(above, mid, lo)  # K' too large: v too small -> raise log v
        hi = np.where(above, hi, mid)
    t = (1.0 - np.exp(0.5 * (lo + hi))) / (2.0 * lmax)
    for _ in range(3):  # Newton polish (K' convex in t: steps from the bracket stay in)
        _, K1, K2 = _cgf(t, lam)
        step = (K1 - q) / K2
        t_new = t - step
        t = np.where(t_new < 1.0 / (2.0 * lmax), t_new, t)
    return t


def _imhof_one(q, lam):
    """Imhof's integral for one ``q``: adaptive quadrature over the first oscillations,
    then QUADPACK's Fourier-integral rule (QAWF) for the slowly decaying oscillating tail
    (``sin(A(u) - qu/2) = sin A cos(qu/2) - cos A sin(qu/2)``, ``A`` slowly varying)."""
    lam2 = lam ** 2
    sum_lam = lam.sum()

    def amp(u):
        return np.exp(-0.25 * np.log1p(lam2 * u * u).sum()) / u

    def full(u):
        if u == 0.0:
            return 0.5 * (sum_lam - q)
        return np.sin(0.5 * np.arctan(lam * u).sum() - 0.5 * q * u) * amp(u)

    u0 = 16.0 * np.pi / q
    head = integrate.quad(full, 0.0, u0, epsabs=1e-15, epsrel=1e-13, limit=1000)[0]
    w = 0.5 * q
    c = integrate.quad(lambda u: np.sin(0.5 * np.arctan(lam * u).sum()) * amp(u), u0,
                       np.inf, weight="cos", wvar=w, epsabs=1e-15, limlst=200)[0]
    s = integrate.quad(lambda u: np.cos(0.5 * np.arctan(lam * u).sum()) * amp(u), u0,
                       np.inf, weight="sin", wvar=w, epsabs=1e-15, limlst=200)[0]
    return 0.5 + (head + c - s) / np.pi


def _imhof(q, lam):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return np.array([_imhof_one(float(x), lam) for x in q])


def _saddle_one(q, lam, t_hat):
    """log P(Q > q) for one ``q`` above the mean, by the inversion integral along
    ``Re t = t_hat``; returns (log p, converged)."""
    K, _, K2 = _cgf(np.array([t_hat]), lam)
    K, K2 = float(K[0]), float(K2[0])
    sigma = 1.0 / np.sqrt(K2)
    a0 = 1.0 - 2.0 * lam * t_hat
    r = 2.0 * lam / a0

    def h(y):  # exp(K(t_hat + iy) - K(t_hat)) * t_hat / (t_hat + iy), slowly varying
        return np.exp(-0.5 * np.log1p(-1j * r * y).sum()) * t_hat / (t_hat + 1j * y)

    def full(y):
        return (h(y) * np.exp(-1j * y * q)).real

    y0 = 12.0 * sigma  # the Gaussian core: exp(-s^2/2) < 1e-31 beyond s = 12
    head, e1 = integrate.quad(full, 0.0, y0, epsabs=0.0, epsrel=1e-12, limit=1000)
    # Re[h e^{-iyq}] = Re h cos(yq) + Im h sin(yq)
    c, e2 = integrate.quad(lambda y: h(y).real, y0, np.inf, weight="cos", wvar=q,
                           epsabs=1e-13 * abs(head), limlst=200)
    s, e3 = integrate.quad(lambda y: h(y).imag, y0, np.inf, weight="sin", wvar=q,
                           epsabs=1e-13 * abs(head), limlst=200)
    val = head + c + s
    ok = val > 0 and (e1 + e2 + e3) < 1e-8 * val
    log_p = K - t_hat * q + np.log(1.0 / (np.pi * t_hat)) + np.log(max(val, 1e-300))
    return log_p, ok


def _saddle_inversion(q, lam, t_hat):
    out = np.empty(q.shape)
    ok = np.empty(q.shape, bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for i, (x, t) in enumerate(zip(q, t_hat)):
            out[i], ok[i] = _saddle_one(float(x), lam, float(t))
    return out, ok


def _lugannani_rice(q, lam, t_hat):
    """log of the Lugannani-Rice approximation of the upper (t_hat > 0) / lower tail."""
    K, _, K2 = _cgf(t_hat, lam)
    w = np.sign(t_hat) * np.sqrt(np.maximum(2.0 * (t_hat * q - K), 0.0))
    v = t_hat * np.sqrt(K2)
    aw = np.abs(w)
    # tail = Phi(-|w|) + phi(w)(1/|v| - 1/|w|) in logs: log phi(w) + log(mills(|w|) + 1/|v| - 1/|w|)
    with np.errstate(divide="ignore", invalid="ignore"):
        mills = np.exp(special.log_ndtr(-aw) + 0.5 * aw ** 2) * np.sqrt(2 * np.pi)
        log_p = (-0.5 * aw ** 2 - 0.5 * np.log(2 * np.pi)
                 + np.log(mills + 1.0 / np.abs(v) - 1.0 / aw))
    return log_p


def quadform_sf(q, lam, *, method="auto", log=False):
    """``P(sum_k lam_k X_k^2 > q)``, ``X_k`` i.i.d. N(0, 1), ``lam_k > 0``.

    Parameters
    ----------
    q : float or array-like
        Observed values of the quadratic form (all share ``lam``).
    lam : array-like of float > 0
        The weights (eigenvalues of the SNPs' LD correlation matrix).
    method : {'auto', 'imhof', 'saddlepoint', 'lugannani-rice'}, default='auto'
        See the module docstring: ``'auto'`` is Imhof where ``p >= 1e-5`` and the exact
        saddle-point inversion (relative precision ~1e-10) below.
    log : bool, default=False
        Return ``log(p)`` (natural log), finite where ``p`` underflows double precision.

    Returns
    -------
    float or ndarray
        ``p`` (or ``log p``) of the shape of ``q``.

    Examples
    --------
    >>> from scipy import stats
    >>> p = quadform_sf(60.0, [2.0, 2.0, 2.0])     # 2 * chi2_3
    >>> bool(abs(p / stats.chi2.sf(30.0, 3) - 1) < 1e-9)
    True
    >>> float(quadform_sf(3000.0, [1.0, 0.5], log=True)) < -1400
    True
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}.")
    lam = _check_lambda(lam)
    q_in = np.asarray(q, dtype=np.float64)
    qv = np.atleast_1d(q_in).ravel()
    if np.any(np.isnan(qv)):
        raise ValueError("q contains NaN.")
    # scale: lam_max = 1 (the distribution of Q/c is that of weights lam/c)
    scale = lam.max()
    lam = lam / scale
    qv = qv / scale
    log_p = np.zeros(qv.shape)  # q <= 0: p = 1
    pos = qv > 0
    if pos.any():
        log_p[pos] = _log_sf_positive(qv[pos], lam, method)
    out = log_p.reshape(q_in.shape)
    if not log:
        out = np.exp(out)
    return out[()] if out.ndim == 0 else out


def _log_sf_positive(q, lam, method):
    log_p = np.full(q.shape, np.nan)
    t_hat = saddlepoint_root(q, lam)
    if method == "lugannani-rice":
        lr = _lugannani_rice(q, lam, t_hat)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(t_hat > 0, lr, np.log(-np.expm1(np.minimum(lr, -1e-300))))
        near = ~np.isfinite(out) | (np.abs(t_hat) < 1e-8)  # w = 0 at the mean: Imhof
        if near.any():
            out[near] = np.log(np.clip(_imhof(q[near], lam), 1e-300, None))
        return out
    if method == "imhof":
        with np.errstate(divide="ignore"):
            return np.log(np.clip(_imhof(q, lam), 0.0, None))
    if method == "auto":
        # Lugannani-Rice (within a few % wherever it matters) as the guide: Imhof where
        # p is clearly >= 1e-5 (or q below the mean), and its value kept if p >= 1e-5
        with np.errstate(invalid="ignore", divide="ignore"):
            guide = _lugannani_rice(q, lam, np.where(t_hat > 1e-8, t_hat, 0.25))
        body = (t_hat <= 1e-8) | (guide > np.log(0.3 * IMHOF_MIN_P))
        if body.any():
            p = _imhof(q[body], lam)
            idx = np.flatnonzero(body)
            keep = (p >= IMHOF_MIN_P) | (t_hat[idx] <= 1e-8)
            log_p[idx[keep]] = np.log(np.clip(p[keep], 1e-300, None))
    todo = np.isnan(log_p)
    if method == "saddlepoint":
        lower = todo & (t_hat <= 1e-8)  # the line through t = 0 is singular: Imhof there
        if lower.any():
            log_p[lower] = np.log(np.clip(_imhof(q[lower], lam), 1e-300, None))
        todo = np.isnan(log_p)
    if not todo.any():
        return log_p
    lp, ok = _saddle_inversion(q[todo], lam, t_hat[todo])
    if not ok.all():
        warnings.warn(f"{int((~ok).sum())} saddle-point inversion integral(s) did not "
                      "converge; the Lugannani-Rice approximation is used for them.",
                      RuntimeWarning, stacklevel=3)
        lp = np.where(ok, lp, _lugannani_rice(q[todo], lam, t_hat[todo]))
    log_p[todo] = lp
    return log_p

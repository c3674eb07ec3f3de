"""Exact ordinary least squares association of SNPs with many phenotypes at once.

For one SNP ``g`` and one phenotype ``y`` the model is ``y = C a + g beta + e`` with ``C``
the covariates plus an intercept (``K + 1`` columns). By the Frisch-Waugh-Lovell theorem
the OLS ``beta`` equals the slope of the residuals of ``y`` on the residuals of ``g``
after both are regressed on ``C``. With ``Q`` an orthonormal basis of ``C``:

* ``y_r = y - Q Q'y`` (once per phenotype),
* ``g'y_r`` for every SNP of a block and every phenotype: **one matrix product**
  ``G' Y_r`` (the residualized genotype is not needed because ``Q' y_r = 0``),
* ``g_r'g_r = g'g - |Q'g|^2``; ``Q'g`` comes from the same product, ``G' [Y_r | Q]``,
* ``beta = g'y_r / g_r'g_r``, ``RSS = y_r'y_r - beta^2 g_r'g_r``,
  ``SE = sqrt(RSS / df / g_r'g_r)`` with ``df = N - K - 2`` (as plink2 ``--glm``),
  ``t = beta / SE`` and the two-sided p-value of Student's t with ``df`` degrees of
  freedom, kept on the log scale (:func:`t_log_pvalue`) so that p < 1e-300 is exact.

This is the approach of tensorQTL and of plink2's ``qt-residualize``; unlike the
latter, the result is exact OLS (the genotype is residualized too).
"""

from __future__ import annotations

import threading
from collections import namedtuple

import numpy as np
from scipy import special

# the covariate design lives in the input layer (one rule for every estimator); re-exported
# here for the callers of this module
from ...data.covariates import RankDeficientCovariatesError, covariate_basis

__all__ = [
    "RankDeficientCovariatesError",
    "covariate_basis",
    "t_log_pvalue",
    "AssociationKernel",
    "Scan",
    "StudentLogP",
    "ols_association",
]

LN10 = np.log(10.0)


def t_log_pvalue(t, df):
    """Natural log of the two-sided p-value of Student's t, exact far below 1e-300.

    ``p = I_x(df/2, 1/2)`` with ``x = df / (df + t^2)`` (regularized incomplete beta).
    Where ``p`` is representable it is computed by :func:`scipy.special.betaincc` as
    ``1 - I_{1-x}(1/2, df/2)`` (accurate also for t^2 << df); where
    it would underflow (``p < 1e-290``) the log is taken analytically,
    ``log I_x(a, 1/2) = a log x - log a - log B(a, 1/2) + log 2F1(a, 1/2; a+1; x)``,
    and for df > 1e5 (where that series is unstable) by Gauss-Laguerre quadrature of
    the tail integral of the density.

    Parameters
    ----------
    t : array-like
    df : float or array-like, broadcastable to ``t``

    Returns
    -------
    ndarray of float64 (NaN where ``t`` is NaN)

    Examples
    --------
    >>> import numpy as np
    >>> round(float(np.exp(t_log_pvalue(1.959963984540054, np.inf))), 6)
    0.05
    >>> round(float(-t_log_pvalue(60.0, 5000) / np.log(10)), 2)  # p ~ 1e-591, still exact
    590.58
    """
    t = np.abs(np.asarray(t, dtype=np.float64))
    df = np.broadcast_to(np.asarray(df, dtype=np.float64), t.shape)
    out = np.full(t.shape, np.nan)
    ok = np.isfinite(t)
    inf_df = ok & np.isinf(df)
    if inf_df.any():  # normal limit
        out[inf_df] = np.log(2.0) + special.log_ndtr(-t[inf_df])
    fin = ok & ~np.isinf(df)
    if fin.any():
        tt, dd = t[fin], df[fin]
        a = dd / 2.0
        with np.errstate(over="ignore"):
            t2 = tt * tt
        # p = I_x(a, 1/2) = 1 - I_{1-x}(1/2, a); 1 - x = t^2 / (df + t^2) keeps its digits
        # when t^2 << df (x itself would round to 1 for large df)
        y = t2 / (dd + t2)
        near = y < 1e-3       # x = 1 - y close to 1: the complement form keeps the digits
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = np.log(special.betainc(a, 0.5, dd / (dd + t2)))
            lp[near] = np.log(special.betaincc(0.5, a[near], y[near]))
        tiny = ~(lp > -667.0)  # p < ~1e-290: use the analytic log
        if tiny.any():
            at, tt_, dt = a[tiny], tt[tiny], dd[tiny]
            logx = np.log(dt) - 2.0 * np.log(tt_) - np.log1p(dt / (tt_ * tt_))
            series = np.full(at.shape, np.nan)
            small = at <= 5e4  # the series is slow/unstable for large df near x = 1
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                series[small] = (
                    at[small] * logx[small] - np.log(at[small])
                    - special.betaln(at[small], 0.5)
                    + np.log(special.hyp2f1(at[small], 0.5, at[small] + 1.0,
                                            np.exp(logx[small]))))
            bad = ~np.isfinite(series)  # quadrature of the tail integral there
            if bad.any():
                series[bad] = _log_tail_laguerre(tt_[bad], dt[bad])
            lp[tiny] = series
        out[fin] = np.minimum(lp, 0.0)
    out[np.isinf(t)] = -np.inf
    return out


def _log_tail_laguerre(t, df, n_nodes=64):
    """``ln p`` of Student's t by Gauss-Laguerre quadrature of the tilted tail integral.

    ``p / 2 = f(t) / lam * integral_0^inf exp(-x) h(x / lam) dx`` with ``f`` the density,
    ``lam = -d ln f / dt`` at ``t`` and ``h(v) = exp(ln f(t + v) - ln f(t) + lam v)``, a
    smooth, slowly varying function where the tail is near-Gaussian (large df).
    """
    x, w = np.polynomial.laguerre.laggauss(n_nodes)
    t = np.asarray(t, dtype=np.float64)[:, None]
    df = np.asarray(df, dtype=np.float64)[:, None]
    log_c = -special.betaln(df / 2.0, 0.5) - 0.5 * np.log(df)

    def log_f(s):
        return log_c - (df + 1.0) / 2.0 * np.log1p(s * s / df)

    lam = (df + 1.0) * t / (df + t * t)
    h = np.exp(log_f(t + x / lam) - log_f(t) + x)
    return (np.log(2.0) + log_f(t) - np.log(lam) + np.log(h @ w[:, None]))[:, 0]


class PicklableKernel:
    """Pickling of a kernel for a dask worker: its lock stays behind (a new one is made),
    its p-value table and arrays travel."""

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_log_p_lock", None)
        state.pop("_torch", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._log_p_lock = threading.Lock()
        if getattr(self, "backend", "numpy") == "torch":  # pragma: no cover - GPU workers
            import torch

            self._torch = torch


class AssociationKernel(PicklableKernel):
    """OLS association of SNP blocks with a fixed set of phenotypes (one missingness pattern).

    The phenotypes are residualized once at construction; :meth:`scan` then costs one
    matrix product ``G' [Y_r | Q]`` per block of SNPs (``Q' G`` gives the genotypes'
    residual sums of squares, ``g_r'g_r = g'g - |Q'g|^2``), plus a few passes over the
    ``(n_snps, n_phenotypes)`` statistics.

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_phenotypes)
        Complete phenotypes (no NaN) of the samples in the order of the genotype rows.
    Q : ndarray of shape (n_samples, K + 1)
        Orthonormal basis of intercept + covariates (:func:`covariate_basis`).
    backend : {'numpy', 'torch'}
        Library of the matrix products.
    device : str
        Torch device (``'cpu'``, ``'cuda'``, ``'cuda:1'``...) when ``backend='torch'``.
    dtype : {'float64', 'float32'}
        Precision of the big product. ``'float64'`` (default) is exact OLS to ~1e-12.
        ``'float32'`` (meant for GPUs) centres each SNP first (any shift of ``g`` is
        absorbed by the intercept) and keeps the sums of squares in float64; ``g'y``
        then carries a rounding error of ~1e-6 of ``|g| |y|``, i.e. ~1e-6 * sqrt(N) in
        ``t`` (well below 1e-3 in ``-log10 p``), but betas of null SNPs (|corr| < 1e-2)
        lose their relative precision.

    Attributes
    ----------
    df : int
        Residual degrees of freedom ``N - K - 2``.
    """

    def __init__(self, Y, Q, backend="numpy", device="cpu", dtype="float64"):
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim == 1:
            Y = Y[:, None]
        Q = np.asarray(Q, dtype=np.float64)
        if Y.shape[0] != Q.shape[0]:
            raise ValueError(f"Y has {Y.shape[0]} rows but Q has {Q.shape[0]}.")
        if not np.isfinite(Y).all():
            raise ValueError("Y must be complete (no NaN/inf) inside one kernel.")
        self.n_samples, self.n_covariates = Q.shape[0], Q.shape[1] - 1
        self.df = self.n_samples - self.n_covariates - 2
        if self.df < 1:
            raise ValueError(
                f"{self.n_samples} samples leave df = N - K - 2 = {self.df} < 1 with "
                f"{self.n_covariates} covariates; need more samples or fewer covariates."
            )
        # centre then scale phenotypes: beta is rescaled back, t is scale-free
        Yr = Q @ (Q.T @ Y)
        np.subtract(Y, Yr, out=Yr)
        self.y_scale = np.sqrt(np.einsum("ij,ij->j", Yr, Yr))
        const = self.y_scale <= 1e-12 * np.maximum(1.0, np.sqrt(np.einsum("ij,ij->j", Y, Y)))
        self.constant = const
        self.y_scale = np.where(const, 1.0, self.y_scale)
        Yr /= self.y_scale
        self.backend, self.device = backend, device
        self._log_p = None
        self._log_p_lock = threading.Lock()
        if str(dtype) not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32'; got {dtype!r}.")
        self.dtype = str(dtype)
        self._sqrt_df = float(np.sqrt(self.df))
        # one product per block: G' [Y_r | Q] gives every g'y_r and Q'g; zero columns
        # pad the width to a multiple of 4 (BLAS micro-kernels: no edge case, ~3% faster)
        pad = -(Yr.shape[1] + Q.shape[1]) % 4
        W = np.ascontiguousarray(np.column_stack([Yr, Q, np.zeros((len(Q), pad))]),
                                 dtype=self.dtype)
        self.width = W.shape[1]
        self.n_phenotypes = Yr.shape[1]
        if backend == "numpy":
            self._W = W
        elif backend == "torch":
            import torch

            self._torch = torch
            self._W = torch.as_tensor(W, device=device)
        else:
            raise ValueError(f"backend must be 'numpy' or 'torch'; got {backend!r}.")

    def scan(self, G, g_sum=None, g2=None):
        """Statistics of every SNP (column of ``G``) with every phenotype.

        Parameters
        ----------
        G : ndarray of shape (n_samples, n_snps)
            Allele counts (missing already imputed), rows as ``Y``. Any memory layout;
            ``G = Gt.T`` with ``Gt`` C-contiguous (one row per SNP) is the fastest.
        g_sum, g2 : ndarray of shape (n_snps,), optional
            Sums and sums of squares of the columns of ``G`` if already known.

        Returns
        -------
        Scan
            ``beta, se, t`` of shape (n_snps, n_phenotypes): per-``a1``-allele effect,
            its standard error and the t statistic; ``gg`` of shape (n_snps,): residual
            sum of squares of each genotype on the covariates (0 marks a SNP constant
            given the covariates, whose statistics are NaN); ``g_sum`` and ``g2``: the
            SNPs' sums and sums of squares (allele frequency, monomorphism).
        """
        m = G.shape[1]
        beta, se, t = (np.empty((m, self.n_phenotypes)) for _ in range(3))
        gg, g_sum, g2 = self.scan_into(G, beta, se, t, g_sum=g_sum, g2=g2)
        return Scan(beta, se, t, np.where(np.isnan(gg), 0.0, gg), g_sum, g2)

    def scan_into(self, G, beta, se, t, log10_p=None, g_sum=None, g2=None,
                  overwrite_G=False):
        """:meth:`scan` writing into given ``(n_snps, n_phenotypes)`` float64 arrays.

        ``beta, se, t`` (and ``log10_p`` if given: :meth:`log10_pvalue` of ``t``) may be
        views, e.g. row blocks of the result arrays. ``overwrite_G=True`` lets the
        float32 path centre ``G`` in place. Returns ``gg`` (NaN for SNPs constant given
        the covariates), ``g_sum`` and ``g2``.
        """
        if g_sum is None:
            g_sum = G.sum(axis=0, dtype=np.float64)
        if g2 is None:
            G64 = G if G.dtype == np.float64 else G.astype(np.float64)
            g2 = np.einsum("ij,ij->j", G64, G64)
        prod = self.product(G, g_sum, overwrite_G=overwrite_G)
        gg = self.statistics(prod, g_sum, g2, beta, se, t, log10_p=log10_p)
        return gg, g_sum, g2

    def product(self, G, g_sum=None, out=None, overwrite_G=False):
        """``G' [Y_r | Q]`` of a block ``G`` of shape (n_samples, n_snps).

        In float32, ``G`` is centred first (``g_sum``: its column sums, computed if
        None; in place if ``overwrite_G`` and ``G`` is float32). ``out``: an array of
        shape (n_snps, width) (``width``: ``n_phenotypes + K + 1`` rounded up to a
        multiple of 4) and the kernel's dtype.
        """
        if self.dtype == "float32":
            if g_sum is None:
                g_sum = G.sum(axis=0, dtype=np.float64)
            if overwrite_G and G.dtype == np.float32:
                Gc = G
            else:
                Gc = np.empty(G.shape, dtype=np.float32, order="F")
            np.subtract(G, (g_sum / G.shape[0]).astype(np.float32), out=Gc,
                        casting="unsafe")
            G = Gc
        elif G.dtype != np.float64:
            G = G.astype(np.float64)
        if self.backend == "torch":
            Gt = self._torch.as_tensor(np.ascontiguousarray(G.T), device=self.device)
            res = (Gt @ self._W).cpu().numpy()
            if out is None:
                return res
            out[...] = res
            return out
        return np.matmul(G.T, self._W, out=out)

    def statistics(self, prod, g_sum, g2, beta, se, t, log10_p=None):
        """``beta, se, t`` (and ``log10_p``) from :meth:`product` of a block.

        Writes into the given ``(n_snps, n_phenotypes)`` float64 arrays (views allowed)
        and returns ``gg``, the residual sums of squares of the genotypes (NaN for SNPs
        constant given the covariates, whose statistics are NaN).
        """
        P = self.n_phenotypes
        qg = prod[:, P:P + self.n_covariates + 1]
        q2 = np.einsum("ij,ij->i", qg, qg, dtype=np.float64)
        if self.dtype == "float32":
            g2c = g2 - g_sum * g_sum / self.n_samples    # of the centred genotypes
        else:
            g2c = g2
        gg = g2c - q2
        # SNPs constant or collinear with the covariates: no test
        degenerate = ~(gg > 1e-10 * np.maximum(g2, 1e-300))
        gg[degenerate] = np.nan
        isg = 1.0 / np.sqrt(gg)                       # NaN for degenerate SNPs
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # r = g'y_r / |g_r| is the partial correlation (|y_r| = 1 after scaling):
            # beta = r / |g_r| (scaled back), RSS = 1 - r^2, se = sqrt(RSS / df) / |g_r|,
            # t = r sqrt(df) / sqrt(RSS)
            r = np.multiply(prod[:, :P], isg[:, None], out=t)
            np.multiply(r, isg[:, None], out=beta)
            beta *= self.y_scale
            s = np.multiply(r, r, out=se)
            np.subtract(1.0, s, out=s)
            np.maximum(s, 0.0, out=s)
            np.sqrt(s, out=s)
            np.divide(r, s, out=t)                    # t overwrites r
            t *= self._sqrt_df
            se *= (isg / self._sqrt_df)[:, None]
            se *= self.y_scale
        if self.constant.any():
            for arr in (beta, se, t):
                arr[:, self.constant] = np.nan
        if log10_p is not None:
            self.log10_pvalue(t, out=log10_p)
        return gg

    def log_p_table(self):
        """The :class:`StudentLogP` of this kernel's df, built once (thread-safe)."""
        with self._log_p_lock:
            if self._log_p is None:
                self._log_p = StudentLogP(self.df)
        return self._log_p

    def log10_pvalue(self, t, out=None):
        """``log10 p`` of t statistics from :meth:`scan` (df = ``self.df``).

        Large inputs go through a :class:`StudentLogP` table (exact values on a fine
        grid, linear interpolation: error < 1e-8 in ``ln p``); small ones are exact.
        """
        t = np.asarray(t, dtype=np.float64)
        if t.size < 20_000:
            res = t_log_pvalue(t, self.df) / LN10
            if out is None:
                return res
            out[...] = res
            return out
        out = self.log_p_table()(t, out=out)
        out *= 1.0 / LN10
        return out


Scan = namedtuple("Scan", ["beta", "se", "t", "gg", "g_sum", "g2"])


def _log_density(t, df):
    """``ln`` of Student's t density (normal if ``df`` is infinite)."""
    if np.isinf(df):
        return -0.5 * t * t - 0.5 * np.log(2.0 * np.pi)
    log_c = (special.gammaln((df + 1.0) / 2.0) - special.gammaln(df / 2.0)
             - 0.5 * np.log(df * np.pi))
    return log_c - (df + 1.0) / 2.0 * np.log1p(t * t / df)


class StudentLogP:
    """``ln p`` (two-sided) of Student's t for one ``df``, fast, from a table of exact values.

    The table holds ``ln p`` at spacing ``h`` on ``[0, t_max]``; in between, linear
    interpolation, whose error is at most ``h^2 / 8 * max |d^2 ln p / dt^2|`` (< 1e-8 for
    the default ``h = 2e-4``: the second derivative of ``ln p`` is below 1.3 in absolute
    value for every df); beyond ``t_max`` the exact function. The table itself is built
    from exact values (:func:`t_log_pvalue`) and exact derivatives
    (``d ln p / dt = -2 f(t) / p``, ``f`` the density) at spacing ~0.02 (a multiple of
    ``h``), by cubic Hermite interpolation (error < 1e-9 for every df; a few ms). About 20x faster than evaluating
    the incomplete beta function for every statistic.

    Examples
    --------
    >>> import numpy as np
    >>> f = StudentLogP(300)
    >>> t = np.array([0.0, 1.23456, 7.5, 80.0])
    >>> bool(np.abs(f(t) - t_log_pvalue(t, 300)).max() < 1e-8)
    True
    """

    def __init__(self, df, t_max=40.0, h=2e-4):
        self.df, self.t_max, self.h = df, float(t_max), float(h)
        n = int(np.ceil(self.t_max / self.h)) + 2
        k = max(1, int(round(0.02 / self.h)))             # coarse spacing ~0.02
        hc = k * self.h
        nc = -(-n // k)                                  # coarse intervals
        tc = np.arange(nc + 1) * hc
        yc = t_log_pvalue(tc, df)
        dc = -2.0 * np.exp(_log_density(tc, float(df)) - yc) * hc
        # cubic Hermite basis at the k fine points of an interval: one small product
        u = np.arange(k) / k
        basis = np.stack([(1.0 + 2.0 * u) * (1.0 - u) ** 2, u * (1.0 - u) ** 2,
                          u * u * (3.0 - 2.0 * u), u * u * (u - 1.0)])
        ends = np.column_stack([yc[:-1], dc[:-1], yc[1:], dc[1:]])
        grid = (ends @ basis).ravel()[:n]
        grid[0] = 0.0
        self._grid = grid
        self._slope = np.empty(n)
        np.subtract(grid[1:], grid[:-1], out=self._slope[:-1])
        self._slope[-1] = 0.0
        self._n_in = float(n - 2)      # u = |t| / h below this: interpolate in the table
        self._inv_h = 1.0 / self.h

    def __call__(self, t, out=None):
        """``ln p`` of ``t`` (array-like); written into ``out`` (float64) if given."""
        a = np.abs(np.asarray(t, dtype=np.float64))
        u = np.multiply(a, self._inv_h)
        beyond = ~(u < min(self._n_in, self.t_max * self._inv_h))   # True for NaN
        has_beyond = bool(beyond.any())
        if has_beyond:
            u[beyond] = 0.0
        i = u.astype(np.intp)
        u -= i
        if out is None:
            out = np.empty(a.shape)
        np.take(self._slope, i, out=out)
        out *= u
        out += np.take(self._grid, i)
        if has_beyond:
            out[beyond] = t_log_pvalue(a[beyond], self.df)
        return out


def ols_association(G, Y, C=None, backend="numpy", device="cpu"):
    """Exact OLS association of every column of ``G`` with every column of ``Y``.

    A convenience over :class:`AssociationKernel` for in-memory arrays with complete
    phenotypes (one missingness pattern).

    Parameters
    ----------
    G : array-like of shape (n_samples, n_snps)
        Allele counts of the effect allele.
    Y : array-like of shape (n_samples, n_phenotypes) or (n_samples,)
    C : array-like of shape (n_samples, n_covariates), optional
        Covariates; an intercept is always added.

    Returns
    -------
    dict of ndarrays of shape (n_snps, n_phenotypes)
        ``beta, se, t, log10_p`` (``log10_p`` is ``log10(p)``, finite far below
        1e-300) and ``df`` (int).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> G = rng.binomial(2, 0.3, size=(200, 5)).astype(float)
    >>> y = 1.0 * G[:, 0] + rng.normal(size=200)
    >>> res = ols_association(G, y)
    >>> res["beta"].shape, res["df"]
    ((5, 1), 198)
    >>> bool(res["log10_p"][0, 0] < -8 < res["log10_p"][1:, 0].min())
    True
    """
    G = np.asarray(G, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    Q = covariate_basis(np.empty((G.shape[0], 0)) if C is None else C)
    kern = AssociationKernel(Y, Q, backend=backend, device=device)
    res = kern.scan(G)
    return {"beta": res.beta, "se": res.se, "t": res.t,
            "log10_p": t_log_pvalue(res.t, kern.df) / LN10, "df": kern.df}

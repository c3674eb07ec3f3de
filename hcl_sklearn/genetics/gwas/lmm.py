"""Mixed-model association: exact eigen-rotation, variance components per phenotype, LOCO.

The model of each phenotype ``y`` (one column of an embedding) is

    y = X b + g beta + u + e,    u ~ N(0, s2g K),   e ~ N(0, s2e I),

with ``X`` the intercept and covariates, ``g`` the tested SNP and ``K`` a genomic
relationship matrix. As in EMMAX, GCTA ``--mlma`` / fastGWA-mlm and BOLT-LMM-inf, the
variance components ``(s2g, s2e)`` are estimated once per phenotype under the null
(``beta = 0``) by REML, then every SNP is tested by generalised least squares with the
variance ratio held fixed. With leave-one-chromosome-out (LOCO) the GRM of the SNPs'
own chromosome is left out, so that a causal SNP is not absorbed by ``u`` (the loss of
power of the non-LOCO test) and the test stays calibrated.

Algebra (one missingness group of samples, one LOCO GRM):

* ``A``: an orthonormal basis (n, n - c) of the complement of the ``c`` covariates;
  ``A' K A = U diag(s) U'``; the rotation ``R = U' A'`` of shape (n - c, n). In rotated
  coordinates the covariates are gone exactly and the covariance is diagonal:
  ``cov(R y) = s2 diag(h s + 1 - h)``. REML of every phenotype is then a 1-D search
  (:func:`~hcl_sklearn.genetics.reml.reml_h2_rotated`, the package's REML on error
  contrasts, equal to REML with covariates).
* Per SNP and phenotype, with ``w = 1 / (h s + 1 - h)``, ``g~ = R g``, ``y~ = R y``:
  ``a = sum w g~ y~``, ``b = sum w g~^2``; ``beta = a / b``; the residual
  ``r = sum w y~^2 - a^2 / b``; ``se = sqrt(r / (df b))``; ``t = beta / se`` with
  ``df = n - c - 1`` (Student t, as GEMMA's Wald test at a fixed variance ratio).
* Cost per block of ``m`` SNPs: the rotation ``R G`` (``(n - c) n m`` multiply-adds,
  the same for every phenotype), then two products with the ``(n - c, P)`` weighted
  phenotypes and weights: all P phenotypes in one pass over the genotypes. Set-up per
  (group, LOCO GRM): one ``O(n^3)`` projection and eigendecomposition.

This is exact, not an approximation, for N up to ~20 000 (an eigendecomposition of a
20 000 x 20 000 matrix is ~1 h on 2 cores, once per chromosome); beyond that a sparse
GRM (fastGWA) or a ridge-regression first step (REGENIE) is the field's choice.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from scipy.linalg import lapack
from scipy.linalg import qr as scipy_qr

from ..reml import eigen_grm, reml_h2_rotated
from .association import LN10, PicklableKernel, StudentLogP, t_log_pvalue

logger = logging.getLogger(__name__)

__all__ = ["LMMKernel", "LocoGRM", "loco_grm_parts"]


class LMMKernel(PicklableKernel):
    """GLS association of SNP blocks with phenotypes that share samples and one GRM.

    The drop-in counterpart of :class:`~.association.AssociationKernel` for
    ``CrossModalGWAS(model='lmm')``: the same :meth:`product` / :meth:`statistics`
    protocol, so the block scan runs either.

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_phenotypes)
        Complete phenotypes.
    Q : ndarray of shape (n_samples, c)
        Orthonormal basis of intercept + covariates.
    K : ndarray of shape (n_samples, n_samples)
        The GRM of these samples (LOCO: without the tested chromosome).
    h2 : array-like of shape (n_phenotypes,), optional
        Fixed variance ratios ``s2g / (s2g + s2e)`` instead of REML (e.g. another
        tool's estimates, for a like-for-like comparison).
    dtype : {'float64', 'float32'}
        Precision of the rotation product.

    Attributes
    ----------
    h2, sigma2 : ndarray (n_phenotypes,)
        REML heritability and total variance ``s2g + s2e`` of each phenotype.
    h2_se : ndarray (n_phenotypes,)
    df : int
        ``n - c - 1``.
    """

    def __init__(self, Y, Q, K, *, h2=None, dtype="float64"):
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim == 1:
            Y = Y[:, None]
        Q = np.asarray(Q, dtype=np.float64)
        K = np.asarray(K, dtype=np.float64)
        n, c = Q.shape
        if Y.shape[0] != n or K.shape != (n, n):
            raise ValueError(f"Y has {Y.shape[0]} rows, Q {n} and K shape {K.shape}; they "
                             "must describe the same samples.")
        self.n_samples, self.n_covariates = n, c - 1
        self.df = n - c - 1
        if self.df < 1:
            raise ValueError(f"{n} samples leave df = N - K - 2 = {self.df} < 1 with "
                             f"{c - 1} covariates; need more samples or fewer covariates.")
        self.dtype = str(dtype)
        self.n_phenotypes = Y.shape[1]
        # H = [Q | A]: the Householder reflectors of Q's QR (c of them: O(n^2 c) to apply,
        # never the dense n x n matrix); A' K A = (H' K H)[c:, c:], then its eigenbasis
        (h_raw, tau), _ = scipy_qr(Q, mode="raw")
        Kp = _apply_householder(h_raw, tau, _apply_householder(h_raw, tau, K, "L", "T"),
                                "R", "N")[c:, c:]
        U, s = eigen_grm((Kp + Kp.T) / 2.0)
        del Kp
        self.eigenvalues = s
        # R' = H [0; U] = A U: the rotation R = U' A' of shape (n - c, n)
        R = _apply_householder(h_raw, tau, np.vstack([np.zeros((c, n - c)), U]), "L", "N").T
        del U
        Yt = R @ Y
        # a phenotype constant given the covariates has no residual: no test
        ss = np.einsum("ij,ij->j", Yt, Yt)
        tot = np.einsum("ij,ij->j", Y - Y.mean(axis=0), Y - Y.mean(axis=0))
        self.constant = ss <= 1e-24 * np.maximum(tot, 1e-300)
        Yfit = np.where(self.constant[None, :], 1.0, Yt)
        if h2 is None:
            fit = reml_h2_rotated(Yfit, np.zeros((n - c, 0)), s)
            self.h2, self.h2_se = fit["h2"], fit["h2_se"]
            self.sigma2 = fit["sigma2_g"] + fit["sigma2_e"]
        else:
            self.h2 = np.broadcast_to(np.asarray(h2, dtype=np.float64),
                                      (self.n_phenotypes,)).copy()
            if not np.all((self.h2 >= 0) & (self.h2 < 1)):
                raise ValueError(f"h2 must lie in [0, 1); got {self.h2}.")
            self.h2_se = np.full(self.n_phenotypes, np.nan)
            self.sigma2 = np.full(self.n_phenotypes, np.nan)
        W = 1.0 / (self.h2[None, :] * s[:, None] + (1.0 - self.h2)[None, :])  # (n-c, P)
        # scale each phenotype to unit weighted norm: t is scale-free, beta rescaled
        self.y_scale = np.sqrt(np.einsum("ip,ip,ip->p", W, Yt, Yt))
        self.y_scale[self.constant | ~(self.y_scale > 0)] = 1.0
        self._R = np.ascontiguousarray(R, dtype=self.dtype)
        pad = -(2 * self.n_phenotypes + 1) % 4
        self._WY = np.ascontiguousarray(W * Yt / self.y_scale, dtype=self.dtype)
        self._W1 = np.ascontiguousarray(
            np.column_stack([W, np.ones(n - c), np.zeros((n - c, pad))]), dtype=self.dtype)
        self.width = 2 * self.n_phenotypes + 1 + pad
        self._sqrt_df = float(np.sqrt(self.df))
        self._log_p = None
        self._log_p_lock = threading.Lock()

    def product(self, G, g_sum=None, out=None, overwrite_G=False):
        """``[a | b | g_r'g_r]`` of a block ``G`` (n_samples, n_snps): the weighted
        cross-products with every phenotype, the weighted and the plain residual sums of
        squares of the genotypes (``width`` columns, the last ones zero padding)."""
        if G.dtype != self._R.dtype:
            G = G.astype(self._R.dtype)
        Gt = self._R @ G                                # (n - c, m): the rotation
        P = self.n_phenotypes
        m = G.shape[1]
        if out is None:
            out = np.empty((m, self.width), dtype=self._R.dtype)
        np.matmul(Gt.T, self._WY, out=out[:, :P])
        np.square(Gt, out=Gt)
        np.matmul(Gt.T, self._W1, out=out[:, P:])
        return out

    def statistics(self, prod, g_sum, g2, beta, se, t, log10_p=None):
        """``beta, se, t`` (and ``log10_p``) from :meth:`product` of a block (written into
        the given arrays); returns the residual sums of squares of the genotypes (NaN for
        SNPs collinear with the covariates, whose statistics are NaN)."""
        P = self.n_phenotypes
        a = prod[:, :P].astype(np.float64, copy=False)
        b = prod[:, P:2 * P].astype(np.float64, copy=False)
        gg = prod[:, 2 * P].astype(np.float64)
        degenerate = ~(gg > 1e-10 * np.maximum(g2, 1e-300))
        gg[degenerate] = np.nan
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            np.divide(a, b, out=beta)
            # weighted residual of the unit-norm phenotype: 1 - a^2 / b
            rss = 1.0 - a * beta
            np.maximum(rss, 0.0, out=rss)
            np.sqrt(rss / b, out=se)
            se /= self._sqrt_df
            np.divide(beta, se, out=t)
            beta *= self.y_scale
            se *= self.y_scale
        bad = degenerate[:, None] | self.constant[None, :]
        if bad.any():
            for arr in (beta, se, t):
                arr[bad] = np.nan
        if log10_p is not None:
            self.log10_pvalue(t, out=log10_p)
        return gg

    def log_p_table(self):
        """The :class:`~.association.StudentLogP` of this kernel's df (built once)."""
        with self._log_p_lock:
            if self._log_p is None:
                self._log_p = StudentLogP(self.df)
        return self._log_p

    def log10_pvalue(self, t, out=None):
        """``log10 p`` of t statistics (df = ``self.df``)."""
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


def _apply_householder(h_raw, tau, C, side, trans):
    """``H C`` / ``H' C`` / ``C H`` of the reflectors of a QR (LAPACK ``dormqr``)."""
    C = np.asfortranarray(C, dtype=np.float64)
    lwork = int(lapack.dormqr(side, trans, h_raw, tau, C, -1)[1][0].real)
    out, _, info = lapack.dormqr(side, trans, h_raw, tau, C, max(lwork, 1), overwrite_c=1)
    if info != 0:                                      # pragma: no cover - LAPACK argument
        raise RuntimeError(f"LAPACK dormqr failed (info={info}).")
    return out


def _chromosome_part(geno, samples, idx, maf, block_size, verbose, cluster=None):
    """``Z Z'`` and the SNP count of the SNPs ``idx`` with MAF >= ``maf`` among ``samples``
    (accumulated on a dask ``cluster`` when given)."""
    from ..grm import grm

    sub = geno.subset(idx)
    af = sub.stats(samples=samples)["a1_freq"].to_numpy(dtype=float)
    keep = np.minimum(af, 1.0 - af) >= max(maf, 1e-12)
    if not keep.any():
        return 0.0, 0
    K = grm(sub.subset(np.flatnonzero(keep)), samples=samples, block_size=block_size,
            cluster=cluster, verbose=verbose)
    m = int(K.attrs["n_snps"])
    return K.to_numpy() * m, m


def loco_grm_parts(geno, samples, chrom_codes, *, maf=0.01, block_size=2048, verbose=0):
    """Per-chromosome parts of the GRM: ``Z_c Z_c'`` and SNP counts ``M_c``.

    The full GRM is ``sum_c Z_c Z_c' / sum_c M_c``; the LOCO GRM of chromosome ``c`` is
    ``(S - Z_c Z_c') / (M - M_c)``. SNPs with MAF below ``maf`` among ``samples`` are
    left out (as in the scan). Standardisation as :func:`hcl_sklearn.genetics.grm`
    (``'hwe'``). Holds every part in memory; :class:`LocoGRM` bounds it.

    Returns
    -------
    parts : dict code -> ndarray (n, n)
    counts : dict code -> int
    """
    parts, counts = {}, {}
    for code in np.unique(chrom_codes):
        parts[code], counts[code] = _chromosome_part(
            geno, samples, np.flatnonzero(chrom_codes == code), maf, block_size, verbose)
    return parts, counts


class LocoGRM:
    """The GRM of all SNPs and its leave-one-chromosome-out versions, memory bounded.

    One pass over the genotypes accumulates the sum ``S`` of the per-chromosome parts;
    parts are kept while they fit in ``keep_bytes`` (default 2 GiB: 22 chromosomes at
    N ~ 3,500), the others are recomputed from their chromosome's SNPs when their LOCO
    GRM is asked for (a second read of one chromosome, cheap next to the O(N^3)
    eigendecomposition that follows).
    """

    def __init__(self, geno, samples, chrom_codes, *, maf=0.01, block_size=2048,
                 keep_bytes=2 ** 31, cluster=None, verbose=0):
        self._args = (geno, samples, maf, block_size, verbose, cluster)
        self._codes = np.asarray(chrom_codes)
        self.total, self.counts, self._parts = 0.0, {}, {}
        n = len(samples)
        kept = 0
        for code in np.unique(self._codes):
            part, m = _chromosome_part(geno, samples, np.flatnonzero(self._codes == code),
                                       maf, block_size, verbose, cluster)
            self.counts[code] = m
            if m:
                self.total = self.total + part
                if kept + 8 * n * n <= keep_bytes:
                    self._parts[code] = part
                    kept += 8 * n * n
        self.n_snps = int(sum(self.counts.values()))

    def full(self):
        """GRM of every SNP."""
        return self.total / self.n_snps

    def without(self, code):
        """GRM without chromosome ``code`` (raises if that leaves no SNP)."""
        m_c = self.counts.get(code, 0)
        if m_c == 0:
            return self.full()
        if self.n_snps - m_c == 0:
            raise ValueError("every GRM SNP is on one chromosome: LOCO leaves none; use "
                             "loco=False.")
        part = self._parts.get(code)
        if part is None:
            geno, samples, maf, block_size, verbose, cluster = self._args
            part, _ = _chromosome_part(geno, samples, np.flatnonzero(self._codes == code),
                                       maf, block_size, verbose, cluster)
        return (self.total - part) / (self.n_snps - m_c)

"""Genomic relationship matrix (GRM): built block by block, saved and loaded with ids.

The GRM of ``n`` subjects over ``M`` SNPs is ``K = Z Z' / M`` where ``Z`` holds the
standardized allele counts. It is accumulated one block of SNPs at a time with a BLAS
rank-k update into a single ``n x n`` buffer, so peak memory is ``n^2`` plus one
``n x block_size`` block, whatever the number of SNPs.

The result is a square :class:`pandas.DataFrame` indexed by subject id on both axes;
``K.attrs["n_snps"]`` holds the number of SNPs that contributed. Every ``grm=`` argument
of the package accepts such a DataFrame.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.linalg import blas

logger = logging.getLogger(__name__)

__all__ = ["grm", "save_grm", "load_grm", "check_grm", "GRMError"]


class GRMError(ValueError):
    """A GRM is unusable (not square, ids differ on the two axes, not symmetric, NaN)."""


def _grm_accumulate(genotypes, rows, block_size, scale, dtype, verbose=0):
    """Upper triangle of sum_blocks X'X (standardized SNPs) and the SNPs used."""
    from tqdm.auto import tqdm

    syrk = blas.dsyrk if np.dtype(dtype) == np.float64 else blas.ssyrk
    n = genotypes.n_samples if rows is None else len(rows)
    K = np.zeros((n, n), dtype=dtype, order="F")
    n_used = 0
    blocks = genotypes.iter_blocks(block_size=block_size, samples=rows,
                                   standardize=(scale == "empirical"), dtype=np.float64)
    n_blocks = -(-genotypes.n_snps // int(block_size))
    for _, X in tqdm(blocks, total=n_blocks, disable=verbose <= 0, desc="GRM blocks"):
        if scale == "hwe":
            p = X.mean(axis=0) / 2.0
            keep = (p > 0) & (p < 1)
            X = (X[:, keep] - 2.0 * p[keep]) / np.sqrt(2.0 * p[keep] * (1.0 - p[keep]))
        else:
            keep = np.any(X != 0, axis=0)
            X = X[:, keep]
        if X.shape[1] == 0:
            continue
        n_used += X.shape[1]
        syrk(1.0, np.asfortranarray(X, dtype=dtype), beta=1.0, c=K, trans=0, lower=0,
             overwrite_c=1)
    return K, n_used


def grm(genotypes, samples=None, *, scale="hwe", block_size=2048, dtype=np.float64,
        cluster=None, verbose=0):
    """Genomic relationship matrix of ``samples``, accumulated over blocks of SNPs.

    Parameters
    ----------
    genotypes : Genotypes
        Source of allele counts (apply :meth:`Genotypes.qc` first to filter SNPs).
    samples : list-like of str, optional
        Subject ids (rows and columns of the GRM, in this order). Default: all.
    scale : {'hwe', 'empirical'}
        How each SNP is standardized after mean imputation of missing calls, with
        ``p`` the a1 frequency over ``samples``: ``'hwe'`` (GCTA / PLINK) divides the
        centred count by ``sqrt(2p(1-p))``; ``'empirical'`` by its sample SD.
        Monomorphic SNPs are skipped (and not counted in ``M``).
    block_size : int
        SNPs read per block. Peak memory is ``n^2 + n * block_size`` values.
    dtype : {numpy.float64, numpy.float32}
        Precision of the accumulation and of the result (float32 halves memory).
    cluster : distributed.Client, dask cluster or str, optional
        Accumulate chunks of SNPs as tasks on this dask.distributed cluster (a scheduler
        address such as ``'tcp://host:8786'`` works too) and add the partial matrices on
        the cluster; equal to the single-process GRM up to float64 roundoff of the sums
        in another order. See :mod:`hcl_sklearn.genetics.gwas.distributed`.
    verbose : int
        If > 0, show a tqdm progress bar over blocks.

    Returns
    -------
    K : pandas.DataFrame of shape (n, n)
        Index and columns are the subject ids; ``K.attrs["n_snps"]`` is ``M``.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.datasets import get_1000g_chr22
    >>> from hcl_sklearn.genetics import Genotypes, grm
    >>> g = Genotypes.from_plink(get_1000g_chr22())
    >>> K = grm(g.subset(np.arange(2000)), samples=g.iid[:50])
    >>> K.shape, K.attrs["n_snps"] <= 2000
    ((50, 50), True)
    >>> bool(abs(float(K.values.diagonal().mean()) - 1) < 0.1)
    True
    """
    if scale not in ("hwe", "empirical"):
        raise ValueError(f"scale must be 'hwe' or 'empirical'; got {scale!r}.")
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise TypeError(f"dtype must be float64 or float32; got {dtype}.")
    rows = None if samples is None else genotypes.align(samples)
    ids = genotypes.iid if rows is None else genotypes.iid[rows]
    n = len(ids)
    if n == 0:
        raise ValueError("No samples requested: the GRM would be empty.")
    if cluster is None:
        K, n_used = _grm_accumulate(genotypes, rows, block_size, scale, dtype, verbose)
    else:
        from .gwas.distributed import grm_distributed

        K, n_used = grm_distributed(genotypes, rows, block_size=block_size, scale=scale,
                                    cluster=cluster)
        K = np.asfortranarray(K, dtype=dtype)
    if n_used == 0:
        raise ValueError(
            "No polymorphic SNP among the requested samples: the GRM is undefined. "
            "Check the SNP selection (qc) and the sample ids."
        )
    _symmetrize_upper_inplace(K)
    K /= n_used
    logger.info("GRM of %d samples from %d SNPs", n, n_used)
    out = pd.DataFrame(K, index=pd.Index(ids, name="iid"), columns=pd.Index(ids, name="iid"),
                       copy=False)
    out.attrs["n_snps"] = int(n_used)
    return out


def _symmetrize_upper_inplace(K, chunk=2048):
    """Copy the upper triangle onto the lower one in row chunks (no n^2 temporaries)."""
    n = K.shape[0]
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        if r0:
            K[r0:r1, :r0] = K[:r0, r0:r1].T
        D = K[r0:r1, r0:r1]
        iu = np.triu_indices(r1 - r0, 1)
        D.T[iu] = D[iu]


def check_grm(K, *, name="grm", psd="warn"):
    """Validate a GRM DataFrame and return ``(values, ids)``.

    Parameters
    ----------
    K : pandas.DataFrame
        Square, same ids (in the same order) on both axes, symmetric, finite.
    psd : {'warn', 'skip'}
        Whether to check positive semi-definiteness here. The REML engine checks it
        on the eigenvalues instead (``'skip'``).

    Raises
    ------
    GRMError
        Not a DataFrame of a square matrix, ids that differ between the axes or are
        duplicated, NaN/inf values, or asymmetry beyond ``1e-6`` (relative).
    """
    if not isinstance(K, pd.DataFrame):
        raise TypeError(
            f"{name} must be a square pandas DataFrame indexed by subject id on both axes "
            f"(e.g. from hcl_sklearn.genetics.grm or load_grm); got {type(K).__name__}."
        )
    if K.shape[0] != K.shape[1]:
        raise GRMError(f"{name} must be square; got shape {K.shape}.")
    idx = K.index.astype(str)
    if not idx.equals(K.columns.astype(str)):
        raise GRMError(
            f"{name} has different ids (or order) on its rows and columns; index and "
            "columns must be the same subject ids in the same order."
        )
    if idx.has_duplicates:
        raise GRMError(f"{name} has duplicated subject ids, e.g. "
                       f"{idx[idx.duplicated()][:5].tolist()}.")
    A = K.to_numpy()
    if not np.issubdtype(A.dtype, np.floating):
        A = A.astype(np.float64)
    if not all(np.isfinite(A[r0:r0 + 2048]).all() for r0 in range(0, A.shape[0], 2048)):
        raise GRMError(f"{name} contains NaN or inf values; rebuild it from the genotypes.")
    scale = max(float(np.abs(A.diagonal()).max()) if A.size else 1.0, 1e-300)
    asym = _max_asymmetry(A)
    if asym > 1e-6 * scale:
        raise GRMError(
            f"{name} is not symmetric (max |K - K.T| = {asym:.3g}); a GRM must be "
            "symmetric. If it was assembled by hand, use (K + K.T) / 2."
        )
    return A, pd.Index(idx, name="iid")


def _max_asymmetry(A, chunk=2048):
    n = A.shape[0]
    worst = 0.0
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        worst = max(worst, float(np.abs(A[r0:r1, :] - A[:, r0:r1].T).max(initial=0.0)))
    return worst


def save_grm(K, prefix, *, fid=None):
    """Write a GRM in GCTA binary format: ``prefix.grm.bin``, ``.grm.N.bin``, ``.grm.id``.

    ``.grm.bin`` holds the lower triangle (with diagonal) row by row as float32;
    ``.grm.N.bin`` the number of SNPs per pair (``K.attrs["n_snps"]``, 0 if unknown);
    ``.grm.id`` the FID and IID per line (FID = IID unless ``fid`` is given).
    """
    A, ids = check_grm(K, name="K")
    n = len(ids)
    prefix = str(prefix)
    tri = np.tril_indices(n)  # row-major lower triangle: (0,0), (1,0), (1,1), ...
    A[tri].astype("<f4").tofile(prefix + ".grm.bin")
    np.full(tri[0].size, float(K.attrs.get("n_snps", 0)), dtype="<f4").tofile(
        prefix + ".grm.N.bin")
    fid = ids if fid is None else pd.Index(np.asarray(fid).astype(str))
    with open(prefix + ".grm.id", "w") as fh:
        for f, i in zip(fid, ids):
            fh.write(f"{f}\t{i}\n")
    logger.info("Saved GRM of %d samples to %s.grm.*", n, prefix)


def load_grm(prefix, *, dtype=np.float64):
    """Read a GCTA binary GRM (``prefix.grm.bin`` + ``.grm.id``, ``.grm.N.bin`` optional).

    Files written by GCTA ``--make-grm`` and PLINK 2 ``--make-grm-bin`` load as well.

    Returns
    -------
    K : pandas.DataFrame indexed by IID on both axes; ``attrs["n_snps"]`` from
        ``.grm.N.bin`` (its maximum) when present.
    """
    prefix = str(prefix)
    for suffix in (".grm.bin", ".grm.id"):
        if not Path(prefix + suffix).is_file():
            raise FileNotFoundError(
                f"{prefix + suffix} not found; pass the prefix of a GCTA binary GRM "
                "(files prefix.grm.bin, prefix.grm.id)."
            )
    ids = pd.read_csv(prefix + ".grm.id", sep=r"\s+", header=None, comment="#",
                      dtype=str)
    iid = pd.Index(ids.iloc[:, 1 if ids.shape[1] > 1 else 0].to_numpy(), name="iid")
    n = len(iid)
    vals = np.fromfile(prefix + ".grm.bin", dtype="<f4")
    if vals.size != n * (n + 1) // 2:
        raise GRMError(
            f"{prefix}.grm.bin holds {vals.size} values but {n} ids need "
            f"{n * (n + 1) // 2}: the file is truncated or belongs to another .grm.id."
        )
    A = np.empty((n, n), dtype=dtype)
    tri = np.tril_indices(n)
    A[tri] = vals
    A.T[tri] = vals
    out = pd.DataFrame(A, index=iid, columns=iid.copy(), copy=False)
    nfile = Path(prefix + ".grm.N.bin")
    if nfile.is_file():
        nv = np.fromfile(nfile, dtype="<f4")
        if nv.size:
            out.attrs["n_snps"] = int(nv.max())
    return out

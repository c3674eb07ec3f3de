"""Larger cohorts with real linkage disequilibrium: mosaics of real genotype segments.

Each synthetic subject is assembled from consecutive segments of SNPs, each copied from
a donor drawn at random among the real subjects. Within a segment the LD (correlation
between nearby SNPs) is exactly that of the real data; the allele frequencies are
those of the donors; distinct synthetic subjects share a segment only when they drew
the same donor for it (probability 1 / n_donors), so relatedness stays low. Used for
simulations with known heritability at N larger than the shipped 378 samples.
"""

from __future__ import annotations

import numpy as np

from .genotypes import Genotypes

__all__ = ["mosaic"]


def mosaic(genotypes, n_samples, *, segment_snps=200, dtype=np.float32, random_state=None,
           prefix="mosaic"):
    """Synthetic cohort of ``n_samples`` subjects made of real genotype segments.

    Parameters
    ----------
    genotypes : Genotypes
        Donors (read once, in memory, as allele counts; missing calls are
        mean-imputed by :meth:`Genotypes.read`, so the mosaic has none).
    n_samples : int
        Number of synthetic subjects.
    segment_snps : int
        SNPs per copied segment (consecutive in the SNP order of ``genotypes``).
    dtype : numpy dtype
        Storage of the in-memory result (float32 halves memory; NaN kept).
    random_state : int or Generator, optional
    prefix : str
        Synthetic ids are ``f"{prefix}{i:06d}"``.

    Returns
    -------
    Genotypes
        In-memory genotypes with the SNP table of ``genotypes``.

    Examples
    --------
    >>> from hcl_sklearn.datasets import get_1000g_chr22
    >>> from hcl_sklearn.genetics import Genotypes
    >>> from hcl_sklearn.genetics.mosaic import mosaic
    >>> g = Genotypes.from_plink(get_1000g_chr22())
    >>> big = mosaic(g.subset(np.arange(1000)), 500, random_state=0)
    >>> big.n_samples, big.n_snps, big.iid[0]
    (500, 1000, 'mosaic000000')
    """
    n_samples = int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1; got {n_samples}.")
    if int(segment_snps) < 1:
        raise ValueError(f"segment_snps must be >= 1; got {segment_snps}.")
    rng = np.random.default_rng(random_state)
    donors = genotypes.read(standardize=False, dtype=dtype)
    n_don, m = donors.shape
    out = np.empty((n_samples, m), dtype=dtype)
    for start in range(0, m, int(segment_snps)):
        stop = min(start + int(segment_snps), m)
        pick = rng.integers(0, n_don, size=n_samples)
        out[:, start:stop] = donors[pick, start:stop]
    iid = [f"{prefix}{i:06d}" for i in range(n_samples)]
    return Genotypes.from_array(out, iid, snps=genotypes.snps)

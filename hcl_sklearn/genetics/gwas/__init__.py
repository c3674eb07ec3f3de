"""Genome-wide association of embedding dimensions, loci per modality and their overlap.

* :class:`CrossModalGWAS` - the estimator (exact OLS or mixed model for every SNP x
  phenotype); :mod:`.engine` holds its computation without scikit-learn, which
  ``hcl gwas`` uses (imported on first use: scikit-learn's import costs seconds).
* :mod:`.association` - the OLS kernel and the exact log p-value of Student's t.
* :mod:`.loci` - LD clumping, padding, merging, T1/T2 overlap.
* :mod:`.plotting` - Manhattan, Miami and QQ plots.
* :mod:`.sumstats` - GWAS-SSF-style tables and their writers.
"""

import importlib

from .association import RankDeficientCovariatesError, ols_association, t_log_pvalue
from .loci import LociOverlap, clump, loci_from_clumps, merge_intervals, overlap_loci

__all__ = [
    "CrossModalGWAS",
    "LociOverlap",
    "RankDeficientCovariatesError",
    "clump",
    "loci_from_clumps",
    "merge_intervals",
    "ols_association",
    "overlap_loci",
    "t_log_pvalue",
]


def __getattr__(name):
    if name == "CrossModalGWAS":
        return importlib.import_module(".estimator", __name__).CrossModalGWAS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

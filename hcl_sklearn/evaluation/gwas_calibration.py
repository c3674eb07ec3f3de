"""Calibration and power of OLS and mixed-model GWAS on related subjects with known truth.

:func:`relatedness_calibration` simulates a genetic-only cohort with related pairs
(:func:`hcl_sklearn.datasets.make_paired_cohort` with ``shape=None``,
``related_fraction``, ``n_chromosomes`` and a polygenic background on the odd-numbered
chromosomes), runs ``CrossModalGWAS`` with ``model='ols'`` and ``model='lmm'`` (LOCO) on
the planted heritable brain factors, and measures

* **calibration**: the genomic inflation ``lambda_GC`` of each factor on the SNPs of the
  even-numbered chromosomes that carry none of its planted causal SNPs — SNPs with no
  effect on the factor and not linked to one, whose statistics are N(0, 1) under a
  calibrated test whatever the relatedness;
* **power**: the fraction of planted causal SNPs (non-zero effect) reaching
  ``p < alpha`` and their mean chi-square.

Why OLS is inflated: for a null SNP ``g`` the OLS statistic is ``(g'y)^2 / (g'g var y)``;
relatives' genotypes correlate by their relatedness ``r`` at every SNP, and their
phenotypes by ``r h2`` (``h2``: all the genetic variance, wherever its SNPs are), so
``E[chi2] = 1 + f r^2 h2`` for a fraction ``f`` of subjects in pairs — 1.12 for the
defaults (``f = 0.8``, ``r = 0.5``, ``h2 = 0.6``). The LOCO mixed model models that
covariance and stays at 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["relatedness_calibration"]


def _null_masks(snps, causal, names):
    """Per factor: SNPs of the even-numbered chromosomes that carry none of its causal SNPs.

    Not merely far from them: relatives share their genome in IBD runs of tens of cM, so
    a SNP on the same chromosome as a causal SNP, even megabases away, is *linked* to it
    in the related pairs and carries real (linkage) signal, not a null statistic."""
    chrom = snps["chrom"].astype(str).to_numpy()
    even = np.array([c.isdigit() and int(c) % 2 == 0 for c in chrom])
    out = {}
    for name in names:
        hit = set(chrom[causal.loc[causal["factor"] == name, "snp_index"].to_numpy()])
        out[name] = even & ~np.isin(chrom, list(hit))
    return out


def _chi2(neg_log10_p):
    """The 1-df chi-square with the same p (exact down to p ~ 1e-300, then asymptotic)."""
    from scipy.special import ndtri

    lp = np.asarray(neg_log10_p, dtype=float)
    with np.errstate(under="ignore"):
        z = -ndtri(0.5 * np.power(10.0, -lp))
    # beyond p ~ 1e-300: chi2 ~ -2 ln p - ln(-2 ln p) - ln(pi / 2) (Mills' ratio)
    big = ~np.isfinite(z) | (lp > 290)
    if big.any():
        a = 2.0 * lp[big] * np.log(10.0)
        z2 = a - np.log(a) - np.log(np.pi / 2.0)
        out = z * z
        out[big] = z2
        return out
    return z * z


def _lambda(neg_log10_p):
    """Median chi-square / 0.4549 (the 1-df median)."""
    lp = np.asarray(neg_log10_p, dtype=float)
    lp = lp[np.isfinite(lp)]
    return float(_chi2(np.array([np.median(lp)]))[0] / 0.454936423119572)


def relatedness_calibration(n_subjects=2000, *, n_chromosomes=8, related_fraction=0.8,
                            h2=0.6, polygenic_h2=0.4, n_heritable=6, n_causal=5,
                            alpha=5e-8, n_pcs=0, random_state=0,
                            n_jobs=None, return_fits=False):
    """OLS vs LOCO mixed-model GWAS of planted brain factors on a related cohort.

    Parameters
    ----------
    n_subjects : int, default=2000
    n_chromosomes : int, default=8
        Pseudo-chromosomes (independent mosaics of the real chr22 panel); the odd ones
        carry the polygenic background, the even ones without a factor's causal SNPs
        are its null SNPs (with 8, about 2 of the 4 even ones per factor).
    related_fraction : float, default=0.8
        Fraction of subjects in a related pair (siblings and parent-offspring in turn).
    h2, polygenic_h2 : float, default=0.6, 0.4
        Heritability of each shared factor, and the part of it from the polygenic
        background (odd chromosomes); the rest comes from ``n_causal`` planted SNPs.
    n_heritable, n_causal : int, default=6, 5
    alpha : float, default=5e-8
        Significance level of the power.
    n_pcs : int, default=0
        Ancestry PCs among the covariates (with age and sex). The simulated cohort has no
        population structure (one panel); PCs of 10^5 SNPs cost GBs of memory.
    random_state : int, default=0
    n_jobs : int, optional
    return_fits : bool, default=False
        Also return ``{'ols': CrossModalGWAS, 'lmm': CrossModalGWAS, 'cohort': Bunch}``.

    Returns
    -------
    table : pandas.DataFrame
        One row per model (``'OLS'``, ``'LMM (LOCO)'``): ``lambda_gc`` (mean over
        factors), ``lambda_gc_min``, ``lambda_gc_max``, ``mean_chi2_null`` (mean chi-square
        of the null SNPs: 1 when calibrated; more precise than the median),
        ``power`` (fraction of causal SNPs at ``p < alpha``), ``power_gc`` (the same
        after dividing each factor's statistics by its ``lambda_GC``, genomic control:
        the fair power of an inflated test), ``mean_chi2_causal`` and
        ``mean_chi2_causal_gc``, ``n_null_snps`` (mean per factor), ``n_causal_snps``,
        ``n_phenotypes`` (factors with null SNPs), ``seconds`` (``fit``).

    Examples
    --------
    >>> from hcl_sklearn.evaluation.gwas_calibration import relatedness_calibration
    >>> tab = relatedness_calibration(300, n_heritable=2, n_pcs=2)  # doctest: +SKIP
    >>> list(tab.index)  # doctest: +SKIP
    ['OLS', 'LMM (LOCO)']
    """
    import time

    from ..datasets import make_paired_cohort
    from ..genetics import Genotypes
    from ..genetics.gwas import CrossModalGWAS

    b = make_paired_cohort(n_subjects, shape=None, n_chromosomes=n_chromosomes,
                           related_fraction=related_fraction, polygenic_h2=polygenic_h2,
                           h2=h2, n_heritable=n_heritable, n_causal=n_causal,
                           h2_t1_only=None, h2_t2_only=None, n_pcs=n_pcs,
                           random_state=random_state)
    factors = b.truth.factors
    names = factors.index[factors["kind"] == "heritable"].tolist()
    Y = b.truth.factor_values[names]
    Y.columns = [f"t1_{c}" for c in names]
    g = Genotypes.from_array(b.genotypes, b.subject_ids, b.snps)
    causal = b.truth.causal
    causal = causal[causal["factor"].isin(names) & (causal["beta_allele"] != 0)]
    null = _null_masks(b.snps, causal, names)
    rows, fits = {}, {"cohort": b}
    for label, kw in (("OLS", {"model": "ols"}), ("LMM (LOCO)", {"model": "lmm"})):
        t = time.perf_counter()
        fit = CrossModalGWAS(g, covariates=b.covariates, maf=0.01, n_jobs=n_jobs,
                             **kw).fit(Y)
        sec = time.perf_counter() - t
        fits["ols" if kw["model"] == "ols" else "lmm"] = fit
        tested = fit._tested_pos
        nl = -fit._log10_p                               # (tested SNPs, phenotypes)
        lam = np.array([_lambda(nl[null[name][tested], j]) if null[name][tested].any()
                        else np.nan for j, name in enumerate(names)])
        mean_null = np.array([np.mean(_chi2(nl[null[name][tested], j]))
                              if null[name][tested].any() else np.nan
                              for j, name in enumerate(names)])
        where = pd.Series(np.arange(len(tested)), index=tested)
        keep = causal["snp_index"].isin(where.index).to_numpy()
        k = where[causal["snp_index"].to_numpy()[keep]].to_numpy()
        j = np.array([names.index(f) for f in causal["factor"].to_numpy()[keep]])
        chi2 = _chi2(nl[k, j])
        lam_j = np.where(np.isfinite(lam), lam, np.nanmean(lam))[j]
        thr = _chi2(np.array([-np.log10(alpha)]))[0]
        if not np.isfinite(lam).any():
            raise ValueError("No factor has a null chromosome (an even one without its "
                             "causal SNPs); use more chromosomes or fewer causal SNPs.")
        rows[label] = {
            "lambda_gc": np.nanmean(lam), "lambda_gc_min": np.nanmin(lam),
            "lambda_gc_max": np.nanmax(lam), "mean_chi2_null": np.nanmean(mean_null),
            "power": float(np.mean(chi2 > thr)),
            "power_gc": float(np.mean(chi2 / lam_j > thr)),
            "mean_chi2_causal": float(np.mean(chi2)),
            "mean_chi2_causal_gc": float(np.mean(chi2 / lam_j)),
            "n_null_snps": int(np.mean([null[nm][tested].sum() for nm in names])),
            "n_causal_snps": int(keep.sum()), "n_phenotypes": int(np.isfinite(lam).sum()),
            "seconds": sec,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    return (table, fits) if return_fits else table

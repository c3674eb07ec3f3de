"""Genotypes with real linkage disequilibrium: mosaic resampling of the 1000 Genomes panel.

The reference panel is the vendored real 1000 Genomes EUR chr22 data (378 samples x 15,938
SNPs, :func:`hcl_sklearn.datasets.get_1000g_chr22`). SNPs with a minor allele frequency below
``min_maf`` in the panel are dropped (default 0.01: 60 SNPs).

``'mosaic'`` (default): each new subject's chromosome is cut at recombination breakpoints
drawn as a Poisson process on the genetic map (the panel's cM column, mean segment length
``segment_cm``) and each segment is copied from the *diploid* genotypes of a panel sample
drawn at random. Within a segment the genotypes (hence allele frequencies, Hardy-Weinberg
proportions and LD) are real; LD is broken only across breakpoints, on the cM scale where it
has decayed anyway. Because the panel has 378 samples, two simulated subjects copy the same
sample on a given segment with probability 1/378, i.e. a small cryptic relatedness
(expected kinship ~0.0013) of the kind a genetic relationship matrix absorbs.

``'independent'``: every SNP drawn independently as Binomial(2, p) with the panel's allele
frequency: no LD (only when asked for, e.g. as a null model).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

GENOTYPE_MODELS = ("mosaic", "independent")

__all__ = ["GENOTYPE_MODELS", "load_reference_panel", "simulate_genotypes"]


@functools.lru_cache(maxsize=1)
def _read_panel():
    from bed_reader import open_bed

    from ._base import get_1000g_chr22

    prefix = get_1000g_chr22()
    with open_bed(prefix + ".bed") as bed:
        G = bed.read(dtype="int8")  # counts of allele_1 (the .bim 5th column)
        snps = pd.DataFrame({
            "chrom": bed.chromosome.astype(str),
            "pos": bed.bp_position.astype(np.int64),
            "id": bed.sid.astype(str),
            "cm": bed.cm_position.astype(float),
            "a1": bed.allele_1.astype(str),
            "a2": bed.allele_2.astype(str),
        })
    G.setflags(write=False)
    return G, snps


def load_reference_panel(min_maf=0.01):
    """The real 1000 Genomes EUR chr22 panel, filtered on minor allele frequency.

    Parameters
    ----------
    min_maf : float, default=0.01
        SNPs whose minor allele frequency in the 378 panel samples is below this are dropped.

    Returns
    -------
    G : ndarray of int8, shape (378, m)
        Counts of allele ``a1`` per sample and SNP.
    snps : DataFrame
        ``chrom``, ``pos`` (GRCh37 bp), ``id`` (rsID), ``variant_id`` (= ``id``), ``cm``,
        ``a1`` (counted allele), ``a2``, ``panel_af`` (frequency of ``a1`` in the panel).

    Examples
    --------
    >>> from hcl_sklearn.datasets.genotypes import load_reference_panel
    >>> G, snps = load_reference_panel()
    >>> G.shape[0], G.shape[1] == len(snps)
    (378, True)
    """
    if not isinstance(min_maf, (int, float, np.floating)) or not 0 <= min_maf < 0.5:
        raise ValueError(f"min_maf must be a number in [0, 0.5); got {min_maf!r}.")
    G, snps = _read_panel()
    af = G.mean(axis=0) / 2.0
    keep = np.minimum(af, 1 - af) >= min_maf
    snps = snps.loc[keep].reset_index(drop=True)
    snps.insert(3, "variant_id", snps["id"])
    snps["panel_af"] = af[keep]
    return np.ascontiguousarray(G[:, keep]), snps


def simulate_genotypes(n_subjects, model="mosaic", *, segment_cm=2.0, min_maf=0.01,
                       random_state=None):
    """Draw genotypes of ``n_subjects`` new subjects from the real chr22 panel.

    Parameters
    ----------
    n_subjects : int
    model : {'mosaic', 'independent'}, default='mosaic'
        See the module docstring.
    segment_cm : float, default=2.0
        Mean length (cM) of the copied segments of the mosaic model.
    min_maf : float, default=0.01
        Panel MAF filter (see :func:`load_reference_panel`).
    random_state : int, Generator or None

    Returns
    -------
    G : ndarray of int8, shape (n_subjects, m)
        Counts of allele ``snps.a1``.
    snps : DataFrame
        As returned by :func:`load_reference_panel`.

    Examples
    --------
    >>> from hcl_sklearn.datasets.genotypes import simulate_genotypes
    >>> G, snps = simulate_genotypes(5, random_state=0)
    >>> G.shape == (5, len(snps)), int(G.max()) <= 2
    (True, True)
    """
    if model not in GENOTYPE_MODELS:
        raise ValueError(f"genotype_model must be one of {GENOTYPE_MODELS}; got {model!r}.")
    if not isinstance(segment_cm, (int, float, np.floating)) or segment_cm <= 0:
        raise ValueError(f"segment_cm must be a positive number (cM); got {segment_cm!r}.")
    rng = np.random.default_rng(random_state)
    panel, snps = load_reference_panel(min_maf)
    n_panel, m = panel.shape
    if model == "independent":
        af = snps["panel_af"].to_numpy()
        return rng.binomial(2, af, size=(n_subjects, m)).astype(np.int8), snps
    cm = snps["cm"].to_numpy()
    lo, hi = cm[0], cm[-1]
    out = np.empty((n_subjects, m), dtype=np.int8)
    cols = np.arange(m)
    for i in range(n_subjects):
        n_breaks = rng.poisson((hi - lo) / segment_cm)
        breaks = np.sort(rng.uniform(lo, hi, n_breaks))
        segment = np.searchsorted(breaks, cm)           # segment index of every SNP
        sources = rng.integers(n_panel, size=n_breaks + 1)
        out[i] = panel[sources[segment], cols]
    return out, snps

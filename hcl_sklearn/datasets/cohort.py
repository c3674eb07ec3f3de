"""``make_paired_cohort``: a simulated biobank cohort with known truth.

Subjects get real-LD genotypes (:mod:`.genotypes`), age, sex, a disorder label, and latent
factors; the factors deform the real MNI152 anatomy (:mod:`.anatomy`) and set
modality-specific contrast (:mod:`.contrast`), giving paired T1/T2 volumes.

Latent factors (``b.truth.factors`` lists them):

========================  ===========  ============  ============================================
name                      kind         modalities    what it does
========================  ===========  ============  ============================================
``shape_1`` ...           heritable    t1, t2        regional volume change at a fixed brain
                                                     location + a smooth whole-brain shape change
``t1_myelin``             heritable    t1            white-matter T1 brightness (front-to-back)
``t2_wmh``                heritable    t2            periventricular WM hyperintensity load
``age``                   age          t1, t2        ventricle enlargement, cortical thinning
``disorder``              disorder     t1, t2        hippocampal shrinkage, ventricle enlargement
``noise_1`` ...           noise        t1, t2        non-genetic smooth shape variation
========================  ===========  ============  ============================================

A heritable factor is ``sqrt(h2) g + sqrt(1 - h2) e``: ``g`` = standardized genotypes of its
``n_causal`` causal SNPs (drawn among SNPs with sample MAF >= 0.05) times N(0, 1) effects,
standardized on the sample; ``e`` = N(0, 1) noise made orthogonal to ``g`` and standardized,
so the realised h2 (``var(g part) / var(factor)`` on the sample) equals the request exactly.

``polygenic_h2 > 0`` adds an infinitesimal background to every heritable factor: N(0, 1)
effects on the standardized genotypes of *all* SNPs of the odd-numbered chromosomes (all SNPs
when there is one chromosome), so the even-numbered chromosomes stay free of background
signal (clean nulls for GWAS calibration, apart from the planted causal SNPs). The factor's
total h2 is kept: ``min(polygenic_h2, h2)`` of it comes from the background, the rest from
the planted causal SNPs. ``n_chromosomes > 1`` or ``related_fraction > 0`` draws the genotypes
with :func:`.genotypes.simulate_related_genotypes` (pseudo-chromosomes, sibling and
parent-offspring pairs, ``b.pedigree``).
"""

from __future__ import annotations

import logging
import numbers

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state

from . import anatomy
from . import contrast
from .genotypes import (GENOTYPE_MODELS, RELATIONSHIPS, simulate_genotypes,
                        simulate_related_genotypes)

logger = logging.getLogger(__name__)

AGE_MEAN, AGE_SD, AGE_RANGE = 63.0, 7.5, (45.0, 82.0)
CAUSAL_MIN_MAF = 0.05
#: window (bp) around a gene for ``causal_genes``: the gene-based test's default window
CAUSAL_GENE_WINDOW = 10_000
_CHUNK = 32

#: Acquisition and anatomy settings of each ``realism`` level (see docs/simulator.md for the
#: published property behind every ``'realistic'`` value).
REALISM = {
    "basic": dict(noise_level=(0.03, 0.03), bias_strength=0.1, n_sites=1, site_gain_sd=0.0,
                  t2_shift_mm=0.0, t2_mask_threshold=(0.5, 0.5), individual_rms_mm=0.0,
                  individual_sigma_mm=12.0),
    "realistic": dict(noise_level=(0.03, 0.05), bias_strength=0.2, n_sites=3,
                      site_gain_sd=0.05, t2_shift_mm=0.6, t2_mask_threshold=(0.35, 0.65),
                      individual_rms_mm=1.5, individual_sigma_mm=20.0),
}

__all__ = ["make_paired_cohort"]


def _realism_settings(realism):
    """The acquisition/anatomy settings of a ``realism`` level name, or of a dict that
    overrides some of the ``'basic'`` level's (e.g. to switch one realistic property on)."""
    if isinstance(realism, str) and realism in REALISM:
        return dict(REALISM[realism])
    if not isinstance(realism, dict):
        raise ValueError(f"realism must be one of {sorted(REALISM)} or a dict of settings; "
                         f"got {realism!r}.")
    unknown = sorted(set(realism) - set(REALISM["basic"]))
    if unknown:
        raise ValueError(f"unknown realism setting(s) {unknown}; the settings are "
                         f"{sorted(REALISM['basic'])}.")
    settings = {**REALISM["basic"], **realism}
    for key in ("noise_level", "t2_mask_threshold"):
        settings[key] = tuple(float(v) for v in np.broadcast_to(settings[key], (2,)))
    if int(settings["n_sites"]) < 1:
        raise ValueError(f"n_sites must be >= 1; got {settings['n_sites']!r}.")
    settings["n_sites"] = int(settings["n_sites"])
    return settings


def _check_h2(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a heritability in [0, 1]"
                         f"{' or None to leave the factor out' if allow_none else ''}; "
                         f"got {value!r}.")
    return float(value)


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _seed_sequence(random_state):
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.SeedSequence(int(random_state))
    rs = check_random_state(random_state)  # None, RandomState; raises on anything else
    return np.random.SeedSequence(int(rs.randint(np.iinfo(np.int32).max)))


def _standardize(G):
    G = np.asarray(G, dtype=np.float64)
    mu = G.mean(axis=0)
    sd = G.std(axis=0)
    sd[sd == 0] = 1.0
    return (G - mu) / sd, mu, sd


def _ancestry_pcs(G, n_pcs, seed):
    """Top ``n_pcs`` principal components of the standardized genotypes (scores, unit SD)."""
    from sklearn.utils.extmath import randomized_svd

    if n_pcs == 0:
        return np.zeros((G.shape[0], 0))
    Z = _standardize(G)[0].astype(np.float32)
    k = min(n_pcs, min(Z.shape) - 1)
    U, S, _ = randomized_svd(Z, k, n_oversamples=20, n_iter=12, random_state=seed)
    pcs = U * S
    pcs = pcs / pcs.std(axis=0)
    if k < n_pcs:
        pcs = np.hstack([pcs, np.zeros((G.shape[0], n_pcs - k))])
    return pcs


def _polygenic_backgrounds(G, snps, n_factors, rng, block=8192):
    """Standardized infinitesimal genetic values, one column per heritable factor.

    N(0, 1) effects on the standardized genotypes of every SNP of the odd-numbered
    chromosomes (every SNP when there is one chromosome); returns the values (n, n_factors,
    mean 0, SD 1), the background SNPs' indices and their per-allele effects giving the
    standardized values up to a constant.
    """
    chrom = snps["chrom"].astype(str).to_numpy()
    if len(np.unique(chrom)) == 1:
        idx = np.arange(G.shape[1])
    else:
        odd = np.array([c.isdigit() and int(c) % 2 == 1 for c in chrom])
        idx = np.flatnonzero(odd)
    beta = rng.standard_normal((len(idx), n_factors))
    values = np.zeros((G.shape[0], n_factors))
    per_allele = np.zeros_like(beta)
    for start in range(0, len(idx), block):
        cols = idx[start:start + block]
        X = G[:, cols].astype(np.float64)
        mu, sd = X.mean(axis=0), X.std(axis=0)
        inv_sd = np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0)  # monomorphic: 0
        b = beta[start:start + block] * inv_sd[:, None]
        values += (X - mu) @ b
        per_allele[start:start + block] = b
    sd_values = values.std(axis=0)
    if np.any(sd_values == 0):
        raise ValueError("the polygenic background does not vary in this sample; draw more "
                         "subjects.")
    values = (values - values.mean(axis=0)) / sd_values
    return values, idx, per_allele / sd_values


def _heritable_factor(G, maf, rng, n_causal, h2, background=None, h2_background=0.0,
                      idx=None):
    """One heritable factor: values, genetic part, causal indices and effects.

    ``background`` (standardized polygenic values) explains ``h2_background`` of the
    factor's variance and the causal SNPs ``h2 - h2_background``, the total exactly ``h2``;
    then also returns the background's scale (factor units per unit of ``background``).
    ``idx``: the causal SNPs, when already drawn (:func:`_draw_in_genes`).
    """
    if idx is None:
        candidates = np.flatnonzero(maf >= CAUSAL_MIN_MAF)
        if n_causal > len(candidates):
            raise ValueError(f"n_causal={n_causal} exceeds the {len(candidates)} SNPs with "
                             f"sample MAF >= {CAUSAL_MIN_MAF}; use a smaller n_causal.")
        idx = np.sort(rng.choice(candidates, n_causal, replace=False))
    Z, mu, sd = _standardize(G[:, idx])
    beta = rng.standard_normal(n_causal)
    g = Z @ beta
    g_sd = g.std()
    if g_sd == 0:  # all causal genotypes constant: impossible with MAF >= 0.05 and n >= 2
        raise ValueError("the causal SNPs do not vary in this sample; draw more subjects.")
    g = (g - g.mean()) / g_sd
    if background is not None:  # mix, rescaled so the total genetic variance is exactly h2
        a_c, a_p = np.sqrt(h2 - h2_background), np.sqrt(h2_background)
        mixed = a_c * g + a_p * background
        s = mixed.std()
        if s > 0:
            a_c, a_p = a_c / s, a_p / s
            g = a_c * g + a_p * background
            g = g - g.mean()
        else:  # h2 = 0: no genetic part at all
            a_c = a_p = 0.0
    e = rng.standard_normal(len(g))
    e = e - e.mean()
    e_orth = e - (e @ g) / (g @ g) * g
    # orthogonal to g so the realised h2 is exact (impossible with 2 subjects)
    e = e_orth if e_orth.std() > 1e-8 * e.std() else e
    e = e / e.std()
    genetic = np.sqrt(h2) * g
    value = genetic + np.sqrt(1.0 - h2) * e
    if background is not None:
        beta_std = np.sqrt(h2) * a_c * beta / g_sd
        return value, genetic, idx, beta_std, beta_std / sd, np.sqrt(h2) * a_p
    beta_std = np.sqrt(h2) * beta / g_sd  # factor units per SD of genotype
    return value, genetic, idx, beta_std, beta_std / sd


def _gene_snps(snps, maf, causal_genes):
    """SNP indices (sample MAF >= CAUSAL_MIN_MAF) inside each gene +- CAUSAL_GENE_WINDOW."""
    from ..targets.genes import load_genes

    if isinstance(causal_genes, str):
        raise TypeError("causal_genes must be a list of gene symbols, not one string.")
    symbols = [str(g).strip().upper() for g in causal_genes]
    if not symbols or len(set(symbols)) != len(symbols):
        raise ValueError(f"causal_genes must be distinct gene symbols; got {causal_genes!r}.")
    genes = load_genes()
    genes = genes.assign(key=genes["symbol"].str.upper()).drop_duplicates("key")
    genes = genes.set_index("key")
    unknown = [g for g in symbols if g not in genes.index]
    if unknown:
        raise ValueError(f"causal_genes {unknown[:5]} are not GENCODE 32 gene symbols "
                         "(hcl_sklearn.targets.genes.load_genes()).")
    chrom = snps["chrom"].astype(str).to_numpy()
    if not (chrom == "22").all():
        raise ValueError("causal_genes needs the real chr22 genotypes (n_chromosomes=1, "
                         "related_fraction=0): pseudo-chromosomes copy chr22's positions "
                         "under other names, so no gene annotation fits them.")
    pos = snps["pos"].to_numpy()
    out = []
    for g in symbols:
        row = genes.loc[g]
        if str(row["chrom"]) != "22":
            raise ValueError(f"causal gene {g} is on chromosome {row['chrom']}; the simulated "
                             "genotypes are chr22 (GRCh37): choose chr22 genes.")
        inside = ((pos >= row["start"] - CAUSAL_GENE_WINDOW)
                  & (pos <= row["end"] + CAUSAL_GENE_WINDOW) & (maf >= CAUSAL_MIN_MAF))
        if not inside.any():
            raise ValueError(f"causal gene {g} has no SNP with sample MAF >= "
                             f"{CAUSAL_MIN_MAF} within {CAUSAL_GENE_WINDOW // 1000} kb; "
                             "choose another gene.")
        out.append(np.flatnonzero(inside))
    return symbols, out


def _draw_in_genes(rng, gene_snps, n_causal, offset):
    """``n_causal`` distinct SNPs, slot ``k`` from gene ``(offset + k) mod n_genes`` (the next
    gene with a free SNP where that gene's SNPs are used up)."""
    taken, genes = [], []
    n_genes = len(gene_snps)
    for k in range(n_causal):
        for step in range(n_genes):
            gi = (offset + k + step) % n_genes
            free = np.setdiff1d(gene_snps[gi], taken)
            if len(free):
                break
        else:
            raise ValueError(f"n_causal={n_causal} exceeds the SNPs of causal_genes.")
        taken.append(int(rng.choice(free)))
        genes.append(gi)
    order = np.argsort(taken)
    return np.asarray(taken)[order], np.asarray(genes)[order]


def make_paired_cohort(n_subjects=200, shape=(32, 40, 32), *, n_heritable=3, n_causal=50,
                       h2=0.5, h2_t1_only=0.4, h2_t2_only=0.4, n_noise=2, prevalence=0.2,
                       n_pcs=10, genotype_model="mosaic", segment_cm=2.0, min_maf=0.01,
                       n_chromosomes=1, related_fraction=0.0, relationships=RELATIONSHIPS,
                       ibd_segment_cm=None, polygenic_h2=0.0, noise_level=None,
                       bias_strength=None, realism="basic", causal_genes=None,
                       return_tissues=False, return_displacement=False, random_state=None,
                       verbose=0):
    """Simulate a cohort of paired T1/T2 brain volumes with genotypes and known truth.

    Parameters
    ----------
    n_subjects : int, default=200
    shape : tuple of 3 int or None, default=(32, 40, 32)
        Grid of the volumes, covering the MNI152 field of view (182 x 218 x 182 mm; use
        ``(182, 218, 182)`` for 1 mm). ``None`` skips the images (``X`` is ``None``): a fast
        genetic-only cohort with the same genotypes and factors as with images.
    n_heritable : int, default=3
        Number of heritable shape factors seen in both modalities.
    n_causal : int, default=50
        Causal SNPs per heritable factor.
    h2 : float or sequence of float, default=0.5
        Heritability of the shape factors (one value, or one per factor).
    h2_t1_only, h2_t2_only : float or None, default=0.4
        Heritability of the T1-only (white-matter T1 brightness) and T2-only (white-matter
        hyperintensity load) factors; ``None`` leaves the factor out.
    n_noise : int, default=2
        Non-genetic shape factors.
    prevalence : float, default=0.2
        Disorder prevalence at the mean age (older subjects are more often affected).
    n_pcs : int, default=10
        Ancestry principal components (of the simulated genotypes) in ``covariates``.
    genotype_model : {'mosaic', 'independent'}, default='mosaic'
        ``'mosaic'`` resamples segments of the real 1000 Genomes panel (real LD);
        ``'independent'`` draws SNPs independently (no LD).
    segment_cm : float, default=2.0
        Mean mosaic segment length in cM.
    min_maf : float, default=0.01
        SNPs below this minor allele frequency in the panel are dropped.
    n_chromosomes : int, default=1
        Number of pseudo-chromosomes ``'1'`` ... ``'K'``, each an independent mosaic of the
        chr22 panel (chr22's LD, positions and cM map; see
        :func:`hcl_sklearn.datasets.genotypes.simulate_related_genotypes`). With the default
        1 and ``related_fraction=0`` the genotypes are the original chr22 ones (``chrom``
        ``'22'``, bit-for-bit unchanged); anything else draws them with
        ``simulate_related_genotypes`` (``chrom`` ``'1'`` ..., ids ``'<chrom>:<rsID>'``) and
        the bunch gains ``pedigree``.
    related_fraction : float in [0, 1], default=0.0
        Fraction of the subjects in a related pair (sibling or parent-offspring, expected
        relatedness 0.5); the rest are unrelated. Needs ``genotype_model='mosaic'``.
    relationships : sequence of {'sibling', 'parent_offspring'}, default=both
        Relationships of the pairs, assigned in turn.
    ibd_segment_cm : float, dict or None, default=None
        Mean length (cM) of a pair's runs of one IBD state (IBD2 / IBD0); ``None``: 25 cM
        for siblings, 2 cM for parent-offspring (see ``simulate_related_genotypes``).
    polygenic_h2 : float in [0, 1], default=0.0
        Heritability of an infinitesimal background added to every heritable factor: N(0, 1)
        effects on the standardized genotypes of all SNPs of the odd-numbered chromosomes
        (all SNPs when there is a single chromosome); the even-numbered chromosomes carry
        no background (only planted causal SNPs). A factor's total h2 is unchanged:
        ``min(polygenic_h2, h2)`` of it is the background's, the rest the causal SNPs'
        (their split on the sample is exact up to the sample correlation of the two parts,
        O(1/sqrt(n)); the total is exact). Real brain IDPs are polygenic, and relatedness
        inflates an ordinary least-squares GWAS only through a polygenic background.
    noise_level : float, (float, float) or None, default=None
        Rician noise SD relative to the brightest tissue (one value, or T1's and T2's);
        ``None``: the ``realism`` level's (0.03; ``'realistic'``: 0.03 T1, 0.05 T2).
    bias_strength : float or None, default=None
        SD of the log bias field; ``None``: the ``realism`` level's (0.1; ``'realistic'``:
        0.2).
    realism : {'basic', 'realistic'} or dict, default='basic'
        ``'basic'``: the original cohort (one scanner, T1 and T2 perfectly registered with one
        brain mask, weak nuisance). ``'realistic'`` adds, each from a published property of
        real data (docs/simulator.md): 3 scanner sites with their own tissue contrast
        (``covariates`` gains ``site_2``, ``site_3``), a stronger bias field and a noisier
        T2, a residual T2-to-T1 misregistration of about 1 mm, a T2 brain mask of its own,
        and each subject's own non-heritable high-dimensional anatomical variability (a
        smooth random warp of 1.5 mm RMS). Genotypes, factors, age and disorder are the same
        as with ``'basic'`` for the same ``random_state``. A dict overrides some of
        ``'basic'``'s settings (the keys of :data:`REALISM`), e.g. ``{'bias_strength':
        0.2}`` to add one realistic property alone (``benchmarks/realism_ablation.py``).
    causal_genes : sequence of str or None, default=None
        Gene symbols (GENCODE 32, chr22, GRCh37) that carry the causal SNPs of the shared
        shape factors: causal SNP ``k`` of ``shape_j`` is drawn among the SNPs (sample MAF
        >= 0.05) inside gene ``(j n_causal + k) mod len(causal_genes)`` +- 10 kb, so every
        gene is causal once ``n_heritable * n_causal >= len(causal_genes)``. The
        modality-specific factors keep causal SNPs drawn anywhere. This plants a known
        gene -> drug-class path (e.g. the chr22 targets of one drug class) for the
        gene-based test and the drug-target enrichment; ``truth.causal`` gains ``gene``.
        Needs the real chr22 genotypes (``n_chromosomes=1``, ``related_fraction=0``).
    return_tissues : bool, default=False
        Also return the warped tissue fractions ``tissues`` (n, 3, D, H, W), channels
        ``('gm', 'wm', 'csf')``.
    return_displacement : bool, default=False
        Also return the displacement fields ``displacement`` (n, 3, D, H, W) in mm
        (the subject's tissue at ``x`` is the template's at ``x + u(x)``).
    random_state : int, RandomState instance or None, default=None
        Same value, same cohort.
    verbose : int, default=0
        Progress bar over subjects when > 0.

    Returns
    -------
    bunch : sklearn.utils.Bunch
        ``X`` (float32, (n, 2, D, H, W), channel 0 T1, 1 T2, background 0, or None),
        ``subject_ids`` (Index of str, also the genotype IIDs), ``genotypes``
        (int8 (n, m), counts of ``snps.a1``), ``snps`` (DataFrame: chrom, pos, id,
        variant_id, cm, a1, a2, panel_af), ``covariates`` (DataFrame indexed by subject:
        age, sex (1 male, 0 female), PC1..PCk), ``age`` and ``disorder`` (Series),
        ``affine`` (4 x 4, RAS mm), ``truth`` (Bunch: ``factors`` table with kind,
        modalities, effect, requested and realised h2; ``factor_values`` and
        ``genetic_values`` DataFrames; ``causal`` DataFrame of causal SNPs and effects;
        ``deformation_scale`` Series, < 1 where a subject's deformation was shrunk to stay
        invertible; ``t2_shift_mm``, the T2 image's residual misregistration (the T2 tissue
        at ``x`` is the T1's at ``x + shift``; zero with ``'basic'``)), ``site`` (Series,
        1 … number of sites), ``realism``, and ``tissues`` / ``displacement`` when asked.
        With ``n_chromosomes > 1`` or ``related_fraction > 0`` also ``pedigree``
        (DataFrame indexed by subject: ``iid``, ``family_id``, ``relationship``,
        ``relative``) and ``truth.expected_relatedness`` (one row per related pair:
        ``iid_1``, ``iid_2``, ``family_id``, ``relationship``, ``expected_relatedness``,
        ``realised_relatedness``). With ``polygenic_h2 > 0``, ``truth.factors`` gains
        ``polygenic_h2`` (the background's share of each factor's h2) and
        ``realised_polygenic_h2``, and ``truth`` gains ``polygenic_values`` (the
        background part of each genetic value) and ``polygenic_effects`` (per-allele
        effects, indexed by SNP index; ``genotypes[:, index] @ effects`` equals the
        background part up to a constant, and ``causal.beta_allele`` then gives the
        planted SNPs' part).

    Examples
    --------
    >>> from hcl_sklearn.datasets import make_paired_cohort
    >>> b = make_paired_cohort(n_subjects=4, shape=(16, 20, 16), random_state=0)
    >>> b.X.shape, b.genotypes.shape[0], list(b.covariates.columns[:3])
    ((4, 2, 16, 20, 16), 4, ['age', 'sex', 'PC1'])
    >>> b.truth.factors.loc["t2_wmh", "modalities"]
    ('t2',)
    """
    n = _check_int(n_subjects, "n_subjects", 3)
    if shape is not None:
        shape = anatomy._check_shape(shape)
    n_heritable = _check_int(n_heritable, "n_heritable", 0)
    n_noise = _check_int(n_noise, "n_noise", 0)
    n_causal = _check_int(n_causal, "n_causal", 1)
    n_pcs = _check_int(n_pcs, "n_pcs", 0)
    if isinstance(h2, numbers.Real):
        h2s = [_check_h2(h2, "h2")] * n_heritable
    else:
        h2s = [_check_h2(v, "h2") for v in h2]
        if len(h2s) != n_heritable:
            raise ValueError(f"h2 has {len(h2s)} values for n_heritable={n_heritable} shape "
                             "factors; pass one float or one value per factor.")
    h2_t1 = _check_h2(h2_t1_only, "h2_t1_only", allow_none=True)
    h2_t2 = _check_h2(h2_t2_only, "h2_t2_only", allow_none=True)
    if not isinstance(prevalence, numbers.Real) or not 0 < prevalence < 1:
        raise ValueError(f"prevalence must be in (0, 1); got {prevalence!r}.")
    if genotype_model not in GENOTYPE_MODELS:
        raise ValueError(f"genotype_model must be one of {GENOTYPE_MODELS}; got "
                         f"{genotype_model!r}.")
    settings = _realism_settings(realism)
    n_chromosomes = _check_int(n_chromosomes, "n_chromosomes", 1)
    if (isinstance(related_fraction, bool) or not isinstance(related_fraction, numbers.Real)
            or not 0 <= related_fraction <= 1):
        raise ValueError(f"related_fraction must be a number in [0, 1]; got "
                         f"{related_fraction!r}.")
    polygenic_h2 = _check_h2(polygenic_h2, "polygenic_h2")
    related = n_chromosomes != 1 or related_fraction != 0
    if related and genotype_model != "mosaic":
        raise ValueError("n_chromosomes > 1 and related_fraction > 0 need "
                         f"genotype_model='mosaic'; got {genotype_model!r}.")
    if noise_level is not None:
        levels = np.atleast_1d(np.asarray(noise_level, dtype=object))
        if levels.size not in (1, 2) or not all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and v >= 0
                for v in levels):
            raise ValueError(f"noise_level must be a number >= 0 or one per modality (T1, T2); "
                             f"got {noise_level!r}.")
        settings["noise_level"] = tuple(float(v) for v in np.broadcast_to(levels, (2,)))
    if bias_strength is not None:
        if (not isinstance(bias_strength, numbers.Real) or isinstance(bias_strength, bool)
                or bias_strength < 0):
            raise ValueError(f"bias_strength must be a number >= 0; got {bias_strength!r}.")
        settings["bias_strength"] = float(bias_strength)

    # the 6th stream (polygenic effects) leaves the first five, hence the default cohort, as
    # they were (SeedSequence children depend on their index only)
    seeds = _seed_sequence(random_state).spawn(6)
    rng_geno, rng_pheno, rng_img, rng_pc, rng_site, rng_poly = (
        np.random.default_rng(s) for s in seeds)

    # -- genotypes and demographics -------------------------------------------------------
    width = max(4, len(str(n)))
    ids = pd.Index([f"S{i + 1:0{width}d}" for i in range(n)], name="subject_id")
    pedigree = relatedness = None
    if related:
        sim = simulate_related_genotypes(
            n, n_chromosomes=n_chromosomes, related_fraction=related_fraction,
            relationships=relationships, ibd_segment_cm=ibd_segment_cm,
            segment_cm=segment_cm, min_maf=min_maf, random_state=rng_geno)
        G, snps = sim.G, sim.snps
        pedigree = sim.pedigree.set_axis(ids, axis=0)
        relatedness = sim.expected_relatedness
    else:
        G, snps = simulate_genotypes(n, genotype_model, segment_cm=segment_cm,
                                     min_maf=min_maf, random_state=rng_geno)
    af = G.mean(axis=0) / 2.0
    maf = np.minimum(af, 1 - af)
    gene_symbols = gene_snps = None
    if causal_genes is not None:
        gene_symbols, gene_snps = _gene_snps(snps, maf, causal_genes)

    age = np.clip(rng_pheno.normal(AGE_MEAN, AGE_SD, n), *AGE_RANGE)
    age_z = (age - AGE_MEAN) / AGE_SD
    sex = rng_pheno.integers(0, 2, n)
    logit = np.log(prevalence / (1 - prevalence)) + 0.4 * age_z
    disorder = (rng_pheno.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    severity = np.clip(1.0 + 0.25 * rng_pheno.standard_normal(n), 0.0, None)

    # -- latent factors ---------------------------------------------------------------------
    rows, values, genetic, causal = [], {}, {}, []
    specs = [(f"shape_{k + 1}", h, ("t1", "t2"), "deformation") for k, h in enumerate(h2s)]
    if h2_t1 is not None:
        specs.append(("t1_myelin", h2_t1, ("t1",), "t1_wm_intensity"))
    if h2_t2 is not None:
        specs.append(("t2_wmh", h2_t2, ("t2",), "t2_wm_hyperintensity"))
    background = None
    if polygenic_h2 > 0 and specs:
        background, bg_idx, bg_effects = _polygenic_backgrounds(G, snps, len(specs), rng_poly)
        poly_values, poly_effects = {}, {}
    for j, (name, h, mods, effect) in enumerate(specs):
        idx = in_gene = None
        if gene_snps is not None and j < n_heritable:  # a shared shape factor
            idx, in_gene = _draw_in_genes(rng_pheno, gene_snps, n_causal, j * n_causal)
        if background is None:
            val, gen, idx, b_std, b_allele = _heritable_factor(G, maf, rng_pheno, n_causal, h,
                                                               idx=idx)
        else:
            h_bg = min(polygenic_h2, h)
            val, gen, idx, b_std, b_allele, scale = _heritable_factor(
                G, maf, rng_pheno, n_causal, h, background[:, j], h_bg, idx=idx)
            poly_values[name] = scale * background[:, j]
            poly_effects[name] = scale * bg_effects[:, j]
        values[name], genetic[name] = val, gen
        realised = float(gen.var() / val.var())
        rows.append(dict(name=name, kind="heritable", modalities=mods, effect=effect,
                         h2=h, realised_h2=realised, n_causal=n_causal))
        if background is not None:
            rows[-1].update(polygenic_h2=h_bg,
                            realised_polygenic_h2=float(poly_values[name].var() / val.var()))
        causal.append(pd.DataFrame({"factor": name, "snp_index": idx,
                                    "variant_id": snps["id"].to_numpy()[idx],
                                    "beta_std": b_std, "beta_allele": b_allele}))
        if gene_snps is not None:
            causal[-1]["gene"] = (None if in_gene is None else
                                  [gene_symbols[i] for i in in_gene])
    values["age"] = age_z
    rows.append(dict(name="age", kind="age", modalities=("t1", "t2"), effect="deformation",
                     h2=np.nan, realised_h2=np.nan, n_causal=0))
    values["disorder"] = disorder * severity
    rows.append(dict(name="disorder", kind="disorder", modalities=("t1", "t2"),
                     effect="deformation", h2=np.nan, realised_h2=np.nan, n_causal=0))
    for k in range(n_noise):
        values[f"noise_{k + 1}"] = rng_pheno.standard_normal(n)
        rows.append(dict(name=f"noise_{k + 1}", kind="noise", modalities=("t1", "t2"),
                         effect="deformation", h2=0.0, realised_h2=np.nan, n_causal=0))
    factors = pd.DataFrame(rows).set_index("name")
    if background is not None:  # non-heritable factors: no background
        factors[["polygenic_h2", "realised_polygenic_h2"]] = factors[
            ["polygenic_h2", "realised_polygenic_h2"]].astype(float)
    factor_values = pd.DataFrame(values, index=ids)
    causal = (pd.concat(causal, ignore_index=True) if causal else
              pd.DataFrame(columns=["factor", "snp_index", "variant_id", "beta_std",
                                    "beta_allele"]))

    pcs = _ancestry_pcs(G, n_pcs, int(rng_pc.integers(2**31 - 1)))
    covariates = pd.DataFrame({"age": age, "sex": sex}, index=ids)
    for k in range(n_pcs):
        covariates[f"PC{k + 1}"] = pcs[:, k]
    site = rng_site.integers(0, settings["n_sites"], n)
    for k in range(1, settings["n_sites"]):  # one-hot, first site the reference
        covariates[f"site_{k + 1}"] = (site == k).astype(np.int64)

    bunch = Bunch(
        X=None, subject_ids=ids, genotypes=G, snps=snps,
        covariates=covariates, age=pd.Series(age, index=ids, name="age"),
        disorder=pd.Series(disorder, index=ids, name="disorder"),
        sex=pd.Series(sex, index=ids, name="sex"),
        site=pd.Series(site + 1, index=ids, name="site"), realism=realism,
        affine=None if shape is None else anatomy.affine_for_shape(shape),
        truth=Bunch(factors=factors, factor_values=factor_values,
                    genetic_values=pd.DataFrame(genetic, index=ids), causal=causal,
                    deformation_scale=pd.Series(1.0, index=ids, name="deformation_scale")),
        DESCR=__doc__,
    )
    if gene_symbols is not None:
        bunch.truth.causal_genes = gene_symbols
    if related:
        bunch.pedigree = pedigree
        bunch.truth.expected_relatedness = relatedness
    if background is not None:
        bunch.truth.polygenic_values = pd.DataFrame(poly_values, index=ids)
        bunch.truth.polygenic_effects = pd.DataFrame(
            poly_effects, index=pd.Index(bg_idx, name="snp_index"))
    if shape is not None:
        _render_images(bunch, shape, rng_img, rng_site, settings, site,
                       return_tissues=return_tissues,
                       return_displacement=return_displacement, verbose=verbose)
    return bunch


def _site_gains(rng, n_sites, sd):
    """Per site and modality: multiplicative change of each tissue's intensity."""
    return [{mod: {t: float(np.exp(rng.normal(0.0, sd))) for t in ("csf", "gm", "wm")}
             for mod in ("t1", "t2")} for _ in range(n_sites)]


def _tissues(maps, u, age_z, patterns, threshold=0.5):
    """Warped, age-thinned tissue fractions (normalised in the brain) and the brain mask."""
    gm, wm, mask = anatomy.warp_maps(maps, u)
    brain = mask >= threshold
    gm = np.clip(gm, 0, 1)
    wm = np.clip(wm, 0, 1)
    csf = np.clip(mask - gm - wm, 0, 1)
    # age-related cortical thinning: outer grey matter turns into CSF
    loss = np.clip(0.05 * (age_z + 1.5), 0.0, 0.25) * patterns["cortex"] * gm
    gm = gm - loss
    csf = csf + loss
    total = gm + wm + csf
    empty = brain & (total < 1e-3)
    csf[empty], total[empty] = 1.0, 1.0
    inv = np.where(brain, 1.0 / np.maximum(total, 1e-3), 0.0).astype(np.float32)
    return {"gm": gm * inv, "wm": wm * inv, "csf": csf * inv}, brain


def _render_images(bunch, shape, rng, rng_site, settings, site, *, return_tissues,
                   return_displacement, verbose):
    from tqdm.auto import tqdm

    factors = bunch.truth.factors
    fv = bunch.truth.factor_values
    deform = factors.index[factors["effect"] == "deformation"]
    basis = anatomy.factor_basis(tuple(factors.loc[deform, "kind"]))
    F = fv[deform].to_numpy(dtype=np.float32)
    t1_f = fv["t1_myelin"].to_numpy() if "t1_myelin" in fv else np.zeros(len(fv))
    t2_f = fv["t2_wmh"].to_numpy() if "t2_wmh" in fv else np.zeros(len(fv))
    age_z = fv["age"].to_numpy()
    maps = anatomy.template_tissues(shape)
    patterns = anatomy.spatial_patterns(shape)
    n = len(fv)
    X = np.empty((n, 2, *shape), dtype=np.float32)
    tissues = np.empty((n, 3, *shape), dtype=np.float32) if return_tissues else None
    disp = np.empty((n, 3, *shape), dtype=np.float32) if return_displacement else None
    scales = np.ones(n)
    shifts = np.zeros((n, 3))
    src = (maps["gm"], maps["wm"], maps["mask"])
    # T2 drawn from its own tissues (shifted, its own mask) unless nothing asks for it
    realistic = (settings["individual_rms_mm"] > 0 or settings["t2_shift_mm"] > 0
                 or settings["t2_mask_threshold"] != REALISM["basic"]["t2_mask_threshold"])
    gains = (_site_gains(rng_site, settings["n_sites"], settings["site_gain_sd"])
             if settings["site_gain_sd"] > 0 else None)
    # subjects per chunk: displacement fields of ~64 MiB at most (one subject at 1 mm)
    chunk = int(max(1, min(_CHUNK, 2**24 // (3 * int(np.prod(shape))))))
    with tqdm(total=n, desc="simulating subjects", disable=not verbose) as bar:
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            u_ctrl = np.tensordot(F[start:stop], basis, axes=1)
            if settings["individual_rms_mm"] > 0:  # each subject's own anatomy
                u_ctrl += np.stack([anatomy.random_smooth_field(
                    rng_site, settings["individual_sigma_mm"], settings["individual_rms_mm"])
                    for _ in range(stop - start)])
            bound = anatomy.gradient_bound(u_ctrl)
            scale = np.minimum(1.0, anatomy.MAX_GRADIENT / np.maximum(bound, 1e-12))
            scales[start:stop] = scale
            u_ctrl *= scale.astype(np.float32)[:, None, None, None, None]
            u = anatomy.upsample_fields(u_ctrl, shape)
            for j, i in enumerate(range(start, stop)):
                tis, brain = _tissues(src, u[j], age_z[i], patterns)
                t2_tis, t2_brain = tis, brain
                if realistic:
                    shift = rng_site.normal(0.0, settings["t2_shift_mm"], 3).astype(np.float32)
                    shifts[i] = shift
                    thr = rng_site.uniform(*settings["t2_mask_threshold"])
                    t2_tis, t2_brain = _tissues(src, u[j] + shift[:, None, None, None],
                                                age_z[i], patterns, threshold=thr)
                X[i, 0], X[i, 1] = contrast.render_pair(
                    tis, brain, rng, t1_factor=float(t1_f[i]), t2_factor=float(t2_f[i]),
                    patterns=patterns, noise_level=settings["noise_level"],
                    bias_strength=settings["bias_strength"], t2_tissues=t2_tis,
                    t2_brain=t2_brain, intensity_gain=gains[site[i]] if gains else None)
                if tissues is not None:
                    tissues[i] = (tis["gm"], tis["wm"], tis["csf"])
                if disp is not None:
                    disp[i] = u[j]
            bar.update(stop - start)
    n_scaled = int((scales < 1).sum())
    if n_scaled:
        logger.info("%d of %d subjects' deformations were shrunk to stay invertible",
                    n_scaled, n)
    bunch.X = X
    bunch.truth.deformation_scale[:] = scales
    bunch.truth.t2_shift_mm = pd.DataFrame(shifts, index=fv.index, columns=["x", "y", "z"])
    if tissues is not None:
        bunch.tissues = tissues
        bunch.tissue_names = ("gm", "wm", "csf")
    if disp is not None:
        bunch.displacement = disp

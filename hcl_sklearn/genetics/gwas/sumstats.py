"""Summary-statistics tables (GWAS-SSF columns) and their fast writers.

Two ways in:

* :func:`write_sumstats` takes the compact result arrays of a scan (``M x P`` betas,
  standard errors, t statistics and ``log10 p``; allele frequencies per sample group;
  ``n`` per phenotype) and the ``M``-row SNP table, and writes GWAS-SSF files: one per
  phenotype (``<dir>/<phenotype>.tsv.gz`` or ``.parquet``, the GWAS-SSF layout) or one
  long file with a ``phenotype`` column.
* :func:`write_tsv_gz` / :func:`write_parquet` take ``(phenotype, DataFrame)`` pairs
  (e.g. :meth:`CrossModalGWAS.iter_sumstats`, frames made by :func:`long_frame`) and
  write them with the same machinery, columns in the frames' order.

Columns of :func:`write_sumstats` (:data:`SSF_COLUMNS`): the GWAS-SSF ones first, in the
standard's order (``chromosome, base_pair_location, effect_allele, other_allele, beta,
standard_error, p_value, effect_allele_frequency, n, variant_id``), then ``t_stat`` and
``neg_log10_p``, and in the long format ``phenotype``. Rows of SNPs whose t statistic is
NaN for a phenotype (not tested: constant among its samples) are left out of that
phenotype's rows, as :func:`long_frame` does.

How it is fast
--------------
Text rows are rendered into a byte matrix (rows x width) next to a mask of the same
shape; each column owns a slot of 4-byte words and numbers are written a word at a time
from tables of digit groups (``"0000"``..``"9999"``, ``"-D.D"``, ``"De-X"``, ...), so a
column costs a few whole-array numpy operations, and one boolean selection gives the
bytes of all rows. The per-SNP text (chromosome, position, alleles; per sample group the
frequency, ``n`` and variant id) is rendered once and copied (or left in place) for each
phenotype. Phenotypes are rendered and compressed in a thread pool: numpy's loops and
deflate (ISA-L via ``isal`` when installed, else zlib) release the GIL. Level 1 by default (:data:`COMPRESSLEVEL`): the compression is
most of the time spent.

Precision of the text files
---------------------------
Floating-point values are written as ``'%.6e' % x`` writes them (7 significant digits,
so a value read back is within 5e-7 relative of the float64 it came from), and the text
is Python's, digit for digit: the 7-digit mantissa is ``rint(|x| * 10**(6 - e))`` with
``e = floor(log10 |x|)`` (corrected by one where the log is off) and ``10**k`` a correctly
rounded power, which is within 5 ulp of the exact scaled value; ``rint`` rounds half to
even as Python does on the exact binary value, and the few values whose scaled value
lies within 9 ulp (~2e-15 relative) of a halfway point, where those roundings could
decide, are formatted by Python itself (in random data about 2 in 10^8). Missing values
are ``NA``, infinities ``inf`` / ``-inf``.

``p_value`` is written from ``log10 p``, so it keeps values float64 cannot hold: as the
float ``10**log10 p`` down to 1e-300, and below that from the log, mantissa
``10**(lp - floor(lp))`` and exponent ``floor(lp)`` (e.g. ``1.234000e-400``; ``lp``
carries an absolute error of about ``|lp| * 1e-16``, a relative error of ~1e-13 in the
mantissa at ``p = 1e-400``). ``neg_log10_p`` is ``-log10 p``, also to 7 digits.
Integers are exact.

Parquet files keep float64 values (``p_value`` underflows to 0 below ~1e-308, where
``neg_log10_p`` stays exact); :func:`write_sumstats` dictionary-encodes the repeated
strings (chromosome, alleles, and in the long file variant id and phenotype), which
pandas reads as categoricals, and writes the float columns uncompressed by default
(snappy gains ~5% on them for ~40% of the writing time).

``.tsv.gz`` files are gzip streams of one member per piece of at most 65 536 rows
(``_CHUNK_ROWS``) of a phenotype, the pieces rendered and compressed in parallel; gzip
readers (gzip, zcat, pandas, R) read concatenated members as one stream. Memory: the
per-SNP text once (about its size in the file, for each sample group) and, per thread,
buffers of 65 536 rows (~20 MB).
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["SUMSTATS_COLUMNS", "SSF_COLUMNS", "write_sumstats", "write_tsv_gz",
           "write_parquet", "phenotype_filename", "long_frame"]

#: Column order of the files of :func:`write_sumstats`: the GWAS-SSF columns in the
#: standard's order, then the package's own (and ``phenotype`` in the long format).
SSF_COLUMNS = [
    "chromosome", "base_pair_location", "effect_allele", "other_allele", "beta",
    "standard_error", "p_value", "effect_allele_frequency", "n", "variant_id",
    "t_stat", "neg_log10_p",
]

#: Column order of :attr:`CrossModalGWAS.sumstats_`, :func:`long_frame` and the long
#: files: :data:`SSF_COLUMNS`, then ``phenotype``.
SUMSTATS_COLUMNS = SSF_COLUMNS + ["phenotype"]

#: Deflate level of the ``.tsv.gz`` writers: 1 is ~4x faster than gzip's default 6, for
#: files ~20% larger (ISA-L's level 1 when ``isal`` is installed, zlib's otherwise).
COMPRESSLEVEL = 1

#: Parquet codec of the writers.
PARQUET_COMPRESSION = "snappy"

_TAB, _NL = 9, 10
_SMALLEST_NORMAL = float(np.finfo(np.float64).tiny)
#: below this (p < 1e-300) the p-value text is built from log10 p
_LOG_PATH_BELOW = -300.0
# correctly rounded powers of ten (int -> float conversion rounds correctly)
_POW10 = np.array([float(10 ** k) for k in range(309)])
_IPOW10 = 10 ** np.arange(19, dtype=np.int64)
#: rows rendered at a time (the buffers of a thread: ~2 x 150 bytes a row)
_CHUNK_ROWS = 1 << 16


def phenotype_filename(phenotype, suffix):
    """File name of one phenotype's table (unsafe characters replaced by ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(phenotype)) + suffix


# --------------------------------------------------------------------------- digits
def _scale(a, k):
    """``a * 10**k`` for ``a > 0`` and integer ``k``: one rounding where ``10**|k|`` is
    exact (|k| <= 22; a division for k < 0), two beyond."""
    kk = np.abs(k)
    p = _POW10[np.minimum(kk, 308)]
    if (k >= 0).all():
        s = a * p
    else:
        with np.errstate(over="ignore", under="ignore"):
            s = np.where(k >= 0, a * p, a / p)
    big = kk > 308                                  # a below ~1e-302 (subnormals)
    if big.any():
        s[big] = a[big] * _POW10[kk[big] - 300] * _POW10[300]
    return s


def _sci_digits(a):
    """7-digit mantissa ``d`` (int, 1e6 <= d < 1e7) and exponent ``e`` with
    ``a ~= d * 10**(e - 6)``, rounded as ``'%.6e'`` rounds (``a`` finite, > 0)."""
    e = np.floor(np.log10(a)).astype(np.int64)
    s = _scale(a, 6 - e)
    for _ in range(2):                              # log10 one off near powers of ten
        lo, hi = s < 1e6, s >= 1e7
        if not (lo.any() or hi.any()):
            break
        e = e - lo + hi
        s = _scale(a, 6 - e)
    # s is within 5 ulp of the exact a * 10**(6 - e) (at most 5 roundings, 1 or 2 but
    # for subnormals), so rint(s) is the correctly rounded 7-digit mantissa unless s
    # lies that close to a halfway point: those (rare) values are rounded by Python's
    # exact '%.6e' instead
    frac = s - np.floor(s)
    near = np.abs(frac - 0.5) <= s * 2e-15          # >= 9 ulp(s)
    d = np.rint(s).astype(np.int64)
    if near.any():
        e = e.copy()
        for i in np.flatnonzero(near):
            m, x = ("%.6e" % a[i]).split("e")
            d[i], e[i] = int(m.replace(".", "")), int(x)
    over = d >= 10_000_000                          # 9999999.5 -> 1.000000e(+1)
    if over.any():
        d[over] = 1_000_000
        e = e + over
    return d, e


def _float_digits(x):
    """(sign, mantissa, exponent, special) of floats; special is None or int8 codes
    1 NaN, 2 inf, 3 -inf (zeros: mantissa 0, exponent 0)."""
    a = np.abs(x)
    ok = np.isfinite(a) & (a > 0)
    if ok.all():
        return (np.signbit(x), *_sci_digits(a), None)
    d, e = _sci_digits(np.where(ok, a, 1.0))
    d[~ok] = 0
    e[~ok] = 0
    special = np.where(np.isnan(x), 1, np.where(np.isinf(x), 2 + (x < 0), 0)).astype(np.int8)
    return np.signbit(x), d, e, special


def _log10_digits(lp):
    """Mantissa and exponent of ``10**lp`` from the log (finite ``lp``)."""
    e = np.floor(lp)
    d = np.rint(np.power(10.0, lp - e) * 1e6).astype(np.int64)
    e = e.astype(np.int64)
    over = d >= 10_000_000
    if over.any():
        d[over] = 1_000_000
        e = e + over
    return d, e


def _log10_p_digits(lp):
    """(sign, mantissa, exponent, special) of ``p = 10**lp``: '%.6e' of the float ``p``
    down to 1e-300, from the log below; NaN -> NA, -inf -> 0."""
    neg = np.zeros(lp.shape, dtype=bool)
    ok = np.isfinite(lp)
    low = ok & (lp < _LOG_PATH_BELOW)
    if ok.all() and not low.any():
        return (neg, *_sci_digits(np.power(10.0, lp)), None)
    d, e = _sci_digits(np.power(10.0, np.where(ok & ~low, lp, 0.0)))
    if low.any():
        d[low], e[low] = _log10_digits(lp[low])
    special = None
    if not ok.all():
        zero = lp == -np.inf
        d[zero], e[zero] = 0, 0
        special = np.where(np.isnan(lp), 1, np.where(lp == np.inf, 2, 0)).astype(np.int8)
    return neg, d, e, special


def _p_digits_from_frame(p, nlp):
    """Digits of a frame's ``p_value``: ``p`` itself, or from ``-neg_log10_p`` where
    ``p`` underflowed (zero or subnormal) and ``neg_log10_p`` is finite."""
    neg, d, e, special = _float_digits(p)
    lp = -nlp
    under = (p < _SMALLEST_NORMAL) & (p >= 0) & np.isfinite(lp) & (lp < -307.0)
    if under.any():
        d[under], e[under] = _log10_digits(lp[under])
        neg[under] = False
        if special is not None:
            special[under] = 0
    return neg, d, e, special


def _exp_digits_of_log10(lp):
    """Exponent digits (>= 2) of ``10**lp`` written as '%.6e'."""
    lp = np.asarray(lp, dtype=np.float64)
    if not lp.size:
        return 2
    lo = np.nanmin(lp) if not np.isnan(lp).all() else 0.0
    if lo == -np.inf:                               # p = 0 is written 0.000000e+00
        fin = lp[np.isfinite(lp)]
        lo = fin.min() if fin.size else 0.0
    return max(2, len(str(int(abs(np.floor(min(lo, 0.0)))))))


# --------------------------------------------------------------------------- text rows
# Rows are rendered into a byte matrix B (rows x width) next to a mask M of the same
# shape: row i's text is B[i][M[i]] and B[M] (row-major) the text of all rows. Columns
# own slots of 4-byte words written through uint32 views of B and M.

def _words(chunks):
    """4-byte chunks as uint32 words (memory order, as the uint32 views of bytes)."""
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).view(np.uint32).copy()


_DIG = [str(i).encode() for i in range(10)]
#: "-D.D": the two leading digits of a 7-digit mantissa (the "-" shown for negatives)
_LEAD = _words([b"-" + _DIG[q // 10] + b"." + _DIG[q % 10] for q in range(100)])
_DIG4 = _words([b"%04d" % i for i in range(10000)])
#: last mantissa digit, "e", exponent sign, first exponent digit: [d6 * 20 + neg * 10 + x1]
_EXP_HEAD = _words([_DIG[d6] + b"e" + s + _DIG[x1]
                    for d6 in range(10) for s in (b"+", b"-") for x1 in range(10)])
#: the exponent's other k = 1..3 digits and the separator: [_TAIL_AT[k] + rest]
_TAIL_AT = np.array([0, 0, 10, 110])
_TAIL = {sep: _words([(b"%0*d" % (k, r) + bytes([sep])).ljust(4, b"\0")
                      for k in (1, 2, 3) for r in range(10 ** k)]) for sep in (_TAB, _NL)}
_TAIL_MASK = _words([b"\0\0\0\0", b"\1\1\0\0", b"\1\1\1\0", b"\1\1\1\1"])   # [k]
_ONES = _words([b"\1\1\1\1"])[0]
_NOSIGN = _words([b"\0\1\1\1"])[0]                 # the sign byte shown for negatives only
_INT_SIGN = _words([b"\0\0\0-"])[0]
_FIRST = _words([b"\1\0\0\0"])[0]
_SEP_WORD = {sep: _words([bytes([sep]) + b"\0\0\0"])[0] for sep in (_TAB, _NL)}


class _Buffers:
    """Byte matrix, mask and their uint32 views, ``n`` rows; ``state`` records the
    static text already in place (slot offset -> token)."""

    def __init__(self, n, width):
        self.B = np.empty((n, width), dtype=np.uint8)
        self.M = np.empty((n, width), dtype=np.uint8)
        self.B32, self.M32 = self.B.view(np.uint32), self.M.view(np.uint32)
        self.state = {}

    def rows(self, n):
        """The first n rows (same state)."""
        if n == self.B.shape[0]:
            return self
        view = object.__new__(_Buffers)
        view.B, view.M = self.B[:n], self.M[:n]
        view.B32, view.M32, view.state = self.B32[:n], self.M32[:n], self.state
        return view

    def text(self):
        """The rows' bytes (uint8 array)."""
        return self.B[self.M.view(bool)]


def _rows_of(sel):
    """Number of rows of a selection (slice or index array)."""
    return sel.stop - sel.start if isinstance(sel, slice) else sel.size


class _Static:
    """Text formatted beforehand, packed: the rows' bytes (separator included) one after
    the other, row i at ``data[starts[i]:starts[i + 1]]``; or one ``const`` text for
    every row. Put into a slot ``width`` bytes wide (multiple of 4, >= the longest); a
    buffer already holding the same rows of the same ``key`` is not rewritten."""

    def __init__(self, data=None, starts=None, const=None, key=None, width=0):
        self.data, self.starts, self.const, self.key = data, starts, const, key
        if const is not None:
            longest = len(const)
        else:
            self.lens = np.diff(starts)
            longest = int(self.lens.max()) if self.lens.size else 0
        self.width = max(-(-longest // 4) * 4, int(width), 4)
        if const is not None:
            self._row = np.zeros(self.width, dtype=np.uint8)
            self._row[:len(const)] = np.frombuffer(const, dtype=np.uint8)
            self._mrow = (np.arange(self.width) < len(const)).astype(np.uint8)

    def widened(self, width):
        """The same text in a slot ``width`` bytes wide."""
        return _Static(self.data, self.starts, self.const, self.key, width)

    @classmethod
    def from_buffer(cls, buf, key=None):
        """The rendered rows of a buffer, packed."""
        M = buf.M.view(bool)
        starts = np.zeros(M.shape[0] + 1, dtype=np.int64)
        np.cumsum(M.sum(axis=1), out=starts[1:])
        return cls(buf.B[M], starts, key=key)

    def put(self, buf, off, sel):
        """Rows ``sel`` (a slice or sorted row indices) into the slot at ``off``."""
        sl = slice(off, off + self.width)
        token = (self.key, sel.start, sel.stop) if isinstance(sel, slice) else None
        if token is not None and self.key is not None and buf.state.get(off) == token:
            return
        buf.state[off] = token
        if self.const is not None:
            buf.B[:, sl] = self._row
            buf.M[:, sl] = self._mrow
            return
        if isinstance(sel, slice):
            lens = self.lens[sel]
            seg = self.data[self.starts[sel.start]:self.starts[sel.stop]]
        else:
            lens = self.lens[sel]
            ends = np.cumsum(lens)
            # byte i of the selection: its row's start + (i - the row's first byte)
            seg = self.data[np.repeat(self.starts[sel] - (ends - lens), lens)
                            + np.arange(int(ends[-1]) if ends.size else 0)]
        mask = np.arange(self.width) < lens[:, None]
        buf.B[:, sl][mask] = seg
        buf.M[:, sl] = mask


class _Float:
    """'%.6e' text: words "-D.D" "DDDD" "De+X" "X<sep>.." (+ words for exponents of
    five digits or more, from log10 p only)."""

    def __init__(self, exp_digits=2, sep=_TAB):
        self.k_max = max(int(exp_digits), 2) - 1   # exponent digits after the first
        self.width = 12 + 4 * (-(-(self.k_max + 1) // 4))
        self.sep = sep

    def put(self, buf, off, digits):
        neg, d, e, special = digits
        B32, M32, M8 = buf.B32, buf.M32, buf.M
        w = off // 4
        q, r = np.divmod(d, 10)
        B32[:, w] = _LEAD[q // 10_000]
        B32[:, w + 1] = _DIG4[q % 10_000]
        ae = np.abs(e)
        if ae.max(initial=0) < 100:                 # two exponent digits
            k = None
            x1, rest = np.divmod(ae, 10)
        else:
            k = np.ones(ae.shape, dtype=np.intp)
            for lim in _IPOW10[2:10]:
                k += ae >= lim
            x1, rest = np.divmod(ae, _IPOW10[k])
        B32[:, w + 2] = _EXP_HEAD[r * 20 + (e < 0) * 10 + x1]
        M32[:, w] = _NOSIGN
        M8[:, off] = neg
        M32[:, w + 1:w + 3] = _ONES
        tail = _TAIL[self.sep]
        if k is None:
            B32[:, w + 3] = tail[rest]
            M32[:, w + 3] = _TAIL_MASK[1]
        else:
            kk = np.minimum(k, 3)
            B32[:, w + 3] = tail[_TAIL_AT[kk] + np.where(k <= 3, rest, 0)]
            M32[:, w + 3] = _TAIL_MASK[kk]
        if self.width > 16:
            M32[:, w + 4:w + self.width // 4] = 0
            if k is not None:                       # |e| >= 10**4: one by one (rare)
                B8 = buf.B
                for i in np.flatnonzero(k > 3):
                    text = (b"%d" % rest[i]).rjust(int(k[i]), b"0") + bytes([self.sep])
                    o = off + 12
                    B8[i, o:o + len(text)] = np.frombuffer(text, np.uint8)
                    M8[i, o:off + self.width] = 0
                    M8[i, o:o + len(text)] = 1
        if special is not None and special.any():
            B8 = buf.B
            for code, text, sign in ((1, b"NA", 0), (2, b"inf", 0), (3, b"inf", 1)):
                i = np.flatnonzero(special == code)
                if i.size:
                    s = np.frombuffer(b"-" + text + bytes([self.sep]), np.uint8)
                    B8[i, off:off + s.size] = s
                    M8[i, off:off + self.width] = 0
                    M8[i, off + 1:off + s.size] = 1
                    M8[i, off] = sign


class _Int:
    """Decimal integers: a sign word, 4-digit groups (leading zeros masked off), a
    separator word."""

    def __init__(self, max_digits, sep=_TAB):
        self.groups = max(1, -(-int(max_digits) // 4))
        self.width = 4 * (self.groups + 2)
        self.sep = sep
        g4 = 4 * self.groups                        # mask of the digit words by nd
        pat = np.arange(g4)[None, :] >= (g4 - np.arange(g4 + 1))[:, None]
        self._pat = np.ascontiguousarray(pat.astype(np.uint8)).view(np.uint32)

    @staticmethod
    def digits_of(v):
        av = np.abs(np.asarray(v, dtype=np.int64))
        return len(str(int(av.max()))) if av.size else 1

    def put(self, buf, off, v):
        v = np.asarray(v, dtype=np.int64)
        w, g = off // 4, self.groups
        av = np.abs(v)
        nd = np.ones(v.shape, dtype=np.intp)
        for lim in _IPOW10[1:4 * g]:
            nd += av >= lim
        buf.B32[:, w] = _INT_SIGN
        buf.M32[:, w] = 0
        buf.M[:, off + 3] = v < 0
        for j in range(g):
            buf.B32[:, w + 1 + j] = _DIG4[(av // _IPOW10[4 * (g - 1 - j)]) % 10_000]
        buf.M32[:, w + 1:w + 1 + g] = self._pat[nd]
        buf.B32[:, w + 1 + g] = _SEP_WORD[self.sep]
        buf.M32[:, w + 1 + g] = _FIRST


def _offsets(slots):
    off = np.cumsum([0] + [s.width for s in slots])
    return [int(o) for o in off[:-1]], int(off[-1])


def _str_static(values, sep=_TAB, key=None):
    """A column of strings (anything else: ``str(x)``; NA for None and NaN), packed,
    separator included."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:  # pragma: no cover - pyarrow comes with pandas' str dtype
        pa = None
    if pa is not None:
        arr = getattr(values, "_pa_array", None)
        if arr is None:
            arr = getattr(values, "array", values)
            arr = pa.array(np.asarray(arr, dtype=object), from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = pc.cast(arr, pa.string())
        if arr.null_count:
            arr = pc.fill_null(arr, "NA")
        arr = arr.cast(pa.large_string())
        _, offs, data = arr.buffers()
        offs = np.frombuffer(offs, dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
        data = (np.frombuffer(data, dtype=np.uint8) if data is not None
                else np.zeros(0, np.uint8))[offs[0]:offs[-1]]
        offs = offs - offs[0]
    else:
        enc = [("NA" if x is None or (isinstance(x, float) and x != x) else str(x))
               .encode("utf-8") for x in np.asarray(values, dtype=object)]
        offs = np.zeros(len(enc) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, enc), dtype=np.int64, count=len(enc)), out=offs[1:])
        data = np.frombuffer(b"".join(enc), dtype=np.uint8)
    n = offs.size - 1
    starts = offs + np.arange(n + 1)                # one separator more per row
    out = np.empty(int(starts[-1]), dtype=np.uint8)
    text = np.ones(out.size, dtype=bool)
    text[starts[1:] - 1] = False
    out[text] = data
    out[~text] = sep
    return _Static(out, starts, key=key)


def _const_static(text, sep=_TAB):
    const = str(text).encode("utf-8") + bytes([sep])
    return _Static(const=const, key=("const", const))


def _render_static(columns, n, key=None):
    """Render ``(slot, value)`` columns for n rows once (values: arrays of n rows, or
    None for a _Static), in chunks, packed into one _Static."""
    slots = [s for s, _ in columns]
    offs, width = _offsets(slots)
    datas, lens = [], []
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, n)
        buf = _Buffers(hi - lo, width)
        for (s, v), o in zip(columns, offs):
            if isinstance(s, _Static):
                s.put(buf, o, slice(lo, hi))
            elif isinstance(s, _Float):
                s.put(buf, o, _float_digits(v[lo:hi]))
            else:
                s.put(buf, o, v[lo:hi])
        M = buf.M.view(bool)
        datas.append(buf.B[M])
        lens.append(M.sum(axis=1))
    starts = np.zeros(n + 1, dtype=np.int64)
    if n:
        np.cumsum(np.concatenate(lens), out=starts[1:])
    data = np.concatenate(datas) if datas else np.zeros(0, np.uint8)
    return _Static(data, starts, key=key)


try:  # Intel ISA-L's deflate: gzip streams ~3.5x faster than zlib at level 1
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _isal = None


def _gzip(level, *parts):
    """One gzip member of the concatenated parts (mtime 0: reproducible bytes).

    Levels 0-3 go to ISA-L when ``isal`` is installed (its level 1 compresses about as
    well as zlib's, ~3.5x faster), higher levels to zlib; both release the GIL."""
    lib = _isal if _isal is not None and level <= 3 else zlib
    c = lib.compressobj(level, lib.DEFLATED, 31)
    return b"".join([c.compress(p) for p in parts] + [c.flush()])


def _header(columns):
    return ("\t".join(map(str, columns)) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- threads
def _n_jobs(n_jobs):
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if n_jobs is None:
        return cores
    n_jobs = int(n_jobs)
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def _ordered_map(fn, items, n_jobs):
    """``map(fn, items)`` on ``n_jobs`` threads, in order, items taken lazily and at
    most ``2 n_jobs`` results held at a time."""
    if n_jobs <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(n_jobs) as pool:
        todo = deque()
        it = iter(items)
        try:
            for item in it:
                todo.append(pool.submit(fn, item))
                if len(todo) >= 2 * n_jobs:
                    break
            while todo:
                res = todo.popleft().result()
                for item in it:
                    todo.append(pool.submit(fn, item))
                    break
                yield res
        finally:
            for f in todo:
                f.cancel()


# --------------------------------------------------------------------------- arrays
def _check_arrays(snps, phenotypes, beta, se, t, log10_p, freq, group_of, n):
    phenotypes = [str(p) for p in phenotypes]
    beta, se, t, log10_p = (np.asarray(a, dtype=np.float64) for a in (beta, se, t, log10_p))
    M, P = len(snps), len(phenotypes)
    for name, a in (("beta", beta), ("se", se), ("t", t), ("log10_p", log10_p)):
        if a.shape != (M, P):
            raise ValueError(f"{name} has shape {a.shape}; expected (n_snps, n_phenotypes)"
                             f" = {(M, P)}.")
    freq = np.asarray(freq, dtype=np.float64)
    if freq.ndim == 1:
        freq = freq[:, None]
    if group_of is None:
        if freq.shape[1] not in (1, P):
            raise ValueError("group_of is needed when freq has one column per group.")
        group_of = np.zeros(P, np.intp) if freq.shape[1] == 1 else np.arange(P)
    group_of = np.asarray(group_of, dtype=np.intp)
    if freq.shape[0] != M or group_of.shape != (P,) or (
            P and (group_of.min() < 0 or group_of.max() >= freq.shape[1])):
        raise ValueError(f"freq {freq.shape} and group_of {group_of.shape} do not match "
                         f"{M} SNPs and {P} phenotypes.")
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), (P,))
    missing = [c for c in ("chrom", "pos", "variant_id", "a1", "a2") if c not in snps]
    if missing:
        raise ValueError(f"snps lacks the column(s) {missing}.")
    return phenotypes, beta, se, t, log10_p, freq, group_of, n


def _kept(t_col):
    """Rows of one phenotype: None when every SNP was tested, else their indices."""
    keep = ~np.isnan(t_col)
    return None if keep.all() else np.flatnonzero(keep)


def write_sumstats(path, snps, phenotypes, beta, se, t, log10_p, freq, group_of, n, *,
                   format="tsv.gz", per_phenotype=True, n_jobs=None, compresslevel=None,
                   compression=None):
    """Write GWAS-SSF summary statistics from a scan's compact arrays.

    Parameters
    ----------
    path : str or path-like
        With ``per_phenotype=True`` a directory receiving ``<phenotype>.tsv.gz`` or
        ``<phenotype>.parquet`` (names from :func:`phenotype_filename`), else the file.
    snps : pandas.DataFrame
        ``M`` rows with columns ``chrom, pos, variant_id, a1`` (the effect allele) and
        ``a2``.
    phenotypes : sequence of str
        The ``P`` phenotype names (the arrays' columns).
    beta, se, t, log10_p : ndarray of shape (M, P)
        Effect, standard error, t statistic and ``log10 p`` (<= 0). Rows where ``t``
        is NaN are not written for that phenotype.
    freq : ndarray of shape (M, n_groups) or (M,)
        Effect-allele frequency per sample group.
    group_of : ndarray of shape (P,) or None
        Column of ``freq`` of each phenotype (None: ``freq`` has one column, or one per
        phenotype).
    n : int or ndarray of shape (P,)
        Sample size of each phenotype.
    format : {'tsv.gz', 'parquet'}, default='tsv.gz'
    per_phenotype : bool, default=True
        One file per phenotype (GWAS-SSF) or one long file with a ``phenotype`` column
        (last).
    n_jobs : int or None, default=None
        Threads (None: the usable cores; -1 likewise, -2 one fewer, ...).
    compresslevel : int, default=:data:`COMPRESSLEVEL`
        Deflate level of ``tsv.gz`` files.
    compression : str or dict, optional
        Parquet codec of every column (``'snappy'``, ``'lz4'``, ``'zstd'``, ``'none'``,
        ...) or a dict column -> codec. Default: :data:`PARQUET_COMPRESSION` for the
        integer and string columns, none for the float64 ones (which barely compress).

    Returns
    -------
    list of pathlib.Path
        The files written (in the order of ``phenotypes``).
    """
    if format not in ("tsv.gz", "parquet"):
        raise ValueError(f"format must be 'tsv.gz' or 'parquet'; got {format!r}.")
    phenotypes, beta, se, t, log10_p, freq, group_of, n = _check_arrays(
        snps, phenotypes, beta, se, t, log10_p, freq, group_of, n)
    path = Path(path)
    suffix = ".parquet" if format == "parquet" else ".tsv.gz"
    if per_phenotype:
        files = [phenotype_filename(p, suffix) for p in phenotypes]
        if len(set(files)) < len(files):
            dup = sorted({f for f in files if files.count(f) > 1})
            raise ValueError(f"Phenotype names give the same file name(s) {dup[:5]}; "
                             "rename them or write one long file (per_phenotype=False).")
        path.mkdir(parents=True, exist_ok=True)
        if not phenotypes:
            return []
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    pieces = len(phenotypes) * max(1, -(-len(snps) // _CHUNK_ROWS))
    args = (path, snps, phenotypes, beta, se, t, log10_p, freq, group_of, n,
            per_phenotype, min(_n_jobs(n_jobs), max(pieces, 1)))
    if format == "parquet":
        return _write_parquet_arrays(*args, compression)
    level = COMPRESSLEVEL if compresslevel is None else int(compresslevel)
    return _write_tsv_arrays(*args, level)


def _pieces(keep, M):
    """Row selections of one phenotype, at most _CHUNK_ROWS rows each: slices when every
    SNP was tested (``keep`` None), else index arrays; one (empty) piece at least."""
    if keep is None:
        return [slice(lo, min(lo + _CHUNK_ROWS, M)) for lo in range(0, M, _CHUNK_ROWS)] \
            or [slice(0, 0)]
    return [keep[i:i + _CHUNK_ROWS] for i in range(0, keep.size, _CHUNK_ROWS)] or [keep]


def _write_members(path, per_phenotype, tasks, fn, n_jobs, level, header=b""):
    """Run ``fn(payload)`` on ``tasks`` on threads and write the gzip members in order.

    ``tasks`` yields ``(start, payload)``; ``start`` is None, or ``(file name, header)``
    where a phenotype's rows begin: a new ``<path>/<file name>`` whose first member
    holds the header (per phenotype), or nothing (the long file ``path``, whose first
    member is ``header``)."""
    def member(task):
        start, payload = task
        head = start[1] if per_phenotype and start is not None else b""
        return start, _gzip(level, head, fn(payload))

    written = []
    fh = None
    try:
        if not per_phenotype:
            fh = open(path, "wb")
            fh.write(_gzip(level, header))
            written.append(path)
        for start, data in _ordered_map(member, tasks, n_jobs):
            if per_phenotype and start is not None:
                if fh is not None:
                    fh.close()
                out = path / start[0]
                fh = open(out, "wb")
                written.append(out)
            fh.write(data)
    finally:
        if fh is not None:
            fh.close()
    return written


def _write_tsv_arrays(path, snps, phenotypes, beta, se, t, log10_p, freq, group_of, n,
                      per_phenotype, n_jobs, level):
    M = len(snps)
    header = _header(SSF_COLUMNS + ([] if per_phenotype else ["phenotype"]))
    if not phenotypes:                              # long file, no phenotype: a header
        path.write_bytes(_gzip(level, header))
        return [path]
    pos = snps["pos"].to_numpy(dtype=np.int64)
    # per-SNP text, once: chromosome .. other_allele; and per (group, n) the columns
    # between the phenotype's own: frequency, n, variant id
    lead = _render_static([(_str_static(snps["chrom"]), None),
                           (_Int(_Int.digits_of(pos)), pos),
                           (_str_static(snps["a1"]), None),
                           (_str_static(snps["a2"]), None)], M, key="lead")
    vid = _str_static(snps["variant_id"])
    mids = {gk: _render_static([(_Float(), freq[:, gk[0]]), (_const_static(gk[1]), None),
                                (vid, None)], M, key=gk)
            for gk in sorted(set(zip(group_of.tolist(), n.tolist())))}
    mid_w = max(s.width for s in mids.values())
    mids = {gk: s.widened(mid_w) for gk, s in mids.items()}
    last = _NL if per_phenotype else _TAB
    floats = [_Float(), _Float(), _Float(_exp_digits_of_log10(log10_p))]
    tail = [_Float(), _Float(sep=last)]
    slots = [lead] + floats + [next(iter(mids.values()))] + tail
    if not per_phenotype:
        names = [_const_static(p, _NL) for p in phenotypes]
        name_w = max(s.width for s in names)
        names = [s.widened(name_w) for s in names]
        slots.append(names[0])
    offs, width = _offsets(slots)
    local = threading.local()

    def text(task):
        j, sel = task
        nr = _rows_of(sel)
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = _Buffers(min(M, _CHUNK_ROWS), width)
        buf = buf.rows(nr)

        def col(a):
            return np.ascontiguousarray(a[sel, j])

        lp = col(log10_p)
        lead.put(buf, offs[0], sel)
        floats[0].put(buf, offs[1], _float_digits(col(beta)))
        floats[1].put(buf, offs[2], _float_digits(col(se)))
        floats[2].put(buf, offs[3], _log10_p_digits(lp))
        mids[group_of[j], int(n[j])].put(buf, offs[4], sel)
        tail[0].put(buf, offs[5], _float_digits(col(t)))
        tail[1].put(buf, offs[6], _float_digits(-lp))
        if not per_phenotype:
            names[j].put(buf, offs[7], sel)
        return buf.text()

    def tasks():
        for j, name in enumerate(phenotypes):
            start = (phenotype_filename(name, ".tsv.gz"), header)
            for c, sel in enumerate(_pieces(_kept(t[:, j]), M)):
                yield (start if c == 0 else None), (j, sel)

    return _write_members(path, per_phenotype, tasks(), text, n_jobs, level, header)


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a test dependency
        raise ImportError("Parquet output needs pyarrow: pip install 'hcl-sklearn[parquet]'."
                          ) from exc
    return pa, pq


def _write_parquet_arrays(path, snps, phenotypes, beta, se, t, log10_p, freq, group_of, n,
                          per_phenotype, n_jobs, compression):
    import pandas as pd

    pa, pq = _pyarrow()
    M = len(snps)
    dicts = {}
    for c in ("chrom", "a1", "a2"):
        codes, uniq = pd.factorize(np.asarray(snps[c], dtype=object))
        dicts[c] = (codes.astype(np.int32), pa.array(np.asarray(uniq, dtype=object),
                                                     pa.string()))
    pos = snps["pos"].to_numpy(dtype=np.int64)
    vid = pa.array(np.asarray(snps["variant_id"], dtype=object), pa.string())

    def dict_col(c, rows):
        codes, uniq = dicts[c]
        codes = codes if rows is None else codes[rows]
        return pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), uniq)

    def columns(j, rows):
        """Arrays of phenotype j, rows ``rows`` (None: all)."""
        def col(a):
            return np.ascontiguousarray(a[:, j] if rows is None else a[rows, j])

        lp = col(log10_p)
        with np.errstate(under="ignore"):
            p = np.power(10.0, lp)
        k = M if rows is None else rows.size
        return [dict_col("chrom", rows), pa.array(pos if rows is None else pos[rows]),
                dict_col("a1", rows), dict_col("a2", rows), pa.array(col(beta)),
                pa.array(col(se)), pa.array(p),
                pa.array(np.ascontiguousarray(freq[:, group_of[j]] if rows is None
                                              else freq[rows, group_of[j]])),
                pa.array(np.full(k, n[j], dtype=np.int64)),
                vid if rows is None else vid.take(pa.array(rows)),
                pa.array(col(t)), pa.array(-lp)]

    # dictionary pages for the dictionary columns only (floats are unique: no try);
    # statistics (row-group filters) of the columns one filters on; by default the
    # float64 columns uncompressed (snappy gains ~5% on them, for ~40% of the time)
    names = SSF_COLUMNS + ([] if per_phenotype else ["phenotype"])
    floats = {"beta", "standard_error", "p_value", "effect_allele_frequency", "t_stat",
              "neg_log10_p"}
    if compression is None:
        compression = {c: "none" if c in floats else PARQUET_COMPRESSION for c in names}
    stats = ["chromosome", "base_pair_location", "p_value", "neg_log10_p"]
    coded = ["chromosome", "effect_allele", "other_allele"]
    if not per_phenotype:
        stats, coded = stats + ["phenotype"], coded + ["variant_id", "phenotype"]
    options = dict(compression=compression, write_statistics=stats, use_dictionary=coded)
    if per_phenotype:
        def one(j):
            out = path / phenotype_filename(phenotypes[j], ".parquet")
            table = pa.Table.from_arrays(columns(j, _kept(t[:, j])), names=SSF_COLUMNS)
            pq.write_table(table, out, **options)
            return out

        return list(_ordered_map(one, range(len(phenotypes)), n_jobs))

    # long file: row groups of whole phenotypes (~1M rows); variant id and phenotype
    # as dictionaries (codes into the M ids / P names)
    vid_codes = np.arange(M, dtype=np.int32)
    ph_dict = pa.array(phenotypes, pa.string())
    per_group = max(1, (1 << 20) // max(M, 1))

    def chunk(j0):
        parts = []
        for j in range(j0, min(j0 + per_group, len(phenotypes))):
            rows = _kept(t[:, j])
            cols = columns(j, rows)
            k = len(cols[0])
            cols[9] = pa.DictionaryArray.from_arrays(
                pa.array(vid_codes if rows is None else vid_codes[rows]), vid)
            cols.append(pa.DictionaryArray.from_arrays(
                pa.array(np.full(k, j, dtype=np.int32)), ph_dict))
            parts.append(pa.Table.from_arrays(cols, names=names))
        return pa.concat_tables(parts).combine_chunks()

    writer = None
    try:
        for table in _ordered_map(chunk, range(0, len(phenotypes), per_group), n_jobs):
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema, **options)
            writer.write_table(table, row_group_size=table.num_rows)
        if writer is None:                          # no phenotypes: an empty table
            text = pa.dictionary(pa.int32(), pa.string())
            kinds = {"base_pair_location": pa.int64(), "n": pa.int64()}
            schema = pa.schema([(c, kinds.get(c, pa.float64() if c in floats else text))
                                for c in names])
            pq.write_table(schema.empty_table(), path, **options)
    finally:
        if writer is not None:
            writer.close()
    return [path]


# --------------------------------------------------------------------------- frames
class _FrameCache:
    """Text of the columns repeated from frame to frame, formatted once per writer
    call: Arrow-backed (immutable) string arrays by identity, integer columns by value
    (checked equal); constant columns as one text; and each thread's last buffer (the
    static text left in place)."""

    def __init__(self):
        self.strings, self.ints = {}, {}
        self.local = threading.local()

    def string(self, s, sep):
        import pandas as pd

        arr = s.array
        key = getattr(arr, "_pa_array", None)       # immutable: identity is content
        hit = self.strings.get((id(key), sep)) if key is not None else None
        if hit is not None and hit[0] is key:
            return hit[1]
        dt = s.dtype
        if key is not None and len(s) and not s.hasnans:
            import pyarrow.compute as pc

            first = key[0]
            if pc.all(pc.equal(key, first)).as_py():   # the same string on every row
                return _const_static(first.as_py(), sep)
        if pd.api.types.is_bool_dtype(dt):
            vals = np.asarray(s.astype(object).astype(str), dtype=object)
        elif isinstance(dt, pd.CategoricalDtype):
            vals = np.asarray(s, dtype=object)
        else:
            vals = arr
        st = _str_static(vals, sep, key=("str", id(key)) if key is not None else None)
        if key is not None:
            self.strings[id(key), sep] = (key, st)
        return st

    def integer(self, v, sep):
        """A _Static of integers (constant, or cached by value), else None."""
        if not v.size:
            return None
        lo, hi = v.min(), v.max()
        if lo == hi:
            return _const_static(int(lo), sep)
        key = (v.shape[0], int(v[0]), int(v[-1]), int(lo), int(hi), sep)
        hit = self.ints.get(key)
        if hit is not None and np.array_equal(hit[0], v):
            return hit[1]
        st = _render_static([(_Int(_Int.digits_of(v), sep), v)], v.shape[0],
                            key=("int", key))
        self.ints[key] = (v.copy(), st)
        return st

    def buffers(self, n, slots, width):
        """This thread's buffer (at least n rows), kept while the layout is the same."""
        sig = tuple((type(s), s.width) for s in slots)
        loc = self.local
        if getattr(loc, "sig", None) != sig or loc.buf.B.shape[0] < n:
            loc.sig = sig
            loc.buf = _Buffers(max(n, min(_CHUNK_ROWS, 1024)), width)
        return loc.buf.rows(n)


class _FramePlan:
    """How to render a frame: one slot per column (the last ending the row) and the
    values of the slots that are not static."""

    def __init__(self, frame, cache):
        import pandas as pd

        cols = list(frame.columns)
        self.n = len(frame)
        self.slots, self.values = [], []
        for i, c in enumerate(cols):
            sep = _NL if i == len(cols) - 1 else _TAB
            s = frame[c]
            dt = s.dtype
            if pd.api.types.is_float_dtype(dt):
                x = s.to_numpy(dtype=np.float64, na_value=np.nan)
                if c == "p_value" and "neg_log10_p" in frame:
                    nlp = frame["neg_log10_p"].to_numpy(dtype=np.float64, na_value=np.nan)
                    self.slots.append(_Float(_exp_digits_of_log10(-nlp), sep))
                    self.values.append((x, nlp))
                else:
                    self.slots.append(_Float(2, sep))
                    self.values.append(x)
                continue
            if (pd.api.types.is_integer_dtype(dt) and not pd.api.types.is_bool_dtype(dt)
                    and not s.hasnans):
                v = s.to_numpy(dtype=np.int64)
                st = cache.integer(v, sep)
                if st is None:
                    self.slots.append(_Int(_Int.digits_of(v), sep))
                    self.values.append(v)
                    continue
            else:
                st = cache.string(s, sep)
            self.slots.append(st)
            self.values.append(None)
        self.offsets, self.width = _offsets(self.slots)

    def text(self, sel, cache):
        """The TSV rows ``sel`` (a slice)."""
        buf = cache.buffers(_rows_of(sel), self.slots, self.width)
        for s, o, v in zip(self.slots, self.offsets, self.values):
            if isinstance(s, _Static):
                s.put(buf, o, sel)
            elif isinstance(s, _Float):
                s.put(buf, o, _p_digits_from_frame(v[0][sel], v[1][sel])
                      if isinstance(v, tuple) else _float_digits(v[sel]))
            else:
                s.put(buf, o, v[sel])
        return buf.text()


def write_tsv_gz(frames, path, per_phenotype=False, *, n_jobs=None, compresslevel=None):
    """Write ``(phenotype, frame)`` pairs as gzip-compressed TSV.

    The frames' columns in their order; numbers as the module docstring describes
    (``'%.6e'`` floats; ``p_value`` from ``neg_log10_p`` where it underflowed), ``NA``
    for missing values.

    Parameters
    ----------
    frames : iterable of (str, pandas.DataFrame)
    path : str or path-like
        A file (long format, all phenotypes) or, with ``per_phenotype=True``, a
        directory that receives ``<phenotype>.tsv.gz``.
    per_phenotype : bool
    n_jobs : int or None
        Threads formatting and compressing (None: the usable cores).
    compresslevel : int, default=:data:`COMPRESSLEVEL`

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    path = Path(path)
    level = COMPRESSLEVEL if compresslevel is None else int(compresslevel)
    cache = _FrameCache()

    def tasks():
        for name, frame in frames:
            plan = _FramePlan(frame, cache)
            start = (phenotype_filename(name, ".tsv.gz"), _header(frame.columns))
            pieces = [slice(lo, min(lo + _CHUNK_ROWS, plan.n))
                      for lo in range(0, plan.n, _CHUNK_ROWS)] or [slice(0, 0)]
            for c, sel in enumerate(pieces):
                yield (start if c == 0 else None), (plan, sel)

    def text(task):
        plan, sel = task
        return plan.text(sel, cache) if sel.stop > sel.start else b""

    if per_phenotype:
        path.mkdir(parents=True, exist_ok=True)
        return _write_members(path, True, tasks(), text, _n_jobs(n_jobs), level)
    path.parent.mkdir(parents=True, exist_ok=True)
    it = tasks()
    first = next(it, None)                          # the header: the first frame's columns
    header = first[0][1] if first is not None else b""
    return _write_members(path, False, it if first is None else _chain(first, it), text,
                          _n_jobs(n_jobs), level, header)


def _chain(first, rest):
    yield first
    yield from rest


def write_parquet(frames, path, per_phenotype=False, *, n_jobs=None, compression=None):
    """Write ``(phenotype, frame)`` pairs as Parquet (needs ``pyarrow``).

    Same layout rules as :func:`write_tsv_gz`; values keep full float64 precision and
    the frames' dtypes (pandas metadata); only string columns are dictionary-encoded.
    """
    pa, pq = _pyarrow()
    path = Path(path)
    n_jobs = _n_jobs(n_jobs)
    codec = compression or PARQUET_COMPRESSION

    def options(table):
        strings = [f.name for f in table.schema
                   if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                   or pa.types.is_dictionary(f.type)]
        return dict(compression=codec, use_dictionary=strings or False)

    def to_table(frame):
        return pa.Table.from_pandas(frame, preserve_index=False)

    if per_phenotype:
        path.mkdir(parents=True, exist_ok=True)

        def one(item):
            name, frame = item
            out = path / phenotype_filename(name, ".parquet")
            table = to_table(frame)
            pq.write_table(table, out, **options(table))
            return out

        return list(_ordered_map(one, frames, n_jobs))
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for table in _ordered_map(lambda item: to_table(item[1]), frames, n_jobs):
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema, **options(table))
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return [path]


def long_frame(snps, phenotype, beta, se, t, log10_p, freq, n):
    """One phenotype's table (:data:`SUMSTATS_COLUMNS`) from per-SNP arrays."""
    import pandas as pd

    with np.errstate(under="ignore"):
        p = np.power(10.0, log10_p)
    keep = ~np.isnan(t)
    if not keep.all():  # SNP constant among this phenotype's samples: no test
        snps, beta, se, t, log10_p, p, freq = (
            a[keep] for a in (snps, beta, se, t, log10_p, p, freq))
    # the dtype pandas gives a column of this string (object or str), by one take of
    # a 1-row Series instead of converting len(snps) Python objects
    name = pd.Series(np.array([str(phenotype)], dtype=object))
    return pd.DataFrame({
        "phenotype": name.take(np.zeros(len(snps), dtype=np.intp)).array,
        # .array keeps the SNP table's own (e.g. Arrow string) arrays: no conversion
        "chromosome": snps["chrom"].array,
        "base_pair_location": snps["pos"].to_numpy(dtype=np.int64),
        "variant_id": snps["variant_id"].array,
        "effect_allele": snps["a1"].array,
        "other_allele": snps["a2"].array,
        "effect_allele_frequency": freq,
        "beta": beta,
        "standard_error": se,
        "t_stat": t,
        "p_value": p,
        "neg_log10_p": -log10_p,
        "n": np.full(len(snps), int(n), dtype=np.int64),
    }, columns=SUMSTATS_COLUMNS)

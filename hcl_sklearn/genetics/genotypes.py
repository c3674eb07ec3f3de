"""Genotypes: lazy, block-wise access to allele counts aligned to subject ids.

A :class:`Genotypes` object wraps a PLINK 1 ``.bed/.bim/.fam`` file set (read lazily
through :class:`bed_reader.open_bed`), a BGEN file (lazily through the optional
``cbgen``) or an in-memory matrix of allele counts.
Every read goes through :meth:`Genotypes.iter_blocks`, which reads a block of SNPs for
the requested samples only, mean-imputes missing calls and (by default) standardizes
each SNP with the mean and SD of the requested samples. The whole matrix is only built
by :meth:`Genotypes.read`, when asked.

Conventions
-----------
* ``iid`` (a :class:`pandas.Index` of str) is the join key with phenotype tables.
* ``a1`` is the counted (effect) allele, as PLINK's A1 with bed-reader's
  ``count_A1=True``: a genotype value is the number of copies of ``a1``.
* ``samples`` arguments take subject ids (any list-like of str, e.g. a DataFrame index);
  an integer ndarray is taken as row positions into ``iid``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.subjects import SubjectMismatchError, describe_mismatch

logger = logging.getLogger(__name__)

__all__ = ["Genotypes", "GenotypeFileError", "SampleMismatchError"]

SNP_COLUMNS = ["chrom", "pos", "variant_id", "a1", "a2"]


class GenotypeFileError(ValueError):
    """A genotype file set is missing, truncated or inconsistent; the message names the file."""


# one error type for id mismatches across the package (kept under its historical name too)
SampleMismatchError = SubjectMismatchError


def _describe_mismatch(requested, available, what="genotype IIDs"):
    return describe_mismatch(requested, available, what, fix=(
        "Align the ids (index of the phenotype table = IID of the genotypes) or subset to "
        "the common ids first."))


def _read_plink_text(path, n_columns, names):
    """Whitespace-separated PLINK ``.fam``/``.bim`` as a frame of strings."""
    try:
        frame = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="c",
                            keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise GenotypeFileError(f"{path} is empty: a PLINK 1 file set needs at least one "
                                "sample in the .fam and one SNP in the .bim.") from None
    except pd.errors.ParserError as exc:
        raise GenotypeFileError(f"Could not parse {path}: {exc}") from exc
    if frame.shape[1] != n_columns:
        raise GenotypeFileError(
            f"{path} has {frame.shape[1]} columns; a PLINK 1 file of this kind has "
            f"{n_columns} ({names})."
        )
    return frame


def as_genotypes(genotypes, *, where="genotypes"):
    """The one way genotypes come in: a :class:`Genotypes`, a PLINK 1 prefix or a BGEN path.

    Parameters
    ----------
    genotypes : Genotypes, str or path-like
        A ``Genotypes`` is used as given; a path ending in ``.bgen`` is opened with
        :meth:`Genotypes.from_bgen`; any other path is a PLINK 1 prefix (``.bed/.bim/.fam``;
        a trailing ``.bed`` is accepted).
    where : str
        Name of the parameter in messages.

    Returns
    -------
    Genotypes

    Examples
    --------
    >>> from hcl_sklearn.datasets import get_1000g_chr22
    >>> from hcl_sklearn.genetics import as_genotypes
    >>> g = as_genotypes(get_1000g_chr22())
    >>> as_genotypes(g) is g, g.n_samples
    (True, 378)
    """
    if isinstance(genotypes, Genotypes):
        return genotypes
    if isinstance(genotypes, (str, os.PathLike)):
        path = os.fspath(genotypes)
        if path.lower().endswith(".bgen"):
            return Genotypes.from_bgen(path)
        return Genotypes.from_plink(path)
    if genotypes is None:
        raise TypeError(f"{where} is required: a Genotypes, a PLINK prefix or a .bgen path.")
    raise TypeError(f"{where} must be a hcl_sklearn.genetics.Genotypes, a PLINK 1 prefix or a "
                    f".bgen path; got {type(genotypes).__name__}.")


class Genotypes:
    """Allele counts of ``n_samples`` subjects at ``n_snps`` SNPs, read block by block.

    Build one with :meth:`from_plink` (lazy, PLINK 1 bed/bim/fam) or :meth:`from_array`
    (in memory). Views over a subset of SNPs (:meth:`subset`, :meth:`qc`) share the
    underlying source.

    Attributes
    ----------
    iid : pandas.Index of str
        Subject ids (the join key with phenotype tables).
    snps : pandas.DataFrame
        One row per SNP with columns ``chrom, pos, variant_id, a1, a2``; ``a1`` is the
        counted allele. Row ``j`` is SNP position ``j`` of this object.
    n_samples, n_snps : int

    Examples
    --------
    >>> from hcl_sklearn.datasets import get_1000g_chr22
    >>> from hcl_sklearn.genetics import Genotypes
    >>> g = Genotypes.from_plink(get_1000g_chr22())
    >>> g.n_samples, g.n_snps
    (378, 15938)
    >>> idx, block = next(g.iter_blocks(block_size=1000, samples=g.iid[:10]))
    >>> block.shape
    (10, 1000)
    """

    def __init__(self, source, iid, snps, snp_index=None, *, description=""):
        # private constructor: use from_plink / from_array
        self._source = source  # bed_reader.open_bed or ndarray (n, m_total)
        self.iid = pd.Index(np.asarray(iid).astype(str), name="iid")
        snps = snps.reset_index(drop=True)
        self.snps = snps
        self._snp_index = (
            np.arange(len(snps), dtype=np.intp) if snp_index is None
            else np.asarray(snp_index, dtype=np.intp)
        )
        self._description = description

    def __deepcopy__(self, memo):
        # read-only: views share the source (an open file or an array), so a deep copy
        # (sklearn's clone of an estimator holding genotypes) is the object itself
        return self

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_plink(cls, prefix, *, num_threads=None):
        """Open a PLINK 1 ``prefix.bed/.bim/.fam`` file set lazily.

        Parameters
        ----------
        prefix : str or path-like
            Path without extension (a trailing ``.bed`` is accepted and removed).
        num_threads : int, optional
            Threads bed-reader may use per read.

        Raises
        ------
        GenotypeFileError
            If a file is missing, the ``.bed`` is not a SNP-major PLINK 1 file, or its
            size does not match the sample and SNP counts of the ``.fam``/``.bim``.
        """
        from bed_reader import open_bed

        prefix = str(prefix)
        if prefix.endswith(".bed"):
            prefix = prefix[:-4]
        paths = {ext: Path(prefix + ext) for ext in (".bed", ".bim", ".fam")}
        absent = [str(p) for p in paths.values() if not p.is_file()]
        if absent:
            raise GenotypeFileError(
                f"PLINK file(s) not found: {absent}. Pass the prefix shared by the "
                ".bed, .bim and .fam files (without extension)."
            )
        with open(paths[".bed"], "rb") as fh:
            magic = fh.read(3)
        if magic != b"\x6c\x1b\x01":
            raise GenotypeFileError(
                f"{paths['.bed']} is not a SNP-major PLINK 1 .bed file (bad magic bytes "
                f"{magic!r}). Re-export it with plink --make-bed."
            )
        fam = _read_plink_text(paths[".fam"], 6, "FID IID father mother sex phenotype")
        bim = _read_plink_text(paths[".bim"], 6, "chromosome id cM position A1 A2")
        n, m = len(fam), len(bim)
        try:
            pos = bim[3].astype(np.int64)
        except ValueError as exc:
            raise GenotypeFileError(
                f"Could not parse the .bim of {prefix}: base-pair positions (column 4) "
                f"must be integers ({exc})."
            ) from exc
        expected = 3 + ((n + 3) // 4) * m
        actual = os.path.getsize(paths[".bed"])
        if actual != expected:
            raise GenotypeFileError(
                f"{paths['.bed']} has {actual} bytes but {n} samples (.fam) x {m} SNPs "
                f"(.bim) need {expected}: the file is truncated or does not belong to "
                "this .bim/.fam. Re-copy or re-export the file set."
            )
        # with the counts given, bed-reader reads no .fam/.bim text itself: pandas' C
        # parser above is several times faster than its own
        bed = open_bed(paths[".bed"], count_A1=True, num_threads=num_threads,
                       iid_count=n, sid_count=m)
        snps = pd.DataFrame({"chrom": bim[0], "pos": pos, "variant_id": bim[1],
                             "a1": bim[4], "a2": bim[5]})
        iid = fam[1]
        logger.info("Opened %s: %d samples x %d SNPs", prefix, n, m)
        return cls(bed, iid, snps, description=prefix)

    @classmethod
    def from_bgen(cls, path, sample_path=None):
        """Open a BGEN file (v1.1-1.3, bi-allelic diploid variants) lazily via cbgen.

        Genotype probabilities become dosages of the first allele of each variant,
        reported as ``a1`` (the counted allele). Sample ids come from ``sample_path``
        (column ``ID_2``), else the ``.sample`` file beside ``path``, else the ids
        stored in the file. Needs the optional package ``cbgen``.
        """
        from .bgen import open_bgen

        source, iid, snps = open_bgen(path, sample_path=sample_path)
        if pd.Index(iid).has_duplicates:
            raise GenotypeFileError(f"{path}: duplicated sample ids; pass a .sample file "
                                    "with unique IDs (sample_path=).")
        logger.info("Opened %s: %d samples x %d variants", path, len(iid), len(snps))
        return cls(source, iid, snps, description=str(path))

    @classmethod
    def from_array(cls, G, iid, snps=None):
        """Wrap an in-memory ``(n_samples, n_snps)`` matrix of allele counts.

        Parameters
        ----------
        G : array-like of shape (n_samples, n_snps)
            Counts of the ``a1`` allele in ``[0, 2]``; ``NaN`` marks a missing call.
            Stored as float32 if given as float32, else as float64.
        iid : list-like of str, length n_samples
            Subject ids.
        snps : pandas.DataFrame, optional
            One row per SNP. A column ``id`` is accepted for ``variant_id``. Absent
            columns are filled (``chrom='0'``, ``pos`` = position, ``variant_id`` =
            ``'snp{j}'``, ``a1='A1'``, ``a2='A2'``).

        Examples
        --------
        >>> import numpy as np
        >>> g = Genotypes.from_array(np.array([[0, 1.], [2, np.nan], [1, 1]]), ["a", "b", "c"])
        >>> g.read(standardize=False)
        array([[0., 1.],
               [2., 1.],
               [1., 1.]])
        """
        G = np.asarray(G)
        if G.dtype != np.float32:  # float32 is kept (half the memory); else float64
            G = G.astype(np.float64)
        if G.ndim != 2:
            raise ValueError(f"G must be 2-D (n_samples, n_snps); got shape {G.shape}.")
        n, m = G.shape
        iid = np.asarray(iid).astype(str)
        if iid.shape != (n,):
            raise ValueError(
                f"iid has {iid.size} ids but G has {n} rows; give one id per row of G."
            )
        if pd.Index(iid).has_duplicates:
            dup = pd.Index(iid)[pd.Index(iid).duplicated()].unique()[:5].tolist()
            raise ValueError(f"iid has duplicated ids, e.g. {dup}; ids must be unique.")
        if G.size and not np.isnan(G).all():
            lo, hi = np.nanmin(G), np.nanmax(G)
            if not (0 <= lo and hi <= 2):
                raise ValueError(
                    "G must hold allele counts in [0, 2] (NaN for missing); found values "
                    f"in [{lo}, {hi}]."
                )
        snps = _normalize_snp_table(snps, m)
        return cls(G, iid, snps, description="array")

    # ------------------------------------------------------------------ basics
    @property
    def n_samples(self):
        return len(self.iid)

    @property
    def n_snps(self):
        return len(self._snp_index)

    @property
    def shape(self):
        return (self.n_samples, self.n_snps)

    def __repr__(self):
        return (f"Genotypes({self._description!r}, n_samples={self.n_samples}, "
                f"n_snps={self.n_snps})")

    def subset(self, snps):
        """View over a subset of SNPs (bool mask of length ``n_snps`` or int positions)."""
        snps = np.asarray(snps)
        if snps.dtype == bool:
            if snps.shape != (self.n_snps,):
                raise ValueError(
                    f"Boolean SNP mask has length {snps.size}; expected {self.n_snps}."
                )
            pos = np.flatnonzero(snps)
        elif snps.size == 0:
            pos = np.array([], dtype=np.intp)
        elif np.issubdtype(snps.dtype, np.integer):
            pos = snps.astype(np.intp).ravel()
            if pos.min() < -self.n_snps or pos.max() >= self.n_snps:
                raise IndexError(f"SNP positions out of range for {self.n_snps} SNPs.")
            pos = np.where(pos < 0, pos + self.n_snps, pos)
        else:
            raise TypeError(
                "subset() takes a boolean mask or integer positions; to select by "
                "variant id use g.subset(g.snps.variant_id.isin(ids).to_numpy())."
            )
        return Genotypes(self._source, self.iid, self.snps.iloc[pos],
                         self._snp_index[pos], description=self._description)

    def align(self, samples):
        """Row positions of ``samples`` (subject ids) in :attr:`iid`.

        Raises
        ------
        SampleMismatchError
            If any id is absent; the message says how many matched and shows a few
            that did not.
        """
        if isinstance(samples, np.ndarray) and np.issubdtype(samples.dtype, np.integer):
            pos = samples.astype(np.intp).ravel()
            if pos.size and (pos.min() < 0 or pos.max() >= self.n_samples):
                raise IndexError(f"Sample positions out of range for {self.n_samples} samples.")
            return pos
        req = pd.Index(np.asarray(samples).astype(str).ravel())
        pos = self.iid.get_indexer(req)
        if (pos < 0).any():
            raise SampleMismatchError(_describe_mismatch(req, self.iid))
        return pos.astype(np.intp)

    def _sample_positions(self, samples):
        if samples is None:
            return None
        return self.align(samples)

    # ------------------------------------------------------------------ reading
    def _read_raw(self, rows, cols):
        """Allele counts (float64, NaN missing) of source columns ``cols`` for ``rows``."""
        if isinstance(self._source, np.ndarray):
            X = self._source[:, cols] if rows is None else self._source[np.ix_(rows, cols)]
            return np.array(X, dtype=np.float64, order="C")
        if not hasattr(self._source, "iid_count"):    # BGEN (or another) source
            return self._source.read(rows, cols)
        # bed-reader: a slice is cheaper than a fancy index when contiguous
        if cols.size and cols[-1] - cols[0] + 1 == cols.size and np.all(np.diff(cols) == 1):
            col_index = np.s_[int(cols[0]):int(cols[-1]) + 1]
        else:
            col_index = cols
        row_index = np.s_[:] if rows is None else rows
        # int8 decoding moves 8x fewer bytes than float64; missing calls are -127
        Xi = self._source.read(index=(row_index, col_index), dtype=np.int8, order="F")
        X = Xi.astype(np.float64, order="C")
        missing = Xi == -127
        if missing.any():
            X[missing] = np.nan
        return X

    def iter_blocks(self, block_size=4096, samples=None, standardize=True, dtype=np.float64):
        """Yield ``(idx, block)`` over consecutive blocks of SNPs.

        Parameters
        ----------
        block_size : int
            SNPs per block.
        samples : list-like of str, optional
            Subject ids (rows of each block, in this order). Default: all, in
            :attr:`iid` order.
        standardize : bool
            If True, centre each SNP and scale by its SD over the requested samples
            (after mean imputation, ddof=0); monomorphic SNPs become all-zero columns.
            If False, yield allele counts with missing calls mean-imputed.
        dtype : numpy dtype
            Dtype of the yielded blocks (computation is in float64).

        Yields
        ------
        idx : ndarray of int
            Positions (into :attr:`snps`) of the SNPs in this block.
        block : ndarray of shape (n_requested_samples, len(idx))
        """
        block_size = int(block_size)
        if block_size < 1:
            raise ValueError(f"block_size must be a positive integer; got {block_size}.")
        rows = self._sample_positions(samples)
        for start in range(0, self.n_snps, block_size):
            idx = np.arange(start, min(start + block_size, self.n_snps), dtype=np.intp)
            X = self._read_raw(rows, self._snp_index[idx])
            X = _impute_standardize(X, standardize)
            yield idx, X.astype(dtype, copy=False)

    def read(self, samples=None, snps=None, standardize=False, dtype=np.float64):
        """The whole ``(n_requested_samples, n_selected_snps)`` matrix in memory.

        Same imputation and standardization rules as :meth:`iter_blocks`; ``snps``
        selects SNPs as in :meth:`subset`.
        """
        g = self if snps is None else self.subset(snps)
        rows = g._sample_positions(samples)
        X = g._read_raw(rows, g._snp_index)
        return _impute_standardize(X, standardize).astype(dtype, copy=False)

    # ------------------------------------------------------------------ statistics, QC
    def stats(self, samples=None, block_size=4096):
        """Per-SNP ``a1_freq``, ``missing_rate`` and ``n`` (non-missing calls), streamed.

        Returns
        -------
        pandas.DataFrame indexed like :attr:`snps` with columns
        ``variant_id, a1_freq, missing_rate, n``.
        """
        rows = self._sample_positions(samples)
        n_req = self.n_samples if rows is None else rows.size
        freq = np.empty(self.n_snps)
        nobs = np.empty(self.n_snps, dtype=np.int64)
        for start in range(0, self.n_snps, int(block_size)):
            sl = slice(start, min(start + int(block_size), self.n_snps))
            X = self._read_raw(rows, self._snp_index[sl])
            ok = ~np.isnan(X)
            cnt = ok.sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                freq[sl] = np.where(ok, X, 0.0).sum(axis=0) / (2.0 * cnt)
            nobs[sl] = cnt
        return pd.DataFrame({
            "variant_id": self.snps["variant_id"].to_numpy(),
            "a1_freq": freq,
            "missing_rate": 1.0 - nobs / max(n_req, 1),
            "n": nobs,
        })

    def qc(self, maf=0.01, max_missing=0.05, samples=None):
        """Filter SNPs by missingness, monomorphism and minor allele frequency.

        Filters are applied in this order, each to the SNPs left by the previous one:
        ``missing_rate > max_missing``; monomorphic (a single observed genotype value,
        or no observed call); ``MAF < maf``.

        Returns
        -------
        view : Genotypes
            View over the SNPs that pass.
        report : dict
            ``n_snps_in``, ``removed_missing``, ``removed_monomorphic``,
            ``removed_maf``, ``n_snps_out`` (also logged at INFO level).
        """
        if not 0 <= maf < 0.5:
            raise ValueError(f"maf must be in [0, 0.5); got {maf}.")
        if not 0 <= max_missing <= 1:
            raise ValueError(f"max_missing must be in [0, 1]; got {max_missing}.")
        rows = self._sample_positions(samples)
        n_req = self.n_samples if rows is None else rows.size
        miss_rate = np.empty(self.n_snps)
        mono = np.empty(self.n_snps, dtype=bool)
        freq = np.empty(self.n_snps)
        for start in range(0, self.n_snps, 4096):
            sl = slice(start, min(start + 4096, self.n_snps))
            X = self._read_raw(rows, self._snp_index[sl])
            ok = ~np.isnan(X)
            cnt = ok.sum(axis=0)
            miss_rate[sl] = 1.0 - cnt / max(n_req, 1)
            lo = np.where(ok, X, np.inf).min(axis=0)
            hi = np.where(ok, X, -np.inf).max(axis=0)
            mono[sl] = ~(hi > lo)
            with np.errstate(invalid="ignore", divide="ignore"):
                freq[sl] = np.where(ok, X, 0.0).sum(axis=0) / (2.0 * cnt)
        maf_v = np.minimum(freq, 1.0 - freq)
        keep = np.ones(self.n_snps, dtype=bool)
        bad_miss = keep & (miss_rate > max_missing)
        keep &= ~bad_miss
        bad_mono = keep & mono
        keep &= ~bad_mono
        bad_maf = keep & (maf_v < maf)
        keep &= ~bad_maf
        report = {
            "n_snps_in": int(self.n_snps),
            "removed_missing": int(bad_miss.sum()),
            "removed_monomorphic": int(bad_mono.sum()),
            "removed_maf": int(bad_maf.sum()),
            "n_snps_out": int(keep.sum()),
        }
        logger.info(
            "Genotype QC (maf >= %g, missing <= %g, %d samples): %d SNPs in, "
            "%d removed for missingness, %d monomorphic, %d for MAF, %d kept",
            maf, max_missing, n_req, report["n_snps_in"], report["removed_missing"],
            report["removed_monomorphic"], report["removed_maf"], report["n_snps_out"],
        )
        return self.subset(keep), report


def _impute_standardize(X, standardize):
    """Mean-impute NaN per column (in place when possible); optionally standardize."""
    miss = np.isnan(X)
    any_miss = miss.any()
    if any_miss:
        cnt = (~miss).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(miss, 0.0, X).sum(axis=0) / cnt
        mean = np.where(cnt > 0, mean, 0.0)
        X = np.where(miss, mean, X)
    if not standardize:
        return X
    if not any_miss:
        mean = X.mean(axis=0) if X.shape[0] else np.zeros(X.shape[1])
    X = X - mean
    sd = np.sqrt((X * X).mean(axis=0)) if X.shape[0] else np.zeros(X.shape[1])
    poly = sd > 1e-12 * np.maximum(1.0, np.abs(mean))
    X *= np.where(poly, 1.0 / np.where(poly, sd, 1.0), 0.0)
    return X


def _normalize_snp_table(snps, m):
    if snps is None:
        snps = pd.DataFrame(index=range(m))
    if not isinstance(snps, pd.DataFrame):
        raise TypeError(f"snps must be a pandas DataFrame; got {type(snps).__name__}.")
    if len(snps) != m:
        raise ValueError(f"snps has {len(snps)} rows but G has {m} columns (SNPs).")
    snps = snps.reset_index(drop=True).copy()
    if "variant_id" not in snps and "id" in snps:
        snps = snps.rename(columns={"id": "variant_id"})
    defaults = {
        "chrom": lambda: np.full(m, "0"),
        "pos": lambda: np.arange(m, dtype=np.int64),
        "variant_id": lambda: np.array([f"snp{j}" for j in range(m)]),
        "a1": lambda: np.full(m, "A1"),
        "a2": lambda: np.full(m, "A2"),
    }
    for col, make in defaults.items():
        if col not in snps:
            snps[col] = make()
    snps["chrom"] = snps["chrom"].astype(str)
    snps["variant_id"] = snps["variant_id"].astype(str)
    extra = [c for c in snps.columns if c not in SNP_COLUMNS]
    return snps[SNP_COLUMNS + extra]

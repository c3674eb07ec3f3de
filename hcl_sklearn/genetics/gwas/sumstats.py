"""Summary-statistics tables (GWAS-SSF-style columns) and their writers."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SUMSTATS_COLUMNS", "write_tsv_gz", "write_parquet", "phenotype_filename"]

#: Column order of :attr:`CrossModalGWAS.sumstats_` (GWAS-SSF names + ``neg_log10_p``).
SUMSTATS_COLUMNS = [
    "phenotype", "chromosome", "base_pair_location", "variant_id", "effect_allele",
    "other_allele", "effect_allele_frequency", "beta", "standard_error", "t_stat",
    "p_value", "neg_log10_p", "n",
]


#: Text precision of the TSV writer: 7 significant digits (p-values keep their exponent,
#: down to the float64 subnormal 5e-324; ``neg_log10_p`` carries smaller ones).
FLOAT_FORMAT = "%.7g"


def phenotype_filename(phenotype, suffix):
    """File name of one phenotype's table (unsafe characters replaced by ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(phenotype)) + suffix


def write_tsv_gz(frames, path, per_phenotype=False):
    """Write ``(phenotype, frame)`` pairs as gzip-compressed TSV.

    Parameters
    ----------
    frames : iterable of (str, pandas.DataFrame)
    path : str or path-like
        A file (long format, all phenotypes) or, with ``per_phenotype=True``, a
        directory that receives ``<phenotype>.tsv.gz``.
    per_phenotype : bool

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    path = Path(path)
    written = []
    if per_phenotype:
        path.mkdir(parents=True, exist_ok=True)
        for name, frame in frames:
            out = path / phenotype_filename(name, ".tsv.gz")
            frame.to_csv(out, sep="\t", index=False, compression="gzip", na_rep="NA",
                         float_format=FLOAT_FORMAT)
            written.append(out)
        return written
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", compresslevel=6) as fh:
        header = True
        for _, frame in frames:
            frame.to_csv(fh, sep="\t", index=False, header=header, na_rep="NA",
                         float_format=FLOAT_FORMAT)
            header = False
    return [path]


def write_parquet(frames, path, per_phenotype=False):
    """Write ``(phenotype, frame)`` pairs as Parquet (needs ``pyarrow``).

    Same layout rules as :func:`write_tsv_gz`; values keep full float64 precision.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a test dependency
        raise ImportError("to_parquet needs pyarrow: pip install 'hcl-sklearn[parquet]'.") from exc
    path = Path(path)
    written = []
    if per_phenotype:
        path.mkdir(parents=True, exist_ok=True)
        for name, frame in frames:
            out = path / phenotype_filename(name, ".parquet")
            frame.to_parquet(out, index=False)
            written.append(out)
        return written
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for _, frame in frames:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return [path]


def long_frame(snps, phenotype, beta, se, t, log10_p, freq, n):
    """One phenotype's table (GWAS-SSF columns) from per-SNP arrays."""
    with np.errstate(under="ignore"):
        p = np.power(10.0, log10_p)
    keep = ~np.isnan(t)
    if not keep.all():  # SNP constant among this phenotype's samples: no test
        snps, beta, se, t, log10_p, p, freq = (
            a[keep] for a in (snps, beta, se, t, log10_p, p, freq))
    return pd.DataFrame({
        "phenotype": np.full(len(snps), str(phenotype), dtype=object),
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

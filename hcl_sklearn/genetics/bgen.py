"""BGEN (v1.1-1.3) genotype source for :class:`~hcl_sklearn.genetics.Genotypes`, via cbgen.

`cbgen <https://pypi.org/project/cbgen/>`_ (the maintained C reader of the limix
group) is an optional dependency: ``pip install cbgen``. Probabilities are converted to
expected counts (dosages) of the first allele of each variant, which is reported as
``a1`` (the counted allele). Only bi-allelic diploid variants are supported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["BgenSource", "open_bgen"]


class BgenSource:
    """Reads dosages of variant offsets for a subset of samples (one variant at a time)."""

    def __init__(self, path, offsets):
        from cbgen import bgen_file

        self.path = str(path)
        self._file = bgen_file(self.path)
        self._offsets = np.asarray(offsets, dtype=np.int64)

    def read(self, rows, cols):
        n = self._file.nsamples if rows is None else len(rows)
        out = np.empty((n, len(cols)), dtype=np.float64)
        for k, j in enumerate(cols):
            gt = self._file.read_genotype(int(self._offsets[j]), precision=64)
            p = np.asarray(gt.probability, dtype=np.float64)
            if p.shape[1] == 3 and not gt.phased:          # P(AA), P(AB), P(BB)
                dose = 2.0 * p[:, 0] + p[:, 1]
            elif p.shape[1] == 4 and gt.phased:            # two haplotypes x (A, B)
                dose = p[:, 0] + p[:, 2]
            else:
                raise ValueError(
                    f"{self.path}: variant at offset {self._offsets[j]} is not bi-allelic "
                    f"diploid (probability shape {p.shape}); filter it out first "
                    "(plink2 --max-alleles 2)."
                )
            dose[np.asarray(gt.missing, dtype=bool)] = np.nan
            out[:, k] = dose if rows is None else dose[rows]
        return out

    def __getstate__(self):
        return {"path": self.path, "offsets": self._offsets}

    def __setstate__(self, state):
        self.__init__(state["path"], state["offsets"])


def _sample_ids(path, bgen, sample_path):
    if sample_path is None:
        guess = Path(str(path)[: -len(".bgen")] + ".sample") if str(path).endswith(
            ".bgen") else None
        sample_path = guess if guess is not None and guess.is_file() else None
    if sample_path is not None:
        tab = pd.read_csv(sample_path, sep=r"\s+", dtype=str)
        tab = tab.iloc[1:] if tab.iloc[0, 0] == "0" else tab   # the type line "0 0 0 D"
        col = "ID_2" if "ID_2" in tab else tab.columns[0]
        return tab[col].to_numpy().astype(str)
    if bgen.contain_samples:
        return np.array([s.decode() if isinstance(s, bytes) else str(s)
                         for s in bgen.read_samples()])
    return np.array([str(i) for i in range(bgen.nsamples)])


def _index_here(path, out):
    """Index ``path`` (cbgen metafile), check its end, pickle the variant table to ``out``.

    Run in a child process by :func:`_variant_table`: cbgen does not validate the file and
    crashes (SIGSEGV) on a truncated one, which must not take the user's process down.
    """
    from cbgen import bgen_file, bgen_metafile

    with tempfile.TemporaryDirectory() as tmp:
        meta = os.path.join(tmp, "variants.metafile")
        with bgen_file(path) as bgen:
            n_variants = bgen.nvariants
            bgen.create_metafile(meta, verbose=False)
        parts = []
        with bgen_metafile(meta) as mf:
            for i in range(mf.npartitions):
                v = mf.read_partition(i).variants
                parts.append(pd.DataFrame({
                    "chrom": v.chromosome, "pos": v.position, "rsid": v.rsid, "id": v.id,
                    "nalleles": v.nalleles, "alleles": v.allele_ids, "offset": v.offset}))
    tab = pd.concat(parts, ignore_index=True)
    size = os.path.getsize(path)
    if len(tab) != n_variants or (len(tab) and int(tab["offset"].max()) >= size):
        sys.exit(3)
    if len(tab):  # the last variant's genotype block must be whole
        with bgen_file(path) as bgen:
            bgen.read_genotype(int(tab["offset"].iloc[-1]), precision=32)
    tab.to_pickle(out)


def _variant_table(path):
    """The variant table of a BGEN file, indexed in a child process (see _index_here)."""
    from .genotypes import GenotypeFileError

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "variants.pkl")
        # this file alone (numpy, pandas, cbgen), not the package: a light child
        code = ("import importlib.util as u, sys; s = u.spec_from_file_location('b', "
                "sys.argv[3]); m = u.module_from_spec(s); s.loader.exec_module(m); "
                "m._index_here(sys.argv[1], sys.argv[2])")
        proc = subprocess.run([sys.executable, "-c", code, path, out, __file__],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(out):
            how = (f"the reader crashed (signal {-proc.returncode})" if proc.returncode < 0
                   else "its variant blocks run past the end of the file"
                   if proc.returncode == 3 else
                   f"indexing failed ({(proc.stderr.strip().splitlines() or ['?'])[-1]})")
            raise GenotypeFileError(
                f"BGEN file {path} ({os.path.getsize(path):,} bytes) is truncated or corrupt: "
                f"{how}. Compare its size with the source (an interrupted copy or download "
                "is the usual cause) and copy or export it again.")
        return pd.read_pickle(out)


def open_bgen(path, sample_path=None):
    """Metadata and a lazy source for a BGEN file: ``(source, iid, snps)``."""
    try:
        from cbgen import bgen_file
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Reading BGEN needs the optional package cbgen (pip install cbgen), or "
            "convert to PLINK 1: plink2 --bgen FILE.bgen ref-first --make-bed --out PREFIX."
        ) from exc
    path = str(path)
    if not Path(path).is_file():
        from .genotypes import GenotypeFileError

        raise GenotypeFileError(f"BGEN file not found: {path}.")
    with bgen_file(path) as bgen:
        iid = _sample_ids(path, bgen, sample_path)
        if len(iid) != bgen.nsamples:
            raise ValueError(f"{sample_path} lists {len(iid)} samples but {path} has "
                             f"{bgen.nsamples}.")
    tab = _variant_table(path)
    for col in ("chrom", "rsid", "id", "alleles"):
        tab[col] = [x.decode() if isinstance(x, bytes) else str(x) for x in tab[col]]
    multi = int((tab["nalleles"] != 2).sum())
    if multi:
        raise ValueError(f"{path} has {multi} variant(s) with != 2 alleles; only bi-allelic "
                         "variants are supported (plink2 --max-alleles 2).")
    alleles = tab["alleles"].str.split(",", n=1, expand=True)
    vid = np.where(tab["rsid"] != "", tab["rsid"], tab["id"])
    snps = pd.DataFrame({"chrom": tab["chrom"].to_numpy(), "pos": tab["pos"].astype(np.int64),
                         "variant_id": vid, "a1": alleles[0].to_numpy(),
                         "a2": alleles[1].to_numpy()})
    return BgenSource(path, tab["offset"].to_numpy()), iid, snps

"""Per-block results of a GWAS on disk, so that a killed run resumes where it stopped.

``CrossModalGWAS(out_dir=...)`` writes every finished block of SNPs to
``out_dir/blocks/<start>-<end>.npz`` (the rows of the block in every result array and its
QC counts). A file appears only once it is complete: it is written to a temporary name in
the same folder, flushed to disk and renamed (``os.replace`` is atomic on POSIX and
Windows), so a kill or a full disk leaves at most a ``*.tmp`` file, which the next run
deletes. ``out_dir/run.json`` holds a fingerprint of the inputs (genotype source, samples,
phenotypes, covariates and the settings that change the numbers); a folder written by a
different run is refused with a message saying what differs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["BlockStore", "OutDirMismatchError", "fingerprint"]

_FIELDS = ("beta", "se", "t", "log10_p", "freq", "tested", "min_lp", "min_at")
_FORMAT = 1


class OutDirMismatchError(ValueError):
    """``out_dir`` holds the blocks of a different run."""


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes() if a.dtype != object else "\x1f".join(map(str, a.ravel()))
                 .encode())
    return h.hexdigest()[:32]


def _genotype_identity(geno):
    """Content hash of in-memory genotypes; path, size and mtime of a file source."""
    src = getattr(geno, "_source", None)
    snp_index = np.asarray(getattr(geno, "_snp_index", np.arange(geno.n_snps)))
    ids = _digest(np.asarray(geno.iid, dtype=object),
                  geno.snps["variant_id"].to_numpy(dtype=object), snp_index)
    if isinstance(src, np.ndarray):
        return {"kind": "array", "content": _digest(src), "ids": ids}
    location = getattr(src, "location", None) or getattr(src, "path", None)
    if location is not None and Path(str(location)).is_file():
        p = Path(str(location)).resolve()
        st = p.stat()
        return {"kind": "file", "path": str(p), "size": st.st_size,
                "mtime_ns": st.st_mtime_ns, "ids": ids}
    return {"kind": type(src).__name__, "ids": ids}


def fingerprint(geno, Y, covariates, settings):
    """The inputs that decide a run's numbers, as a JSON-able dict."""
    cov = None
    if covariates is not None:
        cov = _digest(np.asarray(covariates.index, dtype=object),
                      np.asarray(covariates.columns, dtype=object),
                      covariates.to_numpy(dtype=float))
    return {"format": _FORMAT, "genotypes": _genotype_identity(geno),
            "samples": _digest(np.asarray(Y.index, dtype=object)),
            "phenotypes": _digest(np.asarray(Y.columns, dtype=object),
                                  Y.to_numpy(dtype=float)),
            "covariates": cov, "settings": settings}


class BlockStore:
    """The block files of one run in ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
    run : dict
        :func:`fingerprint` of this run.
    """

    def __init__(self, out_dir, run):
        self.root = Path(out_dir)
        self.blocks = self.root / "blocks"
        self.run = json.loads(json.dumps(run))       # as it reads back from disk
        self.n_loaded = self.n_written = 0

    # ------------------------------------------------------------------ set-up
    def open(self):
        """Create the folder, or check that it is this run's; drop partial files."""
        self.blocks.mkdir(parents=True, exist_ok=True)
        meta = self.root / "run.json"
        if meta.exists():
            try:
                old = json.loads(meta.read_text())
            except (OSError, ValueError) as exc:
                raise OutDirMismatchError(
                    f"out_dir {str(self.root)!r} has an unreadable run.json ({exc}); it is "
                    "not a GWAS output folder of this package, or it was damaged: use a new "
                    "folder.") from None
            if old != self.run:
                diff = sorted(k for k in set(old) | set(self.run) if old.get(k) != self.run.get(k))
                raise OutDirMismatchError(
                    f"out_dir {str(self.root)!r} holds the blocks of a different run (its "
                    f"{', '.join(diff)} differ from this one's); use a new folder, or delete "
                    "that one to start this run afresh.")
        else:
            stray = [p for p in self.blocks.iterdir() if p.suffix == ".npz"]
            if stray:
                raise OutDirMismatchError(
                    f"out_dir {str(self.root)!r} holds {len(stray)} block files but no "
                    "run.json, so whose blocks they are is unknown; use a new folder.")
            self._atomic_write(meta, json.dumps(self.run, indent=1).encode())
        for tmp in self.blocks.glob("*.tmp"):        # a block cut short by a kill or ENOSPC
            tmp.unlink()
        return self

    def _path(self, start, end):
        return self.blocks / f"{start:012d}-{end:012d}.npz"

    # ------------------------------------------------------------------ blocks
    def load(self, start, end, results):
        """Fill rows ``start:end`` of ``results`` from disk; the QC counts, or None."""
        path = self._path(start, end)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                parts = {k: z[k] for k in (*_FIELDS, "qc")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # damaged
            logger.warning("block file %s unreadable (%s): recomputing it", path.name, exc)
            path.unlink(missing_ok=True)
            return None
        for k in _FIELDS:
            getattr(results, k)[start:end] = parts[k]
        self.n_loaded += 1
        return int(parts["qc"][0]), int(parts["qc"][1])

    def save(self, start, end, results, qc):
        """Write rows ``start:end`` of ``results`` and the block's QC counts."""
        import io

        buf = io.BytesIO()
        np.savez(buf, **{k: getattr(results, k)[start:end] for k in _FIELDS},
                 qc=np.asarray(qc, dtype=np.int64))
        self._atomic_write(self._path(start, end), buf.getvalue())
        self.n_written += 1

    def _atomic_write(self, path, data):
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(exc.errno, f"no space left writing {path.name} into "
                              f"{str(self.root)!r}: the finished blocks are kept; free space "
                              "and run the same GWAS again to resume", str(path)) from None
            raise

"""Paired T1/T2 volumes: input validation, reference preprocessing, caching, a torch Dataset.

Three forms of input are accepted wherever an estimator takes volumes:

* an ndarray of shape ``(n, 2, D, H, W)``: channel 0 is T1, channel 1 is T2;
* a :class:`pandas.DataFrame` with columns ``t1`` and ``t2`` holding NIfTI paths
  (``.nii`` or ``.nii.gz``), index = subject id;
* the DataFrame returned by :func:`pairs_from_bids` for a BIDS tree.

Preprocessing follows the reference implementation: each image is z-scored with the
mean and SD of its non-zero voxels (mask = ``image != 0``; the background stays 0),
then zero-padded / centre-cropped to ``target_shape`` (default 182 x 224 x 182, the
MNI152 1 mm grid padded as in the reference), then optionally average-pooled by an
integer ``downsample`` factor for CPU runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

try:  # torch is a hard dependency, but keep the data layer importable without it
    import torch
    from torch.utils.data import Dataset
except ImportError:  # pragma: no cover
    torch = None
    Dataset = object

logger = logging.getLogger(__name__)

REFERENCE_SHAPE = (182, 224, 182)
MODALITIES = ("t1", "t2")
_NIFTI_SUFFIXES = (".nii", ".nii.gz")

__all__ = [
    "as_paired_volumes",
    "REFERENCE_SHAPE",
    "PairedVolumes",
    "VolumeError",
    "check_paired_input",
    "pairs_from_bids",
    "preprocess_volume",
]


class VolumeError(ValueError):
    """An input volume is unusable; the message names the subject, the path and the fix."""


# --------------------------------------------------------------------------- preprocessing
def zscore_nonzero(volume, *, where=""):
    """Z-score a volume with the mean and SD of its non-zero voxels; background stays 0.

    Parameters
    ----------
    volume : ndarray of shape (D, H, W)
    where : str
        Description of the volume used in error messages.

    Returns
    -------
    out : ndarray of float32, same shape
    """
    vol = np.asarray(volume, dtype=np.float32)
    if not np.isfinite(vol).all():
        n_bad = int((~np.isfinite(vol)).sum())
        raise VolumeError(
            f"{where}: {n_bad} non-finite voxel(s) (NaN or inf). Replace them (e.g. "
            "np.nan_to_num(img, nan=0.0), the background value) before loading."
        )
    mask = vol != 0
    n = int(mask.sum())
    if n == 0:
        raise VolumeError(
            f"{where}: the image is all zeros, so it has no brain voxels to normalise. "
            "Check the file (failed brain extraction or registration?) or drop the subject."
        )
    vals = vol[mask].astype(np.float64)
    mean = vals.mean()
    sd = vals.std()
    out = np.zeros_like(vol)
    if sd > 0:
        out[mask] = ((vals - mean) / sd).astype(np.float32)
    return out


def pad_or_crop(volume, target_shape):
    """Zero-pad and/or centre-crop a 3-D volume to ``target_shape``.

    Odd differences put the extra voxel at the end (as ``numpy.pad`` with a
    symmetric split does for the reference's 218 -> 224 padding).
    """
    vol = np.asarray(volume)
    out = vol
    for axis, (have, want) in enumerate(zip(vol.shape, target_shape)):
        if have == want:
            continue
        if have > want:  # centre crop
            start = (have - want) // 2
            out = np.take(out, np.arange(start, start + want), axis=axis)
        else:  # zero pad
            before = (want - have) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, want - have - before)
            out = np.pad(out, pad)
    return out


def downsample_volume(volume, factor):
    """Average-pool a 3-D volume by an integer ``factor`` (zero-padding to a multiple)."""
    if factor == 1:
        return volume
    vol = np.asarray(volume, dtype=np.float32)
    pads = [(0, (-s) % factor) for s in vol.shape]
    if any(p[1] for p in pads):
        vol = np.pad(vol, pads)
    d, h, w = (s // factor for s in vol.shape)
    return vol.reshape(d, factor, h, factor, w, factor).mean(axis=(1, 3, 5), dtype=np.float32)


def output_shape(input_shape, target_shape, downsample):
    """Spatial shape of a preprocessed volume."""
    shape = tuple(input_shape) if target_shape is None else tuple(target_shape)
    return tuple(-(-s // downsample) for s in shape)


def preprocess_volume(volume, target_shape=REFERENCE_SHAPE, downsample=1, *, where="volume"):
    """Apply the reference preprocessing to one 3-D volume.

    Z-score with the non-zero voxels' mean/SD, pad/centre-crop to ``target_shape``
    (``None`` keeps the input grid), then average-pool by ``downsample``.

    Parameters
    ----------
    volume : array-like of shape (D, H, W)
    target_shape : tuple of 3 int or None, default=(182, 224, 182)
    downsample : int, default=1
    where : str
        Description of the volume used in error messages.

    Returns
    -------
    out : ndarray of float32

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.data.volumes import preprocess_volume
    >>> v = np.zeros((10, 12, 10)); v[3:7, 3:9, 3:7] = np.arange(96).reshape(4, 6, 4) + 1
    >>> out = preprocess_volume(v, target_shape=(12, 12, 12), downsample=2)
    >>> out.shape
    (6, 6, 6)
    """
    vol = zscore_nonzero(volume, where=where)
    if target_shape is not None:
        vol = pad_or_crop(vol, target_shape)
    return downsample_volume(vol, downsample)


# --------------------------------------------------------------------------- NIfTI I/O
def _nib():
    import nibabel as nib

    return nib


def _one_line(exc):
    return " ".join(str(exc).split())


def _where(subject, modality, path=None):
    s = f"subject {subject!r}, {modality.upper()}"
    return f"{s} ({path})" if path is not None else s


def _load_header(path, where):
    """Open a NIfTI lazily (header only) and check it is a single 3-D image."""
    nib = _nib()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{where}: file not found. Check the path (relative paths are resolved from "
            f"{os.getcwd()!r})."
        )
    if not str(path).endswith(_NIFTI_SUFFIXES):
        raise VolumeError(f"{where}: not a NIfTI file; expected a .nii or .nii.gz path.")
    try:
        img = nib.load(str(path), mmap=True)
        shape = tuple(int(s) for s in img.shape)
    except Exception as exc:  # nibabel raises several types for damaged files
        raise VolumeError(
            f"{where}: cannot be read as NIfTI ({type(exc).__name__}: {_one_line(exc)}). The file is "
            "corrupt or truncated; re-export or re-download it."
        ) from exc
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise VolumeError(
            f"{where}: image has shape {shape} ({len(shape)}-D); a single 3-D structural "
            "volume is required. Split 4-D series (e.g. nilearn.image.index_img) and pass "
            "one volume."
        )
    return img, shape


def _read_nifti(path, where):
    img, shape = _load_header(path, where)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise VolumeError(
            f"{where}: voxel data cannot be decoded ({type(exc).__name__}: {_one_line(exc)}). The file "
            "is corrupt or truncated; re-export it."
        ) from exc
    return data.reshape(shape)


# --------------------------------------------------------------------------- input checks
def _check_ids(ids):
    ids = pd.Index(ids)
    if ids.has_duplicates:
        dup = ids[ids.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"duplicated subject ids: {dup} ({int(ids.duplicated().sum())} duplicate row(s)). "
            "Each subject must appear once; for several sessions join the session into the id "
            "(pairs_from_bids does this)."
        )
    return ids


def check_paired_input(X):
    """Validate the *form* of paired input and return ``(kind, ids)``.

    ``kind`` is ``'array'``, ``'frame'`` or ``'dataset'``. Raises ``TypeError`` /
    ``ValueError`` with a message that says what is wrong and what is expected.
    """
    if isinstance(X, PairedVolumes):
        return "dataset", X.subject_ids
    if isinstance(X, pd.DataFrame):
        if X.shape[0] == 0:
            raise ValueError("empty input: the DataFrame of paired volumes has no rows.")
        missing = [c for c in MODALITIES if c not in X.columns]
        if missing:
            raise ValueError(
                f"wrong column names: paired volumes need columns 't1' and 't2' (NIfTI paths), "
                f"missing {missing}; got columns {list(X.columns)}. Rename them, e.g. "
                "df.rename(columns={'T1': 't1', 'FLAIR': 't2'})."
            )
        return "frame", _check_ids(X.index.astype(str))
    if hasattr(X, "__array__") or isinstance(X, (list, tuple)):
        arr = np.asarray(X) if not isinstance(X, np.ndarray) else X
        if arr.size == 0 or (arr.ndim >= 1 and arr.shape[0] == 0):
            raise ValueError("empty input: got an array with no subjects.")
        if arr.ndim != 5 or arr.shape[1] != 2:
            raise ValueError(
                f"wrong array rank/shape: paired volumes must be an array of shape "
                f"(n_subjects, 2, D, H, W) with channel 0 = T1 and 1 = T2; got shape "
                f"{arr.shape}. Stack them with np.stack([t1, t2], axis=1)."
            )
        return "array", pd.RangeIndex(arr.shape[0])
    raise TypeError(
        f"paired volumes must be an ndarray (n, 2, D, H, W), a DataFrame with columns "
        f"'t1' and 't2' of NIfTI paths, or a PairedVolumes; got {type(X).__name__}."
    )


# --------------------------------------------------------------------------- Dataset
class PairedVolumes(Dataset):
    """A torch ``Dataset`` of preprocessed paired T1/T2 volumes.

    Item ``i`` is a float32 tensor of shape ``(2, D, H, W)`` (channel 0 = T1,
    1 = T2) after the reference preprocessing. NIfTI files are opened lazily
    (memory-mapped when uncompressed) and decoded only when an item is read.

    Parameters
    ----------
    X : ndarray of shape (n, 2, D, H, W), DataFrame with columns ``t1``, ``t2``, or PairedVolumes
        The subjects. A DataFrame's index gives the subject ids.
    target_shape : tuple of 3 int or None, default=(182, 224, 182)
        Grid every image is zero-padded / centre-cropped to. ``None`` keeps the
        input grid (all subjects must then share it).
    downsample : int, default=1
        Integer average-pooling factor applied after padding (e.g. 4 for CPU runs).
    cache_dir : str or Path, default=None
        If given, each preprocessed image is stored there as float16 ``.npy``
        (keyed by path, size, mtime and the settings) and later epochs read the
        memory-mapped cache instead of decoding NIfTI.
    subject_ids : sequence, default=None
        Ids for array input (a DataFrame carries its own in its index).

    Attributes
    ----------
    subject_ids : pandas.Index
        One id per item, in order.
    volume_shape : tuple of int
        Spatial shape of each preprocessed volume.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.data.volumes import PairedVolumes
    >>> X = np.random.default_rng(0).random((3, 2, 8, 8, 8)).astype("float32")
    >>> ds = PairedVolumes(X, target_shape=None)
    >>> len(ds), tuple(ds[0].shape)
    (3, (2, 8, 8, 8))
    """

    def __init__(self, X, target_shape=REFERENCE_SHAPE, downsample=1, cache_dir=None,
                 subject_ids=None):
        if isinstance(X, PairedVolumes):  # re-wrap with new settings
            X = X._source
        kind, ids = check_paired_input(X)
        if target_shape is not None:
            target_shape = tuple(int(s) for s in target_shape)
            if len(target_shape) != 3 or min(target_shape) < 1:
                raise ValueError(f"target_shape must be 3 positive ints or None; got {target_shape}.")
        if not isinstance(downsample, (int, np.integer)) or downsample < 1:
            raise ValueError(f"downsample must be a positive integer; got {downsample!r}.")
        self.target_shape = target_shape
        self.downsample = int(downsample)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._kind = kind
        self._source = X
        if kind == "array":
            if subject_ids is not None:
                ids = _check_ids(pd.Index(subject_ids).astype(str))
                if len(ids) != len(X):
                    raise ValueError(f"{len(ids)} subject_ids for {len(X)} subjects.")
            self._array = X
            native = tuple(X.shape[2:])
            self._paths = None
        else:
            self._array = None
            self._paths = [(str(a), str(b)) for a, b in zip(X["t1"], X["t2"])]
            native = self._check_headers(ids)
        self.subject_ids = ids
        self.volume_shape = output_shape(native, target_shape, self.downsample)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    # -- validation -------------------------------------------------------------------
    def _check_headers(self, ids):
        """Header-only checks of every file: existence, readability, 3-D, T1/T2 shapes."""
        native = None
        for sid, (p1, p2) in zip(ids, self._paths):
            _, s1 = _load_header(p1, _where(sid, "t1", p1))
            _, s2 = _load_header(p2, _where(sid, "t2", p2))
            if s1 != s2:
                raise VolumeError(
                    f"subject {sid!r}: T1 shape {s1} ({p1}) differs from T2 shape {s2} ({p2}). "
                    "Register T2 to T1 (or both to MNI152 1 mm) before pairing."
                )
            if self.target_shape is None:
                if native is None:
                    native = s1
                elif native != s1:
                    raise VolumeError(
                        f"subject {sid!r}: shape {s1} differs from the first subject's "
                        f"{native}; pass target_shape=(D, H, W) to pad/crop every image to one grid."
                    )
            native = native or s1
        return native

    # -- Dataset protocol -------------------------------------------------------------
    def __len__(self):
        return len(self.subject_ids)

    def __getitem__(self, index):
        return torch.from_numpy(self.get_array(int(index)))

    def get_array(self, index):
        """Preprocessed pair ``index`` as a float32 ndarray of shape ``(2, D, H, W)``."""
        sid = self.subject_ids[index]
        if self._kind == "array":
            pair = self._array[index]
            return np.stack([
                preprocess_volume(pair[c], self.target_shape, self.downsample,
                                  where=_where(sid, m) + f" (row {index} of the array)")
                for c, m in enumerate(MODALITIES)
            ])
        return np.stack([self._get_file(sid, path, m)
                         for path, m in zip(self._paths[index], MODALITIES)])

    def _get_file(self, sid, path, modality):
        where = _where(sid, modality, path)
        if self.cache_dir is None:
            return preprocess_volume(_read_nifti(path, where), self.target_shape,
                                     self.downsample, where=where)
        cached = self.cache_dir / f"{self._cache_key(path)}.npy"
        if cached.exists():
            try:
                return np.asarray(np.load(cached, mmap_mode="r"), dtype=np.float32)
            except (ValueError, OSError):  # damaged cache entry: rebuild it
                logger.warning("rebuilding damaged cache entry %s", cached)
        vol = preprocess_volume(_read_nifti(path, where), self.target_shape,
                                self.downsample, where=where)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, vol.astype(np.float16))
        os.replace(tmp, cached)  # atomic: safe with DataLoader workers
        return vol

    def _cache_key(self, path):
        st = os.stat(path)
        key = (f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|"
               f"{self.target_shape}|{self.downsample}|v1")
        return hashlib.sha1(key.encode()).hexdigest()

    # -- convenience ------------------------------------------------------------------
    def to_array(self, verbose=0):
        """Load every pair into one float32 array of shape ``(n, 2, D, H, W)``."""
        from tqdm.auto import tqdm

        out = np.empty((len(self), 2, *self.volume_shape), dtype=np.float32)
        for i in tqdm(range(len(self)), desc="loading volumes", disable=not verbose):
            out[i] = self.get_array(i)
        return out

    def __repr__(self):
        src = {"array": "array", "frame": "NIfTI files"}[self._kind]
        return (f"PairedVolumes(n_subjects={len(self)}, source={src}, "
                f"volume_shape={self.volume_shape}, downsample={self.downsample}, "
                f"cache_dir={None if self.cache_dir is None else str(self.cache_dir)!r})")


# --------------------------------------------------------------------------- BIDS
_ENTITY = re.compile(r"(?P<key>[a-zA-Z]+)-(?P<value>[a-zA-Z0-9]+)")


def as_paired_volumes(X, target_shape="auto", downsample=1, cache_dir=None):
    """The one way the embedders read paired volumes (one meaning of their data parameters).

    Parameters
    ----------
    X : ndarray (n, 2, D, H, W), DataFrame with ``t1``/``t2`` NIfTI paths, or PairedVolumes
        A PairedVolumes is used as given (its own target shape, downsampling and cache).
    target_shape : 'auto', None or tuple of 3 int, default='auto'
        ``'auto'``: keep the grid of an array, pad/crop NIfTI files to the reference grid
        ``REFERENCE_SHAPE`` (182 x 224 x 182); ``None``: keep every input's grid.
    downsample : int, default=1
    cache_dir : str or path-like, optional

    Returns
    -------
    PairedVolumes

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.data.volumes import as_paired_volumes
    >>> pv = as_paired_volumes(np.ones((2, 2, 8, 8, 8), np.float32), downsample=2)
    >>> len(pv), pv.volume_shape
    (2, (4, 4, 4))
    """
    import scipy.sparse as sp

    if isinstance(X, PairedVolumes):
        return X
    if sp.issparse(X):
        raise TypeError(
            "sparse input is not supported: paired volumes must be a dense array of "
            "shape (n, 2, D, H, W), a DataFrame of NIfTI paths or a PairedVolumes; use "
            "X.toarray() and reshape.")
    if isinstance(X, np.ndarray) and np.iscomplexobj(X):
        raise ValueError("Complex data not supported: paired volumes must be real; "
                         "take the magnitude (np.abs) of complex images first.")
    kind, _ = check_paired_input(X)
    if isinstance(target_shape, str):
        if target_shape != "auto":
            raise ValueError(f"target_shape must be 'auto', None or 3 positive ints; got "
                             f"{target_shape!r}.")
        target = None if kind == "array" else REFERENCE_SHAPE
    elif target_shape is None:
        target = None
    else:
        target = tuple(target_shape)
        if len(target) != 3 or not all(isinstance(v, (int, np.integer)) and v > 0
                                       for v in target):
            raise ValueError(f"target_shape must be 'auto', None or 3 positive ints "
                             f"(D, H, W); got {target_shape!r}.")
        target = tuple(int(v) for v in target)
    if kind == "array":
        X = np.asarray(X)
        if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
            raise ValueError(f"paired volumes must hold real numbers; got dtype {X.dtype}. "
                             "Convert them with X.astype(np.float32).")
    return PairedVolumes(X, target_shape=target, downsample=int(downsample),
                         cache_dir=cache_dir)


def pairs_from_bids(root, t1_suffix="T1w", t2_suffix="T2w", on_incomplete="warn"):
    """Find paired T1/T2 images in a BIDS tree.

    Looks for ``sub-*/anat/`` and ``sub-*/ses-*/anat/`` images whose file name ends in
    ``_<t1_suffix>.nii[.gz]`` or ``_<t2_suffix>.nii[.gz]`` (``t2_suffix`` may be
    ``"FLAIR"``).

    Parameters
    ----------
    root : str or Path
        The BIDS dataset root (the folder that holds ``sub-*``).
    t1_suffix, t2_suffix : str
        BIDS suffixes of the two modalities.
    on_incomplete : {'warn', 'raise'}, default='warn'
        What to do with subjects (sessions) that have only one modality: they are never
        kept; ``'warn'`` lists them in a warning and in ``df.attrs['incomplete']``.

    Returns
    -------
    pairs : DataFrame
        One row per subject (per subject and session, id ``"<sub>_<ses>"``), index
        named ``subject_id``, columns ``t1``, ``t2``, ``subject``, ``session``.

    Examples
    --------
    >>> from hcl_sklearn.data.volumes import pairs_from_bids
    >>> pairs_from_bids("my_bids_root")  # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"BIDS root {str(root)!r} is not a directory.")
    if on_incomplete not in ("warn", "raise"):
        raise ValueError("on_incomplete must be 'warn' or 'raise'.")
    found = {}
    for path in sorted(root.glob("sub-*/**/anat/*.nii*")):
        name = path.name
        stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name[: -len(".nii")]
        if not name.endswith(_NIFTI_SUFFIXES):
            continue
        suffix = stem.rsplit("_", 1)[-1]
        modality = {t1_suffix: "t1", t2_suffix: "t2"}.get(suffix)
        if modality is None:
            continue
        ents = {m["key"]: m["value"] for m in _ENTITY.finditer(stem)}
        if "sub" not in ents:
            continue
        key = (ents["sub"], ents.get("ses"))
        slot = found.setdefault(key, {})
        if modality in slot:
            raise ValueError(
                f"subject {key[0]!r}{'' if key[1] is None else ', session ' + repr(key[1])}: "
                f"several {modality.upper()} images ({slot[modality].name}, {path.name}). "
                "Keep one per session (e.g. select an acq-/run- entity) before pairing."
            )
        slot[modality] = path
    if not found:
        raise ValueError(
            f"no '*_{t1_suffix}.nii[.gz]' or '*_{t2_suffix}.nii[.gz]' images under "
            f"{str(root)!r}/sub-*/[ses-*/]anat/. Check the root and the suffixes "
            "(t2_suffix='FLAIR' for T2-FLAIR)."
        )
    rows, incomplete = [], []
    for (sub, ses), slot in sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        sid = sub if ses is None else f"{sub}_{ses}"
        if len(slot) < 2:
            incomplete.append(f"{sid} (no {'T2' if 't1' in slot else 'T1'})")
            continue
        rows.append({"subject_id": sid, "t1": str(slot["t1"]), "t2": str(slot["t2"]),
                     "subject": sub, "session": ses})
    if incomplete:
        msg = (f"{len(incomplete)} subject(s)/session(s) have only one modality and were left "
               f"out: {incomplete[:10]}{' ...' if len(incomplete) > 10 else ''}")
        if on_incomplete == "raise" or not rows:
            raise ValueError(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    df = pd.DataFrame(rows).set_index("subject_id")
    df.attrs["incomplete"] = incomplete
    return df

"""The paired-volume data layer: formats, reference preprocessing, caching, clear errors.

Tolerances are roundoff bounds of the dtypes involved (they hold on every kernel; none of
this goes through BLAS): the z-score is computed in float64 and rounded once to float32
(relative error <= U32 = 2^-24 = 6e-8), block means are float32 sums of 8 terms (within
gamma_9 of the sum of |terms|; Higham, Lemma 3.1), the cache stores float16 (relative
error <= U16 = 2^-11 = 4.9e-4, or <= 2^-25 absolute in float16's subnormal range).
"""

import gzip
import os
import pickle

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from hcl_sklearn.data.volumes import (
    PairedVolumes,
    VolumeError,
    pad_or_crop,
    pairs_from_bids,
    preprocess_volume,
)

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
U32 = 2.0**-24  # float32 unit roundoff
U64 = 2.0**-53  # float64 unit roundoff
U16 = 2.0**-11  # float16 unit roundoff
F16_SUBNORMAL_HALF_SPACING = 2.0**-25  # largest rounding error below float16's 6.1e-5


def _gamma(n, u):
    """Higham's gamma_n = n u / (1 - n u): a sum of n terms in any order is within
    gamma_n x the sum of |terms|."""
    return n * u / (1 - n * u)


def _brain(rng, shape=(12, 14, 10)):
    """A positive blob on a zero background, like a skull-stripped scan."""
    vol = np.zeros(shape, dtype=np.float32)
    sl = tuple(slice(2, s - 2) for s in shape)
    vol[sl] = rng.uniform(50, 500, size=vol[sl].shape)
    return vol


@pytest.fixture
def cohort(rng=None):
    rng = np.random.default_rng(0)
    return np.stack([np.stack([_brain(rng), _brain(rng)]) for _ in range(4)])


def _write(path, data, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return str(path)


def _bids(root, X, ids, sessions=None, t2_suffix="T2w", ext=".nii.gz"):
    for i, sid in enumerate(ids):
        anat = root / f"sub-{sid}" / "anat" if sessions is None else \
            root / f"sub-{sid}" / f"ses-{sessions[i]}" / "anat"
        stem = f"sub-{sid}" + ("" if sessions is None else f"_ses-{sessions[i]}")
        _write(anat / f"{stem}_T1w{ext}", X[i, 0])
        _write(anat / f"{stem}_{t2_suffix}{ext}", X[i, 1])
    return root


# ----------------------------------------------------------------------------- preprocessing
def test_zscore_uses_nonzero_voxels_only():
    rng = np.random.default_rng(1)
    vol = _brain(rng)
    out = preprocess_volume(vol, target_shape=None)
    mask = vol != 0
    inside = vol[mask].astype(np.float64)
    expected = (inside - inside.mean()) / inside.std()
    # one float32 rounding of the float64 z-score: <= U32 |z| (measured 0.93 U32 |z|); x2
    # and atol = 2 gamma_n (float64, n = 480 voxels) cover the float64 mean/SD in
    # another summation order. Old: rtol 1e-5, atol 1e-5 (~100x the bound)
    n = int(mask.sum())
    np.testing.assert_allclose(out[mask], expected, rtol=2 * U32, atol=2 * _gamma(n, U64))
    assert np.all(out[~mask] == 0)
    # mean and SD taken in float64 of the float32 output: each value is off by <= U32 |z|,
    # so |mean| <= U32 mean|z| and |SD - 1| <= U32 rms(z) = U32, plus float64 roundoff
    # (measured: -9e-10 and -5e-10). Old: float32 reductions with 1e-5 and 1e-4, which a
    # 480-term float32 sum (gamma_480 = 2.9e-5) does not bound
    z = out[mask].astype(np.float64)
    assert abs(z.mean()) <= U32 * np.abs(z).mean() + 2 * _gamma(n, U64)
    assert abs(z.std() - 1) <= 2 * U32


def test_pad_and_crop_to_reference_grid():
    # the reference pads MNI 182x218x182 to 182x224x182: 3 zero slices each side
    vol = np.ones((6, 218, 4), dtype=np.float32)
    out = pad_or_crop(vol, (6, 224, 4))
    assert out.shape == (6, 224, 4)
    assert out[:, :3].sum() == 0 and out[:, -3:].sum() == 0 and out[:, 3:-3].min() == 1
    # centre crop keeps the middle
    ramp = np.arange(10, dtype=np.float32).reshape(10, 1, 1) * np.ones((10, 2, 2))
    cropped = pad_or_crop(ramp, (6, 2, 2))
    np.testing.assert_array_equal(cropped[:, 0, 0], np.arange(2, 8))


def test_downsample_is_block_mean():
    rng = np.random.default_rng(2)
    vol = _brain(rng, (8, 8, 8))
    z = preprocess_volume(vol, target_shape=None)
    out = preprocess_volume(vol, target_shape=None, downsample=2)
    assert out.shape == (4, 4, 4)
    # each float32 block mean of 8 values is within gamma_9 mean|block| of the exact mean
    # (8 additions and the division); the float64 reference adds ~1e-16. Old: rtol=1e-5 on
    # block (1, 2, 3) only (kept below), which lies in the zero background (0 == 0); now
    # every block
    blocks = z.astype(np.float64).reshape(4, 2, 4, 2, 4, 2)
    bound = _gamma(9, U32) * np.abs(blocks).mean(axis=(1, 3, 5)) + 1e-15
    assert (np.abs(out - blocks.mean(axis=(1, 3, 5))) <= bound).all()
    assert np.abs(out).max() > 0.1  # some blocks are inside the brain
    np.testing.assert_allclose(out[1, 2, 3], z[2:4, 4:6, 6:8].mean(), rtol=1e-5)


def test_reference_default_shape_and_downsampled_shape():
    rng = np.random.default_rng(3)
    X = np.stack([np.stack([_brain(rng, (20, 22, 20))] * 2)])
    assert PairedVolumes(X).volume_shape == (182, 224, 182)
    ds = PairedVolumes(X, downsample=4)
    assert ds.volume_shape == (46, 56, 46)
    assert tuple(ds[0].shape) == (2, 46, 56, 46)


# ----------------------------------------------------------------------------- formats
def test_array_dataset_items_are_float32_pairs(cohort):
    ds = PairedVolumes(cohort, target_shape=(12, 16, 12))
    item = ds[2]
    assert isinstance(item, torch.Tensor) and item.dtype == torch.float32
    assert tuple(item.shape) == (2, 12, 16, 12)
    expected = pad_or_crop(preprocess_volume(cohort[2, 1], target_shape=None), (12, 16, 12))
    # the same float64 z-score rounded to float32 (measured identical): allow one float32
    # rounding, U32 max|z| = 1.1e-7 (old atol 1e-6)
    np.testing.assert_allclose(item[1].numpy(), expected, atol=U32 * np.abs(expected).max())
    assert list(ds.subject_ids) == [0, 1, 2, 3]


def test_bids_tree_loads_same_arrays_as_memory(cohort, tmp_path):
    ids = ["01", "02", "03", "04"]
    root = _bids(tmp_path / "bids", cohort, ids)
    pairs = pairs_from_bids(root)
    assert list(pairs.index) == ids and list(pairs.columns[:2]) == ["t1", "t2"]
    from_files = PairedVolumes(pairs, target_shape=(12, 16, 12), downsample=2)
    in_memory = PairedVolumes(cohort, target_shape=(12, 16, 12), downsample=2)
    assert list(from_files.subject_ids) == ids
    # float32 NIfTI round trip is lossless; the same preprocessing then differs by at most
    # one float32 rounding of the z-score plus the 8-term float32 block mean: (U32 +
    # 2 gamma_9) max|z| ~ 2e-6 worst case (old atol 1e-6; measured identical)
    mem = in_memory.to_array()
    np.testing.assert_allclose(from_files.to_array(), mem,
                               atol=(U32 + 2 * _gamma(9, U32)) * np.abs(mem).max())


def test_bids_sessions_flair_and_uncompressed(cohort, tmp_path):
    ids = ["a", "a", "b", "b"]
    root = _bids(tmp_path / "bids", cohort, ids, sessions=["1", "2", "1", "2"],
                 t2_suffix="FLAIR", ext=".nii")
    pairs = pairs_from_bids(root, t2_suffix="FLAIR")
    assert list(pairs.index) == ["a_1", "a_2", "b_1", "b_2"]
    assert set(pairs["session"]) == {"1", "2"}
    ds = PairedVolumes(pairs, target_shape=None)
    ref = preprocess_volume(cohort[3, 0], None)
    # lossless float32 NIfTI; one float32 rounding of the z-score at most (old atol 1e-6)
    np.testing.assert_allclose(ds.get_array(3)[0], ref, atol=U32 * np.abs(ref).max())


def test_bids_reports_subjects_missing_a_modality(cohort, tmp_path):
    root = _bids(tmp_path / "bids", cohort[:2], ["01", "02"])
    _write(root / "sub-03" / "anat" / "sub-03_T1w.nii.gz", cohort[2, 0])
    with pytest.warns(UserWarning, match=r"only one modality.*03 \(no T2\)"):
        pairs = pairs_from_bids(root)
    assert list(pairs.index) == ["01", "02"]
    assert pairs.attrs["incomplete"] == ["03 (no T2)"]
    with pytest.raises(ValueError, match="03"):
        pairs_from_bids(root, on_incomplete="raise")


def test_dataloader_with_workers_and_pickle(cohort, tmp_path):
    root = _bids(tmp_path / "bids", cohort, ["01", "02", "03", "04"])
    ds = PairedVolumes(pairs_from_bids(root), target_shape=(12, 16, 12), cache_dir=tmp_path / "c")
    ds2 = pickle.loads(pickle.dumps(ds))
    assert list(ds2.subject_ids) == list(ds.subject_ids)
    batches = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert [tuple(b.shape) for b in batches] == [(2, 2, 12, 16, 12)] * 2
    stacked = torch.cat(batches).numpy()
    # cache is float16: one rounding, <= U16 relative (x2: either side may be the rounded
    # one) or 2^-25 absolute in the subnormal range. Old: atol=5e-3 (~6x U16 max|z|)
    np.testing.assert_allclose(stacked, ds.to_array(), rtol=2 * U16,
                               atol=F16_SUBNORMAL_HALF_SPACING)


# ----------------------------------------------------------------------------- cache
def test_cache_serves_second_pass_without_decoding(cohort, tmp_path, monkeypatch):
    root = _bids(tmp_path / "bids", cohort, ["01", "02", "03", "04"])
    pairs = pairs_from_bids(root)
    ds = PairedVolumes(pairs, target_shape=None, cache_dir=tmp_path / "cache")
    first = ds.to_array()
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 8

    import hcl_sklearn.data.volumes as volumes

    def _no_decode(*args, **kwargs):
        raise AssertionError("NIfTI decoded although the cache holds the volume")

    monkeypatch.setattr(volumes, "_read_nifti", _no_decode)
    second = ds.to_array()
    # the cache is float16: one rounding, <= U16 relative (x2: either side may be the rounded
    # one) or 2^-25 absolute for subnormals. Old: atol=2e-3 max|first| (~4x U16 max|z|)
    np.testing.assert_allclose(second, first, rtol=2 * U16, atol=F16_SUBNORMAL_HALF_SPACING)


def test_cache_is_invalidated_by_new_file_or_settings(cohort, tmp_path):
    root = _bids(tmp_path / "bids", cohort[:1], ["01"])
    pairs = pairs_from_bids(root)
    cache = tmp_path / "cache"
    a = PairedVolumes(pairs, target_shape=None, cache_dir=cache).get_array(0)
    # other settings -> other entries
    PairedVolumes(pairs, target_shape=None, downsample=2, cache_dir=cache).get_array(0)
    assert len(list(cache.glob("*.npy"))) == 4
    # rewrite T1 with other content and a new mtime -> new entry, new values
    path = pairs["t1"].iloc[0]
    _write(tmp_path / "tmp.nii.gz", cohort[0, 0][::-1].copy())
    os.replace(tmp_path / "tmp.nii.gz", path)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    b = PairedVolumes(pairs, target_shape=None, cache_dir=cache).get_array(0)
    # the flipped volume differs by O(1) z-score units; 1e-2 is 10x the float16 cache
    # rounding (U16 x max|z| ~ 1e-3), so only new content can make it fail
    assert not np.allclose(a[0], b[0], atol=1e-2)


# ----------------------------------------------------------------------------- bad input
def test_shape_mismatch_between_t1_and_t2(tmp_path):
    rng = np.random.default_rng(4)
    t1 = _write(tmp_path / "s1_t1.nii.gz", _brain(rng, (10, 10, 10)))
    t2 = _write(tmp_path / "s1_t2.nii.gz", _brain(rng, (10, 12, 10)))
    with pytest.raises(VolumeError, match=r"subject 's1'.*T1 shape \(10, 10, 10\).*T2 shape \(10, 12, 10\)"):
        PairedVolumes(pd.DataFrame({"t1": [t1], "t2": [t2]}, index=["s1"]))


def test_four_d_image(tmp_path):
    rng = np.random.default_rng(5)
    t1 = _write(tmp_path / "t1.nii.gz", np.stack([_brain(rng, (8, 8, 8))] * 3, axis=-1))
    t2 = _write(tmp_path / "t2.nii.gz", _brain(rng, (8, 8, 8)))
    with pytest.raises(VolumeError, match=r"subject 'x', T1.*t1.nii.gz.*\(8, 8, 8, 3\).*4-D"):
        PairedVolumes(pd.DataFrame({"t1": [t1], "t2": [t2]}, index=["x"]))


def test_non_finite_voxels_name_subject():
    rng = np.random.default_rng(6)
    X = np.stack([np.stack([_brain(rng, (8, 8, 8))] * 2) for _ in range(2)])
    X[1, 1, 4, 4, 4] = np.nan
    ds = PairedVolumes(X, target_shape=None, subject_ids=["ok", "bad"])
    ds.get_array(0)
    with pytest.raises(VolumeError, match=r"subject 'bad', T2.*1 non-finite voxel"):
        ds.get_array(1)


def test_all_zero_image(tmp_path):
    rng = np.random.default_rng(7)
    t1 = _write(tmp_path / "t1.nii", _brain(rng, (8, 8, 8)))
    t2 = _write(tmp_path / "t2.nii", np.zeros((8, 8, 8), np.float32))
    ds = PairedVolumes(pd.DataFrame({"t1": [t1], "t2": [t2]}, index=["z"]), target_shape=None)
    with pytest.raises(VolumeError, match=r"subject 'z', T2.*t2.nii.*all zeros"):
        ds[0]


def test_missing_file(tmp_path):
    rng = np.random.default_rng(8)
    t1 = _write(tmp_path / "t1.nii.gz", _brain(rng, (8, 8, 8)))
    with pytest.raises(FileNotFoundError, match=r"subject 'm', T2.*nope.nii.gz.*not found"):
        PairedVolumes(pd.DataFrame({"t1": [t1], "t2": [str(tmp_path / "nope.nii.gz")]},
                                   index=["m"]))


def test_corrupt_file(tmp_path):
    rng = np.random.default_rng(9)
    t1 = _write(tmp_path / "t1.nii.gz", _brain(rng, (8, 8, 8)))
    bad = tmp_path / "t2.nii.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(b"this is not a nifti header" * 4)
    with pytest.raises(VolumeError, match=r"subject 'c', T2.*t2.nii.gz.*corrupt"):
        PairedVolumes(pd.DataFrame({"t1": [t1], "t2": [str(bad)]}, index=["c"]))


def test_truncated_file_fails_on_read(tmp_path):
    rng = np.random.default_rng(10)
    t1 = _write(tmp_path / "t1.nii", _brain(rng, (16, 16, 16)))
    t2 = _write(tmp_path / "t2.nii", _brain(rng, (16, 16, 16)))
    size = os.path.getsize(t2)
    with open(t2, "r+b") as fh:
        fh.truncate(size // 2)
    ds = PairedVolumes(pd.DataFrame({"t1": [t1], "t2": [t2]}, index=["t"]), target_shape=None)
    with pytest.raises(VolumeError, match=r"subject 't', T2.*corrupt or truncated"):
        ds[0]


def test_duplicated_subject_ids(tmp_path):
    df = pd.DataFrame({"t1": ["a.nii", "b.nii"], "t2": ["c.nii", "d.nii"]}, index=["s1", "s1"])
    with pytest.raises(ValueError, match=r"duplicated subject ids: \['s1'\]"):
        PairedVolumes(df)


def test_empty_input():
    with pytest.raises(ValueError, match="empty input"):
        PairedVolumes(np.zeros((0, 2, 4, 4, 4)))
    with pytest.raises(ValueError, match="empty input"):
        PairedVolumes(pd.DataFrame({"t1": [], "t2": []}))


def test_wrong_column_names():
    df = pd.DataFrame({"T1": ["a.nii"], "FLAIR": ["b.nii"]}, index=["s"])
    with pytest.raises(ValueError, match=r"wrong column names.*'t1' and 't2'.*\['T1', 'FLAIR'\]"):
        PairedVolumes(df)


@pytest.mark.parametrize("shape", [(3, 8, 8, 8), (3, 3, 8, 8, 8), (2, 2, 8, 8)])
def test_wrong_array_rank(shape):
    with pytest.raises(ValueError, match=r"\(n_subjects, 2, D, H, W\).*got shape"):
        PairedVolumes(np.ones(shape, np.float32))


def test_wrong_type_and_bad_settings(cohort):
    with pytest.raises(TypeError, match="ndarray"):
        PairedVolumes("not volumes")
    with pytest.raises(ValueError, match="downsample"):
        PairedVolumes(cohort, downsample=0)
    with pytest.raises(ValueError, match="target_shape"):
        PairedVolumes(cohort, target_shape=(4, 4))

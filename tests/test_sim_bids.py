"""write_cohort: the files read back (pairs_from_bids, bed_reader, pandas) equal the cohort.

Tolerances (docs/testing.md): NIfTI stores the affine (sform) and the voxel sizes
(pixdim) as float32, and the float32 covariate columns (PCs) are written by pandas with
the shortest repr that round-trips to float32; read back as float64 they are within
half a float32 ulp, 2^-24 = 6e-8 relative (measured 3.5e-8 and 4.8e-8); asserted one ulp,
2^-23. float64 columns round-trip exactly (repr), default rtol 1e-7 (measured 0).
"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bed_reader import open_bed

from hcl_sklearn.datasets import make_paired_cohort, write_cohort
from hcl_sklearn.data.volumes import PairedVolumes, pairs_from_bids


@pytest.fixture(scope="module")
def cohort():
    return make_paired_cohort(n_subjects=6, shape=(16, 20, 16), n_pcs=3, random_state=4)


def test_round_trip(cohort, tmp_path):
    b = cohort
    root = write_cohort(b, tmp_path / "bids")
    pairs = pairs_from_bids(root)
    assert pairs.index.tolist() == b.subject_ids.tolist()
    from_files = PairedVolumes(pairs, target_shape=None).to_array()
    from_array = PairedVolumes(b.X, target_shape=None).to_array()
    np.testing.assert_array_equal(from_files, from_array)
    # raw voxels and the affine are kept too
    img = nib.load(pairs["t2"].iloc[2])
    np.testing.assert_array_equal(np.asarray(img.dataobj), b.X[2, 1])
    np.testing.assert_allclose(img.affine, b.affine, rtol=2.0 ** -23)  # float32 sform
    np.testing.assert_allclose(img.header.get_zooms(), np.diag(b.affine)[:3],
                               rtol=2.0 ** -23)  # float32 pixdim (was rtol 1e-6)

    with open_bed(str(root / "genotypes.bed")) as bed:
        G = bed.read(dtype="int8")
        assert bed.iid.tolist() == b.subject_ids.tolist()
        assert bed.sid.tolist() == b.snps["id"].tolist()
        assert bed.allele_1.tolist() == b.snps["a1"].tolist()
        assert bed.allele_2.tolist() == b.snps["a2"].tolist()
        assert bed.bp_position.tolist() == b.snps["pos"].tolist()
        assert set(bed.chromosome) == {"22"}
    np.testing.assert_array_equal(G, b.genotypes)

    cov = pd.read_csv(root / "covariates.tsv", sep="\t", index_col=0, dtype={0: str})
    assert cov.index.tolist() == b.subject_ids.tolist()
    np.testing.assert_allclose(cov.to_numpy(), b.covariates.to_numpy(), rtol=2.0 ** -23)
    ph = pd.read_csv(root / "phenotypes.tsv", sep="\t", index_col=0, dtype={0: str})
    np.testing.assert_allclose(ph["age"], b.age)
    np.testing.assert_array_equal(ph["disorder"], b.disorder)
    np.testing.assert_allclose(ph["factor_t2_wmh"], b.truth.factor_values["t2_wmh"])
    desc = json.loads((root / "dataset_description.json").read_text())
    assert {"Name", "BIDSVersion"} <= set(desc)
    part = pd.read_csv(root / "participants.tsv", sep="\t")
    assert part["participant_id"].tolist() == ["sub-" + s for s in b.subject_ids]
    causal = pd.read_csv(root / "truth_causal.tsv", sep="\t")
    assert causal["variant_id"].tolist() == b.truth.causal["variant_id"].tolist()


def test_refuses_non_empty_folder_and_bad_ids(cohort, tmp_path):
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        write_cohort(cohort, tmp_path)
    bad = make_paired_cohort(n_subjects=3, shape=None, n_pcs=0, random_state=0)
    bad.subject_ids = pd.Index(["sub-1", "a_2", "ok3"])
    with pytest.raises(ValueError, match="2 subject id"):
        write_cohort(bad, tmp_path / "new")
    with pytest.raises(TypeError, match="make_paired_cohort"):
        write_cohort({"X": None}, tmp_path / "new2")


def test_genetic_only_cohort_writes_no_images(tmp_path):
    b = make_paired_cohort(n_subjects=4, shape=None, n_pcs=0, random_state=0)
    root = write_cohort(b, tmp_path)
    assert not list(root.glob("sub-*"))
    with open_bed(str(root / "genotypes.bed")) as bed:
        np.testing.assert_array_equal(bed.read(dtype="int8"), b.genotypes)

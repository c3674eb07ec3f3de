"""Simulator anatomy and contrast: real template, tissue ordering, invertible deformations."""

import numpy as np
import pytest

from hcl_sklearn.datasets import make_paired_cohort
from hcl_sklearn.datasets.anatomy import affine_for_shape, template_tissues

SHAPE = (24, 28, 24)


@pytest.fixture(scope="module")
def cohort():
    return make_paired_cohort(n_subjects=24, shape=SHAPE, return_tissues=True,
                              return_displacement=True, random_state=3)


def test_template_matches_nilearn_resampling():
    """The tissue maps are nilearn's MNI152 maps: compare with nilearn.image.resample_img."""
    from nilearn import datasets, image

    shape = (46, 55, 46)
    maps = template_tissues(shape)
    for name, loader in (("gm", datasets.load_mni152_gm_template),
                         ("wm", datasets.load_mni152_wm_template)):
        ref = image.resample_img(loader(resolution=1), target_affine=affine_for_shape(shape),
                                 target_shape=shape, interpolation="continuous",
                                 force_resample=True, copy_header=True).get_fdata()
        r = np.corrcoef(maps[name].ravel(), ref.ravel())[0, 1]
        assert r > 0.95, (name, r)
    inside = maps["mask"] > 0.5
    total = maps["gm"] + maps["wm"] + maps["csf"]
    np.testing.assert_allclose(total[inside], maps["mask"][inside], atol=1e-5)
    # ~1.4 l of grey + white matter, as in an adult brain
    litres = (maps["gm"] + maps["wm"]).sum() * np.prod(np.diag(affine_for_shape(shape))[:3]) / 1e6
    assert 1.0 < litres < 1.8


def test_tissue_ordering_every_subject(cohort):
    t = cohort.tissues
    for i in range(len(cohort.subject_ids)):
        labels = {name: t[i, c] > 0.6 for c, name in enumerate(cohort.tissue_names)}
        t1 = {k: cohort.X[i, 0][v].mean() for k, v in labels.items()}
        t2 = {k: cohort.X[i, 1][v].mean() for k, v in labels.items()}
        assert t1["wm"] > t1["gm"] > t1["csf"], (i, t1)
        assert t2["csf"] > t2["gm"] > t2["wm"], (i, t2)


def test_background_zero_brain_nonzero(cohort):
    X = cohort.X
    assert X.dtype == np.float32 and X.shape == (24, 2, *SHAPE)
    brain = cohort.tissues.sum(axis=1) > 0
    for c in range(2):
        assert np.all(X[:, c][~brain] == 0)
        assert np.all(X[:, c][brain] > 0)
    # T1 and T2 share the same (warped) brain mask, and it differs between subjects
    assert np.array_equal(X[:, 0] != 0, X[:, 1] != 0)
    assert not np.array_equal(X[0, 0] != 0, X[1, 0] != 0)


def test_deformations_smooth_and_invertible(cohort):
    u = cohort.displacement.astype(np.float64)
    vs = np.diag(cohort.affine)[:3]
    assert np.abs(u).max() > 1.0  # subjects are really deformed (mm)
    for i in range(len(u)):
        grad = np.stack([np.stack(np.gradient(u[i, c], *vs)) for c in range(3)])  # (c, a, ...)
        jac = np.moveaxis(grad, (0, 1), (-2, -1)) + np.eye(3)
        det = np.linalg.det(jac)
        assert det.min() > 0, (i, det.min())
        # smooth: neighbouring voxels' displacements differ by < 1 voxel
        assert np.abs(grad).max() < 1.0


def test_factor_signals_reach_the_right_modality():
    b = make_paired_cohort(n_subjects=60, shape=SHAPE, return_tissues=True, n_causal=10,
                           random_state=5)
    fv = b.truth.factor_values
    wm = b.tissues[:, 1] > 0.6
    csf = b.tissues[:, 2]
    gm = b.tissues[:, 0] > 0.6

    # periventricular region (within 30 mm of the lateral ventricles' centre, MNI mm)
    axes = [b.affine[a, a] * np.arange(n) + b.affine[a, 3] for a, n in enumerate(SHAPE)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    near = np.sqrt(x ** 2 + (y + 14) ** 2 + (z - 15) ** 2) < 30

    def contrast(c, region=True):  # WM / GM intensity ratio (global scale cancels)
        return np.array([b.X[i, c][wm[i] & region].mean() / b.X[i, c][gm[i]].mean()
                         for i in range(len(fv))])

    r = lambda a, b_: np.corrcoef(a, b_)[0, 1]  # noqa: E731
    # T2-only hyperintensity load: seen in periventricular T2 WM, not in T1
    assert r(fv["t2_wmh"], contrast(1, near)) > 0.7
    assert abs(r(fv["t2_wmh"], contrast(0, near))) < 0.35
    # T1-only myelination: seen in T1 WM, not in T2
    assert r(fv["t1_myelin"], contrast(0)) > 0.5
    assert abs(r(fv["t1_myelin"], contrast(1))) < 0.35
    # age enlarges the ventricles and thins the cortex: more CSF
    assert r(fv["age"], csf.sum(axis=(1, 2, 3))) > 0.5
    # the disorder enlarges the ventricles beyond age: t statistic of disorder in
    # periventricular CSF ~ 1 + age + disorder (OLS)
    y_csf = csf[:, near].sum(axis=1)
    design = np.column_stack([np.ones(len(fv)), fv["age"], b.disorder])
    coef, *_ = np.linalg.lstsq(design, y_csf, rcond=None)
    resid = y_csf - design @ coef
    dof = len(fv) - design.shape[1]
    se = np.sqrt(resid @ resid / dof * np.linalg.inv(design.T @ design).diagonal())
    assert coef[2] / se[2] > 2.0
    assert b.truth.factors.loc["t2_wmh", "modalities"] == ("t2",)
    assert b.truth.factors.loc["shape_1", "modalities"] == ("t1", "t2")

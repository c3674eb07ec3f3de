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
    """The tissue maps are nilearn's MNI152 maps: compare with nilearn.image.resample_img.

    Measured r (deterministic; Haswell and SkylakeX agree to 1e-10): GM 0.9748, WM 0.9804;
    asserted > 0.95. The maps are float32: GM + WM + CSF against the mask is three
    float32 roundings of values <= 1 (gamma_3 = 1.8e-7) plus the mask's own (6e-8);
    measured max 6.0e-8; asserted atol 2.4e-7 = 4 x 2^-24 (was 1e-5). GM + WM volume
    measured 1.68 l, above a typical native adult brain (~1.1-1.3 l of GM + WM): the
    MNI152 template is larger than an average native brain; (1.0, 1.8) l is a
    plausibility range, not a fit.
    """
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
    np.testing.assert_allclose(total[inside], maps["mask"][inside], atol=4 * 2.0 ** -24)
    # 1.68 l of grey + white matter in MNI space (docstring)
    litres = (maps["gm"] + maps["wm"]).sum() * np.prod(np.diag(affine_for_shape(shape))[:3]) / 1e6
    assert 1.0 < litres < 1.8


def test_tissue_ordering_every_subject(cohort):
    t = cohort.tissues
    for i in range(len(cohort.subject_ids)):
        # voxels > 0.6 of one tissue (a majority label, not a tolerance); strict ordering
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
        assert det.min() > 0, (i, det.min())  # invertible: a sign, no tolerance
        # smooth: neighbouring voxels' displacements differ by < 1 voxel (a definition)
        assert np.abs(grad).max() < 1.0


def test_factor_signals_reach_the_right_modality():
    """Each factor shows in its modality and not in the other.

    Correlations over 60 subjects: the SE of a null r is 1 / sqrt(59) = 0.13. Measured
    over simulator seeds 5 (the test's) to 19, identical under OPENBLAS_CORETYPE=Haswell
    and SkylakeX (seeds 5-9; 10-19 Haswell):

    ========================= ================= ============ =========
    quantity                  seeds 5-19 range  seed 5       asserted
    ========================= ================= ============ =========
    r(t2_wmh, T2 contrast)    0.890 .. 0.929    0.917        > 0.7
    r(t2_wmh, T1 contrast)    -0.299 .. +0.120  -0.107       |r| < 0.35
    r(t1_myelin, T1)          0.682 .. 0.816    0.735        > 0.5
    r(t1_myelin, T2)          -0.214 .. +0.150  -0.007       |r| < 0.35
    r(age, CSF volume)        0.981 .. 0.999    0.990        > 0.5
    t(disorder | age), df 57  2.85 .. 7.21      2.85         > 2.0
    ========================= ================= ============ =========

    The |r| < 0.35 bounds are 2.7 null SEs (two-sided 0.7%); the worst seeds (7, 16:
    -0.30, -0.29) clear it by 0.05, seed 5 by 0.24 (1.9 SE). The positive bounds clear
    the worst seed by >= 0.18 in r. t > 2.0 is a one-sided test at ~2.5% (df 57); the
    test's seed is the lowest measured, 0.85 above.
    """
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

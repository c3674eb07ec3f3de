"""Alignment metrics against closed forms, sklearn's CCA and direct formulas.

Tolerances. Closed-form comparisons are float64 roundoff: every quantity is a ratio of
sums of n <= 625 products (HSIC traces, covariances), each within ``gamma_n = n u /
(1 - n u)`` (u = 2^-53 = 1.1e-16; Higham, Lemma 3.1) of the sum of |terms|, passed
through well-conditioned 3..25-dim SVD/eigh/sqrtm steps (condition numbers <= 13 here).
That gives errors of order 1e-14; measured (OpenBLAS Haswell,
SkylakeX, Sandybridge, 1 thread) every closed-form difference is <= 6e-15, so the
``rel=1e-10``/``1e-12`` tolerances below hold with >= 100x spare under any kernel.
``pytest.approx`` without arguments is its default rel=1e-6, used only where the two
sides are the same float64 computation (an equality guard far above roundoff).

Statistical thresholds were set from a spread over 10 seeds (the test's seed and
100..108) under OPENBLAS_CORETYPE=Haswell and SkylakeX, and rechecked over 34 seeds
(0..13, 200..219) under Haswell, SkylakeX and Sandybridge ("44 seeds" below: both sets);
the kernels agree to <= 3e-15 on every such quantity, so only the seed spread matters.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from scipy.stats import ortho_group
from sklearn.cross_decomposition import CCA

from hcl_sklearn.evaluation.metrics import (
    cca_correlations,
    linear_cka,
    mean_cca_correlation,
    rbf_cka,
    retrieval_ranks,
    retrieval_scores,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --------------------------------------------------------------------------- retrieval
def test_retrieval_of_a_permutation_gives_known_ranks():
    # A is the identity: row i is e_i. B row i = e_{perm[i]}; the candidate most similar
    # to A[i] is B[perm^-1[i]], and the true partner B[i] ties with every other
    # orthogonal candidate at similarity 0 -> pessimistic rank n unless perm[i] == i.
    n = 6
    A = np.eye(n)
    perm = np.array([0, 2, 1, 3, 5, 4])  # fixes 0 and 3
    B = A[perm]
    r_ab, r_ba = retrieval_ranks(A, B)
    expected = np.where(perm == np.arange(n), 1, n)
    np.testing.assert_array_equal(r_ab, expected)
    np.testing.assert_array_equal(r_ba, expected)
    s = retrieval_scores(A, B, ks=(1, 2, 6))
    # ratios of small integers: the float64 results are within a few u of the fractions;
    # approx's default rel=1e-6 is only a float-equality guard
    assert s["top1"] == pytest.approx(2 / 6)
    assert s["recall@2"] == pytest.approx(2 / 6)
    assert s["recall@6"] == 1.0
    assert s["median_rank"] == 6.0
    assert s["mean_rank"] == pytest.approx((2 * 1 + 4 * 6) / 6)
    assert s["chance_top1"] == pytest.approx(1 / 6)


def test_retrieval_graded_ranks_hand_computed():
    # 1-d angles on the circle: candidate similarities are cosines of angle gaps.
    ang = np.array([0.0, 0.3, 1.0, 2.0])
    A = np.c_[np.cos(ang), np.sin(ang)]
    shift = np.array([0.0, 0.5, 0.0, 0.0])  # subject 1's partner rotated towards subject 2
    B = np.c_[np.cos(ang + shift), np.sin(ang + shift)]
    # query A1 (0.3): gaps to B = |0-0.3|=.3, |0.8-0.3|=.5, |1-0.3|=.7, 1.7 -> partner B1 rank 2
    # query B1 (0.8): gaps to A = .8, .5, .2, 1.2 -> partner A1 rank 2
    r_ab, r_ba = retrieval_ranks(A, B)
    np.testing.assert_array_equal(r_ab, [1, 2, 1, 1])
    np.testing.assert_array_equal(r_ba, [1, 2, 1, 1])
    s = retrieval_scores(A, B, ks=(1,))
    assert s["a2b_top1"] == 0.75 and s["a2b_mean_rank"] == 1.25


def test_retrieval_is_cosine_and_chunking_does_not_change_it(rng):
    A = rng.normal(size=(37, 5))
    B = A + 0.8 * rng.normal(size=A.shape)
    scale = rng.uniform(0.1, 10, size=(37, 1))
    ref = retrieval_ranks(A, B)
    for got in (retrieval_ranks(A * scale, B, chunk_size=4), retrieval_ranks(A, B, chunk_size=1)):
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    # brute-force reference with explicit cosine similarity
    cos = (A / np.linalg.norm(A, axis=1, keepdims=True)) @ (
        B / np.linalg.norm(B, axis=1, keepdims=True)).T
    brute = np.array([1 + np.sum(np.delete(cos[i], i) >= cos[i, i]) for i in range(37)])
    np.testing.assert_array_equal(ref[0], brute)


def test_collapsed_embeddings_get_worst_rank_not_top1():
    A = np.ones((10, 3))
    s = retrieval_scores(A, A)
    assert s["top1"] == 0.0 and s["median_rank"] == 10.0


def test_random_embeddings_retrieval_near_chance(rng):
    """Chance top-1 is 1/400 = 0.0025, binomial SE over the 800 queries (both directions)
    sqrt(0.0025 / 800) = 0.0018: 0.03 is 15 SE above chance. Uniform ranks on 1..400: the
    median of 400 ranks per direction has SE 0.5 * 400 / sqrt(400) = 10, so 150..250 is
    +-5 SE. Measured over 44 seeds: top1 0 .. 0.010 (seed 0: 0.0013), median_rank
    179.8 .. 226.2 (SD 10.5, as predicted; seed 0: 196); kernels agree exactly."""
    A, B = rng.normal(size=(2, 400, 16))
    s = retrieval_scores(A, B)
    assert s["top1"] < 0.03
    assert 150 < s["median_rank"] < 250  # uniform ranks on 1..400 have median ~200


@pytest.mark.parametrize(
    "A, B, exc, match",
    [
        (np.zeros((5, 3)), np.zeros((4, 3)), ValueError, "5 rows in A and 4 rows in B"),
        (np.zeros((5, 3)), np.zeros((5, 4)), ValueError, "same number of features"),
        (np.zeros((5, 3, 2)), np.zeros((5, 3, 2)), ValueError, "must be 2-D"),
        (np.full((5, 3), np.nan), np.zeros((5, 3)), ValueError, "non-finite"),
        (np.array([["a"]]), np.zeros((1, 1)), TypeError, "numeric array"),
        (np.zeros((1, 3)), np.zeros((1, 3)), ValueError, "at least 2"),
    ],
)
def test_retrieval_bad_input(A, B, exc, match):
    with pytest.raises(exc, match=match):
        retrieval_scores(A, B)


def test_retrieval_bad_ks():
    with pytest.raises(ValueError, match="ks must be"):
        retrieval_scores(np.eye(3), np.eye(3), ks=(0,))


def test_accepts_dataframes_and_tensors(rng):
    import torch

    A = rng.normal(size=(20, 4))
    B = A + rng.normal(size=A.shape)
    ref = linear_cka(A, B)
    # the same float64 values through the same code: identical up to roundoff of sums
    # of 20 terms (gamma_20 = 2.2e-15); rel=1e-12 leaves 400x spare
    assert linear_cka(pd.DataFrame(A), torch.from_numpy(B)) == pytest.approx(ref, rel=1e-12)
    assert retrieval_scores(pd.DataFrame(A), torch.from_numpy(B)) == retrieval_scores(A, B)


# --------------------------------------------------------------------------- CKA
def test_linear_cka_one_feature_is_squared_pearson(rng):
    x = rng.normal(size=50)
    y = 0.5 * x + rng.normal(size=50)
    r = np.corrcoef(x, y)[0, 1]
    # float64: sums of 50 products, gamma_50 = 5.6e-15 relative to sum|x y| (~2.5x
    # |sum x y| here, r = 0.45); r^2 doubles it: ~3e-14. Measured 1.2e-15 (3 kernels)
    assert linear_cka(x[:, None], y[:, None]) == pytest.approx(r**2, rel=1e-12)


def test_linear_cka_matches_gram_formula(rng):
    # independent reference: HSIC with explicit centring matrix H and Gram matrices
    n = 25
    A = rng.normal(size=(n, 4))
    B = A[:, :2] @ rng.normal(size=(2, 7)) + rng.normal(size=(n, 7))
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ A @ A.T @ H, H @ B @ B.T @ H
    ref = np.trace(K @ L) / np.sqrt(np.trace(K @ K) * np.trace(L @ L))
    # traces of products of 25 x 25 matrices: sums of 25^2 = 625 terms, gamma_625 = 7e-14
    # (times the cancellation of centring); measured 2e-16 (3 kernels)
    assert linear_cka(A, B) == pytest.approx(ref, rel=1e-10)
    # d > n takes the Gram branch internally; compare with the feature formula
    W = rng.normal(size=(n, 60))
    Ac, Wc = A - A.mean(0), W - W.mean(0)
    feat = np.linalg.norm(Ac.T @ Wc) ** 2 / (
        np.linalg.norm(Ac.T @ Ac) * np.linalg.norm(Wc.T @ Wc))
    # same roundoff scale (sums of <= 60 x 25 terms, gamma_1500 = 1.7e-13); measured 4e-16
    assert linear_cka(A, W) == pytest.approx(feat, rel=1e-10)


@pytest.mark.parametrize("cka", [linear_cka, rbf_cka])
def test_cka_invariances(cka, rng):
    A = rng.normal(size=(40, 6))
    B = np.tanh(A @ rng.normal(size=(6, 5))) + 0.3 * rng.normal(size=(40, 5))
    ref = cka(A, B)
    # a non-trivial value (not 0, not 1): over 44 seeds linear 0.46 .. 0.69,
    # rbf 0.55 .. 0.73 (seed 0: 0.51, 0.55)
    assert 0.05 < ref < 0.999
    # invariances below are float64 roundoff: sums of 40 terms (gamma_40 = 4.4e-15)
    # through a 6 x 6 orthogonal map; measured <= 9e-16 relative (3 kernels)
    Q = ortho_group.rvs(6, random_state=1)
    assert cka(A @ Q, B) == pytest.approx(ref, rel=1e-10)  # orthogonal transform
    assert cka(7.5 * A, B) == pytest.approx(ref, rel=1e-10)  # isotropic scaling
    assert cka(A + 3.0, B) == pytest.approx(ref, rel=1e-10)  # translation
    assert cka(A, A) == pytest.approx(1.0, abs=1e-12)  # identical inputs
    assert cka(A, B) == pytest.approx(cka(B, A), rel=1e-12)  # symmetric
    # not invariant to an anisotropic stretch (what separates CKA from CCA): the change is
    # 0.12 .. 0.61 over 44 seeds (seed 0: 0.26 linear, 0.30 rbf), 1e-3 is
    # > 100x below the smallest and 10^10 x above roundoff
    assert abs(cka(A * np.r_[10.0, np.ones(5)], B) - ref) > 1e-3


def test_rbf_cka_large_sigma_tends_to_linear(rng):
    A = rng.normal(size=(30, 4))
    B = A @ rng.normal(size=(4, 3)) + rng.normal(size=(30, 3))
    # not roundoff but the Taylor remainder: exp(-d^2 / 2 sigma^2) = 1 - d^2 / 2 sigma^2 +
    # O(d^4 / sigma^4), so the centred kernel differs from -1/2 x the centred squared
    # distances (= the linear Gram) by a relative O(max d^2 / sigma^2) = 142 / 1e8 = 1.4e-6;
    # rel=1e-5 is 7x that. Measured 1.4e-8 (3 kernels)
    assert rbf_cka(A, B, sigma=1e4) == pytest.approx(linear_cka(A, B), rel=1e-5)


def test_rbf_cka_matches_explicit_kernel_loop():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(12, 3))
    B = rng.normal(size=(12, 2)) + A[:, :2]
    sigma = 1.7
    n = len(A)
    K = np.array([[np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2)) for b in A] for a in A])
    L = np.array([[np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2)) for b in B] for a in B])
    H = np.eye(n) - 1.0 / n
    hsic = lambda X, Y: np.trace(X @ H @ Y @ H)
    ref = hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))
    # float64 roundoff of traces of 12 x 12 products (144 terms, gamma_144 = 1.6e-14);
    # measured 2.3e-16 (3 kernels)
    assert rbf_cka(A, B, sigma=sigma) == pytest.approx(ref, rel=1e-10)


def test_cka_of_independent_blocks_is_small(rng):
    """Independent isotropic blocks: E[linear CKA] ~ d / n = 0.006. Measured over 10 seeds
    x {Haswell, SkylakeX}: linear 0.0034 .. 0.0147 (mean 0.0068, SD 0.0039; seed 0:
    0.0049), so 0.02 = mean + 3.4 SD, 1.4x the worst run; rbf 0.0108 .. 0.0229 (mean
    0.0138, SD 0.0040; seed 0: 0.0128), 0.05 = mean + 9 SD. Seeds 200..219 x 3 kernels:
    linear 0.0029 .. 0.0110, rbf 0.0082 .. 0.0160, inside both ranges."""
    A, B = rng.normal(size=(2, 500, 3))
    assert linear_cka(A, B) < 0.02
    assert rbf_cka(A, B) < 0.05


def test_rbf_cka_bad_sigma():
    with pytest.raises(ValueError, match="sigma must be a positive"):
        rbf_cka(np.eye(3), np.eye(3), sigma=0)


# --------------------------------------------------------------------------- CCA
def test_cca_one_feature_is_abs_pearson(rng):
    x = rng.normal(size=80)
    y = -0.7 * x + rng.normal(size=80)
    r = np.corrcoef(x, y)[0, 1]
    # float64 roundoff of 80-term sums (gamma_80 = 8.9e-15); measured 1.8e-16 (3 kernels)
    assert cca_correlations(x, y, reg=0) == pytest.approx([abs(r)], rel=1e-10)


def test_cca_matches_sklearn_cca(rng):
    """sklearn's CCA is iterative (NIPALS, tol=1e-12): measured |difference| <= 1.5e-9
    over 244 seeds (the 44, and 300..499 under the default kernel; median 2e-13, 99th
    percentile 3e-10; seed 0: 6.8e-15; kernels agree to 1.7e-15), hence atol 1e-8 (was
    1e-6), 6.8x the worst seed.
    got[0] > 0.8: for this seed's mixing matrices got[0] = 0.917 and the SE of a
    canonical correlation is ~(1 - r^2) / sqrt(n) = 0.008, so 0.8 is 14 SE below (other
    seeds draw other mixing matrices, hence other true values: 0.67 .. 0.98). got[2] is a
    null canonical correlation (2 noise directions in A against 1 in B): n got[2]^2 is
    ~chi^2_2 (measured mean 1.8 over 200 seeds), so P(got[2] > 0.2) ~ exp(-400 x 0.04 / 2)
    = 3e-4 per seed; measured 0.009 .. 0.164 over 244 seeds (seed 0: 0.080)."""
    n = 400
    Z = rng.normal(size=(n, 2))
    A = np.c_[Z, rng.normal(size=(n, 2))] @ rng.normal(size=(4, 4))
    B = np.c_[Z @ np.diag([1.0, 0.5]), rng.normal(size=(n, 1))] @ rng.normal(size=(3, 3))
    B += 0.5 * rng.normal(size=B.shape)
    cca = CCA(n_components=3, scale=False, max_iter=5000, tol=1e-12).fit(A, B)
    xs, ys = cca.transform(A, B)
    ref = [abs(np.corrcoef(xs[:, k], ys[:, k])[0, 1]) for k in range(3)]
    got = cca_correlations(A, B, reg=0)
    np.testing.assert_allclose(got, ref, atol=1e-8)  # NIPALS convergence, see docstring
    assert got[0] > 0.8 and got[2] < 0.2  # two shared signals, one not
    assert mean_cca_correlation(A, B, n_components=2) == pytest.approx(np.mean(ref[:2]), abs=1e-8)


def test_regularised_cca_matches_direct_covariance_formula(rng):
    # direct formula: singular values of C_aa^-1/2 C_ab C_bb^-1/2 with ridged covariances
    n, da, db, reg = 15, 12, 9, 0.3
    A = rng.normal(size=(n, da))
    B = A[:, :db] + rng.normal(size=(n, db))
    Ac, Bc = A - A.mean(0), B - B.mean(0)

    def shrunk(C):
        return C + reg * np.trace(C) / len(C) * np.eye(len(C))

    Caa, Cbb, Cab = (Ac.T @ Ac / (n - 1), Bc.T @ Bc / (n - 1), Ac.T @ Bc / (n - 1))
    Wa = np.real(scipy.linalg.inv(scipy.linalg.sqrtm(shrunk(Caa))))
    Wb = np.real(scipy.linalg.inv(scipy.linalg.sqrtm(shrunk(Cbb))))
    ref = np.linalg.svd(Wa @ Cab @ Wb, compute_uv=False)
    got = cca_correlations(A, B, reg=reg)
    # float64: covariances of 15-term sums (gamma_15 = 1.7e-15) through the inverse
    # square roots of ridged covariances of condition number <= 13 -> ~1e-13; measured
    # <= 5.7e-15 absolute on correlations 0.12 .. 0.87 (3 kernels)
    np.testing.assert_allclose(got, ref[: len(got)], rtol=1e-8, atol=1e-10)
    # the ridge keeps the correlations away from 1: the largest is 0.870 here
    assert got.max() < 1 - 1e-3


def test_cca_default_is_safe_when_features_exceed_samples(rng):
    # unregularised CCA is degenerate (leading correlations 1) for independent noise
    # once d_a + d_b >= n; the default regularises and says so
    A, B = rng.normal(size=(2, 40, 25))
    # exactly 1 in exact arithmetic (the column spaces intersect); float64 roundoff of 40-term
    # sums (gamma_40 = 4.4e-15) through whitening of covariances of condition ~ ((1 +
    # sqrt(25/40)) / (1 - sqrt(25/40)))^2 = 70 (Marchenko-Pastur): ~3e-13; measured <= 7.8e-16
    # over 10 seeds x 2 kernels; abs=1e-10 (was approx's default rel=1e-6)
    assert cca_correlations(A, B, reg=0)[:10] == pytest.approx(np.ones(10), abs=1e-10)
    with pytest.warns(UserWarning, match="40 samples and 25 \\+ 25 features is ill-posed"):
        noise = mean_cca_correlation(A, B)
    with pytest.warns(UserWarning, match="ill-posed"):
        related = mean_cca_correlation(A, A @ rng.normal(size=(25, 25)))
    # 44 seeds: noise 0.558 .. 0.623 (SD 0.013; seed 0: 0.596), so 0.7 is 6 SD above the
    # worst run; related - noise 0.062 .. 0.134 (mean 0.103, SD 0.016; seed 0: 0.116), so
    # 0.05 = mean - 3.4 SD, cleared by every run (the worst by 0.012)
    assert noise < 0.7
    assert related > noise + 0.05
    assert mean_cca_correlation(A, B, reg=0.1) == noise  # explicit reg: same value, no warning


def test_cca_invariant_to_invertible_transforms(rng):
    A = rng.normal(size=(200, 3))
    B = A[:, :2] + rng.normal(size=(200, 2))
    ref = cca_correlations(A, B)
    M = rng.normal(size=(3, 3))
    # float64: 200-term sums (gamma_200 = 2.2e-14) times cond(M) = 4.3, and the mean
    # shift of 5 costs a factor ~25 in cancellation: ~2e-12; measured <= 4.6e-16
    # relative, and <= 4.4e-16 from 1 for the identical spaces (3 kernels)
    np.testing.assert_allclose(cca_correlations(A @ M + 5, 0.1 * B), ref, rtol=1e-8)
    np.testing.assert_allclose(cca_correlations(A, A @ M), np.ones(3), atol=1e-10)


def test_cca_bad_params():
    A = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="reg must be"):
        cca_correlations(A, A, reg=-0.1)
    with pytest.raises(ValueError, match="n_components must be"):
        mean_cca_correlation(A, A, n_components=0)

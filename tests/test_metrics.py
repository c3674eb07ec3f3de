"""Alignment metrics against closed forms, sklearn's CCA and direct formulas."""

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from scipy.stats import ortho_group
from sklearn.cross_decomposition import CCA

from hcl_sklearn.metrics import (
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
    assert linear_cka(pd.DataFrame(A), torch.from_numpy(B)) == pytest.approx(ref)
    assert retrieval_scores(pd.DataFrame(A), torch.from_numpy(B)) == retrieval_scores(A, B)


# --------------------------------------------------------------------------- CKA
def test_linear_cka_one_feature_is_squared_pearson(rng):
    x = rng.normal(size=50)
    y = 0.5 * x + rng.normal(size=50)
    r = np.corrcoef(x, y)[0, 1]
    assert linear_cka(x[:, None], y[:, None]) == pytest.approx(r**2, rel=1e-12)


def test_linear_cka_matches_gram_formula(rng):
    # independent reference: HSIC with explicit centring matrix H and Gram matrices
    n = 25
    A = rng.normal(size=(n, 4))
    B = A[:, :2] @ rng.normal(size=(2, 7)) + rng.normal(size=(n, 7))
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ A @ A.T @ H, H @ B @ B.T @ H
    ref = np.trace(K @ L) / np.sqrt(np.trace(K @ K) * np.trace(L @ L))
    assert linear_cka(A, B) == pytest.approx(ref, rel=1e-10)
    # d > n takes the Gram branch internally; compare with the feature formula
    W = rng.normal(size=(n, 60))
    Ac, Wc = A - A.mean(0), W - W.mean(0)
    feat = np.linalg.norm(Ac.T @ Wc) ** 2 / (
        np.linalg.norm(Ac.T @ Ac) * np.linalg.norm(Wc.T @ Wc))
    assert linear_cka(A, W) == pytest.approx(feat, rel=1e-10)


@pytest.mark.parametrize("cka", [linear_cka, rbf_cka])
def test_cka_invariances(cka, rng):
    A = rng.normal(size=(40, 6))
    B = np.tanh(A @ rng.normal(size=(6, 5))) + 0.3 * rng.normal(size=(40, 5))
    ref = cka(A, B)
    assert 0.05 < ref < 0.999
    Q = ortho_group.rvs(6, random_state=1)
    assert cka(A @ Q, B) == pytest.approx(ref, rel=1e-10)  # orthogonal transform
    assert cka(7.5 * A, B) == pytest.approx(ref, rel=1e-10)  # isotropic scaling
    assert cka(A + 3.0, B) == pytest.approx(ref, rel=1e-10)  # translation
    assert cka(A, A) == pytest.approx(1.0, abs=1e-12)  # identical inputs
    assert cka(A, B) == pytest.approx(cka(B, A), rel=1e-12)  # symmetric
    # not invariant to an anisotropic stretch (what separates CKA from CCA)
    assert abs(cka(A * np.r_[10.0, np.ones(5)], B) - ref) > 1e-3


def test_rbf_cka_large_sigma_tends_to_linear(rng):
    A = rng.normal(size=(30, 4))
    B = A @ rng.normal(size=(4, 3)) + rng.normal(size=(30, 3))
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
    assert rbf_cka(A, B, sigma=sigma) == pytest.approx(ref, rel=1e-10)


def test_cka_of_independent_blocks_is_small(rng):
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
    assert cca_correlations(x, y, reg=0) == pytest.approx([abs(r)], rel=1e-10)


def test_cca_matches_sklearn_cca(rng):
    n = 400
    Z = rng.normal(size=(n, 2))
    A = np.c_[Z, rng.normal(size=(n, 2))] @ rng.normal(size=(4, 4))
    B = np.c_[Z @ np.diag([1.0, 0.5]), rng.normal(size=(n, 1))] @ rng.normal(size=(3, 3))
    B += 0.5 * rng.normal(size=B.shape)
    cca = CCA(n_components=3, scale=False, max_iter=5000, tol=1e-12).fit(A, B)
    xs, ys = cca.transform(A, B)
    ref = [abs(np.corrcoef(xs[:, k], ys[:, k])[0, 1]) for k in range(3)]
    got = cca_correlations(A, B, reg=0)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert got[0] > 0.8 and got[2] < 0.2  # two shared signals, one not
    assert mean_cca_correlation(A, B, n_components=2) == pytest.approx(np.mean(ref[:2]), abs=1e-6)


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
    np.testing.assert_allclose(got, ref[: len(got)], rtol=1e-8, atol=1e-10)
    assert got.max() < 1 - 1e-3


def test_cca_default_is_safe_when_features_exceed_samples(rng):
    # unregularised CCA is degenerate (leading correlations 1) for independent noise
    # once d_a + d_b >= n; the default regularises and says so
    A, B = rng.normal(size=(2, 40, 25))
    assert cca_correlations(A, B, reg=0)[:10] == pytest.approx(np.ones(10))
    with pytest.warns(UserWarning, match="40 samples and 25 \\+ 25 features is ill-posed"):
        noise = mean_cca_correlation(A, B)
    with pytest.warns(UserWarning, match="ill-posed"):
        related = mean_cca_correlation(A, A @ rng.normal(size=(25, 25)))
    assert noise < 0.7
    assert related > noise + 0.05
    assert mean_cca_correlation(A, B, reg=0.1) == noise  # explicit reg: same value, no warning


def test_cca_invariant_to_invertible_transforms(rng):
    A = rng.normal(size=(200, 3))
    B = A[:, :2] + rng.normal(size=(200, 2))
    ref = cca_correlations(A, B)
    M = rng.normal(size=(3, 3))
    np.testing.assert_allclose(cca_correlations(A @ M + 5, 0.1 * B), ref, rtol=1e-8)
    np.testing.assert_allclose(cca_correlations(A, A @ M), np.ones(3), atol=1e-10)


def test_cca_bad_params():
    A = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="reg must be"):
        cca_correlations(A, A, reg=-0.1)
    with pytest.raises(ValueError, match="n_components must be"):
        mean_cca_correlation(A, A, n_components=0)

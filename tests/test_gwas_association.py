"""The OLS association kernel against numpy lstsq, scipy and mpmath references."""

import mpmath
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hcl_sklearn.datasets import get_1000g_chr22
from hcl_sklearn.genetics import Genotypes
from hcl_sklearn.genetics.gwas import CrossModalGWAS, ols_association, t_log_pvalue
from hcl_sklearn.genetics.gwas.association import RankDeficientCovariatesError, covariate_basis


def _lstsq_reference(g, y, C):
    """Full OLS y ~ 1 + C + g by numpy lstsq: beta, se, t, log10 p of the last column."""
    X = np.column_stack([np.ones(len(y)), C, g])
    coef, rss, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    df = len(y) - X.shape[1]
    se = np.sqrt(rss[0] / df * np.linalg.inv(X.T @ X)[-1, -1])
    t = coef[-1] / se
    with np.errstate(divide="ignore"):  # p underflows to 0 far in the tail
        return coef[-1], se, t, np.log10(2 * stats.t.sf(abs(t), df)), df


def _data(n=150, m=12, p=3, k=3, seed=0):
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, rng.uniform(0.05, 0.5, m), size=(n, m)).astype(float)
    C = np.column_stack([rng.normal(50, 10, n), rng.integers(0, 2, n), rng.normal(size=(n, k - 2))])
    Y = rng.normal(size=(n, p)) + 0.4 * G[:, :p] + 0.02 * C[:, :1]
    return G, Y, C


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_ols_matches_lstsq_per_pair(backend):
    G, Y, C = _data()
    res = ols_association(G, Y, C, backend=backend, device="cpu")
    assert res["df"] == G.shape[0] - C.shape[1] - 2
    for j in range(G.shape[1]):
        for k in range(Y.shape[1]):
            b, se, t, lp, df = _lstsq_reference(G[:, j], Y[:, k], C)
            assert df == res["df"]
            # float64 OLS two ways (QR residualization vs lstsq): roundoff ~ cond * n * eps,
            # ~1e-12 for these well-conditioned designs of a few hundred rows; 1e-10 > 100x
            np.testing.assert_allclose(res["beta"][j, k], b, rtol=1e-10)
            np.testing.assert_allclose(res["se"][j, k], se, rtol=1e-10)
            np.testing.assert_allclose(res["t"][j, k], t, rtol=1e-10)
            # log p: the t error above times |d log p / dt| <= |t| + 1 (Mills ratio)
            np.testing.assert_allclose(res["log10_p"][j, k], lp, rtol=1e-9, atol=1e-12)


def test_ols_without_covariates_is_simple_regression():
    G, Y, _ = _data(seed=1)
    res = ols_association(G, Y)
    r = stats.linregress(G[:, 0], Y[:, 0])
    # scipy's linregress, float64: as above; its p-value (betainc) carries ~1e-10 relative
    np.testing.assert_allclose(res["beta"][0, 0], r.slope, rtol=1e-10)
    np.testing.assert_allclose(res["se"][0, 0], r.stderr, rtol=1e-10)
    np.testing.assert_allclose(10 ** res["log10_p"][0, 0], r.pvalue, rtol=1e-8)


@pytest.mark.parametrize("df", [5, 372, 4987, 40000])
def test_t_log_pvalue_matches_mpmath_down_to_1e_minus_5000(df):
    mpmath.mp.dps = 60
    for t in [0.3, 2.0, 8.0, 40.0, 75.0, 300.0, 5000.0]:
        x = mpmath.mpf(df) / (df + mpmath.mpf(t) ** 2)
        ref = float(mpmath.log(mpmath.betainc(mpmath.mpf(df) / 2, 0.5, 0, x,
                                              regularized=True)))
        got = float(t_log_pvalue(t, df))
        assert np.isfinite(got)
        # mpmath at 50 digits is exact here; scipy's betainc/hyp2f1 are ~1e-14 relative,
        # the analytic tail series ~1e-12: 1e-9 leaves > 1000x
        assert abs(got - ref) <= 1e-9 * max(1.0, abs(ref)), (t, df, got, ref)
    assert np.isnan(t_log_pvalue(np.nan, df))
    # continuity where the two formulas meet (p ~ 1e-290)
    tt = np.linspace(1, 400, 4000)
    lp = t_log_pvalue(tt, df)
    assert np.all(np.diff(lp) < 0)


def test_scipy_agrees_where_p_is_representable():
    t = np.array([0.1, 1.5, 4.0, 12.0, 25.0])
    # both float64 regularized incomplete beta (scipy), ~1e-14 relative; 1e-10 leaves room
    np.testing.assert_allclose(np.exp(t_log_pvalue(t, 300)), 2 * stats.t.sf(t, 300),
                               rtol=1e-10)


def test_rank_deficient_covariates_name_the_columns():
    rng = np.random.default_rng(0)
    C = rng.normal(size=(50, 3))
    C = np.column_stack([C, C[:, 0] + 2 * C[:, 1]])
    with pytest.raises(RankDeficientCovariatesError, match="rank 4 of 5"):
        covariate_basis(C, names=["a", "b", "c", "a_plus_2b"])
    # a constant column is dropped by default, an error on request
    Q = covariate_basis(np.column_stack([C[:, :2], np.ones(50)]), names=["a", "b", "site"])
    assert Q.shape == (50, 3)
    with pytest.raises(ValueError, match=r"'site'\] are constant"):
        covariate_basis(np.column_stack([C[:, :2], np.ones(50)]), names=["a", "b", "site"],
                        policy={"constant": "raise"})
    with pytest.raises(ValueError, match=r"\['age'\] are not finite"):
        covariate_basis(np.array([[1.0], [np.nan], [2.0], [3.0]]), names=["age"])
    with pytest.raises(ValueError, match="cannot fit"):
        covariate_basis(rng.normal(size=(4, 3)))


# ---------------------------------------------------------------- the estimator path


def _estimator_data(seed=3, n=160, m=30):
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), size=(n, m)).astype(float)
    ids = [f"s{i:03d}" for i in range(n)]
    g = Genotypes.from_array(G, ids)
    cov = pd.DataFrame({"age": rng.normal(60, 7, n), "sex": rng.integers(0, 2, n)},
                       index=ids)
    Y = pd.DataFrame(rng.normal(size=(n, 5)), index=ids,
                     columns=["t1_0", "t1_1", "t2_0", "t2_1", "fa_0"])
    Y["t1_0"] += 0.8 * G[:, 3]
    return G, g, cov, Y, rng


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_missingness_patterns_are_exact_per_phenotype(backend):
    G, g, cov, Y, rng = _estimator_data()
    Y.iloc[rng.choice(len(Y), 30, replace=False), 1] = np.nan
    Y.iloc[rng.choice(len(Y), 17, replace=False), 2] = np.nan
    Y.iloc[rng.choice(len(Y), 17, replace=False), 3] = np.nan
    cov.iloc[[5, 9], 0] = np.nan  # dropped for every phenotype (policy missing='drop')
    with pytest.warns(UserWarning, match="2 of 160 subjects have a missing covariate"):
        gwas = CrossModalGWAS(g, covariates=cov, covariate_policy={"missing": "drop"},
                              maf=0.0, block_size=7, backend=backend).fit(Y)
    ss = gwas.sumstats_
    for k, name in enumerate(Y.columns):
        ok = Y[name].notna().to_numpy() & cov.notna().all(axis=1).to_numpy()
        assert gwas.n_samples_[name] == ok.sum()
        for j in (0, 3, 17, 29):
            b, se, t, lp, df = _lstsq_reference(G[ok, j], Y[name].to_numpy()[ok],
                                                cov.to_numpy()[ok])
            row = ss[(ss.phenotype == name) & (ss.variant_id == f"snp{j}")].iloc[0]
            # float64 OLS vs lstsq with per-phenotype missingness: ~1e-12 (as above)
            np.testing.assert_allclose([row.beta, row.standard_error, row.t_stat],
                                       [b, se, t], rtol=1e-9)
            np.testing.assert_allclose(row.neg_log10_p, -lp, rtol=1e-8)
            assert row.n == ok.sum() and gwas.df_[name] == df
            np.testing.assert_allclose(row.effect_allele_frequency, G[ok, j].mean() / 2)


def test_p_below_1e300_is_kept():
    rng = np.random.default_rng(0)
    n = 3000
    G = rng.binomial(2, 0.4, size=(n, 3)).astype(float)
    ids = [str(i) for i in range(n)]
    Y = pd.DataFrame({"t1_0": G[:, 0] + 0.3 * rng.normal(size=n)}, index=ids)
    ss = CrossModalGWAS(Genotypes.from_array(G, ids)).fit(Y).sumstats_
    top = ss.iloc[0]
    b, se, t, _, df = _lstsq_reference(G[:, 0], Y["t1_0"].to_numpy(), np.empty((n, 0)))
    mpmath.mp.dps = 50
    x = mpmath.mpf(df) / (df + mpmath.mpf(t) ** 2)
    ref = -float(mpmath.log10(mpmath.betainc(mpmath.mpf(df) / 2, 0.5, 0, x,
                                             regularized=True)))
    assert ref > 1000
    np.testing.assert_allclose(top.neg_log10_p, ref, rtol=1e-9)
    assert top.p_value == 0.0 or top.p_value < 1e-300


def test_null_calibration_lambda_gc_on_real_genotypes():
    """128 permutations of a heritable trait on real 1000G chr22: mean lambda_GC ~ 1."""
    g = Genotypes.from_plink(get_1000g_chr22())
    rng = np.random.default_rng(11)
    causal = rng.choice(g.n_snps, 50, replace=False)
    y = g.read(snps=causal, standardize=True) @ rng.normal(size=50)
    y += rng.normal(scale=y.std(), size=y.size)
    Y = pd.DataFrame({f"t1_{k:03d}": rng.permutation(y) for k in range(128)}, index=g.iid)
    gwas = CrossModalGWAS(g, block_size=4096).fit(Y)
    lam = gwas.lambda_gc_
    assert len(lam) == 128
    # the SE of one median-based lambda_GC at M ~ 16k SNPs is ~ 1.48 sqrt(pi / 2) / sqrt(M)
    # ~ 0.015 (LD makes it larger, ~0.03); the mean of 128 permutations is within
    # ~0.003 of 1; +-0.05 is > 10 SE of the mean (measured 1.004)
    assert 0.95 <= lam.mean() <= 1.05, lam.mean()
    # lambda_GC equals median chi2 / 0.455 from the scipy p-values
    p = 10 ** -gwas.sumstats_.query("phenotype == 't1_000'")["neg_log10_p"].to_numpy()
    np.testing.assert_allclose(lam["t1_000"],
                               np.median(stats.chi2.isf(p, 1)) / stats.chi2.ppf(0.5, 1),
                               rtol=1e-8)   # p round-tripped through -log10: ~1e-12


def test_rare_effect_allele_and_common_effect_allele_are_precise():
    """Raw (uncentred) allele counts at a1 frequency 0.997 and 0.003: no lost digits."""
    rng = np.random.default_rng(4)
    n = 500
    g_common = np.full(n, 2.0)
    g_common[rng.choice(n, 3, replace=False)] = 1.0
    G = np.column_stack([g_common, 2.0 - g_common])
    C = rng.normal(size=(n, 2)) + 100.0
    y = rng.normal(size=n) + 0.5 * g_common
    res = ols_association(G, y, C)
    for j in range(2):
        b, se, t, lp, _ = _lstsq_reference(G[:, j], y, C)
        # torch float64 on the CPU vs lstsq: float64 roundoff (~1e-12), 1e-8 leaves room
        np.testing.assert_allclose([res["beta"][j, 0], res["se"][j, 0]], [b, se], rtol=1e-8)
        np.testing.assert_allclose(res["log10_p"][j, 0], lp, rtol=1e-8)


def test_t_log_pvalue_for_biobank_scale_df():
    """df ~ 1e6 (where the hypergeometric series fails): mpmath quadrature of the density."""
    mpmath.mp.dps = 40
    for df, t in [(1e6, 38.0), (1e6, 60.0), (4e5, 120.0)]:
        nu = mpmath.mpf(df)
        log_c = -mpmath.log(mpmath.beta(nu / 2, mpmath.mpf(1) / 2)) - mpmath.log(nu) / 2

        def dens(s, nu=nu, log_c=log_c):
            return mpmath.exp(log_c - (nu + 1) / 2 * mpmath.log1p(s * s / nu))

        ref = float(mpmath.log(2 * mpmath.quad(dens, [t, t + 1, t + 10, mpmath.inf])))
        assert ref < -690                                      # p < 1e-300
        # normal-limit reference: the Student tail at df >= 1e5 differs from it by
        # O(t^4 / df) relative in log p, ~1e-7 at these t; 1e-6 bounds that
        np.testing.assert_allclose(t_log_pvalue(t, df), ref, rtol=1e-6)
    # tiny t with huge df: the complement form keeps the digits (normal limit)
    np.testing.assert_allclose(t_log_pvalue(1e-3, 1e9),
                               np.log(2 * stats.norm.sf(1e-3)), rtol=1e-9)


@pytest.mark.parametrize("df", [3, 372, 4987, 1e6])
def test_student_log_p_table_matches_exact(df):
    from hcl_sklearn.genetics.gwas.association import StudentLogP

    t = np.concatenate([np.random.default_rng(0).uniform(-45, 45, 50_000),
                        [0.0, 1e-9, 39.9999, 40.0, 75.0, np.nan]])
    got, ref = StudentLogP(df)(t), t_log_pvalue(t, df)
    assert np.isnan(got[-1]) and np.isnan(ref[-1])
    # linear interpolation on the table's grid: error <= h^2 max|f''| / 8, < 1e-8 by
    # construction of the grid (StudentLogP docstring)
    assert np.abs(got[:-1] - ref[:-1]).max() < 1e-8


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_product_keeps_t_and_p(backend):
    """dtype='float32': t within ~1e-6 sqrt(N) of lstsq, -log10 p within 1e-3.

    Measured (N = 2000; OpenBLAS Haswell, SkylakeX, Sandybridge; numpy and torch): |dt|
    <= 8.4e-6, |d log10 p| <= 3.4e-5, se <= 4e-8 relative, |dbeta| <= 8e-6 se; the
    asserted 1e-4, 1e-3, 1e-5 and 1e-4 se leave >= 10x. The kernel-independent
    float32 bound (Higham's gamma_n) and its 1e-3 perturbation check are in
    tests/test_gwas_fastpath.py.
    """
    G, Y, C = _data(n=2000, m=40, p=4, seed=8)
    G[:, 5] = np.where(G[:, 5] > 0, 2.0, 1.0)                 # a1 frequency ~0.9
    Q = covariate_basis(C)
    from hcl_sklearn.genetics.gwas.association import AssociationKernel

    kern = AssociationKernel(Y, Q, backend=backend, dtype="float32")
    res = kern.scan(G)
    lp = kern.log10_pvalue(res.t)
    for j in (0, 5, 17, 39):
        for k in range(Y.shape[1]):
            b, se, t, ref_lp, _ = _lstsq_reference(G[:, j], Y[:, k], C)
            assert abs(res.t[j, k] - t) < 1e-4
            assert abs(lp[j, k] - ref_lp) < 1e-3
            np.testing.assert_allclose(res.se[j, k], se, rtol=1e-5)
            assert abs(res.beta[j, k] - b) < 1e-4 * se

"""The fast paths of CrossModalGWAS: .bed block decoding, parallel blocks, LD, lambda_GC.

Each is checked against the generic code path or an independent reference (bed-reader,
numpy) on data with missing genotype calls, sample subsets and several missingness
patterns, so that the speed-ups cannot change a result.
"""

import numpy as np
import pandas as pd
import pytest
from bed_reader import open_bed, to_bed

from hcl_sklearn.genetics import Genotypes
from hcl_sklearn.gwas import CrossModalGWAS, estimator, t_log_pvalue
from hcl_sklearn.gwas._bed import BedBlockReader, bed_source
from hcl_sklearn.gwas.association import StudentLogP
from hcl_sklearn.gwas.loci import _LD


def _write_bed(path, n, m, seed, missing=0.02):
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, rng.uniform(0.02, 0.98, m), size=(n, m)).astype(np.float32)
    G[:, 3] = 1.0                                            # monomorphic
    G[rng.random((n, m)) < missing] = np.nan
    G[:, 5] = np.where(np.arange(n) % 7 == 0, np.nan, G[:, 5])
    iid = np.array([f"id{i:04d}" for i in range(n)])
    to_bed(str(path), G, properties={
        "iid": iid, "fid": iid, "sid": np.array([f"rs{j}" for j in range(m)]),
        "chromosome": np.array(["1"] * (m // 2) + ["2"] * (m - m // 2)),
        "bp_position": (np.arange(m) % (m // 2)) * 5000 + 100})
    return iid


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 9, 203])
def test_bed_block_reader_matches_bed_reader(tmp_path, n):
    m = 23
    _write_bed(tmp_path / "x.bed", n, m, seed=n)
    ref = open_bed(tmp_path / "x.bed", count_A1=True).read(dtype=np.float64)
    rng = np.random.default_rng(n)
    for rows in (None, rng.permutation(n)[: max(1, (2 * n) // 3)]):
        R = ref if rows is None else ref[rows]
        observed = ~np.isnan(R)
        mean = np.where(observed, R, 0).sum(0) / np.maximum(observed.sum(0), 1)
        expected = np.where(observed, R, mean)
        for dtype in (np.float64, np.float32):
            reader = BedBlockReader(tmp_path / "x.bed", n, np.arange(m), rows=rows,
                                    block_size=8, dtype=dtype)
            for pos in (np.arange(0, 8), np.arange(8, 16), np.array([22, 3, 5, 0]),
                        np.arange(16, 23)):
                Gt, g_sum, g2 = reader.read(pos)
                e = expected[:, pos].T
                assert Gt.dtype == dtype
                np.testing.assert_allclose(Gt, e, rtol=1e-6)
                tol = 1e-12 if dtype == np.float64 else 1e-6   # imputed means rounded
                np.testing.assert_allclose(g_sum, e.sum(1), rtol=tol)
                np.testing.assert_allclose(g2, (e * e).sum(1), rtol=tol)


def test_bed_source_only_for_local_plink(tmp_path):
    iid = _write_bed(tmp_path / "x.bed", 20, 10, seed=1)
    g = Genotypes.from_plink(tmp_path / "x")
    _, n_file, index = bed_source(g.subset(np.array([4, 2, 7])))
    assert n_file == 20 and list(index) == [4, 2, 7]
    assert bed_source(Genotypes.from_array(np.zeros((20, 3)), iid)) is None


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fast")
    n, m = 301, 700
    iid = _write_bed(tmp / "c.bed", n, m, seed=5, missing=0.001)
    g = Genotypes.from_plink(tmp / "c")
    G = open_bed(tmp / "c.bed", count_A1=True).read(dtype=np.float64)
    rng = np.random.default_rng(3)
    # Y on a subset of the genotyped samples, in another order; missing phenotypes
    ids = rng.permutation(iid)[:260]
    Gy = G[pd.Index(iid).get_indexer(ids)]
    Y = pd.DataFrame(rng.normal(size=(len(ids), 6)), index=ids,
                     columns=["t1_a", "t1_b", "t2_a", "t2_b", "x_1", "t1_c"])
    Y["t1_a"] += 0.8 * np.nan_to_num(Gy[:, 10], nan=1.0)
    Y["t2_b"] += 0.6 * np.nan_to_num(Gy[:, 400], nan=1.0)
    Y.iloc[rng.choice(len(ids), 15, replace=False), 1] = np.nan
    Y.iloc[rng.choice(len(ids), 9, replace=False), 3] = np.nan
    cov = pd.DataFrame({"age": rng.normal(60, 9, n), "sex": rng.integers(0, 2, n)},
                       index=iid)
    return g, G, iid, Y, cov


def _same_fit(a, b, rtol, float32=False):
    assert a.snp_qc_ == b.snp_qc_
    pd.testing.assert_frame_equal(a.snps_, b.snps_)
    if float32:
        # float32 products of differently blocked calls round differently: compare
        # betas in units of their SE (relative errors of near-zero betas are large)
        assert np.abs(a._beta - b._beta).max() < 1e-5 * a._se.min()
        np.testing.assert_allclose(a._t, b._t, atol=1e-5)
        np.testing.assert_allclose(a._log10_p, b._log10_p, atol=1e-5)
        np.testing.assert_allclose(a._se, b._se, rtol=1e-6)
        np.testing.assert_allclose(a._freq, b._freq, rtol=1e-12)
    for attr in ("_beta", "_se", "_t", "_log10_p", "_freq"):
        if not float32:
            np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=rtol,
                                       atol=1e-12, err_msg=attr)
    rtol = 1e-5 if float32 else rtol
    np.testing.assert_allclose(a.lambda_gc_, b.lambda_gc_, rtol=rtol)
    for mod in a.loci_:
        pd.testing.assert_frame_equal(a.loci_[mod], b.loci_[mod], rtol=rtol)
        pd.testing.assert_frame_equal(a.min_p_[mod], b.min_p_[mod], rtol=max(rtol, 1e-9))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("samples", ["subset", "all"])
def test_bed_fast_path_equals_generic_path(cohort, dtype, samples):
    """Decoding the .bed directly, in parallel blocks, gives the results of the generic
    reader (Genotypes.read) on the same genotypes, missing calls included; with Y on a
    reordered subset of the samples (row index) or on all of them in file order."""
    g, G, iid, Y, cov = cohort
    if samples == "all":
        rng = np.random.default_rng(4)
        Y = pd.DataFrame(rng.normal(size=(len(iid), 3)), index=iid,
                         columns=["t1_a", "t2_a", "t2_b"])
        Y["t1_a"] += 0.8 * np.nan_to_num(G[:, 10], nan=1.0)
    assert bed_source(g) is not None
    snps = g.snps.copy()
    g_arr = Genotypes.from_array(G, iid, snps=snps)
    assert bed_source(g_arr) is None
    kw = {"covariates": cov, "alpha": 1e-3, "maf": 0.05, "dtype": dtype}
    fast = CrossModalGWAS(g, block_size=128, n_jobs=2, **kw).fit(Y)
    slow = CrossModalGWAS(g_arr, block_size=1000, n_jobs=1, **kw).fit(Y)
    assert fast.snp_qc_["n_monomorphic"] >= 1 and fast.snp_qc_["n_low_maf"] > 0
    assert len(fast.leads_["t1"]) >= 1
    assert (fast.n_samples_ == Y.notna().sum()).all()
    _same_fit(fast, slow, rtol=1e-9, float32=dtype == "float32")


def test_threads_and_blocks_do_not_change_results(cohort, monkeypatch):
    g, _, _, Y, cov = cohort
    a = CrossModalGWAS(g, covariates=cov, alpha=1e-3, block_size=64, n_jobs=3).fit(Y)
    b = CrossModalGWAS(g, covariates=cov, alpha=1e-3, block_size=4096, n_jobs=1).fit(Y)
    _same_fit(a, b, rtol=1e-12)
    # several decode + product sub-blocks inside each block
    monkeypatch.setattr(estimator, "_SUB_BLOCK_BYTES", 1)
    monkeypatch.setattr(estimator, "_MIN_SUB_SNPS", 32)
    calls = []
    product = estimator.AssociationKernel.product
    monkeypatch.setattr(estimator.AssociationKernel, "product",
                        lambda self, G, *a, **k: calls.append(G.shape[1]) or
                        product(self, G, *a, **k))
    c = CrossModalGWAS(g, covariates=cov, alpha=1e-3, block_size=600, n_jobs=1).fit(Y)
    assert max(calls) <= 32 and len(calls) >= 3 * 700 / 32      # 3 groups
    _same_fit(a, c, rtol=1e-12)


def test_ld_fast_path_equals_genotypes_read(cohort):
    g, G, iid, Y, _ = cohort
    g_arr = Genotypes.from_array(G, iid, snps=g.snps.copy())
    others = np.array([0, 3, 5, 9, 250, 699, 17])          # 3: monomorphic, 5: missing
    for samples in (None, Y.index):
        fast, slow = _LD(g, samples), _LD(g_arr, samples)
        assert fast.reader is not None and slow.reader is None
        for index in (10, 5, 3):
            np.testing.assert_allclose(fast.r2(index, others), slow.r2(index, others),
                                       rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("df", [1, 2, 30, 4988])
def test_student_log_p_table_small_df(df):
    t = np.concatenate([np.random.default_rng(1).uniform(-41, 41, 20_000),
                        np.linspace(0, 0.05, 101), [np.inf, -np.inf, np.nan]])
    f = StudentLogP(df)
    got, ref = f(t), t_log_pvalue(t, df)
    fin = np.isfinite(ref)
    assert np.abs(got[fin] - ref[fin]).max() < 1e-8
    assert np.isnan(got[-1]) and (got[-3:-1] == -np.inf).all()
    out = np.empty(t.shape)
    assert f(t, out=out) is out


def test_lambda_gc_vectorized_equals_per_column():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 1000, 1001):
        lp = -rng.exponential(size=(n, 5)) / np.log(10)
        lp[:, 2] = np.where(rng.random(n) < 0.3, np.nan, lp[:, 2])
        lp[:, 4] = np.nan
        lam = CrossModalGWAS._lambda_gc(lp)
        for j in range(5):
            v = lp[:, j][~np.isnan(lp[:, j])]
            if v.size == 0:
                assert np.isnan(lam[j])
                continue
            chi2 = np.sort(t_chi2(10.0 ** v))
            ref = np.median(chi2) / 0.454936423119572
            np.testing.assert_allclose(lam[j], ref, rtol=1e-10)


def t_chi2(p):
    from scipy import stats

    return stats.chi2.isf(p, 1)

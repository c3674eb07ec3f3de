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
from hcl_sklearn.genetics.gwas import CrossModalGWAS, engine, t_log_pvalue
from hcl_sklearn.genetics.gwas._bed import BedBlockReader, bed_source
from hcl_sklearn.genetics.gwas.association import StudentLogP
from hcl_sklearn.genetics.gwas.loci import _LD


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


def _same_fit(a, b, rtol):
    """Two float64 fits agree to ``rtol`` (summation order moves float64 results by
    ~n * 2**-53 ~ 3e-14 relative at n = 301 rows; 1e-9 and 1e-12 leave room for the
    cancellation in ``g'g - |Q'g|^2`` of SNPs nearly explained by the covariates)."""
    assert a.snp_qc_ == b.snp_qc_
    pd.testing.assert_frame_equal(a.snps_, b.snps_)
    for attr in ("_beta", "_se", "_t", "_log10_p", "_freq"):
        np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=rtol,
                                   atol=1e-12, err_msg=attr)
    np.testing.assert_allclose(a.lambda_gc_, b.lambda_gc_, rtol=rtol)
    for mod in a.loci_:
        pd.testing.assert_frame_equal(a.loci_[mod], b.loci_[mod], rtol=rtol)
        pd.testing.assert_frame_equal(a.min_p_[mod], b.min_p_[mod], rtol=max(rtol, 1e-9))


U32 = 2.0 ** -24                                     # float32 unit roundoff


def float32_bounds(fit, G, iid, Y, cov):
    """Largest differences two float32 fits may show, per SNP and phenotype, whatever
    the BLAS kernel, blocking, threading or summation order (a bound, not an estimate).

    The float32 kernel forms ``g_c' w`` for the centred genotype ``g_c`` and the unit
    columns ``w`` of ``[Y_r | Q]`` (residualized, scaled phenotypes; covariate basis).
    Any order of the n-term sum is within ``gamma |g_c| |w|`` of the exact value, with
    ``gamma = (n + 2) u / (1 - (n + 2) u)`` (Higham, *Accuracy and Stability of Numerical
    Algorithms*, 2nd ed., eq. 3.5 and Lemma 3.1; the + 2 covers rounding ``w`` and
    ``g_c`` to float32), so two runs differ by at most ``2 gamma |g_c|``. With
    ``kappa = |g_c| / |g_r|`` (``g_r``: genotype residualized on the covariates) and the
    partial correlation ``r = t / sqrt(df + t^2)``:

    * ``g_r'g_r = |g_c|^2 - |Q'g_c|^2``: relative error ``dgg <= 4 gamma sqrt(K+1) kappa^2``;
    * ``r = g_c'y_r / |g_r|``: ``dr <= 2 gamma kappa + |r| dgg / 2``;
    * ``t = sqrt(df) r / sqrt(1 - r^2)``: ``dt <= sqrt(df) dr / (1 - r^2)^(3/2)``;
    * ``se``: relative ``dse <= |r| dr / (1 - r^2) + dgg / 2``; ``beta``: ``|dbeta| <= se dt``;
    * ``-log10 p`` is monotone in ``|t|``: it lies between its values at ``|t| -+ dt``
      (plus 1e-8, the interpolation error of the p-value table).

    Terms of order gamma^2 are dropped. At n = 301, gamma = 1.8e-5 and ``dt`` ~ 6e-4 for
    a null SNP; a kernel off by 1e-3 relative moves ``t`` by 1e-3 |t|, which exceeds this
    once |t| > 1 (see ``test_float32_bounds_catch_a_perturbed_kernel``).
    """
    from hcl_sklearn.genetics.gwas import t_log_pvalue

    cols = fit._tested_pos
    shape = fit._t.shape
    dt, dse, lo, hi = (np.empty(shape) for _ in range(4))
    row_of = pd.Index(iid)
    for j, name in enumerate(fit.phenotypes_):
        ids = Y.index[Y[name].notna()]
        rows = row_of.get_indexer(ids)
        g = G[rows][:, cols]
        g = np.where(np.isnan(g), np.nanmean(g, axis=0), g)
        C = np.column_stack([np.ones(len(rows)), cov.loc[ids].to_numpy(float)])
        gc = g - g.mean(axis=0)
        gr = g - C @ np.linalg.lstsq(C, g, rcond=None)[0]
        kappa = np.linalg.norm(gc, axis=0) / np.linalg.norm(gr, axis=0)
        n, df = len(rows), int(fit.df_[name])
        gamma = (n + 2) * U32 / (1 - (n + 2) * U32)
        t = fit._t[:, j]
        r = np.abs(t) / np.sqrt(df + t * t)
        dgg = 4 * gamma * np.sqrt(C.shape[1]) * kappa ** 2
        dr = 2 * gamma * kappa + 0.5 * r * dgg
        one_minus = 1 - np.minimum(r + dr, 1) ** 2
        dt[:, j] = np.sqrt(df) * dr / one_minus ** 1.5
        dse[:, j] = r * dr / one_minus + 0.5 * dgg
        at = np.abs(t)
        hi[:, j] = -t_log_pvalue(at + dt[:, j], df) / np.log(10) + 1e-8
        lo[:, j] = -t_log_pvalue(np.maximum(at - dt[:, j], 0), df) / np.log(10) - 1e-8
    return {"t": dt, "se": dse, "neg_log10_p": (lo, hi)}


def assert_float32_fits_agree(a, b, bounds):
    """``a`` agrees with the float32 fit ``b`` within :func:`float32_bounds` of ``b``."""
    assert a.snp_qc_ == b.snp_qc_
    pd.testing.assert_frame_equal(a.snps_, b.snps_)
    np.testing.assert_allclose(a._freq, b._freq, rtol=1e-12)   # float64 sums of counts
    excess = np.abs(a._t - b._t) - bounds["t"]
    assert np.nanmax(excess) <= 0, f"t beyond its float32 bound by {np.nanmax(excess):.3g}"
    assert (np.abs(a._beta - b._beta) <= b._se * bounds["t"]).all(), "beta"
    assert (np.abs(a._se - b._se) <= b._se * bounds["se"]).all(), "se"
    lo, hi = bounds["neg_log10_p"]
    nlp = -a._log10_p
    assert ((nlp >= lo) & (nlp <= hi)).all(), "-log10 p beyond its float32 bound"
    # lambda_GC: the median chi2 moves by at most d(chi2)/dt * dt = 2 |t| dt of the
    # SNPs at the median; bounded by the largest such term over all SNPs
    chi_bound = (2 * np.abs(b._t) * bounds["t"] + bounds["t"] ** 2).max(axis=0)
    lam_bound = chi_bound / 0.454936423119572
    assert (np.abs(a.lambda_gc_ - b.lambda_gc_).to_numpy() <= lam_bound).all()
    for mod, cols in b.modalities_.items():
        idx = [b.phenotypes_.index(c) for c in cols]
        # min over the modality's dimensions: 1-Lipschitz, so the bounds carry over
        m_lo, m_hi = lo[:, idx].max(axis=1), hi[:, idx].max(axis=1)
        got = a.min_p_[mod]["neg_log10_p"].to_numpy()
        assert ((got >= m_lo) & (got <= m_hi)).all(), f"min p of {mod}"
        # the lead SNPs are the same when no SNP lies within its bound of the
        # genome-wide threshold p1; the clumps' extents too if none straddles p2
        straddles = [bool(((m_lo <= x) & (m_hi >= x)).any()) for x in
                     -np.log10([b.thresholds_[mod], max(b.clump_p2, b.thresholds_[mod])])]
        assert not straddles[0], f"a SNP of {mod} within roundoff of the threshold"
        la, lb = a.loci_[mod], b.loci_[mod]
        exact = ["lead_neg_log10_p"] + (["start", "end"] if straddles[1] else [])
        pd.testing.assert_frame_equal(la.drop(columns=exact), lb.drop(columns=exact))
        lead = b.snps_.index[b.snps_["variant_id"].isin(lb["lead_variant_id"])]
        order = pd.Index(b.snps_["variant_id"].iloc[lead]).get_indexer(lb["lead_variant_id"])
        assert (np.abs(la["lead_neg_log10_p"].to_numpy() - lb["lead_neg_log10_p"].to_numpy())
                <= (m_hi - m_lo)[lead[order]]).all(), f"lead p of {mod}"


def _fits(cohort, dtype, samples):
    g, G, iid, Y, cov = cohort
    if samples == "all":
        rng = np.random.default_rng(4)
        Y = pd.DataFrame(rng.normal(size=(len(iid), 3)), index=iid,
                         columns=["t1_a", "t2_a", "t2_b"])
        Y["t1_a"] += 0.8 * np.nan_to_num(G[:, 10], nan=1.0)
    assert bed_source(g) is not None
    g_arr = Genotypes.from_array(G, iid, snps=g.snps.copy())
    assert bed_source(g_arr) is None
    kw = {"covariates": cov, "alpha": 1e-3, "maf": 0.05, "dtype": dtype}
    fast = CrossModalGWAS(g, block_size=128, n_jobs=2, **kw)
    slow = CrossModalGWAS(g_arr, block_size=1000, n_jobs=1, **kw).fit(Y)
    return fast, slow, Y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("samples", ["subset", "all"])
def test_bed_fast_path_equals_generic_path(cohort, dtype, samples):
    """Decoding the .bed directly, in parallel blocks, gives the results of the generic
    reader (Genotypes.read) on the same genotypes, missing calls included; with Y on a
    reordered subset of the samples (row index) or on all of them in file order.
    float64: to 1e-9 relative; float32: within the roundoff bound of float32_bounds."""
    g, G, iid, _, cov = cohort
    fast, slow, Y = _fits(cohort, dtype, samples)
    fast.fit(Y)
    assert fast.snp_qc_["n_monomorphic"] >= 1 and fast.snp_qc_["n_low_maf"] > 0
    assert len(fast.leads_["t1"]) >= 1
    assert (fast.n_samples_ == Y.notna().sum()).all()
    if dtype == "float64":
        _same_fit(fast, slow, rtol=1e-9)
    else:
        assert_float32_fits_agree(fast, slow, float32_bounds(slow, G, iid, Y, cov))


@pytest.mark.parametrize("samples", ["subset", "all"])
def test_float32_bounds_catch_a_perturbed_kernel(cohort, samples, monkeypatch):
    """The float32 comparison is strict enough to catch a real bug: the same fast path
    with its block product off by 1e-3 relative fails it."""
    g, G, iid, _, cov = cohort
    fast, slow, Y = _fits(cohort, "float32", samples)
    product = engine.AssociationKernel.product

    def perturbed(self, *args, **kwargs):
        res = product(self, *args, **kwargs)        # ``out`` if given, else a new array
        res *= 1 + 1e-3
        return res

    monkeypatch.setattr(engine.AssociationKernel, "product", perturbed)
    fast.fit(Y)
    with pytest.raises(AssertionError, match="t beyond its float32 bound"):
        assert_float32_fits_agree(fast, slow, float32_bounds(slow, G, iid, Y, cov))


def test_threads_and_blocks_do_not_change_results(cohort, monkeypatch):
    g, _, _, Y, cov = cohort
    a = CrossModalGWAS(g, covariates=cov, alpha=1e-3, block_size=64, n_jobs=3).fit(Y)
    b = CrossModalGWAS(g, covariates=cov, alpha=1e-3, block_size=4096, n_jobs=1).fit(Y)
    _same_fit(a, b, rtol=1e-12)
    # several decode + product sub-blocks inside each block
    monkeypatch.setattr(engine, "_SUB_BLOCK_BYTES", 1)
    monkeypatch.setattr(engine, "_MIN_SUB_SNPS", 32)
    calls = []
    product = engine.AssociationKernel.product
    monkeypatch.setattr(engine.AssociationKernel, "product",
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

"""ProWAS: every (protein, dimension) OLS equals statsmodels; real SomaScan data; planted
associations; BH against statsmodels; errors."""

import os
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hcl_sklearn.data.subjects import SubjectMismatchError
from hcl_sklearn.targets import ProWAS

sm = pytest.importorskip("statsmodels.api", reason="statsmodels is the independent OLS "
                         "reference (pip install statsmodels)")
from statsmodels.stats.multitest import multipletests  # noqa: E402

# 1e-8 relative: the brief's bound for exact OLS. Both sides are float64 least squares
# (statsmodels: pinv of the design; ProWAS: projections on a QR basis), which agree to
# ~1e-12 on well-conditioned designs; 1e-8 leaves room for the normal-equation downdate.
RTOL = 1e-8


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.abs(a - b) / np.maximum(np.abs(b), 1e-300)


def _sm_fit(y, x, cov_design):
    """statsmodels OLS of y on [1, x, covariates] (rows with y, x observed)."""
    ok = np.isfinite(y) & np.isfinite(x)
    D = np.column_stack([np.ones(ok.sum()), x[ok], cov_design[ok]])
    fit = sm.OLS(y[ok], D).fit()
    return fit.params[1], fit.bse[1], fit.tvalues[1], fit.pvalues[1], int(fit.nobs)


def _cohort(rng, n=400):
    ids = [f"id{i:04d}" for i in range(n)]
    cov = pd.DataFrame({"age": rng.uniform(40, 80, n),
                        "sex": rng.choice(["F", "M"], n),
                        "site": rng.choice(["a", "b", "c"], n)}, index=ids)
    # the same encoding statsmodels gets: dummies with the first level dropped
    design = np.column_stack([cov["age"], cov["sex"] == "M", cov["site"] == "b",
                              cov["site"] == "c"]).astype(float)
    return ids, cov, design


def test_matches_statsmodels_every_pair():
    rng = np.random.default_rng(1)
    n = 400
    ids, cov, design = _cohort(rng, n)
    X = pd.DataFrame(rng.normal(size=(n, 4)), index=ids,
                     columns=["t1_000", "t1_001", "t2_000", "t2_001"])
    X.iloc[:25, 3] = np.nan                     # a dimension with its own missing subjects
    X["t1_001"] += 0.02 * cov["age"]            # a dimension correlated with a covariate
    P = pd.DataFrame(rng.normal(size=(n, 8)) + 5, index=ids,
                     columns=[f"prot{j}" for j in range(8)])
    P["prot0"] += 0.4 * X["t1_000"] + 0.03 * cov["age"]
    P["prot1"] += 0.2 * X["t2_000"].fillna(0)
    P.iloc[rng.choice(n, 30, replace=False), 2] = np.nan  # few missing: downdate path
    P.iloc[rng.choice(n, 300, replace=False), 3] = np.nan  # mostly missing: direct path
    P.iloc[:, 4] = P.iloc[:, 4].where(P.iloc[:, 2].notna())  # shares prot2's pattern
    P.iloc[rng.choice(n, 250, replace=False), 5] = np.nan
    # measured at site a only: the site dummies are constant there, so the package's
    # covariate rule drops them for this protein (statsmodels gets the design without them)
    P["site_a_only"] = P["prot6"].where(cov["site"] == "a") + 0.3 * X["t1_000"]
    lod = pd.Series(4.0, index=P.columns)       # about 16 % of values below the limit
    lod["prot6"] = np.nan                       # no limit for prot6
    pw = ProWAS(cov, lod=lod, min_samples=50).fit(X, P)

    res = pw.results_.set_index(["protein", "dimension"])
    assert len(res) == 9 * 4 and pw.n_tests_ == 36
    Pc = P.where(~(P < lod), np.nan)            # the LOD rule, applied independently
    worst = 0.0
    for (prot, dim), row in res.iterrows():
        cols = design[:, :2] if prot == "site_a_only" else design
        b, se, t, p, nobs = _sm_fit(Pc[prot].to_numpy(), X[dim].to_numpy(), cols)
        assert row["n"] == nobs
        assert row["df"] == nobs - cols.shape[1] - 2    # n - K - 2, K covariate columns
        for ours, ref in ((row["beta"], b), (row["se"], se), (row["t"], t),
                          (row["p_value"], p)):
            worst = max(worst, _rel(ours, ref))
    print(f"max rel diff vs statsmodels: {worst:.2e}")
    assert worst < RTOL, worst
    # the strong pair is tiny-p and exact on the log scale (p ~ 1e-12 is representable)
    top = res.loc[("prot0", "t1_000")]
    assert top["significant"] and top["neg_log10_p"] > 10
    assert pw.lod_censored_["prot6"] == 0
    assert pw.lod_censored_["prot7"] == int((P["prot7"] < 4).sum()) > 0
    assert pw.n_patterns_ >= 6


def test_lod_scalar_and_table():
    rng = np.random.default_rng(2)
    ids, cov, _ = _cohort(rng, 200)
    X = pd.DataFrame(rng.normal(size=(200, 2)), index=ids, columns=["t1_000", "t2_000"])
    P = pd.DataFrame(rng.normal(size=(200, 3)), index=ids, columns=list("abc"))
    scalar = ProWAS(cov, lod=-0.5, min_samples=30).fit(X, P)
    expected = (P >= -0.5).sum()
    assert (scalar.results_.groupby("protein")["n"].first() == expected).all()
    # per-subject limits (e.g. plate-specific): a DataFrame aligned by id and protein,
    # given in another row and column order
    lim = np.repeat(np.where(np.arange(200) < 100, -0.5, 0.5)[:, None], 3, axis=1)
    table = pd.DataFrame(lim, index=ids, columns=list("abc")).iloc[::-1, ::-1]
    pw = ProWAS(cov, lod=table, min_samples=30).fit(X, P)
    assert (pw.results_.groupby("protein")["n"].first()
            == pd.Series((P.to_numpy() >= lim).sum(axis=0), index=list("abc"))).all()
    with pytest.raises(ValueError, match=r"no limit for proteins \['c'\]"):
        ProWAS(cov, lod={"a": 0.0, "b": 0.0}).fit(X, P)


def test_bh_and_bonferroni_equal_statsmodels():
    rng = np.random.default_rng(3)
    n = 300
    ids = [str(i) for i in range(n)]
    X = pd.DataFrame(rng.normal(size=(n, 6)), index=ids,
                     columns=[f"t{1 + j // 3}_{j:03d}" for j in range(6)])
    P = pd.DataFrame(rng.normal(size=(n, 40)), index=ids)
    P.iloc[:, :8] += 0.25 * X.iloc[:, :1].to_numpy()
    pw = ProWAS(min_samples=20).fit(X, P)
    p = pw.results_["p_value"].to_numpy()
    _, q_ref, _, _ = multipletests(p, alpha=0.05, method="fdr_bh")
    _, b_ref, _, _ = multipletests(p, alpha=0.05, method="bonferroni")
    # 1e-12: both are the same arithmetic on the same p (ours on the log scale)
    np.testing.assert_allclose(pw.results_["q_value"], q_ref, rtol=1e-12)
    np.testing.assert_allclose(pw.results_["p_bonferroni"], b_ref, rtol=1e-12)
    assert (pw.results_["significant_fdr"] == (q_ref <= 0.05)).all()
    assert pw.results_["significant_fdr"].sum() > pw.results_["significant"].sum() > 0


def test_planted_associations_recovered_and_null_uniform():
    rng = np.random.default_rng(4)
    n, n_prot = 1500, 300
    ids = [f"s{i}" for i in range(n)]
    X = pd.DataFrame(rng.normal(size=(n, 8)), index=ids,
                     columns=[f"t1_{j:03d}" for j in range(4)] + [f"t2_{j:03d}" for j in range(4)])
    cov = pd.DataFrame({"age": rng.uniform(40, 80, n), "batch": rng.choice(list("xyz"), n)},
                       index=ids)
    P = pd.DataFrame(rng.normal(size=(n, n_prot)) + 0.05 * cov[["age"]].to_numpy(), index=ids,
                     columns=[f"P{j:03d}" for j in range(n_prot)])
    planted = {f"P{j:03d}": X.columns[j % 8] for j in range(0, 40, 4)}   # 10 pairs
    for prot, dim in planted.items():
        P[prot] += 0.2 * X[dim]          # r ~ 0.2: noncentral t ~ 7.7 at n ~ 1400
    # realistic missingness: every protein its own pattern (5-15 % missing)
    for j in range(n_prot):
        P.iloc[rng.random(n) < rng.uniform(0.05, 0.15), j] = np.nan
    t0 = time.perf_counter()
    pw = ProWAS(cov).fit(X, P)
    elapsed = time.perf_counter() - t0
    assert pw.n_patterns_ == n_prot and elapsed < 10
    res = pw.results_
    hit = res.loc[res["significant"], ["protein", "dimension"]]
    hits = set(map(tuple, hit.to_numpy()))
    assert set(planted.items()) <= hits
    # FWER 0.05 over 2390 null pairs: expect 0; P(>= 3 false hits) < 1e-4 by Bonferroni
    assert len(hits - set(planted.items())) <= 2
    assert set(pw.significant_["t1"]) | set(pw.significant_["t2"]) >= set(planted)
    for prot, dim in planted.items():
        assert prot in pw.significant_[dim.split("_")[0]]
    null = res.loc[[(p, d) not in planted.items() for p, d in zip(res.protein, res.dimension)]]
    # KS against U(0, 1): the 1 % critical value of D is 1.63 / sqrt(m) (proteins are
    # independent, dimensions independent: the null pairs are ~independent)
    d_ks = stats.kstest(null["p_value"], "uniform").statistic
    assert d_ks < 1.63 / np.sqrt(len(null)), d_ks
    # lambda_GC = median chi2_1 / 0.4549; SE of the median of chi2_1 ~ 1.1 / sqrt(m)
    # relative (asymptotic variance of a sample median 1 / (4 m f(med)^2))
    lam = np.median(stats.chi2.isf(null["p_value"], 1)) / stats.chi2.ppf(0.5, 1)
    assert abs(lam - 1) < 4 * 1.1 / np.sqrt(len(null)), lam


def test_missing_filters_and_dropped():
    rng = np.random.default_rng(5)
    n = 200
    ids = [str(i) for i in range(n)]
    X = pd.DataFrame(rng.normal(size=(n, 3)), index=ids, columns=["t1_a", "t1_b", "t2_a"])
    P = pd.DataFrame(rng.normal(size=(n, 4)), index=ids, columns=["ok", "sparse", "few", "flat"])
    P.iloc[30:, 1] = np.nan               # 30 values: below 20 % of 200 (= 40)
    P.iloc[60:, 2] = np.nan               # 60 values: kept by the filter, < min_samples=80
    P["flat"] = 3.0
    pw = ProWAS(min_samples=80).fit(X, P)
    assert pw.proteins_ == ["ok"]
    d = pw.dropped_
    assert set(d.index) == {"sparse", "few", "flat"}
    assert d.loc["sparse", "n_observed"] == 30 and "min_protein_samples" in d.loc["sparse", "reason"]
    assert "min_samples" in d.loc["few", "reason"]
    assert "constant" in d.loc["flat", "reason"]


def test_errors_are_clear():
    rng = np.random.default_rng(6)
    X = pd.DataFrame(rng.normal(size=(60, 2)), index=[f"a{i}" for i in range(60)],
                     columns=["t1_0", "t2_0"])
    P = pd.DataFrame(rng.normal(size=(60, 2)), index=[f"b{i}" for i in range(60)],
                     columns=["p1", "p2"])
    with pytest.raises(SubjectMismatchError, match="0 of 60 requested subject ids"):
        ProWAS().fit(X, P)
    P.index = X.index
    bad = P.assign(p2=["high"] * 60)
    with pytest.raises(TypeError, match=r"non-numeric columns \['p2'\]"):
        ProWAS().fit(X, bad)
    with pytest.raises(ValueError, match="fewer than min_samples = 100"):
        ProWAS(min_samples=100).fit(X, P)
    with pytest.raises(ValueError, match="min_samples"):
        ProWAS(min_samples=1).fit(X, P)       # parameter constraint
    with pytest.raises(SubjectMismatchError):
        ProWAS(pd.DataFrame({"age": np.ones(10)}, index=X.index[:10])).fit(X, P)


# --------------------------------------------------------------------------- real data
def _somascan_example():
    somadata = pytest.importorskip("somadata", reason="somadata (MIT, PyPI) ships the SomaScan "
                                   "example ADAT used here: pip install somadata")
    path = os.path.join(os.path.dirname(somadata.__file__), "data", "example_data.adat")
    if not os.path.exists(path):
        pytest.skip("this somadata version does not ship data/example_data.adat")
    adat = somadata.read_adat(path)
    rows = adat.index.to_frame(index=False)
    cols = adat.columns.to_frame(index=False)
    rfu = adat.to_numpy(dtype=float)
    prot = (cols["Type"] == "Protein").to_numpy()
    names = (cols["SeqId"].astype(str) + "|" + cols["EntrezGeneSymbol"].astype(str))[prot]
    sample = (rows["SampleType"] == "Sample").to_numpy()
    buffer = (rows["SampleType"] == "Buffer").to_numpy()
    ids = rows["SampleId"][sample].astype(str).to_numpy()
    log_rfu = pd.DataFrame(np.log10(rfu[np.ix_(sample, prot)]), index=ids,
                           columns=names.to_numpy())
    # limit of detection from the buffer (no-sample) wells, SomaLogic's eLOD:
    # median + 4.9 MAD (MAD scaled by 1.4826), on the log10 scale of the analysis
    buf = np.log10(rfu[np.ix_(buffer, prot)])
    med = np.median(buf, axis=0)
    mad = 1.4826 * np.median(np.abs(buf - med), axis=0)
    lod = pd.Series(med + 4.9 * mad, index=log_rfu.columns)
    clin = rows.loc[sample, ["Age", "Sex", "PlateId"]].set_axis(ids)
    age = pd.to_numeric(clin["Age"]).to_frame("age")
    cov = clin[["Sex", "PlateId"]].rename(columns={"Sex": "sex", "PlateId": "plate"})
    return log_rfu, age, cov, lod


def test_somascan_example_age():
    log_rfu, age, cov, lod = _somascan_example()
    t0 = time.perf_counter()
    pw = ProWAS(cov, lod=lod).fit(age, log_rfu)
    elapsed = time.perf_counter() - t0
    res = pw.results_.set_index("protein")
    assert pw.n_subjects_ == 170 and log_rfu.shape[1] == 5207
    assert len(pw.proteins_) + len(pw.dropped_) == 5207
    assert elapsed < 10
    # independent design for statsmodels: sex M and plate 2 dummies
    design = np.column_stack([cov["sex"] == "M", cov["plate"] == cov["plate"].unique()[1]]
                             ).astype(float)
    Y = log_rfu.where(~(log_rfu < lod), np.nan)
    x = age["age"].to_numpy()
    # exact agreement on the strongest 300 and 50 random proteins
    rng = np.random.default_rng(0)
    strongest = res["neg_log10_p"].nlargest(300).index
    sample = rng.choice(res.index.difference(strongest), 50, replace=False)
    worst = 0.0
    sm_p = {}
    for prot in list(strongest) + list(sample):
        b, se, t, p, nobs = _sm_fit(Y[prot].to_numpy(), x, design)
        row = res.loc[prot]
        assert row["n"] == nobs
        worst = max(worst, *_rel([row["beta"], row["se"], row["t"], row["p_value"]],
                                 [b, se, t, p]))
        sm_p[prot] = p
    print(f"max rel diff vs statsmodels: {worst:.2e}")
    assert worst < RTOL, worst
    # the Bonferroni hits are those statsmodels puts below alpha / m: every hit is among
    # the strongest 300 proteins (all refitted), and the 300th is far from the threshold
    ref_hits = {p for p, v in sm_p.items() if v <= 0.05 / pw.n_tests_}
    hits = set(res.index[res["significant"]])
    assert hits == ref_hits
    assert res.loc[strongest[-1], "p_value"] > 10 * pw.threshold_
    # GDF15 and pleiotrophin (PTN) are among the most consistently age-increasing plasma
    # proteins on SomaScan (Tanaka et al. 2018, Aging Cell 17:e12799; Lehallier et al.
    # 2019, Nat Med 25:1843-1850): both must be hits with a positive slope
    for gene in ("GDF15", "PTN"):
        rows = res.loc[res.index.str.endswith("|" + gene)]
        assert rows["significant"].any(), gene
        assert (rows.loc[rows["significant"], "beta"] > 0).all(), gene
    assert pw.significant_[""] == res.loc[res["significant"]].sort_values(
        "neg_log10_p", ascending=False).index.tolist()

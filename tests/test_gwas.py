"""CrossModalGWAS: API, writers, plots and clear errors on bad input."""

import shutil

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from hcl_sklearn import CrossModalGWAS as LazyCrossModalGWAS
from hcl_sklearn.datasets import get_1000g_chr22
from hcl_sklearn.genetics import Genotypes
from hcl_sklearn.genetics.gwas import CrossModalGWAS
from hcl_sklearn.genetics.gwas.association import RankDeficientCovariatesError

# the GWAS-SSF standard's columns in its order, then the package's own
SSF = ["chromosome", "base_pair_location", "effect_allele", "other_allele", "beta",
       "standard_error", "p_value", "effect_allele_frequency", "n", "variant_id",
       "t_stat", "neg_log10_p", "phenotype"]


@pytest.fixture(scope="module")
def small():
    g = Genotypes.from_plink(get_1000g_chr22()).subset(np.arange(3000))
    rng = np.random.default_rng(2)
    G = g.read(snps=[500, 2500], standardize=True)
    Y = pd.DataFrame(rng.normal(size=(g.n_samples, 5)), index=g.iid,
                     columns=["t1_000", "t1_001", "t2_000", "t2_001", "age"])
    Y["t1_000"] += 0.9 * G[:, 0]
    Y["t2_001"] += 0.9 * G[:, 0] + 0.9 * G[:, 1]
    Y.iloc[:20, 3] = np.nan
    cov = pd.DataFrame({"sex": rng.integers(0, 2, g.n_samples)}, index=g.iid)
    gwas = CrossModalGWAS(g, covariates=cov).fit(Y)
    return g, Y, cov, gwas


def test_public_api_and_fitted_attributes(small):
    g, Y, cov, gwas = small
    assert LazyCrossModalGWAS is CrossModalGWAS
    assert gwas.get_params()["alpha"] == 5e-8 and gwas.get_params()["maf"] == 0.01
    ss = gwas.sumstats_
    assert list(ss.columns) == SSF
    n_t = gwas.snp_qc_["n_tested"]
    assert len(ss) == 5 * n_t
    assert gwas.snp_qc_["n_snps_in"] == 3000
    assert n_t + gwas.snp_qc_["n_low_maf"] + gwas.snp_qc_["n_monomorphic"] == 3000
    assert gwas.modalities_ == {"t1": ["t1_000", "t1_001"], "t2": ["t2_000", "t2_001"],
                                "age": ["age"]}
    assert set(gwas.loci_) == {"t1", "t2", "age"}
    assert gwas.thresholds_["t1"] == pytest.approx(2.5e-8)
    assert gwas.thresholds_["age"] == pytest.approx(5e-8)
    assert list(gwas.lambda_gc_.index) == list(Y.columns)
    assert gwas.n_samples_["t2_001"] == len(Y) - 20
    # effect allele = a1 of the genotypes, frequency over the analysed samples
    row = ss[ss.phenotype == "t1_000"].iloc[0]
    snp = g.snps.iloc[0]
    assert (row.effect_allele, row.other_allele) == (snp.a1, snp.a2)
    ok = np.isclose(row.effect_allele_frequency, g.read(snps=[0]).mean() / 2)
    assert ok
    # the planted SNP is the top t1 lead; t1 and t2 share one locus, t2 has a second
    assert gwas.leads_["t1"].variant_id.iloc[0] == g.snps.variant_id.iat[500]
    ov = gwas.overlap_
    assert ov.modalities == ("t1", "t2") and ov.n_shared == 1 and ov.n_only_b == 1
    mp = gwas.min_p_["t1"]
    both = ss[ss.phenotype.isin(["t1_000", "t1_001"])].groupby("variant_id").neg_log10_p.max()
    np.testing.assert_allclose(mp.set_index("variant_id").neg_log10_p.loc[both.index], both)


def test_prefix_string_and_genotypes_object_agree(small):
    g, Y, cov, gwas = small
    prefix_fit = CrossModalGWAS(get_1000g_chr22(), covariates=cov).fit(Y.iloc[:, :1])
    ss = prefix_fit.sumstats_.set_index("variant_id")
    ref = gwas.sumstats_.query("phenotype == 't1_000'").set_index("variant_id")
    assert prefix_fit.snp_qc_["n_snps_in"] == 15938
    np.testing.assert_allclose(ss.loc[ref.index, "beta"], ref["beta"], rtol=1e-12)


def test_writers_round_trip(small, tmp_path):
    _, _, _, gwas = small
    ss = gwas.sumstats_
    (path,) = gwas.to_tsv_gz(tmp_path / "all.tsv.gz")
    back = pd.read_csv(path, sep="\t", dtype={"chromosome": str})
    assert list(back.columns) == list(ss.columns) and len(back) == len(ss)
    # the text writer keeps 7 significant digits (%.7g: <= 5e-7 relative); 1e-6 = 2x that
    np.testing.assert_allclose(back["beta"], ss["beta"], rtol=1e-6)
    np.testing.assert_allclose(back["neg_log10_p"], ss["neg_log10_p"], rtol=1e-6)
    files = gwas.to_tsv_gz(tmp_path / "per", per_phenotype=True)
    assert sorted(f.name for f in files) == sorted(f"{c}.tsv.gz" for c in gwas.phenotypes_)
    one = pd.read_csv(tmp_path / "per" / "t2_001.tsv.gz", sep="\t")
    assert "phenotype" not in one and (one.n == gwas.n_samples_["t2_001"]).all()
    assert len(one) == (ss.phenotype == "t2_001").sum()
    # parquet keeps float64 exactly; repeated strings come back as categoricals
    (pq,) = gwas.to_parquet(tmp_path / "all.parquet")
    back = pd.read_parquet(pq)
    pd.testing.assert_frame_equal(back, ss, check_dtype=False, check_categorical=False)
    files = gwas.to_parquet(tmp_path / "perpq", per_phenotype=True)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "perpq" / "t1_000.parquet"),
        ss[ss.phenotype == "t1_000"].drop(columns="phenotype").reset_index(drop=True),
        check_dtype=False, check_categorical=False)


def test_plots_return_figures(small):
    _, _, _, gwas = small
    for fig in (gwas.plot_manhattan("t1"), gwas.plot_miami("t1", "t2"),
                gwas.plot_qq("t1_000"), gwas.plot_qq()):
        assert isinstance(fig, Figure)
        assert len(fig.axes[0].collections) >= 1
    fig = gwas.plot_qq("t1_000")
    assert f"{gwas.lambda_gc_['t1_000']:.3f}" in fig.axes[0].get_legend().get_texts()[0].get_text()
    y = np.concatenate([c.get_offsets()[:, 1] for c in gwas.plot_miami().axes[0].collections])
    assert y.max() > 0 > y.min()                              # T1 up, T2 down
    assert gwas.plot_manhattan("t2").axes[0].get_xlabel() == "chromosome 22 position (Mb)"
    with pytest.raises(ValueError, match="Unknown modality 'dti'"):
        gwas.plot_manhattan("dti")


def test_torch_backend_on_cpu_matches_numpy(small):
    g, Y, cov, gwas = small
    tg = CrossModalGWAS(g, covariates=cov, backend="torch", device="cpu").fit(Y)
    # torch float64 vs numpy float64 products: roundoff ~ n eps ~ 1e-13 relative
    np.testing.assert_allclose(tg.sumstats_["t_stat"], gwas.sumstats_["t_stat"], rtol=1e-9)


def test_n_jobs_and_block_size_do_not_change_results(small):
    g, Y, cov, gwas = small
    other = CrossModalGWAS(g, covariates=cov, block_size=333, n_jobs=1, verbose=1).fit(Y)
    # other blocking / threads, same float64 math: summation order only, ~1e-13
    np.testing.assert_allclose(other.sumstats_["beta"], gwas.sumstats_["beta"], rtol=1e-10)


# ---------------------------------------------------------------- errors


def _tiny(n=60, m=8, seed=0):
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, 0.4, size=(n, m)).astype(float)
    ids = [f"id{i}" for i in range(n)]
    return G, ids, pd.DataFrame(rng.normal(size=(n, 2)), index=ids, columns=["t1_0", "t2_0"])


def test_rank_deficient_covariates_are_named():
    G, ids, Y = _tiny()
    cov = pd.DataFrame({"age": np.arange(60.0), "age_months": 12 * np.arange(60.0),
                        "site": 1.0}, index=ids)
    # the constant 'site' is dropped (the package's covariate policy); the collinear pair
    # is an error naming one of its columns
    with pytest.raises(RankDeficientCovariatesError, match="age") as e:
        CrossModalGWAS(Genotypes.from_array(G, ids), covariates=cov).fit(Y)
    assert "rank 2 of 3" in str(e.value)


def test_id_mismatches_say_how_many_matched():
    G, ids, Y = _tiny()
    g = Genotypes.from_array(G, ids)
    Y2 = Y.rename(index={"id3": "zz3", "id7": "zz7"})
    with pytest.raises(ValueError, match=r"58 of 60 .*zz3"):
        CrossModalGWAS(g).fit(Y2)
    cov = pd.DataFrame({"age": np.arange(50.0)}, index=ids[:50])
    with pytest.raises(ValueError, match=r"50 of 60 .*covariates.*id50"):
        CrossModalGWAS(g, covariates=cov).fit(Y)
    with pytest.raises(ValueError, match="duplicated subject ids"):
        CrossModalGWAS(g).fit(pd.concat([Y, Y.iloc[:2]]))


def test_monomorphic_snps_are_skipped_and_counted():
    G, ids, Y = _tiny()
    G[:, 2] = 2.0
    G[:, 5] = 0.0
    G[:, 6] = 0.0
    G[0, 6] = 1.0                             # MAF 1/120 < 0.01
    gwas = CrossModalGWAS(Genotypes.from_array(G, ids)).fit(Y)
    assert gwas.snp_qc_ == {"n_snps_in": 8, "n_monomorphic": 2, "n_low_maf": 1,
                            "n_tested": 5}
    assert not gwas.sumstats_.variant_id.isin(["snp2", "snp5", "snp6"]).any()
    assert np.isfinite(gwas.sumstats_[["beta", "t_stat", "neg_log10_p"]]).all().all()


def test_constant_phenotype_is_an_error():
    G, ids, Y = _tiny()
    Y["t2_0"] = 3.0
    with pytest.raises(ValueError, match=r"\['t2_0'\] are constant"):
        CrossModalGWAS(Genotypes.from_array(G, ids)).fit(Y)
    Y["t2_0"] = np.nan
    with pytest.raises(ValueError, match=r"\['t2_0'\] have no observed value"):
        CrossModalGWAS(Genotypes.from_array(G, ids)).fit(Y)


def test_truncated_bed_is_an_error(tmp_path):
    src = get_1000g_chr22()
    for ext in (".bim", ".fam"):
        shutil.copy(src + ext, tmp_path / ("cut" + ext))
    data = open(src + ".bed", "rb").read()
    (tmp_path / "cut.bed").write_bytes(data[: len(data) // 2])
    Y = pd.DataFrame({"t1_0": np.arange(378.0)},
                     index=Genotypes.from_plink(src).iid)
    with pytest.raises(ValueError, match="truncated"):
        CrossModalGWAS(str(tmp_path / "cut")).fit(Y)


def test_bad_types_and_params():
    G, ids, Y = _tiny()
    g = Genotypes.from_array(G, ids)
    with pytest.raises(TypeError, match="DataFrame indexed by subject id"):
        CrossModalGWAS(g).fit(Y.to_numpy())
    with pytest.raises(TypeError, match="Genotypes, a PLINK 1 prefix or a .bgen path"):
        CrossModalGWAS(G).fit(Y)
    # text covariates are one-hot encoded by default; an error when the policy says so
    with pytest.raises(ValueError, match=r"non-numeric columns \['site'\]"):
        CrossModalGWAS(g, covariates=pd.DataFrame({"site": ["a", "b"] * 30}, index=ids),
                       covariate_policy={"categorical": "raise"}).fit(Y)
    with pytest.raises(ValueError, match="contain inf"):
        CrossModalGWAS(g).fit(Y.replace(Y.iloc[0, 0], np.inf))
    for kw, msg in [({"alpha": 2.0}, "alpha"), ({"maf": 0.7}, "maf"),
                    ({"block_size": 0}, "block_size"), ({"backend": "jax"}, "backend"),
                    ({"device": "cuda:0", "backend": "numpy"}, "device='cpu' only"),
                    ({"overlap": "t1"}, "overlap")]:
        with pytest.raises(ValueError, match=msg):
            CrossModalGWAS(g, **kw).fit(Y)
    with pytest.raises(ValueError, match=r"cannot fit the intercept \+ 0 covariates"):
        CrossModalGWAS(Genotypes.from_array(G[:2], ids[:2])).fit(Y.iloc[:2])


@pytest.mark.parametrize("n", [500, 9_000, 300_000])
def test_qq_points_follow_the_sorted_quantiles(n):
    """The QQ markers against the exact curve (a full sort): the top ``exact`` placed
    exactly, every marker within one histogram bin (1/grid of the observed axis) of the
    observed quantile at its rank, and few markers. Null uniforms, ties at p = 1 and a
    tail of hits, so every part of the construction is used."""
    from hcl_sklearn.genetics.gwas.plotting import qq_points

    rng = np.random.default_rng(n)
    p = rng.uniform(size=n)
    p[: n // 10] = 1.0                                    # ties (e.g. monomorphic)
    p[n // 10: n // 10 + 20] = 10.0 ** -rng.uniform(8, 30, 20)   # hits
    nlp = -np.log10(p)
    nlp[:3] = np.nan                                      # dropped, as in qq()
    grid, exact = 200, 800
    exp, obs = qq_points(nlp, grid=grid, exact=exact)
    ref = np.sort(nlp[np.isfinite(nlp)])[::-1]
    m = ref.size
    rank = np.rint(m * 10.0 ** -exp + 0.5).astype(int)    # expected = -log10((r - .5) / m)
    np.testing.assert_allclose(-np.log10((rank - 0.5) / m), exp, rtol=1e-12)
    assert np.all(np.diff(rank) > 0) and rank[0] == 1
    exact_rows = rank <= exact
    np.testing.assert_array_equal(obs[exact_rows], ref[rank[exact_rows] - 1])
    # one bin of the observed axis (+ roundoff of the bin arithmetic)
    width = ref[0] / grid
    assert np.abs(obs - ref[rank - 1]).max() <= width * (1 + 1e-9)
    assert exp.size <= 2 * grid + exact + 2
    assert np.all(np.diff(obs) <= 0)

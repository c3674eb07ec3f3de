"""Gene-based test (MAGMA SNP-wise mean): quadratic-form tail, SNP->gene, null, power."""

import mpmath
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hcl_sklearn.datasets.genotypes import load_reference_panel
from hcl_sklearn.genetics import Genotypes
from hcl_sklearn.genetics.gwas.association import ols_association
from hcl_sklearn.genetics.gwas.sumstats import SUMSTATS_COLUMNS
from hcl_sklearn.targets import GeneBasedTest
from hcl_sklearn.targets.gene_test import SumstatsColumnError, read_sumstats
from hcl_sklearn.targets.genes import assign_snps, load_genes
from hcl_sklearn.targets.quadform import quadform_sf

mpmath.mp.dps = 50


# ----------------------------------------------------------------------- quadform
def _log_chi2_sf_mp(x, k):
    return float(mpmath.log(mpmath.gammainc(mpmath.mpf(k) / 2, mpmath.mpf(x) / 2,
                                            regularized=True)))


@pytest.mark.parametrize("k", [1, 2, 5, 40])
def test_quadform_equal_weights_is_scaled_chi2(k):
    # lam all equal to c: Q = c chi2_k; reference: mpmath's regularised incomplete gamma
    # at 50 digits. Tolerance 1e-10 relative: the saddle-point inversion's quadrature
    # tolerance (1e-12 on its O(1) integral) and Imhof's ~1e-13 absolute error over
    # p >= 1e-5 (relative <= 1e-8 there -> 1e-7 bound in the body).
    c = 1.7
    x = np.array([0.5, k, k + 3 * np.sqrt(2 * k), 60, 200, 800, 2000.0])  # p to ~1e-400
    log_ref = np.array([_log_chi2_sf_mp(v, k) for v in x])
    log_p = quadform_sf(c * x, np.full(k, c), log=True)
    rel = np.abs(np.expm1(log_p - log_ref))
    body = log_ref > np.log(1e-5)
    assert np.all(rel[body] < 1e-7), rel
    assert np.all(rel[~body] < 1e-10), rel
    assert log_ref.min() < np.log(1e-300)  # far into the tail indeed


def _log_sf_pairs_mp(q, theta):
    # Q = sum_i theta_i/2 * chi2_2 = sum of Exp(mean theta_i), distinct theta:
    # P(Q > q) = sum_i exp(-q/theta_i) prod_{j != i} theta_i / (theta_i - theta_j)
    q = mpmath.mpf(q)
    th = [mpmath.mpf(t) for t in theta]
    tot = mpmath.mpf(0)
    for i, ti in enumerate(th):
        term = mpmath.exp(-q / ti)
        for j, tj in enumerate(th):
            if j != i:
                term *= ti / (ti - tj)
        tot += term
    return float(mpmath.log(tot))


def test_quadform_distinct_pairs_closed_form():
    # weights in equal pairs: the density is a finite sum of exponentials (closed form,
    # evaluated at 50 digits, so its cancellation is harmless). Tolerances as above.
    lam = np.array([3.0, 3.0, 1.2, 1.2, 0.4, 0.4, 0.05, 0.05])
    theta = 2 * lam[::2]
    q = np.array([0.3, 2.0, 9.3, 25.0, 80.0, 400.0, 2000.0])  # p from ~1 to ~1e-145
    log_ref = np.array([_log_sf_pairs_mp(v, theta) for v in q])
    log_p = quadform_sf(q, lam, log=True)
    rel = np.abs(np.expm1(log_p - log_ref))
    body = log_ref > np.log(1e-5)
    assert np.all(rel[body] < 1e-7), rel
    assert np.all(rel[~body] < 1e-10), rel
    for method in ("imhof", "saddlepoint"):  # each method on its own where it is used
        lp = quadform_sf(q[body if method == "imhof" else ~body], lam, method=method,
                         log=True)
        ref = log_ref[body if method == "imhof" else ~body]
        assert np.all(np.abs(np.expm1(lp - ref)) < (1e-7 if method == "imhof" else 1e-10))
    # Lugannani-Rice is an approximation: within 10 % here (its relative error is
    # O(1/q) in the tail; 10 % is a loose bound for these weights, measured ~1-6 %)
    lr = quadform_sf(q[~body], lam, method="lugannani-rice", log=True)
    assert np.all(np.abs(np.expm1(lr - log_ref[~body])) < 0.1)


def test_quadform_general_weights_vs_mpmath_imhof():
    # arbitrary LD-like eigenvalues: reference = Imhof's integral by mpmath (quadosc,
    # 50 digits) at moderate p, where 50 digits make the 1/2 + ... cancellation exact
    rng = np.random.default_rng(1)
    lam = np.sort(rng.gamma(0.5, 2.0, size=4))[::-1]
    for q in (lam.sum() * 0.5, lam.sum() * 3.0):
        def f(u):
            th = sum(mpmath.atan(l * u) for l in lam) / 2 - q * u / 2
            rho = mpmath.fprod([(1 + (l * u) ** 2) ** 0.25 for l in lam])
            return mpmath.sin(th) / (u * rho)
        with mpmath.workdps(20):  # 20 digits: ample for a 1e-7 comparison, and fast
            ref = 0.5 + mpmath.quadosc(f, [0, mpmath.inf], omega=q / 2) / mpmath.pi
        p = quadform_sf(q, lam)
        assert abs(p / float(ref) - 1) < 1e-7  # Imhof's ~1e-13 absolute / p >= 1e-3


def test_quadform_monte_carlo_real_ld():
    # null of sum z^2, z ~ N(0, R), R the real LD of 30 consecutive 1000G chr22 SNPs
    G, _ = load_reference_panel()
    X = G[:, 2000:2030].astype(float)
    R = np.corrcoef(X, rowvar=False)
    lam = np.clip(np.linalg.eigvalsh(R), 0, None)
    lam = lam[lam > 1e-6 * lam.max()]
    rng = np.random.default_rng(7)
    L = np.linalg.cholesky(R + 1e-10 * np.eye(len(R)))
    n = 200_000
    T = ((rng.standard_normal((n, len(R))) @ L.T) ** 2).sum(1)
    q = np.quantile(T, [0.5, 0.9, 0.99, 0.999])
    p = quadform_sf(q, lam)
    emp = np.array([(T > v).mean() for v in q])
    se = np.sqrt(p * (1 - p) / n)  # binomial SE of the MC estimate
    assert np.all(np.abs(emp - p) < 4 * se), (emp, p, se)  # 4 SE: ~6e-5 two-sided x 4


# ----------------------------------------------------------------------- genes
def test_load_genes_and_assign_vs_brute_force():
    genes = load_genes()
    assert list(genes.columns) == ["chrom", "start", "end", "ensg", "symbol"]
    assert (genes["end"] >= genes["start"]).all()
    assert len(load_genes("all")) > len(genes)
    g22 = genes[genes.chrom == "22"].reset_index(drop=True)
    rng = np.random.default_rng(0)
    snps = pd.DataFrame({"chrom": rng.choice(["22", "21"], 3000),
                         "pos": rng.integers(16e6, 51e6, 3000)})
    got = assign_snps(snps, g22, window=(5, 20))
    lo, hi = g22.start.to_numpy() - 5000, g22.end.to_numpy() + 20000
    on22 = (snps.chrom == "22").to_numpy()
    inside = on22[None, :] & (snps.pos.to_numpy()[None, :] >= lo[:, None]) & \
        (snps.pos.to_numpy()[None, :] <= hi[:, None])
    gi, si = np.nonzero(inside)
    assert set(zip(got.gene_index, got.snp_index)) == set(zip(gi, si))
    assert len(got) == len(gi)


# ----------------------------------------------------------------------- null, power
@pytest.fixture(scope="module")
def panel():
    G, snps = load_reference_panel()
    g = Genotypes.from_array(G.astype(np.float64), [f"s{i}" for i in range(G.shape[0])],
                             snps[["chrom", "pos", "variant_id", "a1", "a2"]])
    return G.astype(np.float64), snps, g


def _long_sumstats(G, snps, Y, names):
    res = ols_association(G, Y)
    frames = []
    for j, name in enumerate(names):
        frames.append(pd.DataFrame({
            "chromosome": snps.chrom.to_numpy(), "base_pair_location": snps.pos.to_numpy(),
            "effect_allele": snps.a1.to_numpy(), "other_allele": snps.a2.to_numpy(),
            "beta": res["beta"][:, j], "standard_error": res["se"][:, j],
            "p_value": 10 ** res["log10_p"][:, j], "effect_allele_frequency": np.nan,
            "n": G.shape[0], "variant_id": snps.variant_id.to_numpy(),
            "t_stat": res["t"][:, j], "neg_log10_p": -res["log10_p"][:, j],
            "phenotype": name}))
    out = pd.concat(frames, ignore_index=True)
    assert list(out.columns) == SUMSTATS_COLUMNS
    return out


def _lambda_gc(p):
    return np.median(stats.chi2.isf(p, 1)) / stats.chi2.ppf(0.5, 1)


@pytest.fixture(scope="module")
def null_fit(panel):
    G, snps, g = panel
    rng = np.random.default_rng(2024)
    n = G.shape[0]
    # two modalities x 4 dimensions, correlated within a modality (rho = 0.5), no SNP
    # effect: every gene null
    C = 0.5 * np.ones((3, 3)) + 0.5 * np.eye(3)
    Y = np.hstack([rng.standard_normal((n, 3)) @ np.linalg.cholesky(C).T
                   for _ in range(2)])
    names = [f"t1_{d}" for d in range(3)] + [f"t2_{d}" for d in range(3)]
    ss = _long_sumstats(G, snps, Y, names)
    return GeneBasedTest(window=10, ld_reference=g).fit(ss)


def _lambda_se(n):
    """SD of lambda_GC over n independent U(0, 1) p: the median's SD 0.5 / sqrt(n) through
    d chi2_isf / dp at 1/2 (n = 1000: 0.074, as a 2000-draw simulation gives)."""
    m = stats.chi2.ppf(0.5, 1)
    return 0.5 / np.sqrt(n) / stats.chi2.pdf(m, 1) / m


def _independent_trials(panel, n_trials, dims, seed):
    """Null trials that are independent of each other: trial k draws its own phenotype(s)
    (``dims`` dimensions of one modality, correlation 0.5) and is tested on one random gene
    only (its sumstats hold just that gene's SNPs). Returns the trials' p-values.

    z = x_s' y / sqrt(n) with the standardized genotypes and the known sigma = 1 is exactly
    N(0, R (x) rho) given the genotypes: the test's null, so p must be uniform. (OLS t
    statistics share the sample SD of y, which makes sum t^2 slightly under-dispersed at
    this N = 378 -- lambda 0.95 over 5000 trials, benchmarks/gene_test_calibration.py --
    an O(m / N) effect that vanishes at biobank N.)

    The gene tests of one phenotype are dependent (neighbouring genes share SNPs and LD):
    over 6 seeds of 6 phenotypes each, the per-seed lambda of 2808 such tests ranged
    0.86-1.05 and KS p 0.0001-0.93, so a one-seed KS or lambda over genes tests little."""
    G, snps, g = panel
    rng = np.random.default_rng(seed)
    n = G.shape[0]
    genes = load_genes()
    genes = genes[genes["chrom"].astype(str) == "22"].reset_index(drop=True)
    pairs = assign_snps(snps, genes, window=10)
    by_gene = {k: grp["snp_index"].to_numpy() for k, grp in pairs.groupby("gene_index")}
    pick = rng.choice(np.array(sorted(by_gene)), n_trials)
    C = 0.5 * np.ones((dims, dims)) + 0.5 * np.eye(dims)
    L = np.linalg.cholesky(C)
    Y = np.hstack([rng.standard_normal((n, dims)) @ L.T for _ in range(n_trials)])
    names = ([f"p{k:05d}" for k in range(n_trials)] if dims == 1 else
             [f"m{k:05d}_{d}" for k in range(n_trials) for d in range(dims)])
    Xs = (G - G.mean(0)) / G.std(0)
    Z = Xs.T @ Y / np.sqrt(n)
    frames = []
    for j, name in enumerate(names):
        r = by_gene[pick[j // dims]]
        frames.append(pd.DataFrame({
            "chromosome": snps.chrom.to_numpy()[r], "base_pair_location": snps.pos.to_numpy()[r],
            "variant_id": snps.variant_id.to_numpy()[r], "effect_allele": snps.a1.to_numpy()[r],
            "other_allele": snps.a2.to_numpy()[r], "z": Z[r, j], "phenotype": name}))
    ss = pd.concat(frames, ignore_index=True)
    want = pd.DataFrame({"gene": genes["symbol"].to_numpy()[pick],
                         "start": genes["start"].to_numpy()[pick]})
    if dims == 1:
        fit = GeneBasedTest(window=10, ld_reference=g, combine="none").fit(ss)
        want["phenotype"] = names
        got = fit.results_.merge(want, on=["phenotype", "gene", "start"])
    else:  # the population rho: a trial's few SNPs cannot estimate it
        rho = pd.DataFrame(np.kron(np.eye(n_trials), C), index=names, columns=names)
        fit = GeneBasedTest(window=10, ld_reference=g, dim_correlation=rho,
                            per_phenotype=False).fit(ss)
        want["modality"] = [f"m{k:05d}" for k in range(n_trials)]
        got = fit.modality_results_.merge(want, on=["modality", "gene", "start"])
    assert len(got) == n_trials
    return got["p_value"].to_numpy()


@pytest.mark.parametrize("dims, n_trials", [(1, 1000), (3, 400)])
def test_null_gene_pvalues_uniform_over_independent_trials(panel, dims, n_trials):
    """Per phenotype (dims 1) and across a modality's 3 correlated dimensions: independent
    null trials on real chr22 LD give uniform p. KS against U(0, 1) at 0.01; the share of
    p < 0.05 within 4 binomial SE; lambda within 4 SE (its SE at these n is 0.08-0.1, so
    this is a coarse check; benchmarks/gene_test_calibration.py runs 5000 trials each for
    the precise lambda, see docs/genes.md). Measured over seeds 8-12 (1 dim, 1000 trials):
    KS p 0.34-0.99, share < 0.05 0.041-0.059, lambda 0.90-1.03; seeds 10-14 (3 dims, 400
    trials): KS p 0.34-0.99, share 0.0375-0.0525, lambda 0.89-1.05."""
    p = _independent_trials(panel, n_trials, dims, seed=7 + dims)
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert abs((p < 0.05).mean() - 0.05) <= 4 * np.sqrt(0.05 * 0.95 / n_trials)
    assert abs(_lambda_gc(p) - 1) <= 4 * _lambda_se(n_trials)


def test_null_fit_rho_and_mean(null_fit):
    """The default rho estimate and the null mean of the combined statistic on a
    whole-chromosome fit; no gene passes Bonferroni under the null."""
    m = null_fit.modality_results_
    assert set(m["modality"]) == {"t1", "t2"} and (m["n_dims"] == 3).all()
    # the estimated rho recovers the simulated 0.5 (SE of a correlation over ~15k SNPs
    # with LD, effective number of SNPs ~1-2k -> SE ~0.03; 0.1 is > 3 SE)
    rho = null_fit.dim_correlation_["t1"].to_numpy()
    assert np.all(np.abs(rho[~np.eye(3, dtype=bool)] - 0.5) < 0.1)
    # the null mean of the combined statistic is trace(R) trace(rho) = n_snps * D
    ratio = (m["statistic"] / (3 * m["n_snps"])).mean()
    assert abs(ratio - 1) < 0.1  # mean over ~940 genes of a mean-1 ratio, SE ~0.03
    # P(any of ~470 null genes passes Bonferroni) <= 0.05 per phenotype; 6 phenotypes and
    # 2 modalities: allow at most 1
    assert null_fit.results_["significant"].sum() <= 1
    assert m["significant"].sum() <= 1


def test_per_phenotype_false_gives_the_same_modality_tests(panel, null_fit):
    G, snps, g = panel
    rng = np.random.default_rng(2024)  # the null_fit phenotypes, re-drawn
    n = G.shape[0]
    C = 0.5 * np.ones((3, 3)) + 0.5 * np.eye(3)
    Y = np.hstack([rng.standard_normal((n, 3)) @ np.linalg.cholesky(C).T for _ in range(2)])
    names = [f"t1_{d}" for d in range(3)] + [f"t2_{d}" for d in range(3)]
    fast = GeneBasedTest(window=10, ld_reference=g, per_phenotype=False).fit(
        _long_sumstats(G, snps, Y, names))
    assert fast.results_.empty and fast.n_genes_ == null_fit.n_genes_
    pd.testing.assert_frame_equal(fast.modality_results_, null_fit.modality_results_)
    with pytest.raises(ValueError, match="combine='modality'"):
        GeneBasedTest(ld_reference=g, combine="none", per_phenotype=False).fit(
            _long_sumstats(G, snps, Y[:, :1], ["t1_0"]))


def test_power_planted_gene(panel):
    G, snps, g = panel
    genes = load_genes()
    rng = np.random.default_rng(5)
    gene = genes[genes.symbol == "SYN3"].iloc[0]
    inside = np.flatnonzero((snps.pos >= gene.start) & (snps.pos <= gene.end))
    causal = inside[len(inside) // 2]
    x = (G[:, causal] - G[:, causal].mean()) / G[:, causal].std()
    y = 0.4 * x + rng.standard_normal(G.shape[0])  # ~14 % variance explained
    ss = _long_sumstats(G, snps, y[:, None], ["height"])
    fit = GeneBasedTest(window=10, ld_reference=g).fit(ss)
    res = fit.results_
    assert res.iloc[0]["gene"] == "SYN3" or "SYN3" in set(res.head(3)["gene"])
    assert res.set_index("gene").loc["SYN3", "significant"]


def test_allele_alignment_and_external_layouts(panel):
    G, snps, g = panel
    rng = np.random.default_rng(3)
    sub = snps.iloc[5000:6500].reset_index(drop=True)
    beta = rng.standard_normal(len(sub))
    fast = pd.DataFrame({"CHR": 22, "SNP": sub.variant_id, "POS": sub.pos, "A1": sub.a1,
                         "A2": sub.a2, "N": 378, "AF1": 0.3, "BETA": beta, "SE": 1.0,
                         "P": 2 * stats.norm.sf(np.abs(beta))})
    a = GeneBasedTest(ld_reference=g, z_from="beta_se").fit(fast)
    # the same SNPs with A1/A2 swapped and the sign flipped: identical gene results,
    # except strand-ambiguous (A/T, C/G) SNPs, which are dropped when swapped
    swapped = fast.assign(A1=fast.A2, A2=fast.A1, BETA=-fast.BETA)
    b = GeneBasedTest(ld_reference=g, z_from="beta_se").fit(swapped)
    amb = ((sub.a1 + sub.a2).isin(["AT", "TA", "CG", "GC"])).sum()
    assert b.snp_counts_["n_ambiguous_dropped"] == amb
    assert b.snp_counts_["n_flipped"] == len(sub) - amb
    genes_no_amb = a.results_.set_index("gene")
    same = b.results_.set_index("gene")
    common = same.index.intersection(genes_no_amb.index)
    eq = genes_no_amb.loc[common, "n_snps"] == same.loc[common, "n_snps"]
    assert eq.any()
    np.testing.assert_allclose(same.loc[common[eq], "statistic"],
                               genes_no_amb.loc[common[eq], "statistic"], rtol=1e-12)
    # PLINK 2 .glm.linear names; z from P and the sign of BETA equals BETA/SE here
    plink = pd.DataFrame({"#CHROM": 22, "POS": sub.pos, "ID": sub.variant_id,
                          "REF": sub.a2, "ALT": sub.a1, "A1": sub.a1, "TEST": "ADD",
                          "OBS_CT": 378, "BETA": beta, "SE": 1.0, "T_STAT": beta,
                          "P": 2 * stats.norm.sf(np.abs(beta))})
    c = GeneBasedTest(ld_reference=g).fit(plink)
    np.testing.assert_allclose(c.results_.set_index("gene").loc[a.results_.gene,
                                                                "statistic"],
                               a.results_["statistic"], rtol=1e-8)  # isf(p) roundoff


def test_input_errors(panel):
    G, snps, g = panel
    bad = pd.DataFrame({"CHR": [22], "SNP": ["rs1"], "POS": [1], "BETA": [0.1]})
    with pytest.raises(SumstatsColumnError, match="effect allele.*other allele"):
        read_sumstats(bad)
    with pytest.raises(SumstatsColumnError, match="association statistic"):
        read_sumstats(bad.assign(A1="A", A2="G", BETA=None).drop(columns="BETA"))
    nowhere = pd.DataFrame({"CHR": 22, "SNP": ["x1", "x2"], "POS": [1, 2], "A1": "A",
                            "A2": "G", "BETA": [0.1, 0.2], "SE": 0.1})
    with pytest.raises(ValueError, match="None of the 2 sumstats SNPs is in the LD ref"):
        GeneBasedTest(ld_reference=g).fit(nowhere)
    with pytest.raises(ValueError, match="needs an LD reference"):
        GeneBasedTest().fit(nowhere)

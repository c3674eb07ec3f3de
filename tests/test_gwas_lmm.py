"""CrossModalGWAS(model='lmm'): closed-form GLS, the package's REML, and GEMMA on real mice.

References:

* the GLS estimator written out with a dense inverse of ``V = h2 K + (1 - h2) I`` (numpy,
  no eigendecomposition), with covariates, with and without LOCO;
* GEMMA 0.98 (Debian ``gemma``; real related heterogeneous-stock mice ``mouse_hs1940``
  from ``gemma-doc``, 1940 animals, 1410 phenotyped, 12 226 SNPs on 19 autosomes).
"""

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcl_sklearn import CrossModalGWAS
from hcl_sklearn.genetics import Genotypes
from hcl_sklearn.genetics.reml import eigen_grm, reml_h2, reml_h2_rotated

GEMMA_EXAMPLE = Path("/usr/share/doc/gemma/example")


def _related_cohort(n=240, m_per_chrom=150, n_chrom=3, seed=0):
    """Families of 4 (sibships) on independent chromosomes, a polygenic trait."""
    rng = np.random.default_rng(seed)
    n_fam = n // 4
    freq = rng.uniform(0.1, 0.5, n_chrom * m_per_chrom)
    parents = rng.binomial(1, freq, size=(n_fam, 4, freq.size))  # 4 haplotypes a family
    kids = np.empty((n, freq.size), dtype=np.int8)
    for k in range(4):
        pick_m = rng.integers(0, 2, size=(n_fam, freq.size))
        pick_f = rng.integers(2, 4, size=(n_fam, freq.size))
        fam = np.arange(n_fam)[:, None]
        snp = np.arange(freq.size)[None, :]
        kids[k::4] = parents[fam, pick_m, snp] + parents[fam, pick_f, snp]
    iid = np.array([f"s{i:04d}" for i in range(n)])
    snps = pd.DataFrame({"chrom": np.repeat([str(c + 1) for c in range(n_chrom)],
                                            m_per_chrom),
                         "pos": np.tile(np.arange(m_per_chrom) * 1000 + 1, n_chrom),
                         "variant_id": [f"rs{j}" for j in range(freq.size)],
                         "a1": "A", "a2": "G"})
    g = Genotypes.from_array(kids, iid, snps)
    Z = (kids - kids.mean(0)) / kids.std(0)
    C = pd.DataFrame(rng.normal(size=(n, 2)), index=iid, columns=["c0", "c1"])
    u = Z @ rng.normal(size=freq.size) / np.sqrt(freq.size)
    Y = pd.DataFrame({"t1_0": u + 0.8 * rng.normal(size=n) + C["c0"].to_numpy(),
                      "t1_1": 0.5 * u + rng.normal(size=n)}, index=iid)
    return g, Y, C, kids


def _dense_gls(y, g, X, K, h2):
    """GLS of ``y ~ X + g`` with ``V = h2 K + (1 - h2) I``: beta, se (residual variance
    re-estimated, df = n - c - 1), t, written out with a dense inverse."""
    n = len(y)
    Vi = np.linalg.inv(h2 * K + (1.0 - h2) * np.eye(n))
    D = np.column_stack([X, g])
    A = D.T @ Vi @ D
    b = np.linalg.solve(A, D.T @ Vi @ y)
    r = y - D @ b
    s2 = r @ Vi @ r / (n - D.shape[1])
    se = np.sqrt(s2 * np.linalg.inv(A)[-1, -1])
    return b[-1], se, b[-1] / se


def _hwe_grm(G):
    """GRM of standardized (HWE) allele counts, SNPs with MAF >= 1 % (as the package)."""
    p = G.mean(0) / 2.0
    keep = np.minimum(p, 1 - p) >= 0.01
    Z = (G[:, keep] - 2 * p[keep]) / np.sqrt(2 * p[keep] * (1 - p[keep]))
    return Z @ Z.T / keep.sum()


def test_rotated_reml_equals_reml_with_covariates():
    """REML on error contrasts (covariates projected out, the form the LMM uses) equals the
    package's REML with covariates: h2 to the golden-section tolerance (~3e-9: a bracket
    of 0.1 shrunk by 0.618^36), its SE to float roundoff."""
    rng = np.random.default_rng(1)
    n = 300
    Z = rng.standard_normal((n, 500))
    K = Z @ Z.T / 500
    X = np.column_stack([np.ones(n), rng.standard_normal((n, 3))])
    L = np.linalg.cholesky(K + 1e-9 * np.eye(n))
    Y = (X @ rng.standard_normal((4, 3)) + 0.8 * L @ rng.standard_normal((n, 3))
         + rng.standard_normal((n, 3)))
    Q, s = eigen_grm(K)
    a = reml_h2(Y, X, Q, s)
    A = np.linalg.qr(X, mode="complete")[0][:, 4:]
    U, s2 = eigen_grm(A.T @ K @ A)
    b = reml_h2_rotated(U.T @ A.T @ Y, np.zeros((n - 4, 0)), s2)
    np.testing.assert_allclose(b["h2"], a["h2"], atol=1e-7)
    np.testing.assert_allclose(b["h2_se"], a["h2_se"], rtol=1e-6)


@pytest.mark.parametrize("loco", [False, True])
def test_lmm_equals_dense_gls(loco):
    """Every SNP's beta, se and t equal the dense GLS at the fitted h2 (float64 roundoff of
    an n = 240 inverse and rotation: 1e-8 relative is ~1e5 x machine epsilon x n^0.5
    headroom); the REML h2 of each LOCO GRM equals the package's REML on that GRM."""
    g, Y, C, G = _related_cohort()
    m = CrossModalGWAS(g, model="lmm", loco=loco, covariates=C, maf=0.0).fit(Y)
    X = np.column_stack([np.ones(len(Y)), C.to_numpy()])
    chrom = g.snps["chrom"].to_numpy()
    for c in (["all"] if not loco else ["1", "2", "3"]):
        on = chrom == c if loco else np.ones(len(chrom), bool)
        K = _hwe_grm(G[:, ~on] if loco else G)
        Q, s = eigen_grm(K)
        ref = reml_h2(Y.to_numpy(), X, Q, s)
        np.testing.assert_allclose(m.h2_null_[c].to_numpy(), ref["h2"], atol=1e-6)
        for j, col in enumerate(Y.columns):
            h2 = m.h2_null_.loc[col, c]
            for snp in np.flatnonzero(on)[::37]:
                b, se, t = _dense_gls(Y[col].to_numpy(), G[:, snp].astype(float), X, K, h2)
                np.testing.assert_allclose([m._beta[snp, j], m._se[snp, j], m._t[snp, j]],
                                           [b, se, t], rtol=1e-8)


def test_lmm_parameters_are_checked():
    g, Y, C, _ = _related_cohort(n=40, m_per_chrom=20, n_chrom=1)
    with pytest.raises(ValueError, match="at least two chromosomes"):
        CrossModalGWAS(g, model="lmm").fit(Y)
    with pytest.raises(ValueError, match="model='lmm'"):
        CrossModalGWAS(g, h2=0.5).fit(Y)
    K = pd.DataFrame(np.eye(10), index=Y.index[:10], columns=Y.index[:10])
    with pytest.raises(ValueError, match="grm lacks 30"):
        CrossModalGWAS(g, model="lmm", grm=K).fit(Y)


# ---------------------------------------------------------------- GEMMA on real mice
@pytest.fixture(scope="module")
def gemma_mice(tmp_path_factory):
    if shutil.which("gemma") is None or not (GEMMA_EXAMPLE / "mouse_hs1940.bed.gz").exists():
        pytest.skip("GEMMA and its example data are not installed (Debian packages "
                    "'gemma' and 'gemma-doc'; .ci/run installs them)")
    root = tmp_path_factory.mktemp("gemma")
    for ext in ("bed", "bim", "fam"):
        with gzip.open(GEMMA_EXAMPLE / f"mouse_hs1940.{ext}.gz") as src, \
                open(root / f"mouse.{ext}", "wb") as dst:
            shutil.copyfileobj(src, dst)
    run = dict(cwd=root, check=True, capture_output=True)
    subprocess.run(["gemma", "-bfile", "mouse", "-gk", "1", "-o", "mouse"], **run)
    subprocess.run(["gemma", "-bfile", "mouse", "-k", "output/mouse.cXX.txt", "-lmm", "1",
                    "-n", "1", "-o", "wald"], **run)
    # GEMMA keeps phenotypes in the .fam's 6th+ columns: a plain 6-column copy for PLINK
    fam = pd.read_csv(root / "mouse.fam", sep="\t", header=None)
    (root / "plain").mkdir()
    for ext in ("bed", "bim"):
        (root / "plain" / f"m.{ext}").symlink_to(root / f"mouse.{ext}")
    fam.iloc[:, :6].to_csv(root / "plain" / "m.fam", sep="\t", header=False, index=False)
    g = Genotypes.from_plink(str(root / "plain" / "m"))
    Y = pd.DataFrame({"y": fam[5].to_numpy()}, index=g.iid).dropna()
    K = np.loadtxt(root / "output" / "mouse.cXX.txt")
    log = (root / "output" / "wald.log.txt").read_text()
    vc = {k: float(log.split(f"## {k} estimate in the null model = ")[1].split()[0])
          for k in ("vg", "ve")}
    wald = pd.read_csv(root / "output" / "wald.assoc.txt", sep="\t")
    return {"g": g, "Y": Y, "K": pd.DataFrame(K, index=g.iid, columns=g.iid),
            "vc": vc, "wald": wald}


def test_gemma_null_model_and_exact_wald(gemma_mice):
    """Same kinship (GEMMA's -gk 1), same phenotype (1410 mice):

    * the null-model variance ratio equals GEMMA's REML ``vg / (vg + ve)`` (GEMMA prints 6
      significant digits: 1e-5 relative);
    * GEMMA's Wald test re-estimates the variance ratio for every SNP (``l_remle``); at
      that ratio the package's test is GEMMA's: beta, se and p agree to GEMMA's 7 printed
      digits (measured: 2.7e-7, 8e-8, 5e-8 relative; bound 1e-6 = 2 x the rounding of
      beta and of l_remle) on 16 random SNPs and the 8 strongest.
    """
    d = gemma_mice
    m = CrossModalGWAS(d["g"], model="lmm", grm=d["K"], maf=0.0).fit(d["Y"])
    vg, ve = d["vc"]["vg"], d["vc"]["ve"]
    np.testing.assert_allclose(m.h2_null_.loc["y", "all"], vg / (vg + ve), rtol=1e-5)

    w = d["wald"]
    rng = np.random.default_rng(0)
    pick = np.sort(np.r_[rng.choice(len(w), 16, replace=False),
                         np.argsort(w["p_wald"].to_numpy())[:8]])
    lam = w["l_remle"].to_numpy()[pick]
    g = d["g"]
    sub = g.subset(g.snps["variant_id"].isin(w["rs"].iloc[pick]).to_numpy())
    assert (sub.snps["variant_id"].to_numpy() == w["rs"].iloc[pick].to_numpy()).all()
    YY = pd.concat([d["Y"]["y"].rename(f"y_{j}") for j in range(len(pick))], axis=1)
    # one phenotype copy per SNP, each at that SNP's variance ratio: read the diagonal
    fit = CrossModalGWAS(sub, model="lmm", grm=d["K"], h2=lam / (1 + lam), maf=0.0).fit(YY)
    k = np.arange(len(pick))
    ref = w.iloc[pick]
    sign = np.where(sub.snps["a1"].to_numpy() == ref["allele1"].to_numpy(), 1.0, -1.0)
    np.testing.assert_allclose(sign * fit._beta[k, k], ref["beta"], rtol=1e-6)
    np.testing.assert_allclose(fit._se[k, k], ref["se"], rtol=1e-6)
    np.testing.assert_allclose(-fit._log10_p[k, k], -np.log10(ref["p_wald"]), rtol=1e-6)


def test_gemma_whole_scan(gemma_mice):
    """All 10 768 SNPs GEMMA tests (its default MAF 1 %, missingness 5 % filters): the
    package holds the null variance ratio fixed, GEMMA re-estimates it per SNP (its
    l_remle spans 17 % around the null value). Measured: |d -log10 p| / max(1, -log10 p)
    at most 0.099 (largest at the strongest SNPs, whose own effect shifts the ratio most),
    correlation of -log10 p 0.9996. Bounds: 0.15 and 0.999."""
    d = gemma_mice
    m = CrossModalGWAS(d["g"], model="lmm", grm=d["K"], maf=0.0).fit(d["Y"])
    ss = m.sumstats_.merge(d["wald"], left_on="variant_id", right_on="rs")
    assert len(ss) == len(d["wald"])
    ours, ref = ss["neg_log10_p"].to_numpy(), -np.log10(ss["p_wald"].to_numpy())
    assert np.max(np.abs(ours - ref) / np.maximum(1.0, ref)) < 0.15
    assert np.corrcoef(ours, ref)[0, 1] > 0.999
    # the same hits: the 24 SNPs GEMMA puts at p < 1e-8 are the package's 24
    hits = set(ss["rs"][ref > 8])
    assert len(hits) == 24 and hits == set(ss["rs"][ours > 8])


# ---------------------------------------------------------------- BOLT-LMM on EUR_subset
BOLT_EXAMPLE = Path("/usr/share/doc/bolt-lmm/examples/examples.tar.xz")


@pytest.fixture(scope="module")
def bolt_eur(tmp_path_factory):
    if shutil.which("bolt") is None or not BOLT_EXAMPLE.exists():
        pytest.skip("BOLT-LMM and its example data are not installed (Debian packages "
                    "'bolt-lmm' and 'bolt-lmm-example'; .ci/run installs them)")
    import tarfile

    root = tmp_path_factory.mktemp("bolt")
    with tarfile.open(BOLT_EXAMPLE) as tar:
        tar.extractall(root, members=[m for m in tar.getmembers() if m.name.startswith(
            ("EUR_subset.bed", "EUR_subset.bim", "EUR_subset.fam", "EUR_subset.pheno2"))],
            filter="data")
    # the infinitesimal model only; Debian's build has no LD-score table: in-sample LD
    out = subprocess.run(
        ["bolt", "--bfile=EUR_subset", "--phenoFile=EUR_subset.pheno2.covars",
         "--phenoCol=PHENO", "--lmmInfOnly", "--LDscoresUseChip", "--numThreads=2",
         "--statsFile=inf.stats"], cwd=root, check=True, capture_output=True, text=True)
    h2 = float(out.stdout.split("Estimated (pseudo-)heritability: h2g = ")[1].split()[0])
    g = Genotypes.from_plink(str(root / "EUR_subset"))
    ph = pd.read_csv(root / "EUR_subset.pheno2.covars", sep=r"\s+")
    # BOLT reads NA and -9 as missing
    Y = pd.DataFrame({"y": ph["PHENO"].replace(-9, np.nan).to_numpy()},
                     index=ph["IID"].astype(str)).dropna()
    return {"g": g, "Y": Y, "h2": h2, "stats": pd.read_csv(root / "inf.stats", sep="\t")}


def test_bolt_lmm_inf(bolt_eur):
    """BOLT-LMM's infinitesimal test (LOCO over its 6 chromosomes) on 369 EUR samples x
    54 050 SNPs, at BOLT's own h2 estimate.

    BOLT does not compute ``x'V^-1 x`` per SNP: it uses one calibrated constant times
    ``x'x`` (its "AvgPro"/"AvgRetro" from 30 SNPs, Loh et al. 2015). The package's test
    is exact, so each SNP's SE differs from BOLT's by ``sqrt(r / median r)`` with
    ``r = x'V^-1 x / x'x``: measured slope of log(SE ratio) on log r -0.48 (theory -0.5);
    after that correction SEs agree to 3.0 % (max; BOLT's conjugate-gradient and Monte
    Carlo tolerances), before it 0.7 % median, 3.0 % at the 99th percentile, 22 % max.
    BOLT prints p with 2 significant digits (|d log10 p| up to 0.02). Measured:
    |d -log10 p| / max(1, -log10 p) 99th percentile 0.029, correlation 0.9997,
    |d beta| / SE median 0.009. Bounds below: about 1.7-2x those figures.
    """
    from hcl_sklearn.genetics.gwas.lmm import LMMKernel, loco_grm_parts

    d = bolt_eur
    g, Y = d["g"], d["Y"]
    m = CrossModalGWAS(g, model="lmm", maf=0.0, h2=d["h2"]).fit(Y)
    mm = m.sumstats_.merge(d["stats"], left_on="variant_id", right_on="SNP")
    assert len(mm) == len(d["stats"]) - 1 == m.snp_qc_["n_tested"]   # + 1 monomorphic
    sign = np.where(mm["effect_allele"] == mm["ALLELE1"], 1.0, -1.0)
    assert np.median(np.abs(sign * mm["beta"] - mm["BETA"]) / mm["SE"]) < 0.02
    ratio = (mm["standard_error"] / mm["SE"]).to_numpy()
    assert np.median(np.abs(ratio - 1)) < 0.015
    assert np.percentile(np.abs(ratio - 1), 99) < 0.05
    ref = -np.log10(mm["P_BOLT_LMM_INF"].to_numpy())
    dl = np.abs(mm["neg_log10_p"].to_numpy() - ref) / np.maximum(1.0, ref)
    assert np.percentile(dl, 99) < 0.05
    assert np.corrcoef(ref, mm["neg_log10_p"])[0, 1] > 0.999

    # the explanation: r = x'V^-1 x / x'x per SNP, from the LOCO kernels
    codes = pd.factorize(g.snps["chrom"].astype(str))[0]
    parts, counts = loco_grm_parts(g, Y.index, codes, maf=0.0)
    total, n_grm = sum(parts.values()), sum(counts.values())
    r = np.empty(g.n_snps)
    one = np.ones((len(Y), 1)) / np.sqrt(len(Y))
    for c in np.unique(codes):
        kern = LMMKernel(Y.to_numpy(), one, (total - parts[c]) / (n_grm - counts[c]),
                         h2=d["h2"])
        idx = np.flatnonzero(codes == c)
        prod = kern.product(g.read(samples=Y.index, snps=idx))
        r[idx] = prod[:, 1] / prod[:, 2]
    r = pd.Series(r, index=g.snps["variant_id"].to_numpy())[mm["variant_id"]].to_numpy()
    slope = np.polyfit(np.log(r), np.log(ratio), 1)[0]
    assert -0.6 < slope < -0.4
    adjusted = ratio * np.sqrt(r / np.median(r))
    assert np.max(np.abs(adjusted / np.median(adjusted) - 1)) < 0.05


def test_loco_grm_memory_bound_gives_the_same_matrices():
    """Parts recomputed on demand (keep_bytes=0) equal the kept ones bit for bit (the same
    reads and the same accumulation order), and each LOCO GRM equals the HWE GRM of the
    other chromosomes (float64 sums of ~300 SNPs: 1e-12)."""
    from hcl_sklearn.genetics.gwas.lmm import LocoGRM

    g, Y, _, G = _related_cohort(n=60, m_per_chrom=80, n_chrom=3)
    codes = pd.factorize(g.snps["chrom"])[0]
    kept = LocoGRM(g, Y.index, codes, maf=0.0)
    lean = LocoGRM(g, Y.index, codes, maf=0.0, keep_bytes=0)
    assert lean._parts == {} and len(kept._parts) == 3
    for c in range(3):
        np.testing.assert_array_equal(lean.without(c), kept.without(c))
        np.testing.assert_allclose(kept.without(c), _hwe_grm(G[:, codes != c]), atol=1e-12)
    np.testing.assert_allclose(kept.full(), _hwe_grm(G), atol=1e-12)

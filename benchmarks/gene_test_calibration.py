"""Null calibration of GeneBasedTest on real 1000 Genomes EUR chr22 LD, with independent tests.

Gene tests of one simulated phenotype are dependent (neighbouring genes share SNPs and LD),
so lambda_GC and a KS test over the genes of a few phenotypes say little: over 6 seeds of
6 phenotypes the per-seed lambda ranged 0.86-1.05. Here every test is independent: each
*trial* draws its own null phenotype(s) and is tested on one gene drawn at random, its
summary statistics holding only that gene's SNPs (+- 10 kb).

- per dimension: ``n`` trials, one N(0, 1) phenotype each (OLS on the 378 panel samples,
  the same genotypes as the in-sample LD reference), statistic sum_s z_s^2;
- across dimensions: ``n`` trials, one "modality" of 3 dimensions with correlation 0.5 each,
  statistic sum_d sum_s z_sd^2 with null weights lambda (x) mu; ``dim_correlation`` is the
  population correlation (the exact null; a trial's few SNPs cannot estimate it). Then the
  correlation the estimator estimates by default from all chr22 SNPs, beside the sample's,
  for 3 phenotype sets.

Prints lambda_GC, the KS p against U(0, 1), the fraction of p < 0.05 and < 0.01 (binomial SE
beside) and the time. Usage::

    python benchmarks/gene_test_calibration.py [n_trials] [seed] [only: 'per' | 'across']
"""

import sys
import time

import numpy as np
import pandas as pd
from scipy import stats

from hcl_sklearn.datasets.genotypes import load_reference_panel
from hcl_sklearn.genetics import Genotypes
from hcl_sklearn.genetics.gwas.association import ols_association
from hcl_sklearn.targets import GeneBasedTest
from hcl_sklearn.targets.genes import assign_snps, load_genes

RHO, DIMS, WINDOW_KB = 0.5, 3, 10


def lambda_gc(p):
    return float(np.median(stats.chi2.isf(p, 1)) / stats.chi2.ppf(0.5, 1))


def lambda_se(n):
    """SD of lambda_GC over n independent U(0, 1) p-values: the median's SD 0.5 / sqrt(n)
    through d chi2_isf / dp at p = 1/2 (1000 tests: 0.074; matches a simulation)."""
    m = stats.chi2.ppf(0.5, 1)
    return 0.5 / np.sqrt(n) / stats.chi2.pdf(m, 1) / m


def summary(name, p, seconds):
    p = np.asarray(p)
    n = len(p)
    se5, se1 = np.sqrt(0.05 * 0.95 / n), np.sqrt(0.01 * 0.99 / n)
    return {"test": name, "n_tests": n, "lambda_gc": round(lambda_gc(p), 4),
            "lambda_se": round(lambda_se(n), 4),
            "ks_p": round(float(stats.kstest(p, "uniform").pvalue), 4),
            "frac_p<0.05": f"{(p < 0.05).mean():.4f} (SE {se5:.4f})",
            "frac_p<0.01": f"{(p < 0.01).mean():.4f} (SE {se1:.4f})",
            "seconds": round(seconds, 1)}


def long_sumstats(snps, res, names, rows_of):
    """Long sumstats: phenotype j only on the SNP rows ``rows_of[j]``."""
    frames = []
    for j, name in enumerate(names):
        r = rows_of[j]
        frames.append(pd.DataFrame({
            "chromosome": snps["chrom"].to_numpy()[r],
            "base_pair_location": snps["pos"].to_numpy()[r],
            "variant_id": snps["variant_id"].to_numpy()[r],
            "effect_allele": snps["a1"].to_numpy()[r],
            "other_allele": snps["a2"].to_numpy()[r],
            "beta": res["beta"][r, j], "standard_error": res["se"][r, j],
            "t_stat": res["t"][r, j], "neg_log10_p": -res["log10_p"][r, j],
            "phenotype": name}))
    return pd.concat(frames, ignore_index=True)


def per_dimension(G, snps, ref, genes, by_gene, gene_ids, rng, n_trials):
    n = G.shape[0]
    pick = rng.choice(gene_ids, n_trials)
    Y = rng.standard_normal((n, n_trials))
    names = [f"p{k:05d}" for k in range(n_trials)]
    res = ols_association(G, Y)
    ss = long_sumstats(snps, res, names, [by_gene[g] for g in pick])
    fit = GeneBasedTest(window=WINDOW_KB, ld_reference=ref, combine="none").fit(ss)
    want = pd.DataFrame({"phenotype": names, "gene": genes["symbol"].to_numpy()[pick],
                         "start": genes["start"].to_numpy()[pick]})
    got = fit.results_.merge(want, on=["phenotype", "gene", "start"])
    assert len(got) == n_trials, (len(got), n_trials)
    return got["p_value"].to_numpy()


def across_dimensions(G, snps, ref, genes, by_gene, gene_ids, rng, n_trials):
    n = G.shape[0]
    pick = rng.choice(gene_ids, n_trials)
    C = RHO * np.ones((DIMS, DIMS)) + (1 - RHO) * np.eye(DIMS)
    L = np.linalg.cholesky(C)
    Y = np.hstack([rng.standard_normal((n, DIMS)) @ L.T for _ in range(n_trials)])
    names = [f"m{k:05d}_{d}" for k in range(n_trials) for d in range(DIMS)]
    res = ols_association(G, Y)
    ss = long_sumstats(snps, res, names, [by_gene[g] for g in np.repeat(pick, DIMS)])
    rho = pd.DataFrame(np.kron(np.eye(n_trials), C), index=names, columns=names)
    fit = GeneBasedTest(window=WINDOW_KB, ld_reference=ref, dim_correlation=rho,
                        per_phenotype=False).fit(ss)
    want = pd.DataFrame({"modality": [f"m{k:05d}" for k in range(n_trials)],
                         "gene": genes["symbol"].to_numpy()[pick],
                         "start": genes["start"].to_numpy()[pick]})
    got = fit.modality_results_.merge(want, on=["modality", "gene", "start"])
    assert len(got) == n_trials, (len(got), n_trials)
    return got["p_value"].to_numpy()


def main(n_trials=1000, seed=0, batch=1000, only=None):
    rng = np.random.default_rng(seed)
    G, snps = load_reference_panel()
    G = G.astype(np.float64)
    n = G.shape[0]
    ref = Genotypes.from_array(G, [f"s{i}" for i in range(n)],
                               snps[["chrom", "pos", "variant_id", "a1", "a2"]])
    genes = load_genes()
    genes = genes[genes["chrom"].astype(str) == "22"].reset_index(drop=True)
    pairs = assign_snps(snps, genes, window=WINDOW_KB)
    by_gene = {g: grp["snp_index"].to_numpy() for g, grp in pairs.groupby("gene_index")}
    gene_ids = np.array(sorted(by_gene))
    print(f"panel {n} samples x {G.shape[1]} SNPs; {len(gene_ids)} chr22 genes with SNPs "
          f"within {WINDOW_KB} kb; {n_trials} independent trials per test, in batches of "
          f"{batch} (memory)", flush=True)
    out = []
    runs = {"per dimension (sum_s z^2)": per_dimension,
            f"across {DIMS} dims, rho {RHO} known": across_dimensions}
    for name, fn in runs.items():
        if only and only not in name:
            continue
        t0 = time.perf_counter()
        p = np.concatenate([fn(G, snps, ref, genes, by_gene, gene_ids, rng,
                               min(batch, n_trials - b0))
                            for b0 in range(0, n_trials, batch)])
        out.append(summary(name, p, time.perf_counter() - t0))
        print(pd.DataFrame(out[-1:]).to_string(index=False), flush=True)
    if not only:
        # -- rho as the estimator estimates it by default (all chr22 SNPs) ---------------
        t0 = time.perf_counter()
        est = []
        C = RHO * np.ones((DIMS, DIMS)) + (1 - RHO) * np.eye(DIMS)
        L = np.linalg.cholesky(C)
        for _ in range(3):
            Y = np.hstack([rng.standard_normal((n, DIMS)) @ L.T for _ in range(2)])
            names = [f"t1_{d}" for d in range(DIMS)] + [f"t2_{d}" for d in range(DIMS)]
            res = ols_association(G, Y)
            sample = np.corrcoef(Y[:, :DIMS], rowvar=False)
            ss = long_sumstats(snps, res, names, [np.arange(len(snps))] * len(names))
            f = GeneBasedTest(window=WINDOW_KB, ld_reference=ref).fit(ss)
            off = ~np.eye(DIMS, dtype=bool)
            est.append(f"{f.dim_correlation_['t1'].to_numpy()[off].mean():.3f} "
                       f"(sample {sample[off].mean():.3f})")
        print(f"default rho estimate, mean off-diagonal, 3 whole-chr22 fits (true {RHO}): "
              f"{'; '.join(est)}; {time.perf_counter() - t0:.1f} s", flush=True)
    table = pd.DataFrame(out)
    print()
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
         int(sys.argv[2]) if len(sys.argv) > 2 else 0,
         only=sys.argv[3] if len(sys.argv) > 3 else None)

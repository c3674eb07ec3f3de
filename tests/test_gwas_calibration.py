"""Calibration and power of the GWAS models on related subjects with known truth.

The simulator's related cohort (80 % of subjects in sibling or parent-offspring pairs,
8 pseudo-chromosomes, a polygenic background on the odd ones) and 12 planted heritable
brain factors (h2 0.6, 0.4 of it polygenic): OLS must be inflated on the null SNPs (even
chromosomes without the factor's causal SNPs), the LOCO mixed model calibrated.

Measured (N 1000, seeds 0 / 1 / 2): LMM lambda_GC 0.997 / 0.974 / 1.014 and mean null
chi2 0.995 / 0.974 / 1.004 (per-factor lambda spans 0.84-1.12: relatives' IBD runs
make the statistics of a whole chromosome move together, so the SE of the mean over 12
factors is ~0.017); OLS lambda_GC 1.138 / 1.097 / 1.159 (theory 1 + f r^2 h2 =
1 + 0.8 x 0.25 x 0.6 = 1.12); genomic-control-corrected mean chi2 at the 60 causal SNPs,
LMM vs OLS, 44.0 vs 39.0, 43.2 vs 38.4, 42.7 vs 39.2.
"""

from hcl_sklearn.evaluation.gwas_calibration import relatedness_calibration


def test_lmm_calibrated_ols_inflated_on_related_subjects():
    tab = relatedness_calibration(1000, n_heritable=12, random_state=0)
    ols, lmm = tab.loc["OLS"], tab.loc["LMM (LOCO)"]
    # calibrated within 3 SE of the mean over 12 factors (SE ~0.017, measured above)
    assert abs(lmm["lambda_gc"] - 1.0) < 0.05
    assert abs(lmm["mean_chi2_null"] - 1.0) < 0.05
    # OLS inflated by relatedness: the gap measured 0.12-0.145, theory 0.12
    assert ols["lambda_gc"] > lmm["lambda_gc"] + 0.05
    assert ols["mean_chi2_null"] > 1.05
    # power at the planted loci: after genomic control (the fair comparison for an
    # inflated test) the mixed model's mean chi2 is higher (+10 % measured)
    assert lmm["mean_chi2_causal_gc"] >= ols["mean_chi2_causal_gc"]
    assert lmm["n_phenotypes"] >= 10 and lmm["n_causal_snps"] == 60

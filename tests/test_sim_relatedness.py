"""Simulated relatives and pseudo-chromosomes (``simulate_related_genotypes``), the
pass-through options of ``make_paired_cohort`` and its polygenic background.

Figures quoted in the comments were measured at n = 600, 4 pseudo-chromosomes,
related_fraction 0.5 (75 sibling + 75 parent-offspring pairs), seeds 1 (the test's) to 10,
unless said otherwise. The theoretical SDs of realised relatedness come from 20,000 Monte
Carlo draws of the documented IBD process on chr22's cM map (SNP-weighted, as the GRM).
"""

import hashlib

import numpy as np
import pandas as pd
import pytest

from hcl_sklearn.datasets import make_paired_cohort, simulate_related_genotypes
from hcl_sklearn.datasets.genotypes import (IBD_SEGMENT_CM, load_reference_panel,
                                            simulate_genotypes)
from hcl_sklearn.genetics import Genotypes, grm

N, K, SEED = 600, 4, 1


def _hash(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def cohort():
    b = simulate_related_genotypes(N, n_chromosomes=K, related_fraction=0.5, random_state=SEED)
    K_ = grm(Genotypes.from_array(b.G.astype(np.float32), b.iid, b.snps), dtype=np.float32)
    pos = pd.Series(np.arange(N), index=b.iid)
    pairs = b.expected_relatedness
    i1, i2 = pos[pairs["iid_1"]].to_numpy(), pos[pairs["iid_2"]].to_numpy()
    return b, K_.to_numpy(), i1, i2


# -- defaults unchanged -----------------------------------------------------------------------

def test_defaults_are_bit_identical_to_the_original_code():
    """Hashes computed with the unmodified code (git HEAD 70dc060, before relatedness was
    added). Integer arrays and draws that involve no BLAS are hashed exactly; the factor
    values go through BLAS dot products whose last bits depend on the CPU kernel
    (OPENBLAS_CORETYPE=Haswell changes the exact hash), so they are hashed at 10 decimals
    (the exact float hash was also checked equal on the development machine)."""
    b = make_paired_cohort(n_subjects=50, shape=None, random_state=0)
    assert _hash(b.genotypes) == "f4a7e8715cf0843d"
    assert _hash(b.truth.causal["snp_index"].to_numpy(), b.age.to_numpy(), b.sex.to_numpy(),
                 b.disorder.to_numpy(), b.site.to_numpy()) == "890a609b3f9bca14"
    assert _hash(np.round(b.truth.factor_values.to_numpy(), 10)) == "87cc3ed687813e92"
    assert _hash(np.round(b.truth.genetic_values.to_numpy(), 10)) == "e05daa4134c0fe1f"
    assert set(b.snps["chrom"]) == {"22"} and b.snps["id"].iloc[0] == "rs131538"
    assert "pedigree" not in b and "polygenic_h2" not in b.truth.factors
    G, _ = simulate_genotypes(20, random_state=0)
    assert _hash(G) == "28b51bf965249bcd"


def test_one_chromosome_without_relatives_is_simulate_genotypes():
    b = simulate_related_genotypes(30, n_chromosomes=1, related_fraction=0.0, random_state=4)
    G, snps = simulate_genotypes(30, random_state=4)
    np.testing.assert_array_equal(b.G, G)
    assert len(b.expected_relatedness) == 0
    assert (b.pedigree["relationship"] == "unrelated").all()
    assert b.snps["source_id"].tolist() == snps["id"].tolist()


# -- structure --------------------------------------------------------------------------------

def test_pedigree_is_consistent(cohort):
    b, _, _, _ = cohort
    ped, pairs = b.pedigree, b.expected_relatedness
    m = len(load_reference_panel()[1])
    assert b.G.dtype == np.int8 and b.G.shape == (N, K * m)
    assert set(np.unique(b.G)) <= {0, 1, 2}
    assert b.snps["chrom"].tolist() == [str(k) for k in range(1, K + 1) for _ in range(m)]
    assert b.snps["id"].is_unique and b.snps["variant_id"].equals(b.snps["id"])
    assert ped.index.equals(b.iid) and ped["iid"].tolist() == b.iid.tolist()
    # pairs only: round(0.5 * 600 / 2) = 150 pairs, relationships assigned in turn
    assert len(pairs) == 150
    assert pairs["relationship"].value_counts().to_dict() == {"sibling": 75,
                                                              "parent_offspring": 75}
    related = ped[ped["relationship"] != "unrelated"]
    assert len(related) == 300 and ped["relative"].isna().sum() == 300
    # relatives point at each other, share a family and a relationship
    partner = ped.loc[related["relative"]]
    assert (partner["relative"].to_numpy() == related.index.to_numpy()).all()
    assert (partner["family_id"].to_numpy() == related["family_id"].to_numpy()).all()
    assert (partner["relationship"].to_numpy() == related["relationship"].to_numpy()).all()
    # one family per pair or unrelated subject
    assert ped["family_id"].nunique() == N - 150
    assert ped.groupby("family_id").size().max() == 2
    for row in pairs.itertuples():
        assert ped.loc[row.iid_1, "relative"] == row.iid_2
        assert ped.loc[row.iid_1, "family_id"] == row.family_id
    assert (pairs["expected_relatedness"] == 0.5).all()


def test_relatives_are_spread_over_the_subject_order(cohort):
    # relatives sit at random positions, not next to each other (a positional split of the
    # subjects must not keep or break families by construction)
    _, _, i1, i2 = cohort
    assert np.median(np.abs(i1 - i2)) > N / 10  # uniform placement: median |i - j| ~ N / 3.4


# -- relatedness ------------------------------------------------------------------------------

def test_grm_of_related_pairs_is_half(cohort):
    """Realised GRM relatedness of pairs: mean 0.5, per relationship.

    The bound is 4 standard errors of the mean, the SE from the measured spread of the pairs'
    GRM values (siblings: SD 0.11-0.16, SE ~0.016 over 75 pairs; parent-offspring: SD
    0.046-0.059, SE ~0.006), plus 0.005 for the GRM's centring offset (off-diagonals sum to
    minus the diagonal: all pairs shift by about -1.25 / n = -0.002). Measured means over seeds
    1-10: siblings 0.470-0.524, parent-offspring 0.491-0.511.
    """
    b, K_, i1, i2 = cohort
    k = K_[i1, i2]
    rel = b.expected_relatedness["relationship"].to_numpy()
    for r in ("sibling", "parent_offspring"):
        x = k[rel == r]
        se = x.std(ddof=1) / np.sqrt(len(x))
        assert abs(x.mean() - 0.5) < 4 * se + 0.005, (r, x.mean(), se)
    # the SE-based bounds are not vacuous: an IBD2 probability of 0.4 or 0.6 (means 0.4 or
    # 0.6) would fail them
    for r in ("sibling", "parent_offspring"):
        x = k[rel == r]
        assert 4 * x.std(ddof=1) / np.sqrt(len(x)) + 0.005 < 0.09, r


def test_grm_tracks_the_realised_relatedness(cohort):
    """The GRM estimates each pair's IBD2 fraction (``realised_relatedness``): differences
    have mean -0.007 .. +0.005 and SD 0.019-0.028 (SNP sampling noise of a 63,512-SNP GRM with
    strong LD) over seeds 1-10, against the siblings' spread of realised values of SD
    0.11-0.15; bounds 0.015 on the mean (about 5 SE of 0.0027 = 0.023 / sqrt(75), plus the
    -0.002 centring offset) and 0.05 on the SD (2x the worst seed)."""
    b, K_, i1, i2 = cohort
    diff = K_[i1, i2] - b.expected_relatedness["realised_relatedness"].to_numpy()
    assert abs(diff.mean()) < 0.015 and diff.std() < 0.05
    sib = (b.expected_relatedness["relationship"] == "sibling").to_numpy()
    r = np.corrcoef(K_[i1, i2][sib], b.expected_relatedness["realised_relatedness"][sib])[0, 1]
    assert r > 0.9  # measured 0.98-0.99 (SD 0.14 of signal against 0.023 of noise)


def test_spread_of_realised_relatedness_follows_the_documented_process(cohort):
    """SD of realised relatedness (IBD2 fraction) over pairs against the Monte Carlo value of
    the documented process on 4 x chr22 (SNP-weighted): siblings (runs of 25 cM) 0.143,
    parent-offspring (runs of 2 cM) 0.047 (real siblings with Haldane crossovers on the same
    4 pseudo-chromosomes: 0.126; real parent-offspring: 0). Bounds: +-4 SE of a sample SD,
    SE = SD / sqrt(2 (n_pairs - 1)) = 0.012 and 0.0039 for 75 pairs. Measured over seeds
    1-10: 0.112-0.152 and 0.037-0.055. Mean realised relatedness: 0.5 within 4 SE
    (0.143 / sqrt(75) = 0.017; 0.047 / sqrt(75) = 0.005)."""
    b = cohort[0]
    pairs = b.expected_relatedness
    assert b.ibd_segment_cm == IBD_SEGMENT_CM == {"sibling": 25.0, "parent_offspring": 2.0}
    for rel, sd in (("sibling", 0.143), ("parent_offspring", 0.047)):
        x = pairs.loc[pairs["relationship"] == rel, "realised_relatedness"].to_numpy()
        se_sd = sd / np.sqrt(2 * (len(x) - 1))
        assert abs(x.std(ddof=1) - sd) < 4 * se_sd, (rel, x.std(ddof=1))
        assert abs(x.mean() - 0.5) < 4 * sd / np.sqrt(len(x)), (rel, x.mean())
        assert ((x > 0) & (x < 1)).all()


def test_unrelated_pairs_are_unrelated(cohort):
    """Unrelated pairs: GRM mean -0.0021 at every seed 1-10 (centring identity: the
    off-diagonals sum to about -n, of which +150 from the relatives, so unrelated pairs average
    about -(n + 150) / n^2 = -0.0021), SD 0.0170 (the mosaic's cryptic sharing of the 378
    donors plus SNP noise), max 0.083-0.111. Bounds: |mean| < 0.005, SD < 0.03, max < 0.25."""
    _, K_, i1, i2 = cohort
    mask = ~np.eye(N, dtype=bool)
    mask[i1, i2] = mask[i2, i1] = False
    ku = K_[mask]
    assert abs(ku.mean()) < 0.005 and ku.std() < 0.03 and ku.max() < 0.25
    # diagonal ~1 (HWE-scaled GRM; measured 1.0011-1.0039)
    assert abs(K_.diagonal().mean() - 1) < 0.02


# -- genotype properties ----------------------------------------------------------------------

def test_allele_frequencies_and_hwe_match_the_panel(cohort):
    """Every segment is a real panel genotype, so allele frequencies are the panel's.

    z = (sample frequency - panel frequency) / SE with SE^2 = var_panel(g) / (4 n) x
    (1 + n_pairs / n) (a pair's genotypes correlate 0.5 in expectation: the variance of the
    sum over subjects gains 2 x n_pairs x 0.5 var). Mean z^2 measured 0.93-1.08 over seeds
    1-10 (its spread is set by the ~600 effective independent segments, not the 63,512
    SNPs); bound [0.8, 1.25]. A frequency-distorting construction (e.g. an IBD1 mimic that
    draws one allele at random) would move heterozygosity: bound 0.01 as in
    test_sim_genotypes (measured |het - panel's| <= 0.0017 on every chromosome, seeds 1-5).
    """
    b = cohort[0]
    panel, snps1 = load_reference_panel()
    p_panel = np.tile(snps1["panel_af"].to_numpy(), K)
    var_g = np.tile(panel.astype(np.float64).var(axis=0), K)
    n_pairs = len(b.expected_relatedness)
    se = np.sqrt(var_g / (4 * N) * (1 + n_pairs / N))
    z = (b.G.mean(axis=0) / 2 - p_panel) / se
    assert 0.8 < np.mean(z ** 2) < 1.25, np.mean(z ** 2)
    assert np.corrcoef(b.G.mean(axis=0), 2 * p_panel)[0, 1] > 0.99  # measured 0.9954-0.9961
    het_panel = (panel == 1).mean()
    for k in range(K):
        block = b.G[:, k * panel.shape[1]:(k + 1) * panel.shape[1]]
        assert abs((block == 1).mean() - het_panel) < 0.01, k


def test_ld_is_kept_on_every_pseudo_chromosome(cohort):
    """Neighbour-SNP r2 profile of each pseudo-chromosome against the panel's (the
    test_sim_genotypes bound, > 0.8; measured 0.9976-0.9979 on every chromosome, seeds 1-5)."""
    b = cohort[0]
    panel = load_reference_panel()[0].astype(np.float64)

    def neighbour_r2(G):
        Z = (G - G.mean(0)) / np.where(G.std(0) > 0, G.std(0), np.inf)
        return (Z[:, :-1] * Z[:, 1:]).mean(0) ** 2

    r2_panel = neighbour_r2(panel)
    m = panel.shape[1]
    for k in range(K):
        r2 = neighbour_r2(b.G[:, k * m:(k + 1) * m].astype(np.float64))
        ok = np.isfinite(r2) & np.isfinite(r2_panel)
        assert np.corrcoef(r2[ok], r2_panel[ok])[0, 1] > 0.8, k


def test_chromosomes_are_independent(cohort):
    """Correlation across subjects of the same source SNP on two pseudo-chromosomes: 0 in
    expectation. n x mean r^2 is then 1 + 2 x n_pairs x 0.25 / n = 1.125 (a pair's products
    z1 z2 covary by 0.5 x 0.5, the IBD2 probability on each chromosome); measured 1.08-1.18
    over seeds 1-10 and chromosome pairs (1, 2), (1, 3); bound [0.95, 1.35]. Reusing the
    donors of one chromosome on another would give r = 1, n x r^2 = 600."""
    b = cohort[0]
    m = b.G.shape[1] // K
    G = b.G.astype(np.float64)
    Z = (G - G.mean(0)) / np.where(G.std(0) > 0, G.std(0), np.inf)
    for k1, k2 in ((0, 1), (0, 3), (2, 3)):
        r = (Z[:, k1 * m:(k1 + 1) * m] * Z[:, k2 * m:(k2 + 1) * m]).mean(0)
        assert 0.95 < N * np.nanmean(r ** 2) < 1.35, (k1, k2, N * np.nanmean(r ** 2))


# -- options ----------------------------------------------------------------------------------

def test_options_and_validation():
    b = simulate_related_genotypes(21, n_chromosomes=2, related_fraction=1.0,
                                   relationships="sibling", ibd_segment_cm=10.0,
                                   random_state=0)
    assert len(b.expected_relatedness) == 10  # round(10.5) = 10 pairs (at most 21 // 2)
    assert set(b.expected_relatedness["relationship"]) == {"sibling"}
    assert b.ibd_segment_cm["sibling"] == 10.0
    b2 = simulate_related_genotypes(21, n_chromosomes=2, related_fraction=1.0,
                                    relationships="sibling", ibd_segment_cm=10.0,
                                    random_state=0)
    np.testing.assert_array_equal(b.G, b2.G)
    b3 = simulate_related_genotypes(8, ibd_segment_cm={"parent_offspring": 5.0},
                                    random_state=0)
    assert b3.ibd_segment_cm == {"sibling": 25.0, "parent_offspring": 5.0}
    for kw in (dict(n_chromosomes=0), dict(related_fraction=1.5), dict(relationships=()),
               dict(relationships=("cousin",)), dict(ibd_segment_cm=0),
               dict(ibd_segment_cm={"cousin": 3.0}), dict(segment_cm=-1)):
        with pytest.raises(ValueError):
            simulate_related_genotypes(10, **kw)
    with pytest.raises(ValueError, match="mosaic"):
        make_paired_cohort(10, shape=None, related_fraction=0.5, genotype_model="independent")
    with pytest.raises(ValueError, match="polygenic_h2"):
        make_paired_cohort(10, shape=None, polygenic_h2=1.5)


def test_make_paired_cohort_passes_relatedness_through():
    b = make_paired_cohort(n_subjects=60, shape=None, n_chromosomes=2, related_fraction=0.5,
                           n_pcs=2, random_state=3)
    assert b.pedigree.index.equals(b.subject_ids)
    assert b.pedigree["iid"].tolist() == b.subject_ids.tolist()
    assert sorted(b.snps["chrom"].unique()) == ["1", "2"]
    assert b.genotypes.shape == (60, len(b.snps))
    assert len(b.truth.expected_relatedness) == 15
    assert set(b.truth.expected_relatedness["iid_1"]) <= set(b.subject_ids)
    # demographics and factors are drawn as before: realised h2 exact
    f = b.truth.factors
    heritable = f[f["kind"] == "heritable"]
    np.testing.assert_allclose(heritable["realised_h2"], heritable["h2"], atol=1e-9)


def test_polygenic_background():
    """polygenic_h2: the background lives on the odd chromosomes, total h2 stays exact, and the
    per-allele effects reproduce the genetic values. The background's realised share differs
    from the request by the sample correlation of the two genetic parts (O(1/sqrt(n)): at
    n = 300, 0.3 x 2 x sqrt(0.1 x 0.3) x r with |r| ~ 0.06 gives ~0.006; measured
    |realised - 0.3| <= 0.03 over seeds 0-4, bound 0.08)."""
    b = make_paired_cohort(n_subjects=300, shape=None, n_chromosomes=4, related_fraction=0.5,
                           h2=(0.4, 0.2), n_heritable=2, polygenic_h2=0.3, n_pcs=0,
                           random_state=0)
    f = b.truth.factors
    heritable = f[f["kind"] == "heritable"]
    np.testing.assert_allclose(heritable["realised_h2"], heritable["h2"], atol=1e-9)
    # min(polygenic_h2, h2): shape_2 (h2 0.2) is all background
    assert heritable["polygenic_h2"].to_dict() == {"shape_1": 0.3, "shape_2": 0.2,
                                                   "t1_myelin": 0.3, "t2_wmh": 0.3}
    assert np.allclose(heritable.loc["shape_2", "realised_polygenic_h2"], 0.2, atol=1e-9)
    assert (abs(heritable["realised_polygenic_h2"] - heritable["polygenic_h2"]) < 0.08).all()
    eff = b.truth.polygenic_effects
    assert set(b.snps["chrom"].to_numpy()[eff.index]) == {"1", "3"}
    assert len(eff) == len(b.snps) // 2
    Gb = b.genotypes[:, eff.index].astype(np.float64)
    for name in heritable.index:
        bg = Gb @ eff[name].to_numpy()
        np.testing.assert_allclose(bg - bg.mean(), b.truth.polygenic_values[name], atol=1e-9)
        c = b.truth.causal[b.truth.causal["factor"] == name]
        total = bg + b.genotypes[:, c["snp_index"]].astype(np.float64) @ c["beta_allele"]
        np.testing.assert_allclose(total - total.mean(), b.truth.genetic_values[name],
                                   atol=1e-9)
    # the causal draws and noise are those of polygenic_h2=0 (a separate random stream)
    b0 = make_paired_cohort(n_subjects=300, shape=None, n_chromosomes=4, related_fraction=0.5,
                            h2=(0.4, 0.2), n_heritable=2, n_pcs=0, random_state=0)
    np.testing.assert_array_equal(b0.genotypes, b.genotypes)
    np.testing.assert_array_equal(b0.truth.causal["snp_index"], b.truth.causal["snp_index"])
    assert "polygenic_effects" not in b0.truth

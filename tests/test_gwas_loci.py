"""Clumping, padding, merging and the T1/T2 overlap: hand-built cases, real UKB height
summary statistics with real 1000 Genomes LD, and loci planted on real genotypes."""

import numpy as np
import pandas as pd
import pytest
from bed_reader import open_bed

from hcl_sklearn.datasets import get_1000g_chr22, get_ukb_height_sumstats
from hcl_sklearn.genetics import Genotypes
from hcl_sklearn.genetics.gwas import (CrossModalGWAS, clump, loci_from_clumps, merge_intervals,
                              overlap_loci)


def test_merge_intervals_hand_built():
    iv = pd.DataFrame({
        "chromosome": ["2", "1", "1", "1", "1", "10"],
        "start": [5, 300, 0, 100, 150, 7],
        "end": [9, 400, 100, 120, 160, 8],          # [0,100] touches [100,120]
        "neg_log10_p": [9.0, 12.0, 8.0, 20.0, 10.0, 8.5],
        "variant_id": ["a", "b", "c", "d", "e", "f"],
        "base_pair_location": [7, 350, 50, 110, 155, 7]})
    out = merge_intervals(iv)
    assert out[["chromosome", "start", "end", "n_leads"]].values.tolist() == [
        ["1", 0, 120, 2], ["1", 150, 160, 1], ["1", 300, 400, 1], ["10", 7, 8, 1],
        ["2", 5, 9, 1]]
    assert out["lead_variant_id"].tolist() == ["d", "e", "b", "f", "a"]
    assert len(merge_intervals(iv.iloc[:0])) == 0


def test_padding_and_merging_of_clumps():
    leads = pd.DataFrame({"chromosome": ["22", "22", "22"], "variant_id": ["x", "y", "z"],
                          "base_pair_location": [100_000, 600_000, 800_000],
                          "start": [90_000, 590_000, 790_000],
                          "end": [110_000, 640_000, 800_000],
                          "neg_log10_p": [10.0, 9.0, 30.0]})
    loci = loci_from_clumps(leads, pad=125_000)
    # x: [0 (clamped), 235k]; y: [465k, 765k] overlaps z: [665k, 925k]
    assert loci[["start", "end", "n_leads", "lead_variant_id"]].values.tolist() == [
        [0, 235_000, 1, "x"], [465_000, 925_000, 2, "z"]]


def test_overlap_counts_and_jaccard():
    t1 = pd.DataFrame({"chromosome": ["1", "1", "3", "5"], "start": [0, 1000, 0, 0],
                       "end": [100, 1100, 50, 10]})
    t2 = pd.DataFrame({"chromosome": ["1", "1", "4"], "start": [90, 1050, 0],
                       "end": [300, 2000, 10]})
    ov = overlap_loci(t1, t2)
    # shared: chr1 [0,300], chr1 [1000,2000]; t1-only: chr3, chr5; t2-only: chr4
    assert (ov.n_shared, ov.n_only_a, ov.n_only_b) == (2, 2, 1)
    assert ov.jaccard == pytest.approx(2 / 5)
    shared = ov.loci.query("status == 'shared'")
    assert shared[["start", "end"]].values.tolist() == [[0, 300], [1000, 2000]]
    empty = overlap_loci(t1.iloc[:0], t2.iloc[:0])
    assert empty.n_shared == 0 and np.isnan(empty.jaccard)


def test_clump_rules_on_constructed_ld():
    rng = np.random.default_rng(0)
    n = 400
    base = rng.binomial(2, 0.4, size=(n, 3)).astype(float)
    # snp0 lead; snp1 = copy (r2 = 1, 50 kb); snp2 independent (100 kb); snp3 = copy of
    # snp0 but 300 kb away (outside the 250 kb window); snp4 copy with p > p2
    G = np.column_stack([base[:, 0], base[:, 0], base[:, 1], base[:, 0], base[:, 0]])
    snps = pd.DataFrame({"chrom": "1", "pos": [1_000_000, 1_050_000, 1_100_000, 1_300_000,
                                              1_010_000]})
    g = Genotypes.from_array(G, [str(i) for i in range(n)], snps)
    ss = pd.DataFrame({"chromosome": "1", "base_pair_location": snps["pos"],
                       "variant_id": [f"snp{j}" for j in range(5)],
                       "p_value": [1e-20, 1e-15, 1e-9, 1e-10, 0.5]})
    leads = clump(ss, g, p1=5e-8, p2=1e-2, r2=0.1, window=250_000)
    assert leads["variant_id"].tolist() == ["snp0", "snp3", "snp2"]
    assert leads["n_clumped"].tolist() == [1, 0, 0]       # snp4 (p > p2) not clumped
    assert leads.loc[0, ["start", "end"]].tolist() == [1_000_000, 1_050_000]
    with pytest.raises(ValueError, match="p1 <= p2"):
        clump(ss, g, p1=0.1, p2=0.01)


@pytest.fixture(scope="module")
def height_clumps():
    prefix = get_1000g_chr22()
    g = Genotypes.from_plink(prefix)
    ss = pd.read_csv(get_ukb_height_sumstats(), sep="\t").rename(columns={
        "CHR": "chromosome", "POS": "base_pair_location", "SNP": "variant_id",
        "P": "p_value"})
    leads = clump(ss, g, p1=5e-8, p2=1e-2, r2=0.1, window=250_000)
    # independent LD reference: bed-reader directly + numpy corrcoef
    bed = open_bed(prefix + ".bed", count_A1=True)
    return ss, leads, bed


def _r2(bed, ids_a, ids_b):
    sid = pd.Index(bed.sid)
    a = bed.read(index=np.s_[:, sid.get_indexer(ids_a)], dtype=np.float64)
    b = bed.read(index=np.s_[:, sid.get_indexer(ids_b)], dtype=np.float64)
    c = np.corrcoef(np.column_stack([a, b]).T)[: a.shape[1], a.shape[1]:]
    return c ** 2


def test_ukb_height_clumps_with_1000g_ld(height_clumps):
    ss, leads, bed = height_clumps
    in_ref = ss[ss.variant_id.isin(bed.sid)]
    sig = in_ref[in_ref.p_value <= 5e-8]
    assert 10 <= len(leads) < len(sig)          # height has many chr22 signals
    assert (leads.p_value <= 5e-8).all()
    assert leads.neg_log10_p.is_monotonic_decreasing
    assert leads.variant_id.iloc[0] == sig.loc[sig.p_value.idxmin(), "variant_id"]
    # (1) leads within 250 kb of each other are not in LD (r2 <= 0.1)
    pos = leads.base_pair_location.to_numpy()
    r2 = _r2(bed, leads.variant_id, leads.variant_id)
    near = (np.abs(pos[:, None] - pos[None, :]) <= 250_000) & ~np.eye(len(pos), dtype=bool)
    assert (r2[near] <= 0.1 + 1e-9).all()
    # (2) every significant non-lead SNP is within 250 kb and r2 > 0.1 of a stronger lead
    others = sig[~sig.variant_id.isin(leads.variant_id)]
    r2o = _r2(bed, others.variant_id, leads.variant_id)
    close = np.abs(others.base_pair_location.to_numpy()[:, None] - pos[None, :]) <= 250_000
    stronger = others.p_value.to_numpy()[:, None] >= leads.p_value.to_numpy()[None, :]
    assert ((r2o > 0.1) & close & stronger).any(axis=1).all()
    loci = loci_from_clumps(leads, pad=125_000)
    assert len(loci) <= len(leads)
    assert (loci.start.to_numpy()[1:] > loci.end.to_numpy()[:-1]).all()  # disjoint
    for p in leads.base_pair_location:                                   # covered
        assert ((loci.start <= p) & (p <= loci.end)).sum() == 1


def test_planted_loci_are_recovered_on_real_genotypes():
    """Causal SNPs planted on the real 1000G chr22 genotypes (one shared by T1 and T2,
    one T1-only, one T2-only, each > 5 Mb apart) come back as loci and as the overlap."""
    g = Genotypes.from_plink(get_1000g_chr22())
    snps = g.snps
    rng = np.random.default_rng(5)
    stats_ = g.stats()
    common = stats_.a1_freq.between(0.2, 0.8).to_numpy()

    def pick(lo, hi):
        return int(np.flatnonzero(common & snps.pos.between(lo, hi).to_numpy())[0])

    shared, t1_only, t2_only = pick(20e6, 21e6), pick(30e6, 31e6), pick(42e6, 43e6)
    G = g.read(snps=[shared, t1_only, t2_only], standardize=True)
    n = g.n_samples
    Y = pd.DataFrame(rng.normal(size=(n, 6)), index=g.iid,
                     columns=["t1_0", "t1_1", "t1_2", "t2_0", "t2_1", "t2_2"])
    Y["t1_0"] += 0.8 * G[:, 0]
    Y["t2_1"] += 0.8 * G[:, 0]
    Y["t1_2"] += 0.8 * G[:, 1]
    Y["t2_0"] += 0.8 * G[:, 2]
    cov = pd.DataFrame(rng.normal(size=(n, 2)), index=g.iid, columns=["pc1", "pc2"])
    gwas = CrossModalGWAS(g, covariates=cov).fit(Y)
    assert gwas.thresholds_ == {"t1": pytest.approx(5e-8 / 3), "t2": pytest.approx(5e-8 / 3)}

    def holds(loci, j):
        p = snps.pos.iat[j]
        return int(((loci.start <= p) & (p <= loci.end)).sum())

    assert len(gwas.loci_["t1"]) == 2 and len(gwas.loci_["t2"]) == 2
    assert holds(gwas.loci_["t1"], shared) == holds(gwas.loci_["t1"], t1_only) == 1
    assert holds(gwas.loci_["t2"], shared) == holds(gwas.loci_["t2"], t2_only) == 1
    assert holds(gwas.loci_["t1"], t2_only) == holds(gwas.loci_["t2"], t1_only) == 0
    for mod, planted in (("t1", [shared, t1_only]), ("t2", [shared, t2_only])):
        # several clumps per strong signal are usual (SNPs in weak LD with the causal
        # one reach significance); each lies in the merged locus of a planted SNP
        loci = gwas.loci_[mod]
        for p in gwas.leads_[mod].base_pair_location:
            (k,) = np.flatnonzero((loci.start <= p) & (p <= loci.end))
            assert any(loci.start[k] <= snps.pos.iat[j] <= loci.end[k] for j in planted)
    assert set(gwas.leads_["t1"].phenotype) == {"t1_0", "t1_2"}
    ov = gwas.overlap_
    assert (ov.n_shared, ov.n_only_a, ov.n_only_b) == (1, 1, 1)
    assert ov.jaccard == pytest.approx(1 / 3)


def test_simulator_planted_loci_are_recovered():
    """make_paired_cohort plants causal SNPs (mosaic of real 1000G haplotypes) for a
    shared T1/T2 factor, a T1-only and a T2-only factor; embedding-like dimensions mix
    them. Every strong causal SNP is inside a locus of each modality that sees it, every
    locus holds a causal SNP, and the shared factor's loci are the shared ones."""
    from hcl_sklearn.datasets import make_paired_cohort

    b = make_paired_cohort(n_subjects=1500, shape=None, n_heritable=1, n_causal=2, h2=0.6,
                           h2_t1_only=0.5, h2_t2_only=0.5, n_noise=0, random_state=0)
    f = b.truth.factor_values
    rng = np.random.default_rng(0)
    z = lambda s: (s - s.mean()) / s.std()  # noqa: E731
    Y = pd.DataFrame({
        "t1_000": z(f.shape_1) + 0.5 * z(f.t1_myelin), "t1_001": z(f.t1_myelin),
        "t2_000": z(f.shape_1) - 0.5 * z(f.t2_wmh), "t2_001": z(f.t2_wmh)}, index=f.index)
    Y += 0.5 * rng.normal(size=Y.shape)
    g = Genotypes.from_array(b.genotypes, b.subject_ids, b.snps)
    gwas = CrossModalGWAS(g, covariates=b.covariates).fit(Y)
    causal = b.truth.causal.merge(b.snps[["variant_id", "pos"]], on="variant_id")
    sees = {"t1": {"shape_1", "t1_myelin"}, "t2": {"shape_1", "t2_wmh"}}
    strong = causal[causal.beta_std.abs() > 0.3]
    assert len(strong) >= 3
    for mod, loci in gwas.loci_.items():
        assert len(loci) >= 1
        mine = causal[causal.factor.isin(sees[mod])]
        for p in strong[strong.factor.isin(sees[mod])].pos:   # recovered
            assert ((loci.start <= p) & (p <= loci.end)).sum() == 1, (mod, p)
        for lo, hi in zip(loci.start, loci.end):               # no false locus
            assert mine.pos.between(lo, hi).any(), (mod, lo, hi)
    ov = gwas.overlap_.loci
    for p in causal[causal.factor == "shape_1"].merge(strong).pos:
        assert (ov[(ov.start <= p) & (p <= ov.end)].status == "shared").all()
    for fac, status in (("t1_myelin", "t1_only"), ("t2_wmh", "t2_only")):
        for p in strong[strong.factor == fac].pos:
            hit = ov[(ov.start <= p) & (p <= ov.end)]
            assert len(hit) == 1 and hit.status.iat[0] in (status, "shared")

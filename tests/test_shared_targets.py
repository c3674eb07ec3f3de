"""CrossModalTargets: T1 / T2 / shared hits against set operations on the inputs, the drug
enrichment of each gene set against DrugTargetEnrichment, and the planted gene -> drug-class
path of the simulator recovered end to end (GWAS -> gene test -> shared genes -> drugs)."""

import numpy as np
import pandas as pd
import pytest

from hcl_sklearn.targets import CrossModalTargets, DrugTargetEnrichment
from hcl_sklearn.targets.drugs import load_drugcentral
from hcl_sklearn.targets.genes import load_genes


@pytest.fixture(scope="module")
def gene_table():
    """60 real genes, each tested for t1 and t2, with chosen significant sets."""
    targets = sorted(set(load_drugcentral("PA")["gene"]))
    genes = load_genes()
    genes = genes[genes["symbol"].isin(targets)].drop_duplicates("symbol").head(60)
    rng = np.random.default_rng(0)
    rows = []
    sig = {"t1": set(genes["symbol"].iloc[:15]), "t2": set(genes["symbol"].iloc[10:22])}
    for mod in ("t1", "t2"):
        for g in genes.itertuples():
            s = g.symbol in sig[mod]
            rows.append({"modality": mod, "gene": g.symbol, "chrom": str(g.chrom),
                         "start": g.start, "end": g.end,
                         "p_value": 1e-9 * rng.random() if s else rng.uniform(1e-3, 1),
                         "significant": s})
    return pd.DataFrame(rows), sig


def test_genes_and_drugs_equal_the_set_operations(gene_table):
    table, sig = gene_table
    cm = CrossModalTargets().fit(table)
    g = cm.genes_
    assert set(g.loc[g["significant_t1"], "gene"]) == sig["t1"]
    assert set(g.loc[g["significant_t2"], "gene"]) == sig["t2"]
    assert set(g.loc[g["shared"], "gene"]) == sig["t1"] & sig["t2"]
    assert g["shared"].iloc[:5].all() and len(g) == 60  # shared first, every tested gene
    assert cm.summary_.loc["genes"].tolist() == [15, 12, 5]
    universe = table["gene"].unique().tolist()
    for name, genes in (("t1", sig["t1"]), ("t2", sig["t2"]),
                        ("shared", sig["t1"] & sig["t2"])):
        ref = DrugTargetEnrichment().fit(sorted(genes), universe=universe).results_
        got = cm.drugs_.set_index("drug_class")
        ref = ref.set_index("drug_class")
        np.testing.assert_array_equal(got.loc[ref.index, f"p_{name}"], ref["p_value"])
        np.testing.assert_array_equal(got.loc[ref.index, f"significant_{name}"],
                                      ref["significant"])
    d = cm.drugs_
    assert (d["shared"] == (d["significant_t1"] & d["significant_t2"])).all()


def test_per_dimension_table_and_proteins(gene_table):
    """A per-dimension gene table: a gene is a hit of a modality when a dimension's p clears
    Bonferroni over genes x dimensions; proteins by their smallest Bonferroni p."""
    table, _ = gene_table
    t = table.loc[table["modality"] == "t1"].drop(columns="modality")
    per_dim = pd.concat([t.assign(phenotype="t1_000"),
                         t.assign(phenotype="t1_001", p_value=0.5, significant=False),
                         table.loc[table["modality"] == "t2"].drop(columns="modality")
                         .assign(phenotype="t2_000")], ignore_index=True)
    per_dim.loc[0, ["p_value", "significant"]] = [0.04 / 60, True]  # fails x 2 dims
    cm_dim = CrossModalTargets().fit(per_dim.drop(columns=[]))
    hits = set(cm_dim.genes_.loc[cm_dim.genes_["significant_t1"], "gene"])
    assert per_dim.loc[0, "gene"] not in hits and len(hits) == 14

    prot = pd.DataFrame({"protein": ["A", "A", "B", "B", "C", "C"],
                         "dimension": ["t1_000", "t2_003", "t1_001", "t2_000", "t1_000",
                                       "t2_001"],
                         "p_bonferroni": [0.01, 0.002, 0.2, 0.03, 0.9, 1.0]})
    cm = CrossModalTargets().fit(table, prot)
    p = cm.proteins_.set_index("protein")
    assert p.loc["A", "shared"] and not p.loc["B", "shared"] and p.loc["B", "significant_t2"]
    assert p.loc["A", "dimension_t2"] == "t2_003" and not p.loc["C", ["significant_t1",
                                                                     "significant_t2"]].any()
    assert cm.summary_.loc["proteins"].tolist() == [1, 2, 1]


def test_bad_input(gene_table):
    table, _ = gene_table
    with pytest.raises(ValueError, match="lacks the columns"):
        CrossModalTargets().fit(table.drop(columns="p_value"))
    with pytest.raises(ValueError, match="no rows of the modalities"):
        CrossModalTargets(modalities=("dwi", "fmri")).fit(table)
    with pytest.raises(ValueError, match="two distinct"):
        CrossModalTargets(modalities=("t1", "t1")).fit(table)


def test_planted_gene_to_drug_class_path_end_to_end():
    """The simulator's shared factors carry their causal SNPs in the 6 chr22 targets of
    'Enzyme Inhibitors' (MeSH PA). Dimensions = the planted factors + N(0, 0.5^2) noise
    (the oracle embedding of the demo), 1000 subjects: the GWAS, the per-modality gene test
    and the enrichment of the shared genes put the planted class first.

    Measured over seeds 0-3: the planted class ranked first in 4/4, p 0.0076-0.040, 4-6 of
    the 6 planted genes shared. The universe holds only the 12 drug-target genes tested on
    chr22, so the smallest p the class can reach is 1/C(12, 6) = 0.0011 (FDR-significant in
    2/4)."""
    from hcl_sklearn import CrossModalGWAS
    from hcl_sklearn.app.demo.stages import planted_genes
    from hcl_sklearn.datasets import make_paired_cohort
    from hcl_sklearn.genetics import Genotypes
    from hcl_sklearn.targets import GeneBasedTest

    genes = planted_genes("Enzyme Inhibitors", "PA")
    assert genes == ["ADORA2A", "BCR", "COMT", "CYP2D6", "HDAC10", "PPARA"]
    b = make_paired_cohort(1000, shape=None, n_causal=5, h2=0.6, causal_genes=genes,
                           n_pcs=4, random_state=0)
    F = b.truth.factor_values
    rng = np.random.default_rng(0)
    X = pd.DataFrame(index=F.index)
    for mod, own in (("t1", "t1_myelin"), ("t2", "t2_wmh")):
        cols = ["shape_1", "shape_2", "shape_3", own, "age", "noise_1"]
        E = F[cols].to_numpy() + 0.5 * rng.standard_normal((len(F), len(cols)))
        for d in range(len(cols)):
            X[f"{mod}_{d}"] = E[:, d]
    geno = Genotypes.from_array(b.genotypes, list(b.subject_ids), b.snps)
    gw = CrossModalGWAS(geno, covariates=b.covariates).fit(X)
    gt = GeneBasedTest(ld_reference=geno, per_phenotype=False).fit(gw.sumstats_)
    cm = CrossModalTargets().fit(gt)
    shared = set(cm.genes_.loc[cm.genes_["shared"], "gene"])
    assert len(shared & set(genes)) >= 4
    d = cm.drugs_.sort_values("p_shared", kind="stable").reset_index(drop=True)
    assert d.loc[0, "drug_class"] == "Enzyme Inhibitors"
    assert d.loc[0, "p_shared"] <= 0.05
    # the modality-specific factors' genes are not shared: T1-only hits exist
    assert cm.summary_.loc["genes", "t1"] > cm.summary_.loc["genes", "shared"]

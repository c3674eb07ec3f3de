"""Drug-target enrichment against scipy.stats.fisher_exact, a planted class, the GREP reader."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact

from hcl_sklearn.targets.drugs import DrugTargetEnrichment, load_drugcentral, read_grep_table


@pytest.mark.parametrize("system", ["PA", "EPC", "MoA"])
def test_every_class_equals_fisher_exact(system):
    table = load_drugcentral(system)
    bg = sorted(set(table["gene"]))
    genes = list(np.random.default_rng(0).choice(bg, 40, replace=False)) + ["NOT_A_GENE"]
    enr = DrugTargetEnrichment(class_system=system).fit(genes)
    r = enr.results_
    assert enr.unknown_genes_ == ["NOT_A_GENE"] and len(enr.genes_) == 40
    assert len(r) == table["drug_class"].nunique()
    for row in r.itertuples():
        assert row.a + row.b + row.c + row.d == len(bg) and row.a + row.c == 40
        orr, p = fisher_exact([[row.a, row.b], [row.c, row.d]], alternative="greater")
        # hypergeometric sf vs scipy's own summation: float64 roundoff of a sum of <= 691
        # terms, far below 1e-9 relative
        assert row.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)
        if np.isnan(orr):
            assert np.isnan(row.odds_ratio)
        else:
            assert row.odds_ratio == pytest.approx(orr, rel=1e-12)


def test_planted_class_is_recovered():
    table = load_drugcentral("EPC")
    sizes = table.dropna().groupby("drug_class")["gene"].nunique()
    cls = sizes[(sizes >= 8) & (sizes <= 30)].index[0]
    members = sorted(set(table.loc[table.drug_class == cls, "gene"]))
    bg = sorted(set(table["gene"]) - set(members))
    noise = list(np.random.default_rng(1).choice(bg, 20, replace=False))
    r = DrugTargetEnrichment(class_system="EPC").fit(members[:6] + noise).results_
    assert r.iloc[0]["drug_class"] == cls and bool(r.iloc[0]["significant"])
    assert set(r.iloc[0]["genes"].split(";")) >= set(members[:6])
    assert r.iloc[0]["drugs"]


def test_grep_format_file(tmp_path):
    rows = [("N05AH03", "olanzapine", "DRD2", "P14416"), ("N05AH03", "olanzapine", "HTR2A", "P28223"),
            ("N05AX08", "risperidone", "DRD2", "P14416"), ("C07AB02", "metoprolol", "ADRB1", "P08588"),
            ("C09AA02", "enalapril", "ACE", "P12821"), ("A10BA02", "metformin", "PRKAB1", "Q9Y478")]
    f = tmp_path / "grep.tsv"
    f.write_text("\n".join("\t".join(r) for r in rows) + "\n")
    t = read_grep_table(f, atc_level=1)
    assert sorted(t.drug_class.unique()) == ["A", "C", "N"]
    assert sorted(read_grep_table(f, atc_level=2).drug_class.unique()) == ["A10", "C07",
                                                                          "C09", "N05"]
    r = DrugTargetEnrichment(table=f).fit(["drd2", "HTR2A"]).results_.set_index("drug_class")
    # N: both input genes and no other gene of the background's 5: a=2, b=0, c=0, d=3
    assert tuple(r.loc["N", ["a", "b", "c", "d"]]) == (2, 0, 0, 3)
    assert r.loc["N", "p_value"] == pytest.approx(fisher_exact([[2, 0], [0, 3]], "greater")[1])
    assert r.loc["N", "drugs"] == "olanzapine;risperidone"
    bad = tmp_path / "bad.tsv"
    bad.write_text("N05AH03\tolanzapine\tDRD2\tP14416\nN05AH03 olanzapine DRD2\n")
    with pytest.raises(ValueError, match="line 2: expected 4 tab-separated"):
        read_grep_table(bad)


def test_bad_input():
    with pytest.raises(ValueError, match="genes is empty"):
        DrugTargetEnrichment().fit([])
    with pytest.raises(TypeError, match="list of gene symbols"):
        DrugTargetEnrichment().fit("DRD2")
    with pytest.raises(ValueError, match="lacks the columns"):
        DrugTargetEnrichment(table=pd.DataFrame({"gene": ["A"]})).fit(["A"])


def test_universe_and_tarone_against_fisher_exact_and_bh():
    """With a universe the 2x2 is GREP's on the drug targets tested; Tarone's rule keeps in
    the FDR exactly the classes whose extreme table (every class gene a hit) reaches alpha,
    and q is BH (statsmodels) over those."""
    from statsmodels.stats.multitest import multipletests

    table = load_drugcentral("PA")
    rng = np.random.default_rng(3)
    bg_all = sorted(set(table["gene"]))
    universe = list(rng.choice(bg_all, 80, replace=False)) + ["NOT_A_TARGET"]
    genes = universe[:12] + ["NOT_A_TARGET"]
    enr = DrugTargetEnrichment(class_system="PA").fit(genes, universe=universe)
    r = enr.results_
    assert enr.background_ == sorted(set(universe[:80]))
    N, K = 80, 12
    for row in r.itertuples():
        assert row.a + row.b + row.c + row.d == N and row.a + row.c == K
        p = fisher_exact([[row.a, row.b], [row.c, row.d]], alternative="greater")[1]
        assert row.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)  # as above
        m = min(row.n_class_genes, K)  # the most hits the class can have
        p_min = fisher_exact([[m, row.n_class_genes - m], [K - m, N - K - row.n_class_genes + m]],
                             alternative="greater")[1]
        assert row.min_attainable_p == pytest.approx(p_min, rel=1e-9)
        assert row.testable == (p_min <= 0.05)
    t = r[r["testable"]]
    assert 0 < len(t) < len(r) and r.loc[~r["testable"], "q_value"].isna().all()
    # BH: products and running minima of <= 337 float64 values, roundoff ~1e-14
    np.testing.assert_allclose(t["q_value"], multipletests(t["p_value"], method="fdr_bh")[1],
                               rtol=1e-12)
    plain = DrugTargetEnrichment(class_system="PA", tarone=False).fit(genes, universe=universe)
    np.testing.assert_allclose(plain.results_["q_value"],
                               multipletests(plain.results_["p_value"], method="fdr_bh")[1],
                               rtol=1e-12)
    with pytest.raises(ValueError, match="not in universe"):
        DrugTargetEnrichment().fit(["COMT"], universe=["DRD2"])

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

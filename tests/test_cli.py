"""The `hcl` command on files: simulate -> fit -> embed -> heritability -> gwas, help, errors."""

import numpy as np
import pandas as pd
import pytest

from hcl_sklearn.app.cli import build_parser, main

N = 48


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cohort = tmp / "cohort"
    assert main(["simulate", "--out", str(cohort), "--n-subjects", str(N), "--shape", "16",
                 "20", "16", "--seed", "1", "--quiet"]) == 0
    model = tmp / "model.joblib"
    assert main(["fit", str(cohort), "--out", str(model), "--epochs", "1", "--batch-size", "8",
                 "--target-shape", "16", "20", "16", "--device", "cpu", "--quiet",
                 "--set", "cnn_widths=(4,8)", "--set", "embed_dim=16",
                 "--set", "proj_dim=16"]) == 0
    emb = tmp / "emb.tsv"
    assert main(["embed", str(cohort), "--model", str(model), "--out", str(emb),
                 "--pca", "3"]) == 0
    h2 = tmp / "h2.tsv"
    assert main(["heritability", str(emb), "--bfile", str(cohort / "genotypes"),
                 "--covariates", str(cohort / "covariates.tsv"), "--out", str(h2),
                 "--rg"]) == 0
    gwas = tmp / "gwas"
    assert main(["gwas", str(emb), "--bfile", str(cohort / "genotypes"), "--covariates",
                 str(cohort / "covariates.tsv"), "--out", str(gwas), "--quiet"]) == 0
    return {"tmp": tmp, "cohort": cohort, "model": model, "emb": emb, "h2": h2, "gwas": gwas}


def test_embed_writes_one_row_per_genotyped_subject(workflow):
    emb = pd.read_csv(workflow["emb"], sep="\t", index_col=0)
    fam = pd.read_csv(str(workflow["cohort"] / "genotypes") + ".fam", sep=r"\s+", header=None)
    assert sorted(emb.index) == sorted(fam[1].astype(str))
    assert list(emb.columns) == [f"t1_pc{i:03d}" for i in range(3)] + \
        [f"t2_pc{i:03d}" for i in range(3)]
    assert np.isfinite(emb.to_numpy()).all()


def test_heritability_outputs(workflow):
    h2 = pd.read_csv(workflow["h2"], sep="\t", index_col=0)
    # range checks, not tolerances: h2 is a variance fraction, bounded to [0, 1] by the fit
    assert len(h2) == 6 and ((h2["h2"] >= 0) & (h2["h2"] <= 1)).all()
    assert (h2["n"] == N).all()
    rg = pd.read_csv(workflow["h2"].with_name("h2_rg.tsv"), sep="\t", index_col=0)
    assert rg.shape == (3, 3)


def test_gwas_matches_direct_ols_on_the_files(workflow):
    """Betas in the written sumstats equal OLS on the raw files (ids joined by hand)."""
    from bed_reader import open_bed

    out = workflow["gwas"]
    for name in ("sumstats.tsv.gz", "loci_t1.tsv", "loci_t2.tsv", "lambda_gc.tsv",
                 "miami.png", "qq.png"):
        assert (out / name).is_file(), name
    ss = pd.read_csv(out / "sumstats.tsv.gz", sep="\t")
    emb = pd.read_csv(workflow["emb"], sep="\t", index_col=0)
    cov = pd.read_csv(workflow["cohort"] / "covariates.tsv", sep="\t", index_col=0)
    prefix = str(workflow["cohort"] / "genotypes")
    with open_bed(prefix + ".bed") as bed:
        iid = np.asarray(bed.iid).astype(str)
        snp_ids = np.asarray(bed.sid)
        row = ss[ss["phenotype"] == "t2_pc001"].iloc[10]
        j = int(np.flatnonzero(snp_ids == row["variant_id"])[0])
        g = bed.read(index=np.s_[:, j], dtype="float64")[:, 0]
    y = emb.loc[iid, "t2_pc001"].to_numpy()
    C = cov.loc[iid].to_numpy(dtype=float)
    C = C[:, C.std(axis=0) > 0]
    D = np.column_stack([np.ones(len(y)), C, g])
    beta = np.linalg.lstsq(D, y, rcond=None)[0][-1]
    # the effect allele may be either .bim allele: compare magnitudes and sign up to flip.
    # Both sides read the same %.6g embedding TSV and covariates; the GWAS runs in float64
    # (roundoff ~ n u cond(D) = 48 x 1.1e-16 x 606 = 3e-12) and writes beta with %.7g,
    # i.e. <= 5e-7 relative: rel=1e-6 (was 1e-4, 200x the printed precision). Measured
    # over 58 SNP x phenotype pairs: <= 3.9e-7 (Haswell, SkylakeX)
    assert abs(row["beta"]) == pytest.approx(abs(beta), rel=1e-6)


def test_gwas_parquet_without_plots(workflow, tmp_path):
    """--format parquet writes the same statistics as the text file (float64 there, 7
    digits in the text: <= 5e-7 relative); --no-plots writes no figure."""
    out = tmp_path / "pq"
    assert main(["gwas", str(workflow["emb"]), "--bfile", str(workflow["cohort"] / "genotypes"),
                 "--covariates", str(workflow["cohort"] / "covariates.tsv"), "--quiet",
                 "--format", "parquet", "--no-plots", "--out", str(out)]) == 0
    assert not list(out.glob("*.png")) and not (out / "sumstats.tsv.gz").exists()
    pq = pd.read_parquet(out / "sumstats.parquet")
    txt = pd.read_csv(workflow["gwas"] / "sumstats.tsv.gz", sep="\t")
    assert list(pq.columns) == list(txt.columns) and len(pq) == len(txt)
    np.testing.assert_allclose(txt["beta"], pq["beta"], rtol=5e-7 * (1 + 1e-9))


def test_gwas_command_runs_the_estimators_engine_without_scikit_learn(workflow, tmp_path):
    """`hcl gwas` fits with CrossModalGWAS's engine and does not import scikit-learn or
    scipy.stats (their import is most of its start-up); its files equal those of
    CrossModalGWAS fitted on the same tables (the same code, so the same bits)."""
    import subprocess
    import sys

    from hcl_sklearn.app.cli import read_table
    from hcl_sklearn.genetics import Genotypes
    from hcl_sklearn.genetics.gwas import CrossModalGWAS

    out = tmp_path / "fresh"
    args = ["gwas", str(workflow["emb"]), "--bfile", str(workflow["cohort"] / "genotypes"),
            "--covariates", str(workflow["cohort"] / "covariates.tsv"), "--quiet",
            "--no-plots", "--out", str(out)]
    code = ("import sys; from hcl_sklearn.app.cli import main; "
            f"assert main({args!r}) == 0; "
            "print(sorted(m for m in ('sklearn', 'scipy.stats', 'torch') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"

    Y = read_table(workflow["emb"])
    cov = read_table(workflow["cohort"] / "covariates.tsv")
    gw = CrossModalGWAS(Genotypes.from_plink(str(workflow["cohort"] / "genotypes")),
                        covariates=cov).fit(Y)
    gw.to_tsv_gz(tmp_path / "est.tsv.gz")
    pd.testing.assert_frame_equal(pd.read_csv(out / "sumstats.tsv.gz", sep="\t"),
                                  pd.read_csv(tmp_path / "est.tsv.gz", sep="\t"))
    lam = pd.read_csv(out / "lambda_gc.tsv", sep="\t", index_col=0)["lambda_gc"]
    np.testing.assert_array_equal(lam.to_numpy(), gw.lambda_gc_.to_numpy())


@pytest.mark.parametrize("flag, value, message", [
    ("--alpha", "2", "must lie in (0, 1)"), ("--alpha", "0", "must lie in (0, 1)"),
    ("--maf", "0.5", "must lie in [0, 0.5)"), ("--maf", "x", "invalid _maf value")])
def test_gwas_arguments_out_of_range_are_refused(flag, value, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["gwas", "e.tsv", "--bfile", "g", "--out", "o",
                                   flag, value])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_every_command_has_help(capsys):
    for cmd in ("demo", "simulate", "fit", "embed", "heritability", "gwas", "genes",
                "prowas", "drugs", "targets"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([cmd, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert f"usage: hcl {cmd}" in text and len(text) > 300
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "hcl demo" in capsys.readouterr().out


def test_errors_are_one_line_unless_debug(workflow, tmp_path, capsys):
    rc = main(["embed", str(workflow["cohort"]), "--model", str(tmp_path / "nope.joblib"),
               "--out", str(tmp_path / "e.tsv")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "does not exist" in err
    assert "Traceback" not in err
    with pytest.raises(ValueError, match="does not exist"):
        main(["--debug", "embed", str(workflow["cohort"]), "--model",
              str(tmp_path / "nope.joblib"), "--out", str(tmp_path / "e.tsv")])

    # embeddings whose ids are not the genotype IIDs
    bad = pd.read_csv(workflow["emb"], sep="\t", index_col=0)
    bad.index = [f"X{i}" for i in range(len(bad))]
    bad.to_csv(tmp_path / "bad.tsv", sep="\t")
    rc = main(["heritability", str(tmp_path / "bad.tsv"), "--bfile",
               str(workflow["cohort"] / "genotypes"), "--out", str(tmp_path / "h.tsv")])
    err = capsys.readouterr().err
    assert rc == 1 and f"{N} of {N} embedding subjects are not in the genotypes" in err

    rc = main(["gwas", str(workflow["emb"]), "--bfile", str(tmp_path / "missing"),
               "--out", str(tmp_path / "g")])
    assert rc == 1 and ".bed not found" in capsys.readouterr().err

    rc = main(["fit", str(workflow["cohort"]), "--out", str(tmp_path / "m.joblib"),
               "--set", "not_a_param=3"])
    assert rc == 1 and "unknown parameter" in capsys.readouterr().err


def test_a_bug_is_reported_as_a_bug_and_a_system_error_names_the_path(monkeypatch, capsys,
                                                                       tmp_path):
    from hcl_sklearn.app import cli

    def broken(args):
        raise KeyError("t1_000")

    monkeypatch.setattr(cli, "_cmd_demo", broken)
    assert main(["demo", "--quick", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "internal error (KeyError: 't1_000')" in err and "bug in hcl-sklearn" in err
    assert err.count("\n") == 1

    def unreadable(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked.tsv"))

    monkeypatch.setattr(cli, "_cmd_demo", unreadable)
    assert main(["demo", "--quick", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "cannot access" in err and "locked.tsv: Permission denied" in err


def test_gwas_mixed_model_on_the_files(workflow, tmp_path, capsys):
    """`hcl gwas --model lmm`: the simulated cohort has one chromosome, so LOCO is refused
    with the fix in one line; with --no-loco (and with a saved GRM) the written betas equal
    CrossModalGWAS(model='lmm') in memory to the writer's 7 digits (5e-7 relative)."""
    from hcl_sklearn import CrossModalGWAS
    from hcl_sklearn.genetics import Genotypes, grm, save_grm

    args = ["gwas", str(workflow["emb"]), "--bfile", str(workflow["cohort"] / "genotypes"),
            "--covariates", str(workflow["cohort"] / "covariates.tsv"), "--quiet",
            "--model", "lmm"]
    assert main(args + ["--out", str(tmp_path / "loco")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "loco=False" in err
    emb = pd.read_csv(workflow["emb"], sep="\t", index_col=0)
    cov = pd.read_csv(workflow["cohort"] / "covariates.tsv", sep="\t", index_col=0)
    g = Genotypes.from_plink(str(workflow["cohort"] / "genotypes"))
    ref = CrossModalGWAS(g, model="lmm", loco=False, covariates=cov).fit(emb).sumstats_
    K = grm(g.qc(maf=0.01)[0])
    save_grm(K, tmp_path / "k")
    for extra, name in ((["--no-loco"], "one"), (["--grm", str(tmp_path / "k")], "grm")):
        assert main(args + extra + ["--out", str(tmp_path / name)]) == 0
        h2 = pd.read_csv(tmp_path / name / "h2_null.tsv", sep="\t", index_col=0)
        assert list(h2.index) == list(emb.columns)
        ss = pd.read_csv(tmp_path / name / "sumstats.tsv.gz", sep="\t")
        if name == "one":
            np.testing.assert_allclose(ss["beta"], ref["beta"], rtol=1e-6)
        else:
            # the GRM file is float32 (GCTA's format): ~6e-8 relative per entry moves the
            # REML h2, hence every beta by a small fraction of its SE (measured max
            # |d beta| / SE 1.6e-6 over the 94,662 rows; bound 1e-4)
            d = np.abs(ss["beta"] - ref["beta"]) / ref["standard_error"]
            assert d.max() < 1e-4


def test_genes_drugs_targets_prowas_on_the_files(workflow, tmp_path, capsys):
    """hcl genes -> drugs -> targets on the workflow's GWAS, and hcl prowas: each writes the
    table of its estimator run on the same inputs (the estimators' own correctness is in
    test_gene_test, test_drugs, test_prowas), and a planted protein is found."""
    from hcl_sklearn.genetics import Genotypes
    from hcl_sklearn.targets import CrossModalTargets, DrugTargetEnrichment, GeneBasedTest

    genes_dir = tmp_path / "genes"
    sumstats = workflow["gwas"] / "sumstats.tsv.gz"
    bfile = workflow["cohort"] / "genotypes"
    assert main(["genes", str(sumstats), "--ld-reference", str(bfile), "--modality-only",
                 "--out", str(genes_dir), "--quiet"]) == 0
    assert "gene test:" in capsys.readouterr().out
    table = pd.read_csv(genes_dir / "genes_by_modality.tsv", sep="\t", dtype={"chrom": str})
    direct = GeneBasedTest(ld_reference=Genotypes.from_plink(str(bfile)),
                           per_phenotype=False).fit(str(sumstats)).modality_results_
    assert not (genes_dir / "genes.tsv").exists()
    assert sorted(table["modality"].unique()) == ["t1", "t2"]
    assert table["gene"].tolist() == direct["gene"].tolist()
    # written with 6 significant digits: <= 5e-6 relative
    np.testing.assert_allclose(table["p_value"], direct["p_value"], rtol=5e-6)

    drugs_dir = tmp_path / "drugs"
    assert main(["drugs", "DRD2,HTR2A,DRD3", "--class-system", "EPC", "--out",
                 str(drugs_dir)]) == 0
    d = pd.read_csv(drugs_dir / "drugs.tsv", sep="\t")
    ref = DrugTargetEnrichment(class_system="EPC").fit(["DRD2", "HTR2A", "DRD3"]).results_
    assert d["drug_class"].tolist() == ref["drug_class"].tolist()
    np.testing.assert_allclose(d["p_value"], ref["p_value"], rtol=5e-6)
    assert (drugs_dir / "drugs.png").is_file()
    # a gene table (hcl genes' layout): its significant genes, and with
    # --universe-from-table the drug targets among all its genes as the background
    tab_dir = tmp_path / "drugs_tab"
    universe = ["COMT", "DRD2", "BCR"] + table["gene"].tolist()[:50]
    hits = ["COMT", "DRD2"]
    pd.DataFrame({"gene": universe, "significant": [g in hits for g in universe]}).to_csv(
        tmp_path / "g.tsv", sep="\t", index=False)
    assert main(["drugs", str(tmp_path / "g.tsv"), "--universe-from-table", "--no-plots",
                 "--out", str(tab_dir)]) == 0
    ref = DrugTargetEnrichment().fit(hits, universe=universe).results_
    d = pd.read_csv(tab_dir / "drugs.tsv", sep="\t")
    assert d["drug_class"].tolist() == ref["drug_class"].tolist()
    np.testing.assert_allclose(d["p_value"], ref["p_value"], rtol=5e-6)

    tg_dir = tmp_path / "targets"
    assert main(["targets", str(genes_dir / "genes_by_modality.tsv"), "--out", str(tg_dir),
                 "--no-plots"]) == 0
    summary = pd.read_csv(tg_dir / "summary.tsv", sep="\t", index_col=0)
    cm = CrossModalTargets().fit(table)
    assert summary.loc["genes"].tolist() == cm.summary_.loc["genes"].tolist()
    shared = pd.read_csv(tg_dir / "shared_genes.tsv", sep="\t")
    assert shared["gene"].tolist() == cm.genes_["gene"].tolist()
    assert shared["shared"].tolist() == cm.genes_["shared"].tolist()

    # ProWAS: 5 proteins, the first = 0.8 x t1 dimension 0 + noise
    emb = pd.read_csv(workflow["emb"], sep="\t", index_col=0)
    rng = np.random.default_rng(0)
    prot = pd.DataFrame(rng.standard_normal((len(emb), 5)), index=emb.index,
                        columns=[f"P{k}" for k in range(5)])
    x = emb.filter(like="t1_").iloc[:, 0]
    prot["P0"] += 3.0 * (x - x.mean()) / x.std()
    prot.index.name = "subject_id"
    prot.to_csv(tmp_path / "proteins.tsv", sep="\t")
    pw_dir = tmp_path / "prowas"
    assert main(["prowas", str(workflow["emb"]), str(tmp_path / "proteins.tsv"),
                 "--min-samples", "20", "--out", str(pw_dir), "--quiet"]) == 0
    res = pd.read_csv(pw_dir / "prowas.tsv", sep="\t")
    assert len(res) == 5 * emb.shape[1]
    top = res.sort_values("p_value").iloc[0]
    assert top["protein"] == "P0" and top["dimension"] == x.name and top["significant"]
    assert (pw_dir / "volcano.png").is_file()

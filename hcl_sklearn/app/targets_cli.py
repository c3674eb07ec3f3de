"""``hcl genes``, ``hcl prowas``, ``hcl drugs`` and ``hcl targets``: from loci to targets.

  hcl genes gwas/sumstats.tsv.gz --ld-reference cohort/genotypes --out genes/
  hcl prowas emb.tsv proteins.tsv --covariates cov.tsv --out prowas/
  hcl drugs genes/genes_by_modality.tsv --out drugs/
  hcl targets genes/genes_by_modality.tsv --prowas prowas/prowas.tsv --out targets/
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_commands"]


def _out_dir(path):
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _save_figure(fig, path):
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close("all")


def _agg():
    import matplotlib

    matplotlib.use("Agg")


def _genotypes_or_bgen(path):
    from ..genetics.genotypes import as_genotypes
    from .cli import CLIError

    p = str(path)
    if not (Path(p + ".bed").is_file() or (p.endswith(".bgen") and Path(p).is_file())):
        raise CLIError(f"LD reference {p!r} is neither a PLINK 1 prefix (with .bed/.bim/.fam) "
                       "nor a .bgen file; e.g. --ld-reference cohort/genotypes.")
    return as_genotypes(p, where="--ld-reference")


def _read_gene_table(path):
    import pandas as pd

    from .cli import CLIError

    path = Path(path)
    if not path.is_file():
        raise CLIError(f"gene table {str(path)!r} does not exist.")
    return pd.read_csv(path, sep="\t", dtype={"chrom": str})


# --------------------------------------------------------------------------- commands
def _cmd_genes(args):
    from ..targets.gene_test import GeneBasedTest

    window = args.window[0] if len(args.window) == 1 else tuple(args.window)
    gt = GeneBasedTest(window=window, ld_reference=_genotypes_or_bgen(args.ld_reference),
                       per_phenotype=not args.modality_only, max_snps=args.max_snps,
                       verbose=0 if args.quiet else 1).fit(args.sumstats)
    out = _out_dir(args.out)
    if len(gt.results_):
        gt.results_.to_csv(out / "genes.tsv", sep="\t", index=False, float_format="%.6g")
    mod = gt.modality_results_
    if mod is not None and len(mod):
        mod.to_csv(out / "genes_by_modality.tsv", sep="\t", index=False, float_format="%.6g")
    table = mod if mod is not None and len(mod) else gt.results_
    by = "modality" if table is mod else "phenotype"
    counts = table.groupby(by)["significant"].sum().astype(int)
    print(f"gene test: {gt.n_genes_} genes, {len(gt.phenotypes_)} phenotypes; significant "
          f"(Bonferroni over genes): "
          + ", ".join(f"{k}: {v}" for k, v in counts.items())
          + f"; results in {out}")
    return 0


def _cmd_prowas(args):
    from ..targets.prowas import ProWAS
    from .cli import _covariates, read_table

    X = read_table(args.embeddings, "embeddings")
    P = read_table(args.proteins, "proteins")
    cov = _covariates(args.covariates, X.index)
    pw = ProWAS(covariates=cov, lod=args.lod, min_samples=args.min_samples,
                alpha=args.alpha, verbose=0 if args.quiet else 1).fit(X, P)
    out = _out_dir(args.out)
    pw.results_.to_csv(out / "prowas.tsv", sep="\t", index=False, float_format="%.6g")
    if len(pw.dropped_):
        pw.dropped_.to_csv(out / "dropped_proteins.tsv", sep="\t")
    if not args.no_plots:
        _agg()
        _save_figure(pw.plot_volcano().figure, out / "volcano.png")
    hits = ", ".join(f"{m or 'no modality'}: {len(v)}" for m, v in pw.significant_.items())
    print(f"ProWAS: {len(pw.proteins_)} proteins x {pw.results_['dimension'].nunique()} "
          f"dimensions; Bonferroni-significant proteins: {hits or 'none'}; results in {out}")
    return 0


def _gene_list(source, column):
    import pandas as pd

    from .cli import CLIError

    p = Path(source)
    if not p.is_file():
        genes = [g.strip() for g in str(source).split(",") if g.strip()]
        if len(genes) == 1 and ("/" in source or source.endswith((".tsv", ".txt"))):
            raise CLIError(f"gene file {source!r} does not exist.")
        return genes, None
    t = pd.read_csv(p, sep="\t", header=None, dtype=str)      # the file is read once
    if "gene" not in set(t.iloc[0]):                             # one symbol per line
        return [g.strip() for g in t[0].dropna()], None
    t = t.iloc[1:].set_axis(t.iloc[0].tolist(), axis=1).reset_index(drop=True)
    if column in t.columns:
        t[column] = t[column].str.strip().str.lower().isin(("true", "1", "yes"))
    if column not in t.columns:
        return t["gene"].astype(str).tolist(), None
    return t.loc[t[column].astype(bool), "gene"].astype(str).tolist(), t["gene"].astype(str)


def _cmd_drugs(args):
    from ..targets.drugs import DrugTargetEnrichment

    genes, universe = _gene_list(args.genes, "significant")
    enr = DrugTargetEnrichment(table=args.table, class_system=args.class_system,
                               atc_level=args.atc_level, alpha=args.alpha,
                               tarone=not args.no_tarone)
    enr.fit(genes, universe=universe if args.universe_from_table else None)
    out = _out_dir(args.out)
    enr.results_.to_csv(out / "drugs.tsv", sep="\t", index=False, float_format="%.6g")
    if not args.no_plots:
        _agg()
        _save_figure(enr.plot(), out / "drugs.png")
    top = enr.results_.head(1)
    best = (f"; top: {top['drug_class'].iloc[0]} (p {top['p_value'].iloc[0]:.3g})"
            if len(top) else "")
    print(f"drug-target enrichment: {len(enr.genes_)} of {len(set(genes))} genes are drug "
          f"targets; {int(enr.results_['significant'].sum())} classes FDR-significant"
          f"{best}; results in {out}")
    return 0


def _cmd_targets(args):
    from ..targets.drugs import DrugTargetEnrichment
    from ..targets.shared import CrossModalTargets

    genes = _read_gene_table(args.genes)
    prowas = None
    if args.prowas:
        import pandas as pd

        prowas = pd.read_csv(args.prowas, sep="\t")
    cm = CrossModalTargets(tuple(args.modalities), enrichment=DrugTargetEnrichment(
        table=args.table, class_system=args.class_system)).fit(genes, prowas)
    out = _out_dir(args.out)
    cm.genes_.to_csv(out / "shared_genes.tsv", sep="\t", index=False, float_format="%.6g")
    if cm.proteins_ is not None:
        cm.proteins_.to_csv(out / "shared_proteins.tsv", sep="\t", index=False,
                            float_format="%.6g")
    cm.drugs_.to_csv(out / "shared_drugs.tsv", sep="\t", index=False, float_format="%.6g")
    cm.summary_.to_csv(out / "summary.tsv", sep="\t")
    if not args.no_plots:
        _agg()
        _save_figure(cm.plot(), out / "summary.png")
    print(cm.summary_.to_string())
    print(f"results in {out}")
    return 0


# --------------------------------------------------------------------------- parsers
def add_commands(sub, formatter):
    """Register the four commands on the ``hcl`` sub-parser action ``sub``."""
    p = sub.add_parser(
        "genes", formatter_class=formatter,
        help="gene-based test of GWAS summary statistics (MAGMA's SNP-wise mean model)",
        description="Per gene (GENCODE 32, GRCh37, ± --window kb) the sum of the SNPs' z² "
                    "against its exact null Σ λ χ²₁ (λ: eigenvalues of the SNPs' LD in "
                    "--ld-reference); per phenotype, and per modality across its "
                    "dimensions. Reads the package's own summary statistics, GWAS-SSF, "
                    "fastGWA or PLINK 2 .glm files. Writes genes.tsv (per phenotype) and "
                    "genes_by_modality.tsv into OUT.")
    p.add_argument("sumstats", help="summary statistics file (.tsv[.gz], .parquet)")
    p.add_argument("--ld-reference", required=True,
                   help="PLINK 1 prefix or .bgen of the LD panel (in-sample: the GWAS "
                        "genotypes; same ancestry and build)")
    p.add_argument("--window", type=float, nargs="+", default=[10.0],
                   help="kb around each gene (one value, or below-start and above-end)")
    p.add_argument("--max-snps", type=int, help="keep at most this many SNPs per gene "
                                                "(the most common)")
    p.add_argument("--modality-only", action="store_true",
                   help="only the per-modality tests (much faster for many dimensions)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_genes)

    p = sub.add_parser(
        "prowas", formatter_class=formatter,
        help="protein-wide association of every embedding dimension (ProWAS)",
        description="protein ~ dimension + covariates by OLS for every protein x dimension "
                    "pair; values below the limit of detection set missing; minimum-N "
                    "filters; Bonferroni over the pairs and BH-FDR. Writes prowas.tsv, "
                    "dropped_proteins.tsv and volcano.png into OUT.")
    p.add_argument("embeddings", help="TSV: subject_id + columns t1_*, t2_*")
    p.add_argument("proteins", help="TSV: subject_id + one column per protein")
    p.add_argument("--covariates", help="TSV: subject_id + covariates")
    p.add_argument("--lod", type=float, help="one limit of detection for every protein")
    p.add_argument("--min-samples", type=int, default=50,
                   help="fewest subjects a regression may use")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_prowas)

    p = sub.add_parser(
        "drugs", formatter_class=formatter,
        help="drug-target enrichment of a gene list (GREP's one-sided Fisher test)",
        description="Per drug class, the one-sided Fisher test of GREP's 2x2 table against "
                    "the genes targeted by any drug of the table. GENES: comma-separated "
                    "symbols, a file of one symbol per line, or a gene table with columns "
                    "gene and significant (e.g. genes_by_modality.tsv: its significant "
                    "genes). Default table: the embedded DrugCentral snapshot (CC BY 4.0). "
                    "Writes drugs.tsv and drugs.png into OUT.")
    p.add_argument("genes", help="symbols (A,B,C), a one-per-line file or a gene table")
    p.add_argument("--class-system", default="PA",
                   help="DrugCentral classes: PA (MeSH pharmacological action), EPC, MoA, "
                        "PE, Chemical/Ingredient, has role")
    p.add_argument("--table", help="a GREP-format file (ATC code, drug, gene, UniProt; "
                                   "tab-separated, no header) instead of DrugCentral")
    p.add_argument("--atc-level", type=int, default=1, help="ATC level of --table classes")
    p.add_argument("--universe-from-table", action="store_true",
                   help="with a gene table: background = the drug targets among its genes "
                        "(the genes tested) instead of every drug target")
    p.add_argument("--no-tarone", action="store_true",
                   help="FDR over every class, also those that cannot reach --alpha")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=_cmd_drugs)

    p = sub.add_parser(
        "targets", formatter_class=formatter,
        help="genes, proteins and drug classes significant for T1, for T2 and shared",
        description="From a gene table (hcl genes' genes_by_modality.tsv or genes.tsv) and "
                    "optionally a ProWAS table (hcl prowas' prowas.tsv): the hits of each "
                    "modality, the shared ones, and the drug-target enrichment of the T1, "
                    "T2 and shared genes (background: the drug targets tested). Writes "
                    "shared_genes.tsv, shared_proteins.tsv, shared_drugs.tsv, summary.tsv "
                    "and summary.png into OUT.")
    p.add_argument("genes", help="gene table of hcl genes")
    p.add_argument("--prowas", help="prowas.tsv of hcl prowas")
    p.add_argument("--modalities", nargs=2, default=["t1", "t2"])
    p.add_argument("--class-system", default="PA")
    p.add_argument("--table", help="a GREP-format drug table instead of DrugCentral")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=_cmd_targets)

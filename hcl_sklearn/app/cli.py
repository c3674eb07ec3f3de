"""hcl: learn heritable brain representations from paired T1/T2 MRI and test them genetically.

Typical use:

  hcl demo                                   simulate, train, test, write hcl_report/report.html
  hcl simulate --out cohort/                 a simulated BIDS + PLINK cohort to try the rest on
  hcl fit cohort/ --out model.joblib         train an embedder on a BIDS tree (or pairs TSV)
  hcl embed cohort/ --model model.joblib --out emb.tsv --pca 16
  hcl heritability emb.tsv --bfile cohort/genotypes --covariates cohort/covariates.tsv --out h2.tsv
  hcl gwas emb.tsv --bfile cohort/genotypes --covariates cohort/covariates.tsv --out gwas/
  hcl genes gwas/sumstats.tsv.gz --ld-reference cohort/genotypes --out genes/
  hcl prowas emb.tsv proteins.tsv --covariates cohort/covariates.tsv --out prowas/
  hcl drugs genes/genes_by_modality.tsv --out drugs/
  hcl targets genes/genes_by_modality.tsv --prowas prowas/prowas.tsv --out targets/

Tables are tab-separated with the subject id in the first column; the ids must match the
genotypes' IIDs. Add --debug before the command for full tracebacks.
"""

import argparse
import logging
import sys
from pathlib import Path

from .._version import __version__

logger = logging.getLogger("hcl_sklearn.app.cli")


class CLIError(ValueError):
    """A problem with the command-line input; printed as one line."""


# --------------------------------------------------------------------------- file helpers
def read_table(path, what="table"):
    """Read a TSV (or CSV) whose first column is the subject id."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CLIError(f"{what} file {str(path)!r} does not exist.")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    df = pd.read_csv(path, sep=sep, index_col=0)
    df.index = df.index.astype(str)
    df.index.name = "subject_id"
    if df.shape[1] == 0:
        raise CLIError(f"{what} file {str(path)!r} has no data columns (is it tab-separated "
                       "with the subject id in the first column?).")
    return df


def read_pairs(source, t2_suffix="T2w"):
    """Paired image paths from a BIDS root or a TSV with columns t1 and t2."""
    from ..data.volumes import pairs_from_bids

    source = Path(source)
    if source.is_dir():
        pairs = pairs_from_bids(source, t2_suffix=t2_suffix)
        if len(pairs) == 0:
            raise CLIError(f"no paired *_T1w/*_{t2_suffix} NIfTI images found under "
                           f"{str(source)!r} (expected sub-*/anat/ or sub-*/ses-*/anat/).")
        return pairs[["t1", "t2"]]
    pairs = read_table(source, "pairs")
    missing = {"t1", "t2"} - set(pairs.columns)
    if missing:
        raise CLIError(f"pairs file {str(source)!r} needs columns t1 and t2 (NIfTI paths); "
                       f"missing {sorted(missing)}.")
    base = source.parent
    for col in ("t1", "t2"):
        pairs[col] = [str(p) if Path(p).is_absolute() else str(base / p) for p in pairs[col]]
    return pairs[["t1", "t2"]]


def _genotypes(bfile):
    from ..genetics import Genotypes

    if not Path(str(bfile) + ".bed").is_file():
        raise CLIError(f"PLINK file {bfile}.bed not found; pass the prefix without extension "
                       "(e.g. --bfile cohort/genotypes).")
    return Genotypes.from_plink(str(bfile))


def _covariates(path, ids):
    if path is None:
        return None
    # read as given: the estimators apply the package's covariate policy (text columns
    # one-hot encoded, constant columns dropped, missing values and collinearity an error)
    return read_table(path, "covariates")


def _probability(text):
    """``--alpha``: a level in (0, 1)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), e.g. 5e-8; got {text}")
    return value


def _maf(text):
    """``--maf``: a minor-allele-frequency threshold in [0, 0.5)."""
    value = float(text)
    if not 0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"must lie in [0, 0.5), e.g. 0.01; got {text}")
    return value


# --------------------------------------------------------------------------- commands
def _cmd_demo(args):
    from .demo import DemoConfig, run_demo

    base = DemoConfig.quick() if args.quick else DemoConfig()
    overrides = {k: v for k, v in {
        "n_subjects": args.n_subjects, "shape": tuple(args.shape) if args.shape else None,
        "max_epochs": args.epochs, "ae_max_epochs": args.ae_epochs,
        "n_components": args.components, "encoder": args.encoder, "device": args.device,
        "random_state": args.seed, "batch_size": args.batch_size,
        "realism": args.realism}.items() if v is not None}
    import dataclasses

    cfg = dataclasses.replace(base, **overrides)
    result = run_demo(args.out, config=cfg, verbose=0 if args.quiet else 1)
    comp = result.comparison()
    if comp is not None and not args.quiet:
        print(comp.round(3).to_string())
    total = sum(result.timings.values())
    print(f"report: {result.report_path}  ({total:.0f} s)")
    return 0


def _cmd_simulate(args):
    from ..datasets import make_paired_cohort, write_cohort

    bunch = make_paired_cohort(n_subjects=args.n_subjects, shape=tuple(args.shape),
                               n_causal=args.n_causal, random_state=args.seed,
                               verbose=0 if args.quiet else 1)
    path = write_cohort(bunch, args.out, overwrite=args.overwrite,
                        verbose=0 if args.quiet else 1)
    print(f"cohort of {args.n_subjects} subjects written to {path} (BIDS images, PLINK "
          "genotypes.bed/.bim/.fam, covariates.tsv, phenotypes.tsv, truth_*.tsv)")
    return 0


def _parse_set(items):
    params = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--set expects key=value, got {item!r}.")
        key, value = item.split("=", 1)
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        else:
            if value.startswith("(") or value.startswith("["):
                value = tuple(int(v) for v in value.strip("()[]").split(",") if v.strip())
            elif value in ("None", "none"):
                value = None
        params[key] = value
    return params


def _launch_torchrun(args):
    """Run this same ``hcl fit`` as ``args.nproc`` data-parallel processes (torchrun)."""
    import subprocess

    argv, skip = [], False
    for a in args._argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if not a.startswith("--nproc="):
            argv.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={args.nproc}", "-m", "hcl_sklearn.app.cli", *argv]
    logger.info("launching: %s", " ".join(cmd))
    return subprocess.run(cmd).returncode


def _cmd_fit(args):
    import joblib

    from ..embed.nn.distributed import in_torchrun, world

    if args.nproc > 1 and not in_torchrun():
        if args.model != "contrastive":
            raise CLIError("--nproc trains the contrastive model only.")
        return _launch_torchrun(args)
    pairs = read_pairs(args.input, t2_suffix=args.t2_suffix)
    common = dict(max_epochs=args.epochs, batch_size=args.batch_size, device=args.device,
                  random_state=args.seed, verbose=0 if args.quiet else 1,
                  downsample=args.downsample,
                  target_shape=tuple(args.target_shape) if args.target_shape else "auto")
    if args.model == "contrastive":
        from ..embed.contrastive import MomentumContrastiveEmbedder as Est

        common["encoder"] = args.encoder
        if args.checkpoint_dir:
            common["checkpoint_dir"] = args.checkpoint_dir
    else:
        if args.checkpoint_dir:
            raise CLIError("--checkpoint-dir is for --model contrastive.")
        from ..embed.autoencoder import AutoencoderEmbedder as Est
    model = Est(**common)
    extra = _parse_set(args.set)
    if extra:
        valid = model.get_params()
        unknown = [k for k in extra if k not in valid]
        if unknown:
            raise CLIError(f"unknown parameter(s) {unknown} for {Est.__name__}; valid: "
                           f"{sorted(valid)}.")
        model.set_params(**extra)
    logger.info("training %s on %d subjects", Est.__name__, len(pairs))
    model.fit(pairs)
    if world()[0] != 0:  # data-parallel: rank 0 writes the model
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out)
    print(f"{Est.__name__} trained on {len(pairs)} subjects, saved to {out}")
    return 0


def _load_model(path):
    import joblib

    path = Path(path)
    if not path.is_file():
        raise CLIError(f"model file {str(path)!r} does not exist (create it with `hcl fit`).")
    model = joblib.load(path)
    if not hasattr(model, "transform"):
        raise CLIError(f"{str(path)!r} does not hold an embedder (found "
                       f"{type(model).__name__}).")
    return model


def _cmd_embed(args):
    import numpy as np
    import pandas as pd

    model = _load_model(args.model)
    pairs = read_pairs(args.input, t2_suffix=args.t2_suffix)
    if args.output is not None:
        if "output" not in model.get_params():
            raise CLIError(f"--output is only for the contrastive embedder, not "
                           f"{type(model).__name__}.")
        model.set_params(output=args.output)
    Z = model.transform(pairs)
    if not isinstance(Z, pd.DataFrame):
        Z = pd.DataFrame(np.asarray(Z), index=pairs.index,
                         columns=list(model.get_feature_names_out()))
    if args.pca:
        from ..embed.reduction import ModalityPCA

        Z = ModalityPCA(n_components=args.pca).fit_transform(Z)
    Z.index.name = "subject_id"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Z.to_csv(out, sep="\t", float_format="%.6g")
    print(f"embeddings of {Z.shape[0]} subjects x {Z.shape[1]} dimensions written to {out}")
    return 0


def _cmd_heritability(args):
    from ..genetics import grm
    from ..genetics.heritability import HeritabilityScorer, genetic_correlation

    Y = read_table(args.embeddings, "embeddings")
    g = _genotypes(args.bfile)
    cov = _covariates(args.covariates, Y.index)
    missing = Y.index.difference(g.iid)
    if len(missing):
        raise CLIError(f"{len(missing)} of {len(Y)} embedding subjects are not in the "
                       f"genotypes (e.g. {list(missing[:3])}); ids must equal the .fam IIDs.")
    if args.maf:
        g, _ = g.qc(maf=args.maf, samples=list(Y.index))
    K = grm(g, samples=list(Y.index))
    res = HeritabilityScorer(grm=K, method=args.method, covariates=cov).fit(Y).results_
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res.to_csv(out, sep="\t", float_format="%.6g")
    print(f"h2 of {len(res)} dimensions ({args.method}): mean {res['h2'].mean():.3f}, "
          f"{int((res['pvalue'] < 0.05).sum())} with p < 0.05; written to {out}")
    if args.rg:
        from ..evaluation import split_modalities

        try:
            t1, t2 = split_modalities(Y)
        except ValueError:
            raise CLIError("--rg needs t1_* and t2_* columns in the embeddings.") from None
        rg = genetic_correlation(t1, t2, grm=K, covariates=cov)
        rg_path = out.with_name(out.stem + "_rg.tsv")
        rg.to_csv(rg_path, sep="\t", float_format="%.6g")
        print(f"T1 x T2 genetic correlation ({rg.shape[0]} x {rg.shape[1]}) written to {rg_path}")
    return 0


def _cmd_gwas(args):
    import pandas as pd

    # CrossModalGWAS's engine: the same computation without importing scikit-learn (a
    # second or two of start-up); argparse has checked the arguments' types and ranges
    from ..genetics.gwas.engine import GWASEngine

    Y = read_table(args.embeddings, "embeddings")
    g = _genotypes(args.bfile)
    cov = _covariates(args.covariates, Y.index)
    grm = None
    if args.grm:
        from ..genetics import load_grm

        grm = load_grm(args.grm)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gw = GWASEngine(g, model=args.model, grm=grm, loco=not args.no_loco,
                        covariates=cov, alpha=args.alpha, maf=args.maf,
                        out_dir=out / "blocks" if args.resumable else None,
                        verbose=0 if args.quiet else 1).fit(Y)
    if args.format == "parquet":
        gw.to_parquet(out / "sumstats.parquet")
    else:
        gw.to_tsv_gz(out / "sumstats.tsv.gz")
    for mod, loci in gw.loci_.items():
        loci.to_csv(out / f"loci_{mod}.tsv", sep="\t", index=False)
    pd.DataFrame({"lambda_gc": gw.lambda_gc_}).to_csv(out / "lambda_gc.tsv", sep="\t")
    if args.model == "lmm":
        gw.h2_null_.to_csv(out / "h2_null.tsv", sep="\t", float_format="%.6g")
    if not args.no_plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        mods = sorted(gw.modalities_)
        if len(mods) >= 2 and gw.overlap_ is not None:
            gw.plot_miami(mods[0], mods[1]).savefig(out / "miami.png", dpi=100)
        else:
            gw.plot_manhattan(mods[0]).savefig(out / "manhattan.png", dpi=100)
        gw.plot_qq().savefig(out / "qq.png", dpi=100)
        plt.close("all")
    counts = ", ".join(f"{m}: {len(lo)} loci" for m, lo in gw.loci_.items())
    shared = f"; T1∩T2 shared: {gw.overlap_.n_shared}" if gw.overlap_ is not None else ""
    print(f"GWAS of {len(gw.phenotypes_)} dimensions x {gw.snp_qc_['n_tested']} SNPs: "
          f"{counts}{shared}; results in {out}")
    return 0


# --------------------------------------------------------------------------- parser
class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def build_parser():
    parser = argparse.ArgumentParser(prog="hcl", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"hcl-sklearn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo", formatter_class=_Formatter,
        help="run the end-to-end demo on a simulated cohort and write an HTML report",
        description="Simulate a paired T1/T2 cohort on the real MNI152 template with real "
                    "1000 Genomes chr22 genotypes, train the contrastive embedder and the "
                    "autoencoder baseline, test heritability, genetic correlation and GWAS, "
                    "evaluate age and disorder prediction, and write OUT/report.html. "
                    "Default sizes take under 10 minutes on 2 CPU cores; --quick about 1 minute.")
    p.add_argument("--out", default="hcl_report", help="output folder")
    p.add_argument("--quick", action="store_true", help="reduced run (120 subjects, 16x20x16)")
    p.add_argument("--n-subjects", type=int, help="cohort size (default 1000; quick 120)")
    p.add_argument("--realism", choices=["basic", "realistic"],
                   help="simulator setting: 'basic' (default) or 'realistic' (sites, "
                        "misregistration, own T2 mask, stronger nuisance, individual anatomy)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("D", "H", "W"),
                   help="image grid (default 24 28 24; quick 16 20 16)")
    p.add_argument("--epochs", type=int, help="contrastive training epochs")
    p.add_argument("--ae-epochs", type=int, help="autoencoder training epochs")
    p.add_argument("--batch-size", type=int, help="training batch size")
    p.add_argument("--components", type=int, help="PCs kept per modality")
    p.add_argument("--encoder", choices=["cnn", "vit"], help="contrastive encoder")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "simulate", formatter_class=_Formatter,
        help="write a simulated cohort (BIDS NIfTI, PLINK, TSV) to try the other commands",
        description="Write a simulated cohort: sub-*/anat/*_T1w.nii.gz and *_T2w.nii.gz, "
                    "genotypes.bed/.bim/.fam (IID = subject id), covariates.tsv, "
                    "phenotypes.tsv and the planted truth.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n-subjects", type=int, default=100)
    p.add_argument("--shape", type=int, nargs=3, default=(32, 40, 32), metavar=("D", "H", "W"))
    p.add_argument("--n-causal", type=int, default=5, help="causal SNPs per heritable factor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_simulate)

    def _pairs_arg(p):
        p.add_argument("input", help="BIDS root (sub-*/anat/*_T1w.nii[.gz], *_T2w) or a TSV "
                                     "with columns subject_id, t1, t2 (NIfTI paths)")
        p.add_argument("--t2-suffix", default="T2w", help="BIDS suffix of the T2 images "
                                                          "(e.g. FLAIR)")

    p = sub.add_parser(
        "fit", formatter_class=_Formatter, help="train an embedder on NIfTI pairs, save it",
        description="Train the momentum-contrastive embedder (or the autoencoder baseline) "
                    "on paired T1/T2 NIfTI images and save the fitted model with joblib. "
                    "Images are z-scored on their non-zero voxels; use --target-shape and "
                    "--downsample to set the grid. Any other estimator parameter: --set k=v.")
    _pairs_arg(p)
    p.add_argument("--out", required=True, help="model file to write (.joblib)")
    p.add_argument("--model", choices=["contrastive", "autoencoder"], default="contrastive")
    p.add_argument("--encoder", choices=["cnn", "vit"], default="cnn",
                   help="contrastive encoder ('vit' is the reference, for GPUs)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--target-shape", type=int, nargs=3, metavar=("D", "H", "W"),
                   help="pad/crop every image to this grid (default: keep for arrays, the "
                        "reference 182 224 182 for NIfTI)")
    p.add_argument("--downsample", type=int, default=1, help="average-pool factor (4 on CPU)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this machine (torchrun; gloo on CPU, "
                        "NCCL on GPUs); --batch-size is the global batch, a multiple of it")
    p.add_argument("--checkpoint-dir",
                   help="save the training state every epoch; the same command run again "
                        "after a crash or kill resumes after the last complete epoch")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="extra estimator parameter, e.g. --set lr=0.001 (repeatable)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser(
        "embed", formatter_class=_Formatter, help="embed NIfTI pairs with a saved model",
        description="Embed every subject with a model saved by `hcl fit`; writes a TSV with "
                    "the subject id and columns t1_000… t2_000… (or t1_pc000… with --pca).")
    _pairs_arg(p)
    p.add_argument("--model", required=True, help="model file from `hcl fit`")
    p.add_argument("--out", required=True, help="TSV to write")
    p.add_argument("--pca", type=int, metavar="N",
                   help="reduce each modality to N principal components (ModalityPCA)")
    p.add_argument("--output", choices=["pooled", "projection"],
                   help="contrastive output: pooled tokens or the L2-normalised projection")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser(
        "heritability", formatter_class=_Formatter,
        help="SNP heritability of every embedding dimension (and T1 x T2 rg)",
        description="Builds the GRM from PLINK genotypes and estimates the SNP heritability "
                    "of every column of the embeddings TSV; --rg adds the T1 x T2 genetic "
                    "correlation matrix (OUT stem + _rg.tsv).")
    p.add_argument("embeddings", help="TSV: subject_id + one column per dimension")
    p.add_argument("--bfile", required=True, help="PLINK 1 prefix (.bed/.bim/.fam)")
    p.add_argument("--covariates", help="TSV: subject_id + numeric covariates")
    p.add_argument("--method", choices=["reml", "he"], default="reml")
    p.add_argument("--maf", type=_maf, default=0.01, help="SNP filter for the GRM")
    p.add_argument("--rg", action="store_true", help="also the T1 x T2 genetic correlation")
    p.add_argument("--out", required=True, help="TSV to write")
    p.set_defaults(func=_cmd_heritability)

    p = sub.add_parser(
        "gwas", formatter_class=_Formatter,
        help="GWAS of every embedding dimension; loci and T1/T2 overlap",
        description="One GWAS per dimension with covariates (exact OLS, or with --model lmm "
                    "a linear mixed model with a GRM, leave-one-chromosome-out and REML "
                    "variance components per dimension, for cohorts with relatives); loci "
                    "per modality from the minimum p across its dimensions (threshold "
                    "alpha / dimensions), clumped, padded ±125 kb and merged; T1∩T2 "
                    "overlap. Writes sumstats.tsv.gz (GWAS-SSF columns; or sumstats.parquet), "
                    "loci_<modality>.tsv, lambda_gc.tsv (and h2_null.tsv with --model lmm), "
                    "miami.png and qq.png into OUT.")
    p.add_argument("embeddings", help="TSV: subject_id + columns t1_*, t2_*")
    p.add_argument("--bfile", required=True, help="PLINK 1 prefix (.bed/.bim/.fam)")
    p.add_argument("--covariates", help="TSV: subject_id + numeric covariates")
    p.add_argument("--alpha", type=_probability, default=5e-8, help="genome-wide level")
    p.add_argument("--maf", type=_maf, default=0.01, help="minor allele frequency filter")
    p.add_argument("--model", choices=("ols", "lmm"), default="ols",
                   help="ols: unrelated subjects; lmm: mixed model for cohorts with relatives")
    p.add_argument("--grm", help="--model lmm: a GRM saved by hcl_sklearn.genetics.save_grm "
                                 "(prefix of .grm.bin/.grm.id/.grm.N.bin) instead of one "
                                 "built from --bfile (then no LOCO)")
    p.add_argument("--no-loco", action="store_true",
                   help="--model lmm: one GRM of all chromosomes instead of leaving out "
                        "the tested chromosome")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=("tsv.gz", "parquet"), default="tsv.gz",
                   help="summary statistics file: gzip TSV (7 significant digits) or "
                        "Parquet (float64, needs pyarrow)")
    p.add_argument("--no-plots", action="store_true",
                   help="skip miami.png / manhattan.png and qq.png")
    p.add_argument("--resumable", action="store_true",
                   help="write each finished block of SNPs to OUT/blocks/; the same command "
                        "run again after a crash or kill computes only the missing blocks")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_gwas)

    from .targets_cli import add_commands

    add_commands(sub, _Formatter)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:  # pragma: no cover
        print(f"hcl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line unless --debug
        if args.debug:
            raise
        print(f"hcl {args.command}: {_describe_error(exc, args.command)}", file=sys.stderr)
        return 1


def _describe_error(exc, command):
    """One line: what was wrong and what to do.

    The package's input errors (ValueError, TypeError and their subclasses) already say
    both; a file the system could not read gets the path and what to check; anything else
    is a bug of the package, said as such.
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    debug = f"`hcl --debug {command} ...`"
    if isinstance(exc, (ValueError, TypeError, CLIError)):
        return f"error: {text or type(exc).__name__} (run {debug} for the traceback)"
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        reason = exc.strerror or text or type(exc).__name__
        return (f"error: cannot access{where}: {reason}; check the path, that the file "
                "exists and that you may read (or write) it")
    return (f"internal error ({type(exc).__name__}: {text}); this is a bug in hcl-sklearn, "
            f"not in your input: please report it with the output of {debug}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The file-based workflow: BIDS NIfTI + PLINK genotypes -> embeddings -> heritability -> GWAS.

What a biobank analysis looks like, at toy size: images in a BIDS tree, genotypes as a
PLINK prefix, covariates in a TSV, all keyed by the same subject ids. The same steps exist
on the command line (``hcl fit``, ``hcl embed``, ``hcl heritability``, ``hcl gwas``).

Runs in about a minute on 2 CPU cores. Usage: ``python examples/file_workflow.py [outdir]``
"""

import sys
import tempfile
from pathlib import Path

import joblib
import pandas as pd

from hcl_sklearn import CrossModalGWAS, HeritabilityScorer, ModalityPCA
from hcl_sklearn import MomentumContrastiveEmbedder
from hcl_sklearn.datasets import make_paired_cohort, write_cohort
from hcl_sklearn.genetics import Genotypes, grm
from hcl_sklearn.data.volumes import pairs_from_bids


def main(outdir=None, n_subjects=120, shape=(16, 20, 16), max_epochs=3, random_state=0):
    out = Path(outdir or tempfile.mkdtemp(prefix="hcl_files_"))
    # 1. data on disk (here simulated; with real data start at step 2)
    cohort = make_paired_cohort(n_subjects=n_subjects, shape=shape, n_causal=5,
                                random_state=random_state)
    root = write_cohort(cohort, out / "bids", overwrite=True)

    # 2. read the files: paired NIfTI paths, genotypes, covariates (ids are the join key)
    pairs = pairs_from_bids(root)[["t1", "t2"]]
    genotypes = Genotypes.from_plink(str(root / "genotypes"))
    covariates = pd.read_csv(root / "covariates.tsv", sep="\t", index_col=0)
    covariates.index = covariates.index.astype(str)

    # 3. train, save, reload, embed
    embedder = MomentumContrastiveEmbedder(
        encoder="cnn", max_epochs=max_epochs, target_shape=shape, device="cpu",
        random_state=random_state).fit(pairs)
    joblib.dump(embedder, out / "embedder.joblib")
    embedder = joblib.load(out / "embedder.joblib")
    # token grid -> StandardScaler -> PCA per modality (the reference protocol)
    pcs = ModalityPCA(n_components=4).fit_transform(embedder.transform(pairs))
    pcs.to_csv(out / "embeddings.tsv", sep="\t")

    # 4. heritability of every dimension on the GRM of the same subjects
    K = grm(genotypes, samples=list(pcs.index))
    h2 = HeritabilityScorer(grm=K, covariates=covariates).fit(pcs).results_
    h2.to_csv(out / "h2.tsv", sep="\t")
    print(h2[["h2", "h2_se", "pvalue"]].round(3).to_string())

    # 5. GWAS of every dimension, loci and T1/T2 overlap
    gwas = CrossModalGWAS(genotypes, covariates=covariates).fit(pcs)
    gwas.to_tsv_gz(out / "sumstats.tsv.gz")
    gwas.plot_miami().savefig(out / "miami.png", dpi=80)
    print({m: len(lo) for m, lo in gwas.loci_.items()}, gwas.overlap_)
    print(f"outputs in {out}")
    return {"out": out, "pcs": pcs, "h2": h2, "gwas": gwas}


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)

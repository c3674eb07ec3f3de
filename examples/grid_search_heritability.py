"""Model selection by heritability: GridSearchCV scored by HeritabilityScorer.

The embedder's hyper-parameters are chosen for the SNP heritability of the embedding (mean
REML h2 of the held-out subjects' PCs) instead of a supervised target. Subject ids carry
the join to the genotypes: the volumes are NIfTI paths in a DataFrame indexed by subject id
(from a BIDS tree), so every CV fold's embedding is matched to the right rows of the GRM.

Runs in about a minute on 2 CPU cores.
Usage: ``python examples/grid_search_heritability.py``
"""

import tempfile

import pandas as pd
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from hcl_sklearn import HeritabilityScorer, ModalityPCA, MomentumContrastiveEmbedder
from hcl_sklearn.datasets import make_paired_cohort, write_cohort
from hcl_sklearn.genetics import Genotypes, grm
from hcl_sklearn.data.volumes import pairs_from_bids


def main(n_subjects=100, shape=(16, 20, 16), max_epochs=2, random_state=0, workdir=None):
    cohort = make_paired_cohort(n_subjects=n_subjects, shape=shape, random_state=random_state)
    root = write_cohort(cohort, workdir or tempfile.mkdtemp(prefix="hcl_gs_"), overwrite=True)
    pairs = pairs_from_bids(root)[["t1", "t2"]]  # index = subject id = genotype IID

    genotypes = Genotypes.from_plink(str(root / "genotypes"))
    K = grm(genotypes)
    covariates = pd.read_csv(root / "covariates.tsv", sep="\t", index_col=0)
    covariates.index = covariates.index.astype(str)
    scorer = HeritabilityScorer(grm=K, method="reml", covariates=covariates)

    pipe = Pipeline([
        ("embed", MomentumContrastiveEmbedder(  # token grid -> StandardScaler -> PCA
            encoder="cnn", max_epochs=max_epochs, target_shape=shape, device="cpu",
            random_state=random_state)),
        ("pca", ModalityPCA(n_components=4)),
    ])
    search = GridSearchCV(pipe, {"embed__temperature": [0.07, 0.2]}, scoring=scorer,
                          cv=KFold(2, shuffle=True, random_state=random_state), refit=True)
    search.fit(pairs)
    results = pd.DataFrame(search.cv_results_)[["param_embed__temperature",
                                                "mean_test_score", "std_test_score"]]
    print(results.rename(columns={"mean_test_score": "mean h2 (held out)"}).to_string())
    print(f"best: {search.best_params_}")
    h2 = scorer.fit(search.best_estimator_.transform(pairs)).results_
    print(h2[["h2", "h2_se", "pvalue"]].round(3).to_string())
    return {"search": search, "h2": h2}


if __name__ == "__main__":
    main()

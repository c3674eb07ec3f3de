"""The input layer: what every estimator and the evaluation accept, and how.

* :mod:`.covariates` -- one policy for covariate tables (text columns, constant columns,
  missing values, rank deficiency) and the one covariate design;
* :mod:`.phenotypes` -- phenotype tables and their missingness patterns;
* :mod:`.modalities` -- which modality a column belongs to (``t1_000`` -> ``'t1'``).

Subject ids are the join key (:mod:`hcl_sklearn.data.subjects`); genotypes come in through
:func:`hcl_sklearn.genetics.as_genotypes`.
"""

from .covariates import (
    CovariateError,
    CovariatePolicy,
    RankDeficientCovariatesError,
    covariate_basis,
    covariate_design,
    prepare_covariates,
)
from .modalities import modality_of, split_by_modality
from .phenotypes import missingness_patterns

__all__ = [
    "CovariateError",
    "CovariatePolicy",
    "RankDeficientCovariatesError",
    "covariate_basis",
    "covariate_design",
    "missingness_patterns",
    "modality_of",
    "prepare_covariates",
    "split_by_modality",
]

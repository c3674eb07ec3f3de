"""Covariates: one policy and one design for every estimator and the evaluation.

Every part of the package that adjusts for covariates (:class:`~hcl_sklearn.HeritabilityScorer`,
:func:`~hcl_sklearn.genetic_correlation`, :class:`~hcl_sklearn.CrossModalGWAS`,
:func:`~hcl_sklearn.evaluation.idp_association`, :func:`~hcl_sklearn.evaluation.idp_omnibus`)
reads the covariate table with :func:`prepare_covariates` and builds its design with
:func:`covariate_design` / :func:`covariate_basis`, so one table gets one treatment:

=====================  ==========================  ======================================
situation              default                      other choice (``CovariatePolicy``)
=====================  ==========================  ======================================
text / category / bool one-hot, first level dropped ``categorical='raise'``
column                 (logged)
constant column        dropped (logged): the        ``constant='raise'``
                       intercept is always included
missing value (NaN)    error naming the columns     ``missing='drop'``: those subjects are
                       and the number of subjects   left out (with a warning)
collinear columns      error naming them            -- (no safe automatic choice)
=====================  ==========================  ======================================

A table is matched to the phenotypes by subject id (its index; ids are compared as
strings); every phenotype subject must be in it, extra subjects are ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np
import pandas as pd

from .subjects import SubjectMismatchError, describe_mismatch

logger = logging.getLogger(__name__)

__all__ = [
    "CovariateError",
    "CovariatePolicy",
    "RankDeficientCovariatesError",
    "covariate_basis",
    "covariate_design",
    "prepare_covariates",
]


class CovariateError(ValueError):
    """A covariate table cannot be used as given (the message says why and what to do)."""


class RankDeficientCovariatesError(CovariateError):
    """The covariates (with the intercept) are linearly dependent."""


_CHOICES = {"categorical": ("onehot", "raise"), "constant": ("drop", "raise"),
            "missing": ("raise", "drop")}


@dataclasses.dataclass(frozen=True)
class CovariatePolicy:
    """How covariate tables are treated (the defaults are the package's policy).

    Parameters
    ----------
    categorical : {'onehot', 'raise'}, default='onehot'
        Text, categorical and bool columns: one-hot encoded with the first level dropped,
        or an error.
    constant : {'drop', 'raise'}, default='drop'
        Columns constant over the subjects analysed: dropped (the intercept is always in
        the model), or an error.
    missing : {'raise', 'drop'}, default='raise'
        Subjects with a missing covariate: an error, or left out of the analysis.

    Examples
    --------
    >>> from hcl_sklearn.data import CovariatePolicy
    >>> CovariatePolicy(missing="drop")
    CovariatePolicy(categorical='onehot', constant='drop', missing='drop')
    """

    categorical: str = "onehot"
    constant: str = "drop"
    missing: str = "raise"

    def __post_init__(self):
        for field, allowed in _CHOICES.items():
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"CovariatePolicy {field} must be one of {allowed}; got "
                                 f"{value!r}.")

    @classmethod
    def coerce(cls, policy):
        """``None`` -> the default policy; a dict -> ``CovariatePolicy(**dict)``."""
        if policy is None:
            return cls()
        if isinstance(policy, cls):
            return policy
        if isinstance(policy, dict):
            return cls(**policy)
        raise TypeError("covariate_policy must be None, a dict or a CovariatePolicy; got "
                        f"{type(policy).__name__}.")


def _encode(cov, policy, where):
    text = [c for c in cov.columns
            if not pd.api.types.is_numeric_dtype(cov[c]) or pd.api.types.is_bool_dtype(cov[c])]
    if not text:
        return cov
    if policy.categorical == "raise":
        raise CovariateError(f"{where} has non-numeric columns {[str(c) for c in text[:5]]}; "
                             "one-hot encode them (pd.get_dummies(..., drop_first=True)) or "
                             "pass covariate_policy={'categorical': 'onehot'}.")
    logger.info("One-hot encoding covariate column(s) %s (first level dropped)",
                [str(c) for c in text])
    return pd.get_dummies(cov, columns=text, drop_first=True, dtype=float, dummy_na=False)


def prepare_covariates(covariates, ids, policy=None, *, where="covariates"):
    """Covariate matrix of the subjects ``ids``, by the package's covariate policy.

    Parameters
    ----------
    covariates : DataFrame, Series or None
        Indexed by subject id.
    ids : sequence of str
        The subjects analysed (e.g. the phenotype index), in order.
    policy : CovariatePolicy, dict or None
        ``None``: the default policy (module notes).
    where : str
        Name of the table in messages.

    Returns
    -------
    C : float64 ndarray of shape (len(ids), k)
        Encoded covariates in the order of ``ids``; rows of subjects with a missing value
        are NaN (only with ``missing='drop'``).
    names : list of str
    complete : bool ndarray of shape (len(ids),)
        Subjects with every covariate observed.

    Examples
    --------
    >>> import pandas as pd
    >>> from hcl_sklearn.data import prepare_covariates
    >>> cov = pd.DataFrame({"age": [50.0, 60, 70], "site": ["a", "b", "a"]},
    ...                    index=["s1", "s2", "s3"])
    >>> C, names, complete = prepare_covariates(cov, ["s3", "s1"])
    >>> names, C.tolist(), complete.tolist()
    (['age', 'site_b'], [[70.0, 0.0], [50.0, 0.0]], [True, True])
    """
    policy = CovariatePolicy.coerce(policy)
    ids = pd.Index(ids).astype(str)
    if covariates is None:
        return np.empty((len(ids), 0)), [], np.ones(len(ids), dtype=bool)
    if isinstance(covariates, pd.Series):
        covariates = covariates.to_frame()
    if not isinstance(covariates, pd.DataFrame):
        raise TypeError(f"{where} must be a pandas DataFrame indexed by subject id; got "
                        f"{type(covariates).__name__}.")
    cov = covariates.copy()
    cov.index = cov.index.astype(str)
    cov.columns = cov.columns.astype(str)
    if cov.index.has_duplicates:
        dup = cov.index[cov.index.duplicated()].unique()[:5].tolist()
        raise CovariateError(f"{where} has duplicated subject ids, e.g. {dup}; keep one row "
                             "per subject.")
    if cov.columns.has_duplicates:
        dup = cov.columns[cov.columns.duplicated()].unique()[:5].tolist()
        raise CovariateError(f"{where} has duplicated column names, e.g. {dup}.")
    pos = cov.index.get_indexer(ids)
    if (pos < 0).any():
        raise SubjectMismatchError(describe_mismatch(
            ids, cov.index, where, fix=f"Give {where} a row for every subject analysed (its "
            "index is the subject id), or subset the phenotypes."))
    # levels come from the whole table, so every subset is encoded with the same columns
    cov = _encode(cov, policy, where).iloc[pos]
    C = cov.to_numpy(dtype=np.float64)
    names = [str(c) for c in cov.columns]
    inf = np.isinf(C)
    if inf.any():
        bad = [names[j] for j in np.flatnonzero(inf.any(axis=0))]
        raise CovariateError(f"{where} has infinite values in {bad[:5]}; fix or set them to "
                             "NaN.")
    missing = np.isnan(C)
    complete = ~missing.any(axis=1)
    if not complete.all():
        bad = [names[j] for j in np.flatnonzero(missing.any(axis=0))]
        n_bad = int((~complete).sum())
        if policy.missing == "raise":
            raise CovariateError(
                f"{where} has missing values in column(s) {bad[:5]} for {n_bad} subject(s); "
                "impute them, drop those subjects, or pass covariate_policy="
                "{'missing': 'drop'} to leave them out.")
        warnings.warn(f"{n_bad} of {len(ids)} subjects have a missing covariate ({bad[:5]}) "
                      "and are left out.", UserWarning, stacklevel=3)
    return C, names, complete


def covariate_design(C, names=None, policy=None):
    """Intercept + standardised covariates of the subjects analysed, with the rank checked.

    Parameters
    ----------
    C : array-like of shape (n, k)
        Covariates without the intercept (finite).
    names : list of str, optional
        Column names, quoted in messages.
    policy : CovariatePolicy, dict or None
        Only ``constant`` is used here.

    Returns
    -------
    X : ndarray of shape (n, 1 + k_kept)
        ``[1, (C - mean) / sd]``.
    mean, sd : ndarray of shape (k_kept,)
    kept : list of str
        Names of the columns kept (constant ones dropped).
    Q : ndarray of shape (n, 1 + k_kept)
        Orthonormal basis of the columns of ``X`` (what :func:`covariate_basis` returns).

    Raises
    ------
    CovariateError
        Too few subjects for the covariates (``n >= k + 3`` is needed: intercept, one
        more effect and a residual degree of freedom), or a constant column with
        ``constant='raise'``.
    RankDeficientCovariatesError
        Collinear columns; the message names them.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.data import covariate_design
    >>> X, mean, sd, kept, Q = covariate_design(np.c_[np.arange(5.0), np.ones(5)], ["a", "b"])
    >>> X.shape, kept
    ((5, 2), ['a'])
    """
    policy = CovariatePolicy.coerce(policy)
    C = np.asarray(C, dtype=np.float64)
    if C.ndim == 1:
        C = C[:, None]
    n, k = C.shape
    names = [f"covariate {j}" for j in range(k)] if names is None else [str(c) for c in names]
    if not np.isfinite(C).all():
        bad = [names[j] for j in np.flatnonzero(~np.isfinite(C).all(axis=0))]
        raise CovariateError(f"covariates {bad[:5]} are not finite for the subjects analysed; "
                             "drop or impute those values.")
    mean = C.mean(axis=0) if k else np.zeros(0)
    sd = C.std(axis=0) if k else np.zeros(0)
    const = sd <= 1e-12 * np.maximum(np.abs(mean), 1.0)
    if const.any():
        dropped = [nm for nm, c in zip(names, const) if c]
        if policy.constant == "raise":
            raise CovariateError(f"covariate column(s) {dropped} are constant over the {n} "
                                 "subjects analysed (collinear with the intercept); drop them "
                                 "or pass covariate_policy={'constant': 'drop'}.")
        logger.info("Dropping constant covariate column(s) %s (the intercept is always "
                    "included)", dropped)
    keep = ~const
    kept = [nm for nm, c in zip(names, keep) if c]
    mean, sd = mean[keep], sd[keep]
    X = np.column_stack([np.ones(n), (C[:, keep] - mean) / sd])
    if n < X.shape[1] + 2:
        raise CovariateError(
            f"{n} subjects cannot fit the intercept + {len(kept)} covariates with one more "
            f"effect and a residual degree of freedom (need at least {X.shape[1] + 2}); use "
            "fewer covariates (e.g. fewer ancestry PCs).")
    Q = _checked_basis(X, ["intercept", *kept])
    return X, mean, sd, kept, Q


def _checked_basis(X, names):
    """Orthonormal basis of the columns of ``X`` from one pivoted QR, which also checks
    the rank (a full-rank ``X``: ``Q`` spans exactly its columns)."""
    from scipy.linalg import qr

    Q, R, piv = qr(X, mode="economic", pivoting=True)
    d = np.abs(np.diag(R))
    tol = max(X.shape) * np.finfo(float).eps * 1e3
    rank = int((d > tol * d[0]).sum())
    if rank < X.shape[1]:
        dependent = sorted(names[j] for j in piv[rank:])
        raise RankDeficientCovariatesError(
            f"covariates are rank deficient (rank {rank} of {X.shape[1]} with the intercept): "
            f"{dependent} are linear combinations of the other columns. Drop them (or drop "
            "one level of each one-hot encoded factor).")
    return np.ascontiguousarray(Q)


def covariate_basis(C, names=None, policy=None):
    """Orthonormal basis ``Q`` (n, 1 + k_kept) of the design of :func:`covariate_design`.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.data import covariate_basis
    >>> Q = covariate_basis(np.arange(6.0)[:, None])
    >>> Q.shape, bool(np.allclose(Q.T @ Q, np.eye(2)))
    ((6, 2), True)
    """
    return covariate_design(C, names, policy)[4]

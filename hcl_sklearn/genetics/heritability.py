"""SNP heritability of many phenotypes at once, as an estimator and as a GridSearchCV scorer.

:class:`HeritabilityScorer` estimates h2 of every column of a phenotype table indexed by
subject id, from one GRM: by REML (one eigendecomposition shared by all phenotypes,
vectorised likelihood, see :mod:`hcl_sklearn.genetics.reml`) or by Haseman-Elston regression
(matrix products, see :mod:`hcl_sklearn.genetics.haseman_elston`). Called as
``scorer(estimator, X)`` it returns the mean h2 of ``estimator.transform(X)``, so it can
rank representations in :class:`~sklearn.model_selection.GridSearchCV`.

:func:`genetic_correlation` gives the genetic correlation of every pair of columns of
two phenotype tables (e.g. T1 x T2 embedding dimensions) by bivariate HE regression.

Missing values
--------------
Each phenotype is analysed on the subjects where it is observed (NaN = missing); nothing
is imputed. Phenotypes with the same missingness pattern are analysed together (one
eigendecomposition of the GRM restricted to those subjects per pattern); the number of
patterns and of subjects per phenotype are logged and reported in ``results_['n']``. For
genetic correlations, a pair uses the subjects observed for both of its phenotypes.
Missing covariate values follow the covariate policy (an error by default).

Covariates
----------
A DataFrame indexed by subject id, read by the package's one covariate policy
(:mod:`hcl_sklearn.data.covariates`: text columns one-hot encoded, constant columns
dropped, missing values an error, collinear columns an error; ``covariate_policy``
chooses otherwise). An intercept is always added. Columns are centred and scaled
internally (so unscaled covariates such as age in days cannot break the optimiser);
effects are reported on the user's scale in ``fixed_effects_``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import StrOptions

from .._base import SharesDataOnClone
from ..data.covariates import (CovariateError, CovariatePolicy, covariate_design,
                              prepare_covariates)
from ..data.phenotypes import missingness_patterns
from .genotypes import as_genotypes
from ..data.subjects import SubjectMismatchError, describe_mismatch
from .grm import check_grm, grm as build_grm
from .haseman_elston import he_regression
from .reml import bivariate_reml, eigen_grm, reml_h2

logger = logging.getLogger(__name__)

__all__ = ["HeritabilityScorer", "genetic_correlation", "PhenotypeError", "CovariateError"]


class PhenotypeError(ValueError):
    """A phenotype table is unusable (no ids, non-numeric, constant or all-missing column)."""


# --------------------------------------------------------------------------- inputs
def _as_phenotypes(Y, name="Y"):
    if isinstance(Y, pd.Series):
        Y = Y.to_frame(name=Y.name if Y.name is not None else "y")
    if not isinstance(Y, pd.DataFrame):
        raise TypeError(
            f"{name} must be a pandas DataFrame indexed by subject id (one column per "
            f"phenotype); got {type(Y).__name__}. Wrap arrays as "
            "pd.DataFrame(values, index=subject_ids)."
        )
    if Y.shape[1] == 0 or Y.shape[0] == 0:
        raise PhenotypeError(f"{name} is empty (shape {Y.shape}).")
    non_num = [c for c in Y.columns if not pd.api.types.is_numeric_dtype(Y[c])
               or pd.api.types.is_bool_dtype(Y[c])]
    if non_num:
        raise TypeError(f"{name} has non-numeric columns {non_num[:5]}; phenotypes must be "
                        "numbers (encode categories first).")
    Y = Y.astype(np.float64)
    Y.index = Y.index.astype(str)
    Y.columns = Y.columns.astype(str)
    if Y.index.has_duplicates:
        raise PhenotypeError(f"{name} has duplicated subject ids, e.g. "
                             f"{Y.index[Y.index.duplicated()][:5].tolist()}.")
    values = Y.to_numpy()
    if np.isinf(values).any():
        bad = Y.columns[np.isinf(values).any(axis=0)].tolist()
        raise PhenotypeError(f"{name} has infinite values in {bad[:5]}; set them to NaN "
                             "(missing) or fix them.")
    all_missing = Y.columns[np.isnan(values).all(axis=0)].tolist()
    if all_missing:
        raise PhenotypeError(f"{name} has all-missing phenotype(s) {all_missing[:5]}; "
                             "drop them.")
    return Y


def _to_user_scale(beta, mean, sd):
    """Effects of (1, (C - mean)/sd) -> effects of (1, C)."""
    b = beta.copy()
    b[:, 1:] = beta[:, 1:] / sd
    b[:, 0] = beta[:, 0] - (beta[:, 1:] * (mean / sd)).sum(axis=1)
    return b


def _without_incomplete(values, complete):
    """Phenotype values with the subjects lacking a covariate set to missing."""
    if complete.all():
        return values
    values = values.copy()
    values[~complete] = np.nan
    return values


def _missing_patterns(values):
    """(observed rows, columns) per missingness pattern of a phenotype matrix."""
    return missingness_patterns(~np.isnan(values))


def _check_constant(Y, names):
    sd = np.nanstd(Y, axis=0)
    const = [names[j] for j in np.flatnonzero(~(sd > 0))]
    if const:
        raise PhenotypeError(
            f"constant phenotype(s) {const[:5]} (zero variance over the subjects where "
            "they are observed): h2 is undefined. Drop them."
        )


def _residualize_standardize(Y, X):
    """OLS residuals of Y on X scaled to unit variance (dof n - c); also the OLS betas."""
    beta, *_ = np.linalg.lstsq(X, Y, rcond=None)
    R = Y - X @ beta
    sd = np.sqrt((R * R).sum(axis=0) / (X.shape[0] - X.shape[1]))
    return R / sd, beta.T


class _GRMSource:
    """GRM values and ids from a DataFrame or built from genotypes; caches eigendecompositions."""

    def __init__(self, grm, genotypes, ids_needed, max_cache=4, cluster=None):
        if grm is not None:
            self.K, self.ids = check_grm(grm)
        elif genotypes is not None:
            G = build_grm(as_genotypes(genotypes), samples=ids_needed, cluster=cluster)
            self.K, self.ids = G.to_numpy(), G.index
        else:
            raise ValueError("Give grm= (a square DataFrame indexed by subject id, e.g. "
                             "hcl_sklearn.genetics.grm(genotypes)) or genotypes=.")
        self._eig = OrderedDict()
        self.max_cache = max_cache

    def positions(self, ids):
        pos = self.ids.get_indexer(ids)
        if (pos < 0).any():
            raise SubjectMismatchError(describe_mismatch(ids, self.ids, "GRM ids"))
        return pos

    def sub(self, pos):
        if pos.size == self.K.shape[0] and np.array_equal(pos, np.arange(pos.size)):
            return self.K  # no n x n copy when all subjects are used in GRM order
        return self.K[np.ix_(pos, pos)]

    def eig(self, pos):
        key = pos.tobytes()
        if key in self._eig:
            self._eig.move_to_end(key)
            return self._eig[key]
        out = eigen_grm(self.sub(pos))
        self._eig[key] = out
        while len(self._eig) > self.max_cache:
            self._eig.popitem(last=False)
        return out


# --------------------------------------------------------------------------- estimator
class HeritabilityScorer(SharesDataOnClone, BaseEstimator):
    """SNP heritability of every column of a phenotype table; also a scorer for model selection.

    Parameters
    ----------
    grm : pandas.DataFrame, optional
        GRM indexed by subject id on both axes (:func:`hcl_sklearn.genetics.grm`,
        :func:`~hcl_sklearn.genetics.load_grm`). It may hold more subjects than the
        phenotypes; every phenotype subject must be in it.
    genotypes : Genotypes, str or path-like, optional
        Used to build the GRM of the phenotype subjects when ``grm`` is None (a PLINK
        prefix or ``.bgen`` path is opened, :func:`hcl_sklearn.genetics.as_genotypes`).
    method : {'reml', 'he'}
        ``'reml'``: restricted maximum likelihood in the GRM eigenbasis, SE from the
        expected information, p-value from the likelihood-ratio test of h2 = 0.
        ``'he'``: Haseman-Elston cross-product regression, analytic (normal-theory)
        SE, one-sided Wald p-value. HE estimates are not bounded to [0, 1].
    covariates : pandas.DataFrame, optional
        Fixed effects, indexed by subject id (see the module notes).
    covariate_policy : CovariatePolicy or dict, optional
        How covariates are read (:class:`hcl_sklearn.data.CovariatePolicy`; default the
        package's policy: text one-hot, constant dropped, missing and collinear an error).
    random_state : int, RandomState instance or None, default=None
        Seed of the random probes of the HE SE traces (only used above 4000 subjects).
    cluster : distributed.Client, dask cluster or str, optional
        Build the GRM from ``genotypes`` as tasks on this dask.distributed cluster
        (:func:`~hcl_sklearn.genetics.grm`); ignored when ``grm`` is given.
    verbose : int
        0: quiet; > 0 logs a line per missingness pattern at INFO level.

    Attributes
    ----------
    results_ : pandas.DataFrame
        Indexed by phenotype: ``h2, h2_se, pvalue, n`` and, for REML, ``lrt, sigma2_g,
        sigma2_e, loglik``.
    fixed_effects_ : pandas.DataFrame
        Indexed by phenotype: intercept and covariate effects on the user's scale (GLS
        for REML, OLS for HE).
    n_patterns_ : int
        Number of distinct missingness patterns among the phenotypes.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hcl_sklearn.datasets import get_1000g_chr22
    >>> from hcl_sklearn.genetics import Genotypes, grm
    >>> from hcl_sklearn import HeritabilityScorer
    >>> g = Genotypes.from_plink(get_1000g_chr22())
    >>> K = grm(g)
    >>> rng = np.random.default_rng(0)
    >>> Y = pd.DataFrame(rng.normal(size=(g.n_samples, 3)), index=g.iid)
    >>> res = HeritabilityScorer(grm=K).fit(Y).results_
    >>> list(res.columns[:4])
    ['h2', 'h2_se', 'pvalue', 'n']
    >>> bool(((res.h2 >= 0) & (res.h2 <= 1)).all())
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "grm": [pd.DataFrame, None],
        "genotypes": "no_validation",
        "method": [StrOptions({"reml", "he"})],
        "covariates": [pd.DataFrame, pd.Series, None],
        "covariate_policy": [CovariatePolicy, dict, None],
        "random_state": ["random_state"],
        "cluster": "no_validation",
        "verbose": ["verbose"],
    }
    #: data-valued parameters shared (not copied) by ``clone``
    _shared_params = ("grm", "genotypes", "covariates", "cluster")

    def __init__(self, grm=None, genotypes=None, *, method="reml", covariates=None,
                 covariate_policy=None, random_state=None, cluster=None, verbose=0):
        self.grm = grm
        self.genotypes = genotypes
        self.method = method
        self.covariates = covariates
        self.covariate_policy = covariate_policy
        self.random_state = random_state
        self.cluster = cluster
        self.verbose = verbose

    # -- public API
    def fit(self, Y, y=None):
        """Estimate h2 of every column of ``Y`` (DataFrame indexed by subject id).

        Returns
        -------
        self
        """
        self.results_, self.fixed_effects_, self.n_patterns_ = self._estimate(Y)
        return self

    def __call__(self, estimator, X, y=None):
        """Scorer protocol: mean h2 of ``estimator.transform(X)``.

        Rows are matched to the GRM by subject id: the index of the transform output
        when it is a DataFrame with a non-default index, else the index of ``X``.
        """
        Z = estimator.transform(X)
        Y = _output_with_ids(Z, X)
        results, _, _ = self._estimate(Y)
        return float(results["h2"].mean())

    # -- internals
    def _check_params(self):
        self._validate_params()
        if self.grm is not None and self.genotypes is not None:
            raise ValueError("Give either grm= or genotypes=, not both.")

    def _source(self, ids):
        cache = self.__dict__.setdefault("_grm_cache", {})
        key = (id(self.grm), id(self.genotypes))
        src = cache.get(key)
        if src is None or (self.grm is None and not pd.Index(ids).isin(src.ids).all()):
            src = _GRMSource(self.grm, self.genotypes, ids, cluster=self.cluster)
            cache.clear()
            cache[key] = src
        return src

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_grm_cache", None)  # eigendecompositions are rebuilt after unpickling
        return state

    def _estimate(self, Y):
        self._check_params()
        Y = _as_phenotypes(Y)
        ids = Y.index
        src = self._source(ids)
        pos = src.positions(ids)
        C, cov_names, complete = prepare_covariates(self.covariates, ids,
                                                    self.covariate_policy)
        values = _without_incomplete(Y.to_numpy(), complete)
        _check_constant(values, list(Y.columns))
        patterns = _missing_patterns(values)
        if len(patterns) > 1 or self.verbose > 0:
            logger.info("%d phenotype(s) in %d missingness pattern(s)", values.shape[1],
                        len(patterns))
        P = values.shape[1]
        rows = {}
        effects = None
        for obs, cols in patterns:
            n_obs = int(obs.sum())
            X, mean, sd, kept, _ = covariate_design(C[obs], cov_names, self.covariate_policy)
            Yp = values[np.ix_(obs, cols)]
            _check_constant(Yp, [Y.columns[j] for j in cols])
            if self.verbose > 0:
                logger.info("pattern: %d phenotype(s) on %d subject(s)", cols.size, n_obs)
            if self.method == "reml":
                Q, s = src.eig(pos[obs])
                r = reml_h2(Yp, X, Q, s)
                beta = r.pop("beta")
                r["n"] = np.full(cols.size, n_obs)
            else:
                Ys, beta = _residualize_standardize(Yp, X)
                he = he_regression(src.sub(pos[obs]), Ys, random_state=self.random_state)
                h, se = he["h2_1"], he["h2_1_se"]
                with np.errstate(divide="ignore", invalid="ignore"):
                    p = stats.norm.sf(h / se)
                r = {"h2": h, "h2_se": se, "pvalue": p, "n": np.full(cols.size, n_obs)}
            if effects is None:
                effects = pd.DataFrame(np.nan, index=Y.columns,
                                       columns=["intercept"] + cov_names)
            effects.loc[Y.columns[cols], ["intercept"] + kept] = _to_user_scale(beta, mean, sd)
            for k, v in r.items():
                rows.setdefault(k, np.full(P, np.nan))[cols] = v
        res = pd.DataFrame(rows, index=pd.Index(Y.columns, name="phenotype"))
        res["n"] = res["n"].astype(np.int64)
        first = ["h2", "h2_se", "pvalue", "n"]
        res = res[first + [c for c in res.columns if c not in first]]
        return res, effects, len(patterns)


def _output_with_ids(Z, X):
    x_index = X.index if isinstance(X, (pd.DataFrame, pd.Series)) else None
    if isinstance(Z, pd.DataFrame):
        default = isinstance(Z.index, pd.RangeIndex) and Z.index.equals(
            pd.RangeIndex(len(Z)))
        if default and x_index is not None and len(x_index) == len(Z):
            Z = Z.set_axis(x_index, axis=0)
        return Z
    if x_index is None:
        raise TypeError(
            "Cannot match the rows of the transform output to the GRM: neither the "
            "output nor X carries subject ids. Pass X as a DataFrame indexed by subject "
            "id (or use set_output(transform='pandas'))."
        )
    Z = np.asarray(Z)
    if Z.ndim == 1:
        Z = Z[:, None]
    return pd.DataFrame(Z, index=x_index,
                        columns=[f"x{j}" for j in range(Z.shape[1])])


# --------------------------------------------------------------------------- rg
def genetic_correlation(Y1, Y2, *, grm=None, genotypes=None, covariates=None,
                        covariate_policy=None, method="he", random_state=None,
                        return_se=False, cluster=None):
    """Genetic correlation of every column of ``Y1`` with every column of ``Y2``.

    Parameters
    ----------
    Y1, Y2 : pandas.DataFrame
        Phenotypes indexed by subject id (same subjects, any order), e.g. the T1 and
        the T2 embedding dimensions.
    grm : pandas.DataFrame, optional
        GRM indexed by subject id on both axes (or give ``genotypes``).
    genotypes : Genotypes, str or path-like, optional
        Used to build the GRM when ``grm`` is None (a PLINK prefix or ``.bgen`` path is
        opened, :func:`hcl_sklearn.genetics.as_genotypes`).
    covariates : pandas.DataFrame, optional
        Fixed effects regressed out of both sets (see the module notes).
    covariate_policy : CovariatePolicy or dict, optional
        How covariates are read (:class:`hcl_sklearn.data.CovariatePolicy`; default the
        package's policy).
    method : {'he', 'reml'}, default='he'
        (Unlike :class:`HeritabilityScorer`, whose default is REML: here REML is one
        optimisation per *pair* and gives no SE, so the all-pairs HE is the default.)
        ``'he'``: bivariate Haseman-Elston for all pairs as matrix products, analytic
        (delta-method, normal-theory) SE. ``'reml'``: bivariate REML per pair
        (:func:`hcl_sklearn.genetics.reml.bivariate_reml`; slow, one optimisation per pair, no SE).
    return_se : bool
        If True return ``(rg, se)`` with ``se`` a DataFrame shaped like ``rg``.
    cluster : distributed.Client, dask cluster or str, optional
        Build the GRM from ``genotypes`` on this dask.distributed cluster.

    Returns
    -------
    rg : pandas.DataFrame of shape (P1, P2)
        Rows = columns of ``Y1``, columns = columns of ``Y2``. NaN where an h2 estimate
        is not positive. HE estimates are not bounded to [-1, 1].

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hcl_sklearn.datasets import get_1000g_chr22
    >>> from hcl_sklearn.genetics import Genotypes, grm
    >>> from hcl_sklearn import genetic_correlation
    >>> g = Genotypes.from_plink(get_1000g_chr22())
    >>> K = grm(g)
    >>> rng = np.random.default_rng(0)
    >>> Y1 = pd.DataFrame(rng.normal(size=(g.n_samples, 2)), index=g.iid, columns=["a", "b"])
    >>> Y2 = pd.DataFrame(rng.normal(size=(g.n_samples, 3)), index=g.iid)
    >>> genetic_correlation(Y1, Y2, grm=K).shape
    (2, 3)
    """
    if method not in ("he", "reml"):
        raise ValueError(f"method must be 'he' or 'reml'; got {method!r}.")
    if grm is not None and genotypes is not None:
        raise ValueError("Give either grm= or genotypes=, not both.")
    Y1 = _as_phenotypes(Y1, "Y1")
    Y2 = _as_phenotypes(Y2, "Y2")
    if not (Y2.index.isin(Y1.index).all() and len(Y2.index) == len(Y1.index)):
        raise SubjectMismatchError("Y1 and Y2 must hold the same subjects. "
                                  + describe_mismatch(Y2.index, Y1.index, "Y1 index"))
    Y2 = Y2.loc[Y1.index]
    ids = Y1.index
    src = _GRMSource(grm, genotypes, ids, cluster=cluster)
    pos = src.positions(ids)
    C, cov_names, complete = prepare_covariates(covariates, ids, covariate_policy)
    V1 = _without_incomplete(Y1.to_numpy(), complete)
    V2 = _without_incomplete(Y2.to_numpy(), complete)
    _check_constant(V1, list(Y1.columns))
    _check_constant(V2, list(Y2.columns))
    rg = np.full((V1.shape[1], V2.shape[1]), np.nan)
    se = np.full_like(rg, np.nan)
    pats1, pats2 = _missing_patterns(V1), _missing_patterns(V2)
    if len(pats1) * len(pats2) > 1:
        logger.info("genetic_correlation: %d x %d missingness patterns", len(pats1),
                    len(pats2))
    for obs1, cols1 in pats1:
        for obs2, cols2 in pats2:
            obs = obs1 & obs2
            X, *_ = covariate_design(C[obs], cov_names, covariate_policy)
            A = V1[np.ix_(obs, cols1)]
            B = V2[np.ix_(obs, cols2)]
            _check_constant(A, [Y1.columns[j] for j in cols1])
            _check_constant(B, [Y2.columns[j] for j in cols2])
            if method == "he":
                As, _ = _residualize_standardize(A, X)
                Bs, _ = _residualize_standardize(B, X)
                out = he_regression(src.sub(pos[obs]), As, Bs, random_state=random_state)
                rg[np.ix_(cols1, cols2)] = out["rg"]
                se[np.ix_(cols1, cols2)] = out["rg_se"]
            else:
                Q, s = src.eig(pos[obs])
                for a, i in enumerate(cols1):
                    for b, j in enumerate(cols2):
                        rg[i, j] = bivariate_reml(A[:, a], B[:, b], X, Q, s)["rg"]
    rg_df = pd.DataFrame(rg, index=pd.Index(Y1.columns, name="Y1"),
                         columns=pd.Index(Y2.columns, name="Y2"))
    se_df = pd.DataFrame(se, index=rg_df.index.copy(), columns=rg_df.columns.copy())
    if return_se:
        return rg_df, se_df
    return rg_df

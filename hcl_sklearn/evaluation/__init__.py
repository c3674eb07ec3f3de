"""The reference evaluation protocol for brain embeddings, as functions that return DataFrames.

Four questions are asked of an embedding table (index = subject id, columns ``t1_000…``,
``t2_000…``, as returned by the embedders' ``transform`` or by :class:`~hcl_sklearn.ModalityPCA`):

* :func:`age_prediction` -- how well do the features predict age? Ridge and friends after a
  ``StandardScaler``; held-out MAE, RMSE, Pearson r and the mean 5-fold cross-validated r.
* :func:`disorder_classification` -- how well do they detect a disorder? Class-balanced logistic
  regression in nested cross-validation (outer stratified 3-fold, inner 2-fold over
  ``C`` in {0.01, 0.1, 1, 10} and the penalty l1 / l2 / none); balanced accuracy and ROC-AUC.
* :func:`idp_association` and :func:`idp_omnibus` -- how do they relate to traditional imaging-
  derived phenotypes (IDPs)? One OLS per (IDP, feature) pair with covariates and a Bonferroni
  threshold, and the omnibus partial F test of all features over covariates alone, whose
  effect size is the incremental R².
* :func:`alignment_scores` -- how well are T1 and T2 aligned? Mean canonical correlation,
  CKA of the true pairs against shuffled pairs, and cross-modal retrieval.
* :func:`factor_recovery` -- on simulated data with a known truth: how much of each planted
  factor does the embedding carry? Held-out ridge R² per factor.

Subject ids are the join key: every table is aligned on its index and a mismatch raises a
:class:`SubjectMismatchError` that says how many ids matched and shows a few that did not.
"""

from __future__ import annotations

import logging
from numbers import Integral

import numpy as np
import pandas as pd
from scipy import stats

from ..data.covariates import covariate_basis, covariate_design, prepare_covariates
from ..data.modalities import split_by_modality
from ..data.subjects import SubjectMismatchError

logger = logging.getLogger(__name__)

__all__ = [
    "REGRESSORS",
    "SubjectMismatchError",
    "age_prediction",
    "alignment_scores",
    "disorder_classification",
    "factor_recovery",
    "idp_association",
    "idp_omnibus",
    "split_modalities",
]


# --------------------------------------------------------------------------- input handling
def _as_frame(X, name):
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, pd.Series):
        return X.to_frame()
    arr = np.asarray(X)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (subjects x features), got shape {arr.shape}.")
    return pd.DataFrame(arr)


def _as_series(y, name):
    if isinstance(y, pd.DataFrame):
        if y.shape[1] != 1:
            raise ValueError(f"{name} must be one column, got {y.shape[1]} columns.")
        y = y.iloc[:, 0]
    if isinstance(y, pd.Series):
        return y.rename(name)
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per subject), got shape {arr.shape}.")
    return pd.Series(arr, name=name)


def _align(frames, names):
    """Align pandas objects on their index; raise if the ids do not match.

    Objects built from plain arrays carry a RangeIndex; they are aligned by position and must
    all have the same length.
    """
    labelled = [not isinstance(f.index, pd.RangeIndex) for f in frames]
    if not any(labelled):
        lengths = {len(f) for f in frames}
        if len(lengths) > 1:
            desc = ", ".join(f"{n}: {len(f)}" for f, n in zip(frames, names))
            raise ValueError(f"inputs have different numbers of subjects ({desc}); pass "
                             "pandas objects indexed by subject id or arrays of equal length.")
        return frames
    if not all(labelled):
        # mixing id-indexed tables with plain arrays: use positions for the unlabelled ones
        ref = next(f.index for f, lab in zip(frames, labelled) if lab)
        out = []
        for f, lab, n in zip(frames, labelled, names):
            if not lab:
                if len(f) != len(ref):
                    raise ValueError(f"{n} is a plain array of {len(f)} rows but the id-indexed "
                                     f"inputs have {len(ref)} subjects; index {n} by subject id.")
                f = f.set_axis(ref)
            out.append(f)
        frames = out
    ids = frames[0].index
    for f, n in zip(frames[1:], names[1:]):
        if f.index.has_duplicates:
            raise ValueError(f"{n} has duplicated subject ids, e.g. "
                             f"{list(f.index[f.index.duplicated()][:3])}; drop duplicates first.")
        common = ids.intersection(f.index, sort=False)
        if len(common) != len(ids) or len(common) != len(f.index):
            missing = list(ids.difference(f.index)[:5])
            extra = list(f.index.difference(ids)[:5])
            raise SubjectMismatchError(
                f"subject ids of {names[0]} ({len(ids)}) and {n} ({len(f.index)}) differ: "
                f"{len(common)} matched; in {names[0]} only e.g. {missing}; in {n} only e.g. "
                f"{extra}. Select the same subjects (e.g. df.loc[common_ids]) before calling."
            )
    if frames[0].index.has_duplicates:
        raise ValueError(f"{names[0]} has duplicated subject ids; drop duplicates first.")
    return [frames[0]] + [f.loc[ids] for f in frames[1:]]


def split_modalities(embeddings):
    """Split an embedding table into its T1 and T2 blocks by column prefix.

    Parameters
    ----------
    embeddings : DataFrame
        Columns named ``t1_*`` and ``t2_*`` (the embedders' output convention).

    Returns
    -------
    t1, t2 : DataFrame
        The two blocks, same index.

    Examples
    --------
    >>> import pandas as pd
    >>> emb = pd.DataFrame([[1.0, 2.0, 3.0, 4.0]], columns=["t1_000", "t1_001", "t2_000", "t2_001"])
    >>> [list(b.columns) for b in split_modalities(emb)]
    [['t1_000', 't1_001'], ['t2_000', 't2_001']]
    """
    if not isinstance(embeddings, pd.DataFrame):
        raise TypeError("embeddings must be a DataFrame with t1_* and t2_* columns (the output "
                        f"of an embedder's transform), got {type(embeddings).__name__}.")
    cols = [str(c) for c in embeddings.columns]
    groups = split_by_modality(embeddings.columns)
    t1, t2 = groups.get("t1", []), groups.get("t2", [])
    if not t1 or not t2:
        raise ValueError("embeddings need both t1_* and t2_* columns; got columns "
                         f"{cols[:4]}{'...' if len(cols) > 4 else ''}.")
    return embeddings[t1], embeddings[t2]


def _check_finite(X, name):
    arr = np.asarray(X, dtype=float)
    if not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr).all(axis=1)).sum())
        raise ValueError(f"{name} has missing or infinite values in {n_bad} subject(s); drop or "
                         "impute them first (e.g. df.dropna() or SimpleImputer).")
    return arr


# --------------------------------------------------------------------------- age
def _regressor(name, random_state):
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import ElasticNetCV, LassoCV, RidgeCV
    from sklearn.svm import SVR

    alphas = np.logspace(-2, 4, 13)
    factories = {
        "ridge": lambda: RidgeCV(alphas=alphas),
        "lasso": lambda: LassoCV(cv=3, max_iter=5000, random_state=random_state),
        "elasticnet": lambda: ElasticNetCV(l1_ratio=0.5, cv=3, max_iter=5000,
                                           random_state=random_state),
        "svr": lambda: SVR(kernel="rbf", C=10.0),
        "rf": lambda: RandomForestRegressor(n_estimators=200, min_samples_leaf=2, n_jobs=1,
                                            random_state=random_state),
        "gbm": lambda: GradientBoostingRegressor(n_estimators=200, max_depth=3,
                                                 learning_rate=0.05, subsample=0.8,
                                                 random_state=random_state),
    }
    return factories[name]()


#: Names accepted by ``age_prediction(estimators=...)``.
REGRESSORS = ("ridge", "lasso", "elasticnet", "svr", "rf", "gbm")


def _pearson(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def age_prediction(X, age, *, estimators=("ridge", "svr"), test_size=0.2, cv=5,
                   random_state=0):
    """Predict age from embeddings: held-out and cross-validated accuracy per regressor.

    Each regressor runs after a ``StandardScaler`` (as in the reference protocol: 256 features,
    the T1 and T2 principal components, scaled then regressed). A random ``test_size`` split
    gives the held-out MAE, RMSE, R² and Pearson r; a shuffled ``cv``-fold split of all
    subjects gives the mean and SD of the per-fold Pearson r.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_subjects, n_features)
        Features; a DataFrame is aligned with ``age`` on its index (subject ids).
    age : Series or array-like of shape (n_subjects,)
    estimators : sequence of str or dict, default=("ridge", "svr")
        Names from :data:`REGRESSORS` (``"ridge"``, ``"lasso"``, ``"elasticnet"``, ``"svr"``,
        ``"rf"``, ``"gbm"``) or a dict ``{name: regressor}`` of unfitted estimators.
    test_size : float, default=0.2
        Fraction of subjects held out.
    cv : int, default=5
        Number of folds for the cross-validated r.
    random_state : int, default=0

    Returns
    -------
    DataFrame
        One row per regressor (index ``model``) with columns ``mae``, ``rmse``, ``r2``,
        ``pearson_r``, ``cv_r_mean``, ``cv_r_std``, ``n_train``, ``n_test``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(120, 5))
    >>> age = 60 + 5 * X[:, 0] + rng.normal(size=120)
    >>> res = age_prediction(X, age, estimators=["ridge"])
    >>> bool(res.loc["ridge", "pearson_r"] > 0.9)
    True
    """
    from sklearn.base import clone
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import KFold, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xf, yf = _align([_as_frame(X, "X"), _as_series(age, "age").to_frame()], ["X", "age"])
    Xa = _check_finite(Xf, "X")
    y = _check_finite(yf, "age")[:, 0]
    if isinstance(estimators, dict):
        models = dict(estimators)
    else:
        if isinstance(estimators, str):
            estimators = [estimators]
        unknown = [e for e in estimators if e not in REGRESSORS]
        if unknown:
            raise ValueError(f"unknown regressor(s) {unknown}; choose from {list(REGRESSORS)} "
                             "or pass a dict {name: estimator}.")
        models = {e: _regressor(e, random_state) for e in estimators}
    if not models:
        raise ValueError("estimators is empty; pass at least one regressor name.")
    if not isinstance(cv, Integral) or cv < 2:
        raise ValueError(f"cv must be an integer >= 2, got {cv!r}.")
    if len(y) < max(cv * 2, 10):
        raise ValueError(f"age prediction needs at least {max(cv * 2, 10)} subjects, got "
                         f"{len(y)}.")

    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_size,
                                           random_state=random_state)
    folds = list(KFold(cv, shuffle=True, random_state=random_state).split(Xa))
    rows = {}
    for name, est in models.items():
        pipe = make_pipeline(StandardScaler(), clone(est))
        pipe.fit(Xa[idx_train], y[idx_train])
        pred = pipe.predict(Xa[idx_test])
        cv_r = []
        for tr, te in folds:
            p = make_pipeline(StandardScaler(), clone(est)).fit(Xa[tr], y[tr])
            cv_r.append(_pearson(y[te], p.predict(Xa[te])))
        rows[name] = {
            "mae": mean_absolute_error(y[idx_test], pred),
            "rmse": float(np.sqrt(mean_squared_error(y[idx_test], pred))),
            "r2": r2_score(y[idx_test], pred),
            "pearson_r": _pearson(y[idx_test], pred),
            "cv_r_mean": float(np.mean(cv_r)),
            "cv_r_std": float(np.std(cv_r)),
            "n_train": len(idx_train),
            "n_test": len(idx_test),
        }
        logger.info("age ~ %s: MAE %.2f, r %.3f", name, rows[name]["mae"],
                    rows[name]["pearson_r"])
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "model"
    return out


# --------------------------------------------------------------------------- disorders
def _logistic_grid(Cs, penalties, max_iter):
    """Param grid over C and penalty, written for the installed scikit-learn."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    new_api = tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8)
    grid = []
    for pen in penalties:
        if pen in (None, "none"):
            est = (LogisticRegression(C=np.inf, class_weight="balanced", max_iter=max_iter)
                   if new_api else
                   LogisticRegression(penalty=None, class_weight="balanced", max_iter=max_iter))
            grid.append({"clf": [est]})
        elif pen in ("l1", "l2"):
            solver = "liblinear" if pen == "l1" else "lbfgs"
            if new_api:
                est = LogisticRegression(l1_ratio=1.0 if pen == "l1" else 0.0, solver=solver,
                                         class_weight="balanced", max_iter=max_iter)
            else:
                est = LogisticRegression(penalty=pen, solver=solver, class_weight="balanced",
                                         max_iter=max_iter)
            grid.append({"clf": [est], "clf__C": list(Cs)})
        else:
            raise ValueError(f"unknown penalty {pen!r}; use 'l1', 'l2' or None.")
    return grid


def _penalty_name(clf):
    if not np.isfinite(clf.C) or getattr(clf, "penalty", None) is None:
        return "none"
    if getattr(clf, "penalty", "deprecated") in ("l1", "l2"):
        return clf.penalty
    return "l1" if clf.l1_ratio == 1 else "l2"


def disorder_classification(X, labels, *, outer_cv=3, inner_cv=2, Cs=(0.01, 0.1, 1.0, 10.0),
                            penalties=("l1", "l2", None), max_iter=2000, random_state=0):
    """Classify a binary disorder label with class-balanced logistic regression in nested CV.

    The inner loop (stratified ``inner_cv``-fold, scored by ROC-AUC) picks ``C`` and the
    penalty on each outer training set; the outer loop (stratified ``outer_cv``-fold) scores
    the refitted model on data it never saw. Features are standardised inside the pipeline.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_subjects, n_features)
    labels : Series or array-like of shape (n_subjects,)
        Binary labels (0/1 or bool; 1 = case, e.g. any ICD-10 F or G code).
    outer_cv, inner_cv : int, default=3, 2
    Cs : sequence of float, default=(0.01, 0.1, 1, 10)
    penalties : sequence of {"l1", "l2", None}, default=("l1", "l2", None)
    max_iter : int, default=2000
    random_state : int, default=0

    Returns
    -------
    DataFrame
        Index ``fold`` ("1" … "k" and "mean"); columns ``balanced_accuracy``, ``roc_auc``,
        ``C``, ``penalty``, ``n_train``, ``n_test``, ``n_cases_test``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(150, 4))
    >>> y = (X[:, 0] + 0.5 * rng.normal(size=150) > 0.8).astype(int)
    >>> res = disorder_classification(X, y)
    >>> bool(res.loc["mean", "roc_auc"] > 0.8)
    True
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    Xf, yf = _align([_as_frame(X, "X"), _as_series(labels, "labels").to_frame()],
                    ["X", "labels"])
    Xa = _check_finite(Xf, "X")
    y_raw = yf.iloc[:, 0]
    if y_raw.isna().any():
        raise ValueError(f"labels has {int(y_raw.isna().sum())} missing value(s); drop those "
                         "subjects first.")
    classes = np.unique(y_raw.to_numpy())
    if len(classes) != 2:
        raise ValueError(f"labels must have exactly two classes, got {len(classes)}: "
                         f"{list(classes[:5])}.")
    y = (y_raw.to_numpy() == classes[1]).astype(int)
    n_min = int(min(y.sum(), len(y) - y.sum()))
    if n_min < outer_cv * inner_cv:
        raise ValueError(f"the smaller class has {n_min} subject(s); nested CV with "
                         f"outer_cv={outer_cv} and inner_cv={inner_cv} needs at least "
                         f"{outer_cv * inner_cv}. Use fewer folds or more subjects.")

    grid = _logistic_grid(Cs, penalties, max_iter)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", grid[0]["clf"][0])])
    outer = StratifiedKFold(outer_cv, shuffle=True, random_state=random_state)
    rows = {}
    for k, (tr, te) in enumerate(outer.split(Xa, y), start=1):
        inner = StratifiedKFold(inner_cv, shuffle=True, random_state=random_state)
        search = GridSearchCV(pipe, grid, cv=inner, scoring="roc_auc", n_jobs=1)
        search.fit(Xa[tr], y[tr])
        best = search.best_estimator_
        score = best.predict_proba(Xa[te])[:, 1]
        clf = best.named_steps["clf"]
        rows[str(k)] = {
            "balanced_accuracy": balanced_accuracy_score(y[te], best.predict(Xa[te])),
            "roc_auc": roc_auc_score(y[te], score),
            "C": float(clf.C),
            "penalty": _penalty_name(clf),
            "n_train": len(tr),
            "n_test": len(te),
            "n_cases_test": int(y[te].sum()),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    mean = out[["balanced_accuracy", "roc_auc"]].mean()
    out.loc["mean", ["balanced_accuracy", "roc_auc"]] = mean.to_numpy()
    out.loc["mean", ["n_train", "n_test", "n_cases_test"]] = [
        out["n_train"].iloc[:-1].mean(), out["n_test"].iloc[:-1].sum(),
        out["n_cases_test"].iloc[:-1].sum()]
    out.index.name = "fold"
    logger.info("disorder: balanced accuracy %.3f, ROC-AUC %.3f", mean.iloc[0], mean.iloc[1])
    return out


# --------------------------------------------------------------------------- IDPs
def _prepare_idp_inputs(X, idps, covariates, covariate_policy):
    """Aligned features, IDPs and the covariate matrix (by the package's covariate policy)."""
    frames = [_as_frame(X, "X"), _as_frame(idps, "idps")]
    names = ["X", "idps"]
    if covariates is not None:
        frames.append(_as_frame(covariates, "covariates"))
        names.append("covariates")
    aligned = _align(frames, names)
    Xf, Yf = aligned[0], aligned[1]
    if covariates is None:
        return Xf, Yf, np.empty((len(Xf), 0)), []
    cov = aligned[2].set_axis(Xf.index.astype(str))
    C, cov_names, _ = prepare_covariates(cov, cov.index, covariate_policy)
    return Xf, Yf, C, cov_names


def _residualize(Q, A):
    """Residuals of the columns of ``A`` on the orthonormal basis ``Q``."""
    return A - Q @ (Q.T @ A)


def idp_association(X, idps, covariates=None, *, alpha=0.05, covariate_policy=None):
    """Association of every (IDP, feature) pair by OLS with covariates, Bonferroni-corrected.

    For each IDP ``y`` and feature ``x`` the model ``y ~ 1 + x + covariates`` is fitted by
    ordinary least squares; the feature's coefficient, standard error, t statistic and two-
    sided p-value are reported. The Bonferroni threshold is ``alpha / (n_idps * n_features)``.
    Subjects with a missing value in ``y``, ``x`` or a covariate are left out of that pair's
    fit only.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_subjects, n_features)
        Embedding features (e.g. 128 T1 and 128 T2 principal components).
    idps : DataFrame or array-like of shape (n_subjects, n_idps)
        Traditional imaging-derived phenotypes.
    covariates : DataFrame or array-like of shape (n_subjects, n_covariates), optional
        Read by the package's covariate policy (:mod:`hcl_sklearn.data.covariates`: text
        columns one-hot encoded, constant columns dropped, missing values and collinear
        columns an error).
    alpha : float, default=0.05
        Family-wise error rate.
    covariate_policy : CovariatePolicy or dict, optional
        Another covariate policy, e.g. ``{'missing': 'drop'}``.

    Returns
    -------
    DataFrame
        One row per pair with columns ``idp``, ``feature``, ``beta``, ``se``, ``t``, ``pvalue``,
        ``n``, ``significant`` (p below the Bonferroni threshold); ``attrs["threshold"]`` holds
        the threshold.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["t1_000", "t1_001", "t2_000"])
    >>> idps = pd.DataFrame({"volume": 2 * X["t1_000"] + rng.normal(size=200)})
    >>> res = idp_association(X, idps)
    >>> res.loc[res.significant, "feature"].tolist()
    ['t1_000']
    """
    Xf, Yf, Ca, cov_names = _prepare_idp_inputs(X, idps, covariates, covariate_policy)
    n_feat, n_idp = Xf.shape[1], Yf.shape[1]
    threshold = alpha / (n_feat * n_idp)
    Xa = Xf.to_numpy(dtype=float)
    Ya = Yf.to_numpy(dtype=float)
    rows = []
    for j in range(n_idp):
        y_ok = np.isfinite(Ya[:, j]) & np.isfinite(Ca).all(axis=1)
        col_ok = np.isfinite(Xa[y_ok]).all(axis=0)
        # features without missing values among these subjects share one residualisation
        groups = [(np.flatnonzero(col_ok), y_ok)] if col_ok.any() else []
        for f in np.flatnonzero(~col_ok):
            groups.append((np.array([f]), y_ok & np.isfinite(Xa[:, f])))
        for feats, ok in groups:
            Q = covariate_basis(Ca[ok], cov_names, covariate_policy)
            n, k = Q.shape[0], Q.shape[1] + 1
            ry = _residualize(Q, Ya[ok, j])
            rx = _residualize(Q, Xa[np.ix_(ok, feats)])
            sxx = (rx ** 2).sum(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                beta = (rx.T @ ry) / sxx
                rss = (ry ** 2).sum() - beta ** 2 * sxx
                se = np.sqrt(np.maximum(rss, 0) / (n - k) / sxx)
                t = beta / se
            p = 2 * stats.t.sf(np.abs(t), df=n - k)
            for i, f in enumerate(feats):
                rows.append((Yf.columns[j], Xf.columns[f], beta[i], se[i], t[i], p[i], n))
    out = pd.DataFrame(rows, columns=["idp", "feature", "beta", "se", "t", "pvalue", "n"])
    out["significant"] = out["pvalue"] < threshold
    out.attrs["threshold"] = threshold
    return out


def idp_omnibus(X, idps, covariates=None, *, covariate_policy=None):
    """Omnibus partial F test per IDP: all features plus covariates versus covariates alone.

    Fits ``y ~ 1 + covariates`` (reduced) and ``y ~ 1 + covariates + X`` (full) by OLS on the
    subjects with no missing value and tests the joint contribution of ``X`` with

    ``F = ((RSS_reduced - RSS_full) / q) / (RSS_full / (n - p_full))``,

    ``q`` = number of features, ``p_full`` = parameters of the full model. The incremental
    R² is ``R²_full - R²_reduced``.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_subjects, n_features)
    idps : DataFrame or array-like of shape (n_subjects, n_idps)
    covariates : DataFrame or array-like, optional
        Read by the package's covariate policy (as in :func:`idp_association`).
    covariate_policy : CovariatePolicy or dict, optional

    Returns
    -------
    DataFrame
        Index ``idp``; columns ``r2_reduced``, ``r2_full``, ``incremental_r2``, ``f_stat``,
        ``df_num``, ``df_den``, ``pvalue``, ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4))
    >>> idps = np.c_[X[:, 0] + X[:, 1] + rng.normal(size=200), rng.normal(size=200)]
    >>> res = idp_omnibus(X, idps)
    >>> bool(res["pvalue"].iloc[0] < 1e-20), bool(res["incremental_r2"].iloc[0] > 0.5)
    (True, True)
    """
    Xf, Yf, Ca, cov_names = _prepare_idp_inputs(X, idps, covariates, covariate_policy)
    Xa = Xf.to_numpy(dtype=float)
    Ya = Yf.to_numpy(dtype=float)
    rows = {}
    for j, name in enumerate(Yf.columns):
        ok = (np.isfinite(Ya[:, j]) & np.isfinite(Xa).all(axis=1)
              & np.isfinite(Ca).all(axis=1))
        D, *_ = covariate_design(Ca[ok], cov_names, covariate_policy)
        n = D.shape[0]
        F_design = np.hstack([D, Xa[ok]])
        p_full = np.linalg.matrix_rank(F_design)
        q = p_full - np.linalg.matrix_rank(D)
        if n - p_full < 1 or q < 1:
            raise ValueError(f"IDP {name!r}: {n} complete subjects for {p_full} parameters; "
                             "the omnibus test needs more subjects than features + covariates. "
                             "Reduce the features (e.g. fewer PCs) or add subjects.")
        y = Ya[ok, j]
        tss = ((y - y.mean()) ** 2).sum()
        rss_r = ((y - D @ np.linalg.lstsq(D, y, rcond=None)[0]) ** 2).sum()
        rss_f = ((y - F_design @ np.linalg.lstsq(F_design, y, rcond=None)[0]) ** 2).sum()
        df_den = n - p_full
        f_stat = ((rss_r - rss_f) / q) / (rss_f / df_den)
        rows[name] = {
            "r2_reduced": 1 - rss_r / tss,
            "r2_full": 1 - rss_f / tss,
            "incremental_r2": (rss_r - rss_f) / tss,
            "f_stat": f_stat,
            "df_num": int(q),
            "df_den": int(df_den),
            "pvalue": float(stats.f.sf(f_stat, q, df_den)),
            "n": int(n),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "idp"
    return out


# --------------------------------------------------------------------------- alignment
def alignment_scores(embeddings, *, n_components=None, reg=None, n_shuffles=10,
                     ks=(1, 5, 10), random_state=0):
    """How well the T1 and T2 halves of an embedding agree, subject by subject.

    CCA and CKA do not depend on how each block is rotated, so they suit per-modality PCA
    scores; retrieval compares rows by cosine similarity and so assumes the two blocks live in
    one shared space (the contrastive embedder's output, not separately fitted PCAs).

    Parameters
    ----------
    embeddings : DataFrame
        Columns ``t1_*`` and ``t2_*`` (index = subject id), the same number of each.
    n_components : int, optional
        Canonical components for the mean CCA r (default: the smaller block width, capped
        so that there are more subjects than components).
    reg : float, optional
        Ridge regularisation of the CCA (see :func:`hcl_sklearn.evaluation.metrics.mean_cca_correlation`;
        needed when the blocks are wide compared with the number of subjects).
    n_shuffles : int, default=10
        Shuffled pairings averaged for the CKA baseline.
    ks : sequence of int, default=(1, 5, 10)
        Cut-offs for recall@k.
    random_state : int, default=0

    Returns
    -------
    DataFrame
        One row (index ``embedding``) with ``mean_cca_r``, ``linear_cka``,
        ``linear_cka_shuffled``, ``rbf_cka``, ``rbf_cka_shuffled``, the retrieval scores
        (``top1``, ``recall@k``, ``median_rank``, ``mean_rank``) and ``n``.
    """
    from . import metrics

    t1, t2 = split_modalities(embeddings)
    A = _check_finite(t1, "the T1 embedding")
    B = _check_finite(t2, "the T2 embedding")
    n = A.shape[0]
    if n < 4:
        raise ValueError(f"alignment needs at least 4 subjects, got {n}.")
    rng = np.random.default_rng(random_state)
    if n_components is None:
        n_components = max(1, min(A.shape[1], B.shape[1], n // 2))
    row = {"mean_cca_r": float(metrics.mean_cca_correlation(A, B, n_components=n_components,
                                                                    reg=reg))}
    for kind, fn in (("linear_cka", metrics.linear_cka), ("rbf_cka", metrics.rbf_cka)):
        row[kind] = float(fn(A, B))
        row[f"{kind}_shuffled"] = float(np.mean(
            [fn(A, B[rng.permutation(n)]) for _ in range(n_shuffles)]))
    retrieval = metrics.retrieval_scores(A, B, ks=ks)
    row.update({k: float(v) for k, v in retrieval.items() if not k.startswith(("a2b_", "b2a_"))})
    row["n"] = n
    return pd.DataFrame([row], index=pd.Index(["embedding"], name="embedding"))


# --------------------------------------------------------------------------- planted truth
def factor_recovery(embeddings, factors, train, test, *, alphas=None):
    """Held-out R² of each planted factor predicted from an embedding by ridge regression.

    For every column of ``factors`` a :class:`~sklearn.linear_model.RidgeCV` (penalty chosen
    by efficient leave-one-out on the training subjects) is fitted on the training subjects
    and scored on the held-out ones. The embedding is centred and divided by *one* scale
    (the root mean variance of its columns on the training subjects), not standardised
    column by column, so the result does not change when the embedding is rotated: two
    embeddings that span the same space score the same.

    Parameters
    ----------
    embeddings : DataFrame
        Subjects x features (index = subject id), e.g. per-modality PCs.
    factors : DataFrame
        Subjects x planted factors (e.g. ``make_paired_cohort(...).truth.factor_values``).
    train, test : array-like
        Subject ids (index labels) or integer positions of the training and held-out subjects.
    alphas : array-like, optional
        Ridge penalties tried (default ``logspace(-3, 4, 15)`` times the number of features).

    Returns
    -------
    DataFrame
        Index ``factor``; columns ``r2`` (held-out R², can be negative), ``r`` (held-out
        Pearson r), ``alpha`` (the chosen penalty), ``n_train``, ``n_test``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> f = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    >>> emb = pd.DataFrame(np.c_[f["a"] + 0.1 * rng.normal(size=200), rng.normal(size=(200, 3))])
    >>> out = factor_recovery(emb, f, train=np.arange(150), test=np.arange(150, 200))
    >>> bool(out.loc["a", "r2"] > 0.9), bool(out.loc["b", "r2"] < 0.1)
    (True, True)
    """
    from sklearn.linear_model import RidgeCV

    X = _as_frame(embeddings, "embeddings")
    F = _as_frame(factors, "factors")
    X, F = _align([X, F], ["embeddings", "factors"])
    tr = _positions(X.index, train, "train")
    te = _positions(X.index, test, "test")
    if len(tr) < 3 or len(te) < 2:
        raise ValueError(f"factor_recovery needs at least 3 training and 2 held-out subjects; "
                         f"got {len(tr)} and {len(te)}.")
    if len(np.intersect1d(tr, te)):
        raise ValueError("train and test share subjects; pass disjoint splits.")
    A = _check_finite(X, "embeddings")
    mu = A[tr].mean(axis=0)
    scale = np.sqrt(np.mean(A[tr].var(axis=0)))
    A = (A - mu) / (scale if scale > 0 else 1.0)
    if alphas is None:
        alphas = np.logspace(-3, 4, 15) * A.shape[1]
    rows = {}
    for name in F.columns:
        y = _check_finite(F[[name]], f"factor {name!r}")[:, 0]
        model = RidgeCV(alphas=alphas).fit(A[tr], y[tr])
        pred = model.predict(A[te])
        resid = y[te] - pred
        ss = ((y[te] - y[te].mean()) ** 2).sum()
        rows[name] = {"r2": 1.0 - (resid @ resid) / ss if ss > 0 else np.nan,
                      "r": _pearson(pred, y[te]), "alpha": float(model.alpha_),
                      "n_train": len(tr), "n_test": len(te)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "factor"
    return out


def _positions(index, which, name):
    """Integer positions of ``which`` (labels of ``index`` or positions) in ``index``."""
    which = np.asarray(which)
    if which.dtype.kind in "iu" and not (index.dtype.kind in "iu"):
        if which.size and (which.min() < 0 or which.max() >= len(index)):
            raise ValueError(f"{name} positions must be in [0, {len(index)}).")
        return which.astype(np.int64)
    pos = index.get_indexer(which)
    if (pos < 0).any():
        raise ValueError(f"{name} has {int((pos < 0).sum())} subject ids not in the embedding, "
                         f"e.g. {list(which[pos < 0][:3])}.")
    return pos

"""Proteome-wide association of embedding dimensions (ProWAS): every protein x every dimension.

For each protein ``y`` and embedding dimension ``x`` the model is

``y ~ 1 + x + covariates``

fitted by ordinary least squares on the subjects where ``y``, ``x`` and the covariates are
observed; the dimension's coefficient, standard error, t statistic (``df = n - K - 2`` for
``K`` covariate columns besides the intercept) and exact two-sided p-value are reported,
with Bonferroni and Benjamini-Hochberg corrections over all tests.

The reference pipeline (Olink, UK Biobank) is followed: values below the assay's limit of
detection are set missing, proteins with too few values left are dropped, each regression
needs a minimum number of subjects. See ``docs/prowas.md`` for the algebra.

The computation is the GWAS kernel's algebra (:mod:`hcl_sklearn.genetics.gwas.association`),
with proteins in the role of phenotypes and dimensions in the role of SNPs: proteins with
the same missingness pattern share one covariate basis ``Q`` (the package's
:func:`~hcl_sklearn.data.covariates.covariate_design`); every protein is residualised on its
pattern's ``Q`` and zero-filled where it is missing, so that ``X' Y_r`` -- **one matrix
product** per chunk of proteins, whatever the number of patterns -- gives ``x'y_r`` of every
pair; the dimensions' residual sums of squares ``x'x - |Q'x|^2`` need ``Q'X`` per pattern,
obtained from cross products of the raw design downdated by the pattern's missing
subjects (``O(n_missing K D)`` instead of ``O(n K D)``).
"""

from __future__ import annotations

import logging
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

from .._base import SharesDataOnClone
from ..data.covariates import CovariateError, CovariatePolicy, covariate_design, prepare_covariates
from ..data.modalities import modality_of
from ..data.phenotypes import missingness_patterns
from ..data.subjects import SubjectMismatchError, describe_mismatch
from ..genetics.gwas.association import t_log_pvalue

logger = logging.getLogger(__name__)

__all__ = ["ProWAS"]

LN10 = np.log(10.0)
#: most float64 values of residualised proteins held at once (256 MB)
_BUFFER_VALUES = 2 ** 25

RESULT_COLUMNS = ["protein", "dimension", "modality", "n", "df", "beta", "se", "t",
                  "p_value", "neg_log10_p", "p_bonferroni", "q_value", "significant",
                  "significant_fdr"]


def _frame(data, name):
    if isinstance(data, pd.DataFrame):
        out = data
    elif isinstance(data, pd.Series):
        out = data.to_frame()
    else:
        arr = np.asarray(data)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (subjects x columns); got shape {arr.shape}.")
        out = pd.DataFrame(arr)
    out = out.set_axis(out.index.astype(str), axis=0).set_axis(out.columns.astype(str), axis=1)
    if out.index.has_duplicates:
        dup = out.index[out.index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"{name} has duplicated subject ids, e.g. {dup}; keep one row per "
                         "subject.")
    if out.columns.has_duplicates:
        dup = out.columns[out.columns.duplicated()].unique()[:5].tolist()
        raise ValueError(f"{name} has duplicated column names, e.g. {dup}.")
    return out


def _numeric(frame, name, what):
    bad = [c for c in frame.columns
           if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
    if bad:
        raise TypeError(f"{name} has non-numeric columns {bad[:5]} ({len(bad)} in all); {what} "
                        "must be numbers (NaN = missing). Convert them (pd.to_numeric(..., "
                        "errors='coerce')) or drop those columns.")
    arr = np.array(frame.to_numpy(dtype=np.float64), copy=True)   # ours to modify
    if np.isinf(arr).any():
        cols = frame.columns[np.isinf(arr).any(axis=0)].tolist()
        raise ValueError(f"{name} has infinite values in {cols[:5]}; set them to NaN (missing) "
                         "or fix them.")
    return arr


def _gram_cholesky(zz, n):
    """Cholesky factor of the Gram ``Z_S'Z_S`` of ``[1, standardised covariates]``, or
    None when a column is (nearly) constant or the columns are (nearly) collinear on
    these subjects -- then :func:`covariate_design` decides. Conservative thresholds:
    anything close goes to the package's rule."""
    k = zz.shape[0] - 1
    if n < k + 3:
        return None
    if k:
        mean = zz[0, 1:] / n
        cov = zz[1:, 1:] / n - np.outer(mean, mean)
        var = np.diag(cov)
        if not (var > 1e-8).all():       # full-sample standardised units
            return None
        corr = cov / np.sqrt(np.outer(var, var))
        if not np.linalg.eigvalsh(corr)[0] > 1e-8:
            return None
    try:
        return np.linalg.cholesky(zz)
    except np.linalg.LinAlgError:
        return None


def _log_bh(log_p):
    """``ln`` of Benjamini-Hochberg q-values from ``ln p`` (exact where p underflows)."""
    m = log_p.size
    if m == 0:
        return log_p.copy()
    order = np.argsort(log_p, kind="stable")
    scaled = log_p[order] + np.log(m) - np.log(np.arange(1, m + 1))
    scaled = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(scaled, 0.0)
    return out


class ProWAS(SharesDataOnClone, BaseEstimator):
    """Proteome-wide association scan: OLS of every protein on every embedding dimension.

    For each protein ``y`` and dimension ``x`` of the embeddings the model
    ``y ~ 1 + x + covariates`` is fitted by ordinary least squares on the subjects with
    ``y``, ``x`` and every covariate observed. All pairs are computed together, exactly (equal
    to a separate OLS per pair; ``docs/prowas.md``): proteins that share a pattern of
    missing values share one covariate basis, and the statistics of all pairs come from
    matrix products.

    Parameters
    ----------
    covariates : pandas.DataFrame, optional
        Indexed by subject id; read by the package's covariate policy
        (:mod:`hcl_sklearn.data.covariates`: text columns one-hot encoded, constant columns
        dropped -- also within a missingness pattern --, a missing value an error unless
        ``covariate_policy={'missing': 'drop'}``, collinear columns an error). An intercept
        is always included.
    lod : float, dict, pandas.Series or pandas.DataFrame, optional
        Limit of detection: values strictly below it are set missing before anything else.
        A number (every protein), a dict / Series indexed by protein (every protein must be
        in it; NaN = no limit for that protein), or a DataFrame of the proteins' shape
        (subjects x proteins, e.g. plate-specific limits; aligned by id and name).
        ``None``: no limit. Give values and limits on the same (e.g. log) scale.
    min_protein_samples : int or float, default=0.2
        A protein is analysed only with at least this many non-missing values (after the
        limit of detection, among the subjects analysed); a float in (0, 1) is a fraction
        of the subjects analysed. The default reproduces the reference filter of the UK
        Biobank Olink pipeline (> 10,000 values of ~53,000 participants, 19 %) at any
        cohort size. Dropped proteins are listed in ``dropped_``.
    min_samples : int, default=50
        Fewest subjects for one regression (pair); pairs with fewer are not tested (and a
        protein none of whose pairs reaches it is listed in ``dropped_``).
    alpha : float, default=0.05
        Level of the Bonferroni (family-wise) and Benjamini-Hochberg (FDR) corrections.
    covariate_policy : CovariatePolicy or dict, optional
        Another covariate policy, e.g. ``{'missing': 'drop'}``.
    verbose : int, default=0
        ``> 0``: a progress bar over the missingness patterns.

    Attributes
    ----------
    results_ : pandas.DataFrame
        One row per tested (protein, dimension), protein-major in input order:
        ``protein, dimension, modality, n, df, beta, se, t, p_value, neg_log10_p,
        p_bonferroni, q_value, significant, significant_fdr``. ``modality`` is the
        dimension's (:func:`~hcl_sklearn.data.modalities.modality_of`); ``p_value``
        underflows to 0 below ~1e-308 while ``neg_log10_p`` stays exact; ``p_bonferroni
        = min(1, p m)`` and ``q_value`` (BH) are over all ``m = n_tests_`` tests;
        ``significant``: ``p_bonferroni <= alpha``; ``significant_fdr``: ``q_value <= alpha``.
    significant_ : dict of str -> list of str
        Modality -> proteins with at least one Bonferroni-significant dimension of that
        modality (strongest first); :meth:`significant_proteins` for FDR.
    dropped_ : pandas.DataFrame
        Proteins not tested, indexed by protein: ``n_observed`` and ``reason``.
    lod_censored_ : pandas.Series
        Values set missing by ``lod``, per protein.
    proteins_ : list of str
        Proteins tested. ``dimensions_`` : list of str, the dimensions (``X``'s columns).
    covariate_names_ : list of str
        Covariate columns after encoding.
    n_tests_ : int
        Tests performed (Bonferroni's ``m``). ``threshold_`` : ``alpha / n_tests_``.
    n_pairs_skipped_ : int
        Pairs of tested proteins not tested (fewer than ``min_samples`` subjects, or the
        dimension constant given the covariates on the pair's subjects).
    n_patterns_ : int
        Missingness patterns fitted (one covariate basis each).
    n_subjects_ : int
        Subjects analysed (``X``'s rows with complete covariates).
    n_features_in_, feature_names_in_ :
        As scikit-learn (the dimensions).

    Notes
    -----
    Subjects are ``X``'s index; ``proteins`` (and ``covariates``) must have a row for each
    (ids compared as strings; extra rows are ignored; otherwise
    :class:`~hcl_sklearn.data.subjects.SubjectMismatchError`). A subject missing a value of
    ``X`` is left out of that dimension's pairs only: dimensions are grouped by their own
    missingness pattern, and each (dimension pattern, protein pattern) pair is one fit.
    Nothing is imputed.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ids = [f"s{i}" for i in range(300)]
    >>> X = pd.DataFrame(rng.normal(size=(300, 4)), index=ids,
    ...                  columns=["t1_000", "t1_001", "t2_000", "t2_001"])
    >>> P = pd.DataFrame(rng.normal(size=(300, 3)), index=ids, columns=["GDF15", "PTN", "IL6"])
    >>> P["GDF15"] += 0.5 * X["t2_001"]
    >>> P.iloc[:40, 1] = np.nan                      # PTN missing for 40 subjects
    >>> cov = pd.DataFrame({"age": rng.uniform(40, 70, 300),
    ...                     "sex": rng.choice(["F", "M"], 300)}, index=ids)
    >>> pw = ProWAS(cov).fit(X, P)
    >>> pw.results_.shape[0], pw.n_patterns_
    (12, 2)
    >>> pw.significant_
    {'t2': ['GDF15']}
    >>> int(pw.results_.query("protein == 'PTN'")["n"].iloc[0])
    260
    """

    _parameter_constraints: ClassVar[dict] = {
        "covariates": [pd.DataFrame, pd.Series, None],
        "lod": [Real, dict, pd.Series, pd.DataFrame, None],
        "min_protein_samples": [Interval(Real, 0, 1, closed="neither"),
                                Interval(Integral, 1, None, closed="left")],
        "min_samples": [Interval(Integral, 3, None, closed="left")],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "covariate_policy": [CovariatePolicy, dict, None],
        "verbose": ["verbose"],
    }
    #: data-valued parameters shared (not copied) by ``clone``
    _shared_params = ("covariates", "lod")

    def __init__(self, covariates=None, *, lod=None, min_protein_samples=0.2, min_samples=50,
                 alpha=0.05, covariate_policy=None, verbose=0):
        self.covariates = covariates
        self.lod = lod
        self.min_protein_samples = min_protein_samples
        self.min_samples = min_samples
        self.alpha = alpha
        self.covariate_policy = covariate_policy
        self.verbose = verbose

    # ------------------------------------------------------------------ inputs
    def _inputs(self, X, proteins):
        Xf = _frame(X, "X")
        Pf = _frame(proteins, "proteins")
        ids = Xf.index
        pos = Pf.index.get_indexer(ids)
        if (pos < 0).any():
            raise SubjectMismatchError(describe_mismatch(
                ids, Pf.index, "proteins' subject ids",
                fix="Give proteins a row for every subject of X (its index is the subject id; "
                    "NaN for unmeasured values), or subset X to the subjects with proteins "
                    "(X.loc[X.index.intersection(proteins.index)])."))
        Pf = Pf.iloc[pos]
        Xa = _numeric(Xf, "X", "embedding dimensions")
        Pa = _numeric(Pf, "proteins", "protein levels")
        return Xf, Pf, Xa, Pa

    def _apply_lod(self, Pf, Pa):
        lod = self.lod
        names = Pf.columns
        if lod is None:
            return pd.Series(0, index=names, dtype=np.int64, name="lod_censored")
        if isinstance(lod, pd.DataFrame):
            L = _frame(lod, "lod")
            rows = L.index.get_indexer(Pf.index)
            cols = L.columns.get_indexer(names)
            if (rows < 0).any():
                raise SubjectMismatchError(describe_mismatch(
                    Pf.index, L.index, "lod table's subject ids",
                    fix="Give the lod DataFrame a row for every subject (or pass one limit "
                        "per protein as a Series)."))
            if (cols < 0).any():
                raise ValueError(f"lod has no column for proteins {names[cols < 0][:5].tolist()}"
                                 f" ({int((cols < 0).sum())} in all); give every protein a "
                                 "column (NaN = no limit).")
            limits = _numeric(L.iloc[rows, cols], "lod", "limits of detection")
        elif isinstance(lod, (dict, pd.Series)):
            s = pd.Series(lod)
            s.index = s.index.astype(str)
            missing = names[~names.isin(s.index)]
            if len(missing):
                raise ValueError(f"lod has no limit for proteins {missing[:5].tolist()} "
                                 f"({len(missing)} in all); give every protein a value "
                                 "(NaN = no limit for that protein).")
            limits = pd.to_numeric(s.loc[names], errors="raise").to_numpy(np.float64)[None, :]
        else:
            limits = np.full((1, len(names)), float(lod))
        with np.errstate(invalid="ignore"):
            below = Pa < limits          # NaN values and NaN limits compare False
        Pa[below] = np.nan
        return pd.Series(below.sum(axis=0), index=names, dtype=np.int64, name="lod_censored")

    # ------------------------------------------------------------------ fit
    def fit(self, X, proteins):
        """Test every (protein, dimension) pair.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_subjects, n_dimensions)
            Embeddings (e.g. ``t1_000 ... t2_127``), indexed by subject id; NaN = missing.
        proteins : pandas.DataFrame of shape (n_subjects, n_proteins)
            Protein levels (e.g. Olink NPX, log SomaScan RFU), indexed by subject id;
            NaN = missing.

        Returns
        -------
        self
        """
        self._validate_params()
        Xf, Pf, Xa, Pa = self._inputs(X, proteins)
        self.feature_names_in_ = np.asarray(Xf.columns, dtype=object)
        self.n_features_in_ = Xf.shape[1]
        self.dimensions_ = list(Xf.columns)
        self.lod_censored_ = self._apply_lod(Pf, Pa)

        C, cov_names, complete = prepare_covariates(self.covariates, Xf.index,
                                                    self.covariate_policy)
        self.covariate_names_ = cov_names
        n_sub = int(complete.sum())
        self.n_subjects_ = n_sub
        C, Xa, Pa = C[complete], Xa[complete], Pa[complete]
        min_prot = (int(np.ceil(self.min_protein_samples * n_sub))
                    if isinstance(self.min_protein_samples, float)
                    else int(self.min_protein_samples))

        p_obs = np.isfinite(Pa)
        n_obs = p_obs.sum(axis=0)
        dropped = {}
        keep = n_obs >= min_prot
        for j in np.flatnonzero(~keep):
            dropped[int(j)] = (int(n_obs[j]), f"fewer than min_protein_samples = "
                                      f"{min_prot} non-missing values")
        if not keep.any():
            raise ValueError(
                f"no protein has min_protein_samples = {min_prot} non-missing values among "
                f"the {n_sub} subjects analysed (most: {int(n_obs.max(initial=0))}); lower "
                "min_protein_samples (an int or a fraction), or check the lod and the ids.")

        # full-sample centring / standardisation: shifts are absorbed by the intercept, so
        # the statistics are exact; they only keep the downdated cross products accurate
        x_obs = np.isfinite(Xa)
        with np.errstate(invalid="ignore"):
            Xc = Xa - np.nanmean(np.where(x_obs, Xa, np.nan), axis=0)
        Xc[~x_obs] = 0.0
        Xc[:, ~x_obs.any(axis=0)] = 0.0
        mf = C.mean(axis=0) if C.shape[1] else np.zeros(0)
        sf = C.std(axis=0) if C.shape[1] else np.zeros(0)
        sf = np.where(sf > 0, sf, 1.0)
        Z = np.column_stack([np.ones(n_sub), (C - mf) / sf])

        stats = self._scan(Xc, x_obs, Pa, p_obs, keep, C, Z, mf, sf, cov_names, dropped)
        self._finish(stats, Pf.columns, n_obs, dropped)
        return self

    def _scan(self, Xc, x_obs, Pa, p_obs, keep, C, Z, mf, sf, cov_names, dropped):
        """Statistics of every pair: lists of per-chunk arrays."""
        from tqdm.auto import tqdm

        n, D = Xc.shape
        kept_prot = np.flatnonzero(keep)
        policy = self.covariate_policy
        names_full = list(cov_names)
        x_groups = missingness_patterns(x_obs)
        units = []
        for x_rows, dims in x_groups:
            for rows, cols in missingness_patterns(p_obs[:, kept_prot] & x_rows[:, None]):
                units.append((x_rows, dims, rows, kept_prot[cols]))
        self.n_patterns_ = len(units)
        chunk = max(1, _BUFFER_VALUES // max(n, 1))
        out = {"prot": [], "dim": [], "n": [], "q": [], "num": [], "xx": [], "yy": []}
        # group cross products, reused by every pattern of that dimension group
        group_cache = {}
        tested_any = np.zeros(Pa.shape[1], dtype=bool)
        n_obs_kept = (p_obs & x_obs.any(axis=1)[:, None]).sum(axis=0)
        reasons = {}
        best_n = 0
        buf = np.zeros((n, min(chunk, max(len(kept_prot), 1))))
        pending = []          # (dims, cols, slot0, n, q, xr2 (D_g,), yy (p,))
        used = 0

        def flush():
            nonlocal used, pending
            if not pending:
                return
            # one product for the chunk: X' Y_r gives x'y_r of every pair
            by_dims = {}
            for item in pending:
                by_dims.setdefault(id(item[0]), []).append(item)
            for items in by_dims.values():
                dims = items[0][0]
                slots = np.concatenate([np.arange(it[2], it[2] + len(it[1])) for it in items])
                prod = buf[:, slots].T @ Xc[:, dims]              # (p, D_g)
                o = 0
                for d_, cols, _, n_s, q, xr2, yy in items:
                    p = len(cols)
                    out["prot"].append(np.repeat(cols, len(d_)))
                    out["dim"].append(np.tile(d_, p))
                    out["n"].append(np.full(p * len(d_), n_s))
                    out["q"].append(np.full(p * len(d_), q))
                    out["num"].append(prod[o:o + p].ravel())
                    out["xx"].append(np.tile(xr2, p))
                    out["yy"].append(np.repeat(yy, len(d_)))
                    o += p
            buf[:, :used] = 0.0
            used = 0
            pending = []

        bar = tqdm(units, desc="ProWAS patterns", disable=not self.verbose or len(units) < 2,
                   leave=False)
        for x_rows, dims, rows, cols in bar:
            n_s = int(rows.sum())
            best_n = max(best_n, n_s)
            if n_s < self.min_samples:
                for c in cols:
                    reasons.setdefault(c, f"fewer than min_samples = {self.min_samples} "
                                          f"subjects (has {n_s})")
                continue
            key = id(dims)
            if key not in group_cache:
                Xg, Zg = Xc[np.ix_(x_rows, dims)], Z[x_rows]
                group_cache[key] = (Zg.T @ Xg, np.einsum("ij,ij->j", Xg, Xg), Zg.T @ Zg,
                                    int(x_rows.sum()))
            zx_g, xx_g, zz_g, n_g = group_cache[key]
            # cross products of the pattern's subjects: the group's, downdated by the
            # pattern's missing subjects when they are fewer (O(n_missing K D))
            if n_s == n_g:
                zx, xx, zz = zx_g, xx_g, zz_g
            elif n_g - n_s < n_s:
                miss = x_rows & ~rows
                Xm, Zm = Xc[np.ix_(miss, dims)], Z[miss]
                zx = zx_g - Zm.T @ Xm
                xx = xx_g - np.einsum("ij,ij->j", Xm, Xm)
                zz = zz_g - Zm.T @ Zm
            else:
                Xs, Zs = Xc[np.ix_(rows, dims)], Z[rows]
                zx, xx, zz = Zs.T @ Xs, np.einsum("ij,ij->j", Xs, Xs), Zs.T @ Zs
            Y = Pa[np.ix_(rows, cols)]
            L = _gram_cholesky(zz, n_s)
            if L is not None:
                # fast path: no covariate is constant or collinear on these subjects, so
                # the package's covariate rule keeps them all; Q = Z_S L^-T
                q = Z.shape[1]
                qx = np.linalg.solve(L, zx)                           # Q'X_S (L lower)
                Zs = Z[rows]
                Yr = Y - Zs @ np.linalg.solve(zz, Zs.T @ Y)
            else:
                # the package's covariate design decides (drop a constant column, or
                # raise on collinear ones), with its pivoted-QR basis
                try:
                    A, m_s, sd_s, kept, Q = covariate_design(C[rows], names_full, policy)
                except CovariateError as err:
                    for c in cols:
                        reasons.setdefault(c, f"covariates unusable on its subjects: {err}")
                    continue
                q = Q.shape[1]
                # Q'X_S from the cross products: A = Z_S T, A = Q M, so Q'X_S = M^-T T'Z_S'X_S
                T = np.zeros((Z.shape[1], q))
                T[0, 0] = 1.0
                for c_, name in enumerate(kept, start=1):
                    j = names_full.index(name)
                    T[0, c_] = (mf[j] - m_s[c_ - 1]) / sd_s[c_ - 1]
                    T[1 + j, c_] = sf[j] / sd_s[c_ - 1]
                M = Q.T @ A
                qx = np.linalg.solve(M.T, T.T @ zx)
                Yr = Y - Q @ (Q.T @ Y)
            xr2 = xx - np.einsum("ij,ij->j", qx, qx)
            # dimensions constant (or collinear) given the covariates on these subjects
            xr2 = np.where(xr2 > 1e-10 * np.maximum(xx, 1e-300), xr2, np.nan)
            yy = np.einsum("ij,ij->j", Yr, Yr)
            ok = yy > 1e-20 * np.maximum(np.einsum("ij,ij->j", Y, Y), 1e-300)
            for c in cols[~ok]:
                reasons.setdefault(c, "constant given the covariates")
            cols, Yr, yy = cols[ok], Yr[:, ok], yy[ok]
            if not len(cols):
                continue
            tested_any[cols] = True
            ridx = np.flatnonzero(rows)
            for s0 in range(0, len(cols), buf.shape[1]):
                part = slice(s0, s0 + buf.shape[1])
                p = len(cols[part])
                if used + p > buf.shape[1]:
                    flush()
                buf[ridx[:, None], used + np.arange(p)[None, :]] = Yr[:, part]
                pending.append((dims, cols[part], used, n_s, q, xr2, yy[part]))
                used += p
        flush()
        bar.close()
        for c, why in reasons.items():
            if not tested_any[c]:
                dropped[int(c)] = (int(n_obs_kept[c]), why)
        if not tested_any.any():
            raise ValueError(
                f"no (protein, dimension) pair could be tested: the largest set of subjects "
                f"with a protein, a dimension and the covariates observed has {best_n} "
                f"subjects, fewer than min_samples = {self.min_samples} (or the covariates "
                f"are unusable there: {next(iter(reasons.values()), '')}). Lower min_samples "
                "or add subjects.")
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}

    def _finish(self, s, protein_names, n_obs, dropped):
        order = np.lexsort((s["dim"], s["prot"]))
        s = {k: v[order] for k, v in s.items()}
        df = s["n"] - s["q"] - 1                     # n - K - 2, K covariates w/o intercept
        with np.errstate(invalid="ignore", divide="ignore"):
            r = s["num"] / np.sqrt(s["xx"] * s["yy"])
            rss = np.maximum(1.0 - r * r, 0.0) * s["yy"]
            beta = s["num"] / s["xx"]
            se = np.sqrt(rss / df / s["xx"])
            t = r * np.sqrt(df) / np.sqrt(np.maximum(1.0 - r * r, 0.0))
        valid = np.isfinite(t)
        self.n_pairs_skipped_ = int(
            len(set(s["prot"][valid].tolist())) * len(self.dimensions_) - valid.sum())
        s = {k: v[valid] for k, v in s.items()}
        df, beta, se, t = df[valid], beta[valid], se[valid], t[valid]
        log_p = t_log_pvalue(t, df)
        m = int(t.size)
        self.n_tests_ = m
        self.threshold_ = self.alpha / m
        log_bonf = np.minimum(log_p + np.log(m), 0.0)
        log_q = _log_bh(log_p)
        dims = np.asarray(self.dimensions_, dtype=object)[s["dim"]]
        mods = np.array([modality_of(d) for d in self.dimensions_], dtype=object)[s["dim"]]
        res = pd.DataFrame({
            "protein": np.asarray(protein_names, dtype=object)[s["prot"]],
            "dimension": dims, "modality": mods,
            "n": s["n"].astype(np.int64), "df": df.astype(np.int64),
            "beta": beta, "se": se, "t": t, "p_value": np.exp(log_p),
            "neg_log10_p": -log_p / LN10, "p_bonferroni": np.exp(log_bonf),
            "q_value": np.exp(log_q),
        })
        res["significant"] = log_bonf <= np.log(self.alpha)
        res["significant_fdr"] = log_q <= np.log(self.alpha)
        res.attrs["threshold"] = self.threshold_
        self.results_ = res
        tested = np.unique(s["prot"])
        self.proteins_ = [str(protein_names[j]) for j in tested]
        drop = pd.DataFrame(
            [(str(protein_names[j]), nobs, why) for j, (nobs, why) in sorted(dropped.items())],
            columns=["protein", "n_observed", "reason"]).set_index("protein")
        self.dropped_ = drop
        self.significant_ = self.significant_proteins()
        logger.info("ProWAS: %d proteins x %d dimensions, %d tests, %d Bonferroni hits; "
                    "%d proteins dropped", len(tested), len(self.dimensions_), m,
                    int(res["significant"].sum()), len(drop))

    # ------------------------------------------------------------------ outputs
    def significant_proteins(self, method="bonferroni"):
        """Proteins with a significant dimension, per modality of the dimension.

        Parameters
        ----------
        method : {'bonferroni', 'fdr'}, default='bonferroni'
            ``'bonferroni'``: ``p_bonferroni <= alpha``; ``'fdr'``: ``q_value <= alpha``.

        Returns
        -------
        dict of str -> list of str
            Modality (``''`` for dimensions without one) -> proteins, strongest
            (smallest p over the modality's dimensions) first; modalities without a hit
            are left out.
        """
        col = {"bonferroni": "significant", "fdr": "significant_fdr"}.get(method)
        if col is None:
            raise ValueError(f"method must be 'bonferroni' or 'fdr'; got {method!r}.")
        hits = self.results_.loc[self.results_[col]]
        out = {}
        for mod, grp in hits.groupby("modality", sort=False):
            best = grp.groupby("protein", sort=False)["neg_log10_p"].max()
            out[mod] = best.sort_values(ascending=False, kind="stable").index.tolist()
        return out

    def plot_volcano(self, ax=None, *, modality=None):
        """Volcano plot: ``beta`` against ``-log10 p`` of every pair, hits highlighted.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        modality : str, optional
            Only the dimensions of this modality.

        Returns
        -------
        matplotlib Axes
        """
        import matplotlib.pyplot as plt

        res = self.results_
        if modality is not None:
            res = res.loc[res["modality"] == modality]
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4.5))
        sig = res["significant"].to_numpy()
        ax.scatter(res["beta"][~sig], res["neg_log10_p"][~sig], s=4, c="0.6", lw=0,
                   label="not significant")
        ax.scatter(res["beta"][sig], res["neg_log10_p"][sig], s=6, c="C3", lw=0,
                   label=f"Bonferroni (p ≤ {self.threshold_:.2g})")
        ax.axhline(-np.log10(self.threshold_), c="C3", lw=0.8, ls="--")
        ax.set_xlabel("beta (protein units per unit of dimension)")
        ax.set_ylabel("-log10 p")
        ax.set_title("ProWAS" + (f" ({modality})" if modality else ""))
        ax.legend(frameon=False, fontsize=8)
        return ax

"""The evaluation protocol, checked against simulations with known truth and independent code.

Tolerances. Comparisons with independent code are float64 roundoff (u = 2^-53 = 1.1e-16)
and are noted where they stand, with the differences measured under OpenBLAS Haswell,
SkylakeX and Sandybridge (1 thread). Statistical
thresholds come from a standard error or from the spread over 10 seeds (the test's seed
and 100..108) under OPENBLAS_CORETYPE=Haswell and SkylakeX (the test's setup rerun with
those seeds); the two kernels agree to <= 1.3e-15 on every
statistic here (the disorder metrics exactly), so only the seed spread matters. Rechecked
over 34 more seeds (0..13, 200..219) under Haswell, SkylakeX and Sandybridge (kernels agree
to <= 2.5e-13; "34 seeds" below).
"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hcl_sklearn.evaluation import (
    SubjectMismatchError,
    age_prediction,
    alignment_scores,
    disorder_classification,
    idp_association,
    idp_omnibus,
    split_modalities,
)


def _ids(n):
    return pd.Index([f"sub-{i:04d}" for i in range(n)], name="subject_id")


def _embedding(n, d, rng):
    cols = [f"t1_{i:03d}" for i in range(d)] + [f"t2_{i:03d}" for i in range(d)]
    return pd.DataFrame(rng.normal(size=(n, 2 * d)), index=_ids(n), columns=cols)


# --------------------------------------------------------------------------- age
def test_age_prediction_recovers_known_noise_level():
    """Tolerances are 3 or 4 standard errors on the n_test = 150 held-out subjects
    (old: rel 0.15 on MAE and RMSE, which is only 2.4-2.6 SE; abs 0.03 on r, 8.5 SE).

    Measured over 10 seeds x {Haswell, SkylakeX} (kernels agree to 1.3e-15):
    MAE / (sigma sqrt(2/pi)) - 1 in -0.079 .. 0.141 (seed 0: 0.071; SD 0.065 vs SE
    0.062); RMSE / sigma - 1 in -0.067 .. 0.137 (seed 0: 0.053; SD 0.067 vs SE 0.058);
    pearson_r - r_true in -0.0064 .. 0.0024 (seed 0: 0.0003; SD 0.0028 vs SE 0.0035);
    cv_r_mean - r_true in -0.0027 .. 0.0027 (seed 0: -0.0002; SD 0.0015 vs SE 0.0018).
    The worst runs sit at 2.3 SE (MAE), 2.4 SE (RMSE), 1.8 SE (r), 1.5 SE (cv r); seed 0
    at <= 1.1 SE. 34 seeds x 3 kernels: worst |MAE| 2.1 SE, |RMSE| 1.9 SE, |r| 2.1 SE,
    |cv r| 3.0 SE (levels 3, 3, 4, 4 SE).
    """
    rng = np.random.default_rng(0)
    n, sigma = 600, 2.0
    X = _embedding(n, 4, rng)
    age = pd.Series(60 + 8 * X["t1_000"] - 5 * X["t2_001"] + sigma * rng.normal(size=n),
                    index=X.index)
    res = age_prediction(X, age, estimators=["ridge"], test_size=0.25)
    row = res.loc["ridge"]
    # a correctly specified linear model: errors ~ N(0, sigma^2), so MAE -> sigma*sqrt(2/pi)
    n_test = 150
    # relative SE of the mean of |e| for normal e: sqrt(pi/2 - 1) / sqrt(n) = 0.062
    se_mae = np.sqrt(np.pi / 2 - 1) / np.sqrt(n_test)
    assert row["mae"] == pytest.approx(sigma * np.sqrt(2 / np.pi), rel=3 * se_mae)
    # relative SE of a sample SD: 1 / sqrt(2 n) = 0.058
    assert row["rmse"] == pytest.approx(sigma, rel=3 / np.sqrt(2 * n_test))
    r_true = np.sqrt(89 / (89 + sigma ** 2))
    # SE of a Pearson r: (1 - r^2) / sqrt(n) = 0.0035 on the test set (4 SE = 0.014),
    # 0.0018 for the cross-validated r over all 600 subjects (4 SE = 0.0070)
    assert row["pearson_r"] == pytest.approx(r_true, abs=4 * (1 - r_true**2) / np.sqrt(n_test))
    assert row["cv_r_mean"] == pytest.approx(r_true, abs=4 * (1 - r_true**2) / np.sqrt(n))
    assert row["n_train"] == 450 and row["n_test"] == 150


def test_age_prediction_null_features_give_no_correlation():
    """Averaged over the fixed seeds 1..5 and bounded at 3 SE of that average.

    One seed alone (old test: seed 1, |cv_r_mean| < 0.15, MAE rel 0.2) does not clear
    with a margin: over 10 seeds x {Haswell, SkylakeX} cv_r_mean spans -0.172 .. 0.112
    (SD 0.085; cross-validated null correlations vary more than 1/sqrt(n) = 0.05) and
    MAE / (7 sqrt(2/pi)) - 1 spans -0.168 .. 0.099 (SD 0.078; SE on n_test = 80:
    sqrt(pi/2 - 1) / sqrt(80) = 0.084). The mean over 5 seeds has SE 0.085 / sqrt(5) =
    0.038 (r) and 0.084 / sqrt(5) = 0.038 (MAE): bounds 0.114 and 0.113, tighter than
    before. Measured over 10 disjoint 5-seed groups (seeds 1..50) x 2 kernels: mean r
    -0.069 .. 0.037 (seeds 1..5: 0.006), mean MAE rel -0.090 .. 0.096 (seeds 1..5:
    -0.003); kernels agree to 3e-16. Groups 200..204, .., 215..219 x 3 kernels: mean r
    -0.040 .. 0.044, mean MAE rel -0.021 .. 0.069 (single seeds: r SD 0.058, MAE SD 0.091).
    """
    from sklearn.linear_model import Ridge

    cv_r, mae_rel = [], []
    for seed in range(1, 6):
        rng = np.random.default_rng(seed)
        X = _embedding(400, 3, rng)
        age = pd.Series(rng.normal(60, 7, size=400), index=X.index)
        res = age_prediction(X, age, estimators={"ols-ish": Ridge(alpha=1.0)})
        cv_r.append(res.loc["ols-ish", "cv_r_mean"])
        # predicting the mean: MAE close to the SD * sqrt(2/pi)
        mae_rel.append(res.loc["ols-ish", "mae"] / (7 * np.sqrt(2 / np.pi)) - 1)
    assert abs(np.mean(cv_r)) < 3 * 0.085 / np.sqrt(5)
    assert abs(np.mean(mae_rel)) < 3 * np.sqrt(np.pi / 2 - 1) / np.sqrt(80) / np.sqrt(5)


def test_age_prediction_aligns_on_subject_ids():
    rng = np.random.default_rng(2)
    X = _embedding(100, 2, rng)
    age = pd.Series(50 + 3 * X["t1_000"].to_numpy() + rng.normal(size=100), index=X.index)
    a = age_prediction(X, age, estimators=["ridge"])
    b = age_prediction(X, age.sample(frac=1, random_state=0), estimators=["ridge"])
    pd.testing.assert_frame_equal(a, b)


def test_age_prediction_metrics_match_sklearn_on_same_split():
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 6))
    y = X @ rng.normal(size=6) + rng.normal(size=150)
    res = age_prediction(X, y, estimators=["ridge"], random_state=7)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=7)
    pred = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(
        Xtr, ytr).predict(Xte)
    # the same pipeline on the same split: equal up to float64 roundoff of 30-term sums
    # (gamma_30 = 3.3e-15); measured <= 2.3e-16 relative (3 kernels); rel=1e-12
    assert res.loc["ridge", "mae"] == pytest.approx(mean_absolute_error(yte, pred), rel=1e-12)
    assert res.loc["ridge", "pearson_r"] == pytest.approx(stats.pearsonr(yte, pred)[0],
                                                          rel=1e-12)


def test_age_prediction_all_regressors_run():
    """Every regressor learns y = 2 x0 + e (true r = sqrt(4/5) = 0.894).

    The old check, held-out pearson_r > 0.5 on 12 test subjects, is not steady: the
    worst regressor's r spans 0.41 .. 0.87 over 10 seeds x {Haswell, SkylakeX} (seed 4:
    0.80; svr or gbm; Fisher-z SE at n = 12 is 1/3). The check is now on cv_r_mean (3
    folds over all 60 subjects): worst regressor 0.641 .. 0.818 (seed 4: 0.649), so 0.5
    is cleared by 0.14 in the worst run; the held-out r must still be positive (4.3
    Fisher-z SE below the truth). Kernels agree to 4e-16. 34 seeds x 3 kernels: worst
    regressor's cv_r_mean 0.570 .. 0.850, held-out r 0.42 .. 0.92.
    """
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 3))
    y = 2 * X[:, 0] + rng.normal(size=60)
    res = age_prediction(X, y, estimators=["ridge", "lasso", "elasticnet", "svr", "rf", "gbm"],
                         cv=3)
    assert list(res.index) == ["ridge", "lasso", "elasticnet", "svr", "rf", "gbm"]
    assert np.isfinite(res.to_numpy(dtype=float)).all()
    assert (res["cv_r_mean"] > 0.5).all()
    assert (res["pearson_r"] > 0).all()


def test_age_prediction_errors():
    rng = np.random.default_rng(5)
    X = _embedding(30, 2, rng)
    age = pd.Series(rng.normal(size=30), index=X.index)
    with pytest.raises(ValueError, match="unknown regressor"):
        age_prediction(X, age, estimators=["xgboost"])
    other = age.copy()
    other.index = [f"x{i}" for i in range(28)] + list(age.index[:2])
    with pytest.raises(SubjectMismatchError, match="2 matched"):
        age_prediction(X, other)
    bad = X.copy()
    bad.iloc[3, 0] = np.nan
    with pytest.raises(ValueError, match="missing or infinite"):
        age_prediction(bad, age)
    with pytest.raises(ValueError, match="different numbers of subjects"):
        age_prediction(np.zeros((30, 2)), np.zeros(29))


# --------------------------------------------------------------------------- disorders
def test_disorder_classification_matches_sklearn_nested_cv():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(6)
    n = 240
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] - X[:, 1] + rng.normal(size=n) > 1.2).astype(int)  # ~20% cases
    res = disorder_classification(X, y, penalties=("l2",), random_state=3)
    assert list(res.index) == ["1", "2", "3", "mean"]
    # seed 6: 0.924; Hanley-McNeil SE at AUC 0.9 with ~48 cases / 192 controls: 0.031,
    # so 0.8 is 4 SE below. 10 seeds x {Haswell, SkylakeX}: 0.831 .. 0.924 (SD 0.028),
    # kernels identical; 34 seeds x 3 kernels: 0.858 .. 0.943
    assert res.loc["mean", "roc_auc"] > 0.8

    # independent nested CV written directly with scikit-learn
    outer = StratifiedKFold(3, shuffle=True, random_state=3)
    for k, (tr, te) in enumerate(outer.split(X, y), start=1):
        search = GridSearchCV(
            make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced",
                                                               max_iter=2000)),
            {"logisticregression__C": [0.01, 0.1, 1.0, 10.0]},
            cv=StratifiedKFold(2, shuffle=True, random_state=3), scoring="roc_auc",
        ).fit(X[tr], y[tr])
        auc = roc_auc_score(y[te], search.predict_proba(X[te])[:, 1])
        bacc = balanced_accuracy_score(y[te], search.predict(X[te]))
        # ratios of counts: any real difference (one flipped pair or subject) is at least
        # 1 / (n_cases n_controls) >= 1e-3 for AUC and 1 / (2 n_controls) for balanced
        # accuracy, float64 roundoff < 1e-14: abs=1e-6 sits between
        assert res.loc[str(k), "roc_auc"] == pytest.approx(auc, abs=1e-6)
        assert res.loc[str(k), "balanced_accuracy"] == pytest.approx(bacc, abs=1e-6)
        assert res.loc[str(k), "C"] == search.best_params_["logisticregression__C"]


def test_disorder_classification_null_is_chance_and_grid_has_all_penalties():
    """Null labels (~90 cases, ~210 controls, pooled over the outer folds).

    SE of a null AUC (Mann-Whitney): sqrt((n0 + n1 + 1) / (12 n0 n1)) = 0.036, so 0.12 is
    3.3 SE; SE of a null balanced accuracy: sqrt(0.25 / n1 + 0.25 / n0) / 2 = 0.032, 0.12
    is 3.8 SE. Measured over 10 seeds x {Haswell, SkylakeX} (kernels identical):
    AUC - 0.5 in -0.025 .. 0.072 (seed 7: -0.025), balanced accuracy - 0.5 in
    -0.021 .. 0.064 (seed 7: -0.021); the worst run clears 0.12 by >= 1.3 SE. 34 seeds x
    3 kernels: AUC - 0.5 in -0.080 .. 0.045, balanced accuracy - 0.5 in -0.062 .. 0.057.
    """
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 6))
    y = rng.random(300) < 0.3
    res = disorder_classification(X, y)
    assert abs(res.loc["mean", "roc_auc"] - 0.5) < 0.12
    assert abs(res.loc["mean", "balanced_accuracy"] - 0.5) < 0.12
    assert set(res["penalty"].iloc[:3]) <= {"l1", "l2", "none"}
    assert res.loc["mean", "n_test"] == 300


def test_disorder_classification_errors():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(40, 3))
    with pytest.raises(ValueError, match="exactly two classes"):
        disorder_classification(X, np.zeros(40))
    y = np.zeros(40)
    y[:3] = 1
    with pytest.raises(ValueError, match="smaller class has 3"):
        disorder_classification(X, y)
    with pytest.raises(ValueError, match="unknown penalty"):
        disorder_classification(X, (np.arange(40) % 2), penalties=("l3",))


# --------------------------------------------------------------------------- IDPs
def _ols_pvalue(y, x, C):
    D = np.column_stack([np.ones(len(y)), x, C])
    beta, *_ = np.linalg.lstsq(D, y, rcond=None)
    resid = y - D @ beta
    df = len(y) - D.shape[1]
    cov = resid @ resid / df * np.linalg.inv(D.T @ D)
    t = beta[1] / np.sqrt(cov[1, 1])
    return beta[1], t, 2 * stats.t.sf(abs(t), df)


def test_idp_association_matches_per_pair_ols_with_missing_values():
    rng = np.random.default_rng(9)
    n = 150
    X = _embedding(n, 3, rng)
    cov = pd.DataFrame({"age": rng.normal(60, 5, n), "sex": rng.choice(["F", "M"], n)},
                       index=X.index)
    idps = pd.DataFrame({"gm_volume": 0.4 * X["t1_001"] + 0.05 * cov["age"] + rng.normal(size=n),
                         "wmh": rng.normal(size=n)}, index=X.index)
    X.iloc[5, 2] = np.nan  # a missing embedding value: dropped from that pair only
    idps.iloc[7, 1] = np.nan
    res = idp_association(X, idps, cov)
    assert len(res) == 2 * 6
    # the same one division; approx's default rel=1e-6 is only a float-equality guard
    assert res.attrs["threshold"] == pytest.approx(0.05 / 12)
    C = np.column_stack([cov["age"], (cov["sex"] == "M").astype(float)])
    for _, row in res.iterrows():
        y = idps[row["idp"]].to_numpy()
        x = X[row["feature"]].to_numpy()
        ok = np.isfinite(y) & np.isfinite(x)
        beta, t, p = _ols_pvalue(y[ok], x[ok], C[ok])
        # float64 least squares: error ~ n u cond(D) = 150 * 1.1e-16 * 620 = 1e-11
        # (uncentred age makes cond(D) = 620); measured <= 3.3e-14 relative (3 kernels).
        # p: |d log p / d t| ~ t <= 4.5 here, so rel(p) ~ t^2 rel(t); rel 1e-6 covers it
        assert row["beta"] == pytest.approx(beta, rel=1e-8)
        assert row["t"] == pytest.approx(t, rel=1e-8)
        assert row["pvalue"] == pytest.approx(p, rel=1e-6, abs=1e-300)
        assert row["n"] == ok.sum()
    # A fixed-seed check: Bonferroni at 0.05 makes a false positive among the 11 null pairs
    # possible (FWER <= 5%), and the planted t ~ 0.4 sqrt(150) = 4.9 clears the cut |t| >
    # 2.91 with power 0.977; over seeds 200..399 the set is exact for 191 of 200 (5 misses,
    # 4 false positives). At seed 9 the planted t is 4.52 (1.6 t-units above the cut, p =
    # threshold / 330) and the largest null |t| is 1.33 (1.6 below, p = 44 x threshold);
    # kernels move log10 p by <= 2e-14 (3 kernels), so no decision hangs on roundoff.
    sig = res.loc[res["significant"], ["idp", "feature"]].apply(tuple, axis=1).tolist()
    assert sig == [("gm_volume", "t1_001")]


def test_idp_omnibus_matches_nested_ols_f_test():
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(10)
    n, d = 120, 6
    X = rng.normal(size=(n, d))
    C = rng.normal(size=(n, 2))
    y = 0.3 * X[:, 0] + 0.2 * X[:, 3] + C @ [1.0, -0.5] + rng.normal(size=n)
    res = idp_omnibus(X, y, C)
    rss = {}
    for name, D in (("reduced", C), ("full", np.column_stack([C, X]))):
        fit = LinearRegression().fit(D, y)
        rss[name] = ((y - fit.predict(D)) ** 2).sum()
    df_den = n - (1 + 2 + d)
    F = ((rss["reduced"] - rss["full"]) / d) / (rss["full"] / df_den)
    row = res.iloc[0]
    # float64: RSS are 120-term sums (gamma_120 = 1.3e-14) and the F numerator loses a
    # factor rss_reduced / (rss_reduced - rss_full) = 9 to cancellation: ~1e-13, and
    # F = 2.3 keeps d log p / d F small; measured <= 2.8e-14 relative (3 kernels)
    assert row["f_stat"] == pytest.approx(F, rel=1e-8)
    assert row["pvalue"] == pytest.approx(stats.f.sf(F, d, df_den), rel=1e-8)
    tss = ((y - y.mean()) ** 2).sum()
    assert row["incremental_r2"] == pytest.approx((rss["reduced"] - rss["full"]) / tss,
                                                  rel=1e-8)
    assert row["df_num"] == d and row["df_den"] == df_den


def test_idp_omnibus_null_pvalues_are_uniform():
    """The fraction below 0.05 of 400 null p-values has binomial SE sqrt(0.05 * 0.95 /
    400) = 0.011; the band is 0.05 +- 3 SE = 0.017 .. 0.083 (old: 0.02 .. 0.09, -2.7 and
    +3.7 SE). Measured over 10 seeds x {Haswell, SkylakeX} (kernels identical): 0.035 ..
    0.065 (seed 11: 0.0525). The KS p-value is itself uniform under the null, so ``>
    0.001`` fails one seed in 1000 by construction: measured 0.029 .. 0.98 (seed 11:
    0.029, 29x the level; kernels agree to 5e-14). 34 seeds x 3 kernels: fraction 0.0225 ..
    0.080 (SD 0.012, the binomial SE), KS p 0.023 .. 0.996.
    """
    rng = np.random.default_rng(11)
    n = 80
    X = rng.normal(size=(n, 5))
    idps = rng.normal(size=(n, 400))  # 400 null IDPs
    p = idp_omnibus(X, idps)["pvalue"].to_numpy()
    se = np.sqrt(0.05 * 0.95 / 400)
    assert abs(np.mean(p < 0.05) - 0.05) < 3 * se
    assert stats.kstest(p, "uniform").pvalue > 0.001


def test_idp_omnibus_needs_more_subjects_than_features():
    rng = np.random.default_rng(12)
    with pytest.raises(ValueError, match="more subjects than features"):
        idp_omnibus(rng.normal(size=(10, 12)), rng.normal(size=10))


# --------------------------------------------------------------------------- alignment
def test_alignment_scores_separate_aligned_from_independent_pairs():
    """Measured over 10 seeds x {Haswell, SkylakeX} (kernels agree to <= 8e-16):
    aligned mean_cca_r 0.9987 .. 0.9990, top1 0.994 .. 1, linear_cka 0.9976 .. 0.9980,
    linear_cka_shuffled 0.061 .. 0.076, rbf_cka 0.9974 .. 0.9980 vs rbf_cka_shuffled
    0.114 .. 0.130; independent top1 0 .. 0.031 (chance 1/80 = 0.0125, binomial SE over
    160 queries 0.009: 0.1 is 10 SE above chance), linear_cka 0.059 .. 0.096, median_rank
    31.3 .. 47.8 (chance ~40). Worst-run margins: mean_cca_r 0.0087 (80 SD), top1 0.094,
    linear_cka 0.048 (270 SD), shuffled CKA 0.22 (45 SD), rbf gap 0.87, independent top1
    0.069 (7 SE), independent CKA 0.20 (16 SD), median_rank 11 (2.6 SD). 34 seeds x 3
    kernels: aligned mean_cca_r >= 0.9982, top1 1, linear_cka >= 0.9969, shuffled <= 0.076,
    rbf gap >= 0.86; independent top1 <= 0.044, linear_cka <= 0.114, median_rank >= 33.
    """
    rng = np.random.default_rng(13)
    n, d = 80, 6
    Z = rng.normal(size=(n, d))
    ids = _ids(n)
    # a shared space (as the contrastive projection): T2 = T1 + noise
    aligned = pd.DataFrame(np.hstack([Z, Z + 0.05 * rng.normal(size=(n, d))]), index=ids,
                           columns=[f"t1_{i:03d}" for i in range(d)]
                           + [f"t2_{i:03d}" for i in range(d)])
    res = alignment_scores(aligned).iloc[0]
    assert res["mean_cca_r"] > 0.99
    assert res["top1"] > 0.9
    assert res["linear_cka"] > 0.95 > 0.3 > res["linear_cka_shuffled"]
    assert res["rbf_cka"] > res["rbf_cka_shuffled"]

    # CCA and CKA are rotation invariant; retrieval (cosine in one space) is not
    rot = np.linalg.qr(rng.normal(size=(d, d)))[0]
    rotated = aligned.copy()
    rotated.iloc[:, d:] = aligned.iloc[:, d:].to_numpy() @ rot
    res_rot = alignment_scores(rotated).iloc[0]
    # float64: 80-term covariances (gamma_80 = 8.9e-15) through 6 x 6 whitening of
    # condition < 10: ~1e-13; measured <= 5.6e-16 (10 seeds x 2 kernels); abs 1e-6 -> 1e-10
    assert res_rot["mean_cca_r"] == pytest.approx(res["mean_cca_r"], abs=1e-10)
    assert res_rot["linear_cka"] == pytest.approx(res["linear_cka"], abs=1e-10)

    independent = _embedding(n, d, rng)
    res0 = alignment_scores(independent).iloc[0]
    assert res0["top1"] < 0.1
    assert res0["linear_cka"] < 0.3
    assert res0["median_rank"] > n / 4


def test_split_modalities_errors():
    with pytest.raises(TypeError, match="DataFrame"):
        split_modalities(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="t1_\\* and t2_\\*"):
        split_modalities(pd.DataFrame(np.zeros((3, 2)), columns=["a", "b"]))


# --------------------------------------------------------------------------- factor_recovery
def test_factor_recovery_matches_the_closed_form_r2_and_ignores_rotation():
    """y = X beta + e with var(X beta) = var(e) = 1: the population R^2 is 0.5. Held out on
    1000 subjects the R^2 estimate has SE ~ 2 sqrt(R^2) (1 - R^2) / sqrt(n) = 0.022 (delta
    method); 0.1 is 4.5 SE. A factor unrelated to X has R^2 ~ 0 (at most p/n_train of
    overfit, 0.005 here) within the same SE. Rotating X changes nothing beyond float64
    roundoff of a 5-column solve (1e-10)."""
    from hcl_sklearn.evaluation import factor_recovery

    rng = np.random.default_rng(0)
    n, p = 2000, 5
    X = rng.normal(size=(n, p)) * np.array([3.0, 1.0, 0.5, 0.2, 0.1])
    beta = rng.normal(size=p)
    signal = X @ beta
    signal /= signal.std()
    ids = pd.Index([f"s{i}" for i in range(n)])
    F = pd.DataFrame({"f": signal + rng.normal(size=n), "null": rng.normal(size=n)}, index=ids)
    emb = pd.DataFrame(X, index=ids)
    out = factor_recovery(emb, F, train=ids[:1000], test=ids[1000:])
    assert abs(out.loc["f", "r2"] - 0.5) < 0.1
    assert abs(out.loc["null", "r2"]) < 0.1
    Q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    rot = factor_recovery(pd.DataFrame(X @ Q, index=ids), F, train=np.arange(1000),
                          test=np.arange(1000, n))
    np.testing.assert_allclose(rot["r2"], out["r2"], rtol=0, atol=1e-10)


def test_factor_recovery_checks_its_splits():
    from hcl_sklearn.evaluation import factor_recovery

    emb = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 3)))
    F = pd.DataFrame({"f": np.arange(20.0)})
    with pytest.raises(ValueError, match="disjoint"):
        factor_recovery(emb, F, train=np.arange(15), test=np.arange(10, 20))
    with pytest.raises(ValueError, match="at least 3 training"):
        factor_recovery(emb, F, train=[0, 1], test=np.arange(2, 20))

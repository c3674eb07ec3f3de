"""Alignment metrics between two embedding blocks: retrieval, CKA, CCA.

Every function takes two blocks ``A`` and ``B`` of shape ``(n, d_a)`` and
``(n, d_b)`` whose row ``i`` belongs to the same subject (e.g. the T1 and the T2
embedding of subject ``i``). These are the validation metrics of the reference
implementation (cross-modal retrieval top-1, recall@k, median/mean rank; linear
and RBF CKA) and its alignment analysis (mean canonical correlation between the
T1 and the T2 embeddings).

All computations run in float64 on NumPy arrays; pandas DataFrames and torch
tensors (on CPU) are accepted too.

References
----------
Kornblith, Norouzi, Lee & Hinton (2019). Similarity of neural network
representations revisited. ICML. (CKA)

Hotelling (1936). Relations between two sets of variates. Biometrika. (CCA)
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

__all__ = [
    "cca_correlations",
    "linear_cka",
    "mean_cca_correlation",
    "rbf_cka",
    "retrieval_ranks",
    "retrieval_scores",
]


# --------------------------------------------------------------------------- validation
def _as_block(X, name):
    if hasattr(X, "detach"):  # torch tensor
        X = X.detach().cpu().numpy()
    elif hasattr(X, "to_numpy"):  # pandas
        X = X.to_numpy()
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a numeric array of shape (n_samples, n_features); "
            f"got {type(X).__name__} that cannot be converted to float ({exc})."
        ) from exc
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features); got shape {X.shape}. "
            "Flatten token outputs first, e.g. X.reshape(len(X), -1)."
        )
    if not np.isfinite(X).all():
        raise ValueError(
            f"{name} contains {int((~np.isfinite(X)).sum())} non-finite value(s) (NaN or "
            "inf); drop or impute those rows before computing alignment metrics."
        )
    return X


def _check_pair(A, B, min_samples=2):
    A = _as_block(A, "A")
    B = _as_block(B, "B")
    if A.shape[0] != B.shape[0]:
        raise ValueError(
            f"A and B must have one row per subject in the same order; got {A.shape[0]} "
            f"rows in A and {B.shape[0]} rows in B."
        )
    if A.shape[0] < min_samples:
        raise ValueError(
            f"at least {min_samples} paired samples are needed; got {A.shape[0]}."
        )
    return A, B


def _center(X):
    return X - X.mean(axis=0, keepdims=True)


# --------------------------------------------------------------------------- retrieval
def _unit_rows(X):
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def _ranks_one_way(Q, K, chunk_size):
    n = Q.shape[0]
    ranks = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sim = Q[start:stop] @ K.T  # (chunk, n)
        rows = np.arange(stop - start)
        pos = sim[rows, np.arange(start, stop)]
        # pessimistic ties: every other candidate at least as similar counts as ahead
        ahead = (sim >= pos[:, None]).sum(axis=1) - 1
        ranks[start:stop] = 1 + ahead
    return ranks


def retrieval_ranks(A, B, chunk_size=1024):
    """Rank of each subject's true partner in cross-modal retrieval (cosine similarity).

    For query ``A[i]`` all rows of ``B`` are ranked by cosine similarity; the rank of
    ``B[i]`` is returned (1 = retrieved first). Ties are broken pessimistically: a
    candidate exactly as similar as the true partner counts as ranked ahead of it,
    so collapsed (constant) embeddings get the worst rank, never a lucky top-1.

    Parameters
    ----------
    A, B : array-like of shape (n_samples, n_features_a) and (n_samples, n_features_b)
        Paired blocks; ``n_features_a`` must equal ``n_features_b`` (cosine similarity
        is taken between the two blocks' rows).
    chunk_size : int, default=1024
        Queries processed at once; memory is ``O(chunk_size * n_samples)``.

    Returns
    -------
    ranks_ab, ranks_ba : ndarray of int of shape (n_samples,)
        Ranks for A→B queries and for B→A queries.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.evaluation.metrics import retrieval_ranks
    >>> A = np.eye(3)
    >>> retrieval_ranks(A, A[[0, 1, 2]])[0]
    array([1, 1, 1])
    """
    A, B = _check_pair(A, B)
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"retrieval compares rows of A and B by cosine similarity, so both need the "
            f"same number of features; got {A.shape[1]} and {B.shape[1]}. Project them to "
            "a shared space first (e.g. the embedder's 'projection' output)."
        )
    if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}.")
    A, B = _unit_rows(A), _unit_rows(B)
    return _ranks_one_way(A, B, int(chunk_size)), _ranks_one_way(B, A, int(chunk_size))


def retrieval_scores(A, B, ks=(1, 5, 10, 50), chunk_size=1024):
    """Cross-modal retrieval metrics between paired blocks (cosine similarity).

    Parameters
    ----------
    A, B : array-like of shape (n_samples, n_features)
        Paired blocks (row ``i`` of A and of B belong to one subject).
    ks : sequence of int, default=(1, 5, 10, 50)
        Cut-offs for recall@k (the fraction of queries whose partner is among the
        ``k`` most similar). For ``k >= n_samples`` recall@k is 1 by definition.
    chunk_size : int, default=1024
        Queries processed at once.

    Returns
    -------
    scores : dict of str to float
        ``top1`` (= recall@1), ``recall@k`` for each ``k``, ``median_rank`` and
        ``mean_rank``, each averaged over the two directions; the same keys prefixed
        ``a2b_`` (queries from A, candidates from B) and ``b2a_``; and
        ``chance_top1`` = 1 / n_samples, the expected top-1 of random embeddings.

    See Also
    --------
    retrieval_ranks : the per-subject ranks behind these scores.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.evaluation.metrics import retrieval_scores
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(20, 8))
    >>> s = retrieval_scores(A, A + 0.01 * rng.normal(size=A.shape), ks=(1, 5))
    >>> s["top1"], s["median_rank"]
    (1.0, 1.0)
    """
    ks = tuple(ks)
    if not ks or any(not isinstance(k, numbers.Integral) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers; got {ks!r}.")
    r_ab, r_ba = retrieval_ranks(A, B, chunk_size=chunk_size)
    out = {}
    per_dir = {}
    for prefix, r in (("a2b_", r_ab), ("b2a_", r_ba)):
        d = {"top1": float(np.mean(r == 1))}
        for k in ks:
            d[f"recall@{k}"] = float(np.mean(r <= k))
        d["median_rank"] = float(np.median(r))
        d["mean_rank"] = float(np.mean(r))
        per_dir[prefix] = d
    for key in per_dir["a2b_"]:
        out[key] = 0.5 * (per_dir["a2b_"][key] + per_dir["b2a_"][key])
    for prefix, d in per_dir.items():
        out.update({prefix + k: v for k, v in d.items()})
    out["chance_top1"] = 1.0 / len(r_ab)
    return out


# --------------------------------------------------------------------------- CKA
def _hsic_features(A, B):
    """Biased HSIC (up to a constant) with linear kernels, from centred features."""
    return np.linalg.norm(A.T @ B, "fro") ** 2


def linear_cka(A, B):
    """Linear centred kernel alignment between two paired blocks.

    ``CKA = ||A_c^T B_c||_F^2 / (||A_c^T A_c||_F ||B_c^T B_c||_F)`` with column-
    centred blocks (Kornblith et al. 2019, eq. 5); it equals the RV coefficient.
    It is 1 for identical inputs, invariant to orthogonal transforms and isotropic
    scaling of either block, and for one feature per block it equals the squared
    Pearson correlation.

    Parameters
    ----------
    A, B : array-like of shape (n_samples, n_features_a), (n_samples, n_features_b)

    Returns
    -------
    cka : float in [0, 1]
        0 when either block is constant.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.evaluation.metrics import linear_cka
    >>> A = np.random.default_rng(0).normal(size=(50, 4))
    >>> round(linear_cka(A, 3 * A), 6)
    1.0
    """
    A, B = _check_pair(A, B)
    A, B = _center(A), _center(B)
    n = A.shape[0]
    if max(A.shape[1], B.shape[1]) > n:  # Gram form is cheaper
        K, L = A @ A.T, B @ B.T
        num = np.sum(K * L)
        den = np.linalg.norm(K, "fro") * np.linalg.norm(L, "fro")
    else:
        num = _hsic_features(A, B)
        den = np.linalg.norm(A.T @ A, "fro") * np.linalg.norm(B.T @ B, "fro")
    return float(num / den) if den > 0 else 0.0


def _sq_distances(X):
    sq = np.sum(X * X, axis=1)
    D = sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)
    np.fill_diagonal(D, 0.0)
    return np.maximum(D, 0.0)


def _rbf_gram(X, sigma):
    D = _sq_distances(X)
    if sigma is None:
        off = D[~np.eye(len(D), dtype=bool)]
        sq_sigma = float(np.median(off))
        if sq_sigma <= 0:  # more than half the pairs coincide: fall back to the mean
            sq_sigma = float(off.mean())
    else:
        sq_sigma = float(sigma) ** 2
    if sq_sigma <= 0:  # all rows identical: constant kernel, no structure
        return np.ones_like(D)
    return np.exp(-D / (2.0 * sq_sigma))


def _center_gram(K):
    K = K - K.mean(axis=0, keepdims=True)
    return K - K.mean(axis=1, keepdims=True)


def rbf_cka(A, B, sigma=None):
    """RBF-kernel centred kernel alignment between two paired blocks.

    ``CKA = <HKH, HLH>_F / (||HKH||_F ||HLH||_F)`` with Gaussian kernels
    ``K_ij = exp(-||a_i - a_j||^2 / (2 sigma^2))`` (biased HSIC, Kornblith et al.
    2019). As ``sigma`` grows it tends to :func:`linear_cka`.

    Parameters
    ----------
    A, B : array-like of shape (n_samples, n_features_a), (n_samples, n_features_b)
    sigma : float or None, default=None
        Kernel bandwidth, used for both blocks. ``None`` sets it per block to the
        square root of the median squared distance between distinct rows (the median
        heuristic), which makes the score invariant to isotropic scaling.

    Returns
    -------
    cka : float in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.evaluation.metrics import rbf_cka
    >>> A = np.random.default_rng(0).normal(size=(30, 5))
    >>> round(rbf_cka(A, A), 6)
    1.0
    """
    if sigma is not None and (not isinstance(sigma, numbers.Real) or not sigma > 0):
        raise ValueError(f"sigma must be a positive number or None; got {sigma!r}.")
    A, B = _check_pair(A, B)
    K, L = _center_gram(_rbf_gram(A, sigma)), _center_gram(_rbf_gram(B, sigma))
    den = np.linalg.norm(K, "fro") * np.linalg.norm(L, "fro")
    return float(np.sum(K * L) / den) if den > 0 else 0.0


# --------------------------------------------------------------------------- CCA
def _thin_svd(X, rtol=1e-10):
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    keep = s > rtol * (s[0] if s.size and s[0] > 0 else 1.0)
    return U[:, keep], s[keep]


def cca_correlations(A, B, reg=None):
    """Canonical correlations between two paired blocks, largest first.

    Computed in the sample space from thin SVDs of the centred blocks, so it stays
    cheap when ``n_features`` is large. With ``reg = 0`` the correlations are the
    singular values of ``U_A^T U_B`` (classic CCA). With ``reg > 0`` each covariance
    gets a ridge relative to its own scale, ``C + reg (tr C / d) I`` (ridge /
    "regularised" CCA), which keeps the correlations below 1 when
    ``d_a + d_b >= n`` (where unregularised CCA always finds perfect, meaningless
    correlations). Because the ridge scales with each block, the result is
    invariant to isotropic scaling of either block.

    Parameters
    ----------
    A, B : array-like of shape (n_samples, n_features_a), (n_samples, n_features_b)
    reg : float >= 0 or None, default=None
        Relative ridge. ``None`` uses 0 when ``n_samples > n_features_a + n_features_b``;
        otherwise it uses 0.1 and warns, because CCA then mostly measures the sample
        size (once ``n_features >= n_samples - 1`` in both blocks, any two blocks
        span the same space and give the same correlations). Reduce the blocks
        first (e.g. :class:`~hcl_sklearn.embed.reduction.ModalityPCA`) or pass ``reg``
        explicitly to silence the warning.

    Returns
    -------
    corr : ndarray of shape (min(rank A, rank B),)

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.evaluation.metrics import cca_correlations
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(100, 3))
    >>> np.round(cca_correlations(A, A @ rng.normal(size=(3, 3))), 6)
    array([1., 1., 1.])
    """
    A, B = _check_pair(A, B, min_samples=3)
    n, da = A.shape
    db = B.shape[1]
    if reg is None:
        reg = 0.0
        if n <= da + db:
            reg = 0.1
            warnings.warn(
                f"CCA with {n} samples and {da} + {db} features is ill-posed (unregularised, "
                "all leading correlations would be 1); using reg=0.1. Compare such values "
                "only at equal n and d, reduce the features (e.g. ModalityPCA) or pass "
                "reg=... explicitly.",
                UserWarning,
                stacklevel=3,
            )
    if not isinstance(reg, numbers.Real) or not 0 <= reg < np.inf:
        raise ValueError(f"reg must be a finite number >= 0 or None; got {reg!r}.")
    Ua, sa = _thin_svd(_center(A))
    Ub, sb = _thin_svd(_center(B))
    if sa.size == 0 or sb.size == 0:
        return np.zeros(0)
    if reg > 0:
        # whitening by the ridged covariance, restricted to the data span
        def factor(s, d):
            var = s**2 / (n - 1)
            lam = reg * var.sum() / d
            return np.sqrt(var / (var + lam))

        M = (Ua * factor(sa, da)).T @ (Ub * factor(sb, db))
    else:
        M = Ua.T @ Ub
    corr = np.linalg.svd(M, compute_uv=False)
    return np.clip(corr[: min(sa.size, sb.size)], 0.0, 1.0)


def mean_cca_correlation(A, B, n_components=None, reg=None):
    """Mean of the leading canonical correlations between two paired blocks.

    The reference reports this between the T1 and T2 embeddings (mean canonical
    r = 0.878 over 128 components).

    Parameters
    ----------
    A, B : array-like of shape (n_samples, n_features_a), (n_samples, n_features_b)
    n_components : int or None, default=None
        Number of leading canonical correlations averaged; ``None`` = all
        (``min(rank A, rank B)``). Larger values are clipped to that number.
    reg : float >= 0 or None, default=None
        Relative covariance ridge, see :func:`cca_correlations`.

    Returns
    -------
    mean_r : float in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.evaluation.metrics import mean_cca_correlation
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.normal(size=(2, 500, 4))
    >>> mean_cca_correlation(A, B) < 0.2
    True
    """
    if n_components is not None and (
        not isinstance(n_components, numbers.Integral) or n_components < 1
    ):
        raise ValueError(f"n_components must be a positive integer or None; got {n_components!r}.")
    corr = cca_correlations(A, B, reg=reg)
    if corr.size == 0:
        return 0.0
    if n_components is not None:
        corr = corr[:n_components]
    return float(corr.mean())

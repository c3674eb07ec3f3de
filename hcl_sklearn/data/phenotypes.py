"""Phenotype tables: missingness patterns, the unit in which models are fitted.

Phenotypes missing for different subjects cannot share one fit; phenotypes with the same
pattern of missing values can (one covariate design, one GRM eigendecomposition, one pass
over the genotypes). :func:`missingness_patterns` groups them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["missingness_patterns"]


def missingness_patterns(observed):
    """Group columns by which rows they are observed on.

    Parameters
    ----------
    observed : bool ndarray of shape (n_rows, n_columns)
        ``True`` where a value is observed (usable).

    Returns
    -------
    list of (rows, columns)
        One entry per distinct pattern, in order of first appearance: ``rows`` the bool
        mask (n_rows,) of the rows observed, ``columns`` the int array of the columns with
        that pattern.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn.data import missingness_patterns
    >>> obs = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=bool)
    >>> [(rows.tolist(), cols.tolist()) for rows, cols in missingness_patterns(obs)]
    [([True, True, True], [0, 2]), ([True, False, True], [1])]
    """
    observed = np.asarray(observed, dtype=bool)
    if observed.ndim != 2:
        raise ValueError(f"observed must be 2-D (rows x columns); got {observed.shape}.")
    if observed.all():
        return [(np.ones(observed.shape[0], dtype=bool), np.arange(observed.shape[1]))]
    groups = {}
    for j in range(observed.shape[1]):
        groups.setdefault(np.packbits(observed[:, j]).tobytes(), []).append(j)
    return [(observed[:, cols[0]].copy(), np.asarray(cols)) for cols in groups.values()]

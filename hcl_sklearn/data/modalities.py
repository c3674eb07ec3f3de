"""Which modality a column belongs to: one rule for the whole package.

A column's modality is the part of its name before the first ``_``, lower-cased:
``t1_000`` and ``T1_pc003`` are T1, ``t2_cc001`` is T2. A name without ``_`` (``age``)
belongs to no modality (``''``).
"""

from __future__ import annotations

__all__ = ["modality_of", "split_by_modality"]


def modality_of(name):
    """Modality of a column name: the lower-cased part before the first ``_`` (``''`` if none).

    Examples
    --------
    >>> from hcl_sklearn.data import modality_of
    >>> modality_of("t1_000"), modality_of("T2_pc017"), modality_of("age")
    ('t1', 't2', '')
    """
    name = str(name)
    return name.split("_", 1)[0].lower() if "_" in name else ""


def split_by_modality(columns):
    """Group column names by modality, in order of first appearance.

    Parameters
    ----------
    columns : iterable of str

    Returns
    -------
    dict of str to list
        Modality -> the columns that belong to it (``''``: columns without a modality).

    Examples
    --------
    >>> from hcl_sklearn.data import split_by_modality
    >>> split_by_modality(["t1_a", "t2_a", "t1_b", "age"])
    {'t1': ['t1_a', 't1_b'], 't2': ['t2_a'], '': ['age']}
    """
    out = {}
    for c in columns:
        out.setdefault(modality_of(c), []).append(c)
    return out

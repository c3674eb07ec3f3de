"""Subject ids, the join key of every table: one error type and one message for mismatches.

The index of every phenotype, covariate and embedding table and the IID of the genotypes
name the same subjects. When they don't line up, every part of the package raises
:class:`SubjectMismatchError` with :func:`describe_mismatch`'s message: how many ids matched
and a few that did not.
"""

import pandas as pd

__all__ = ["SubjectMismatchError", "describe_mismatch"]


class SubjectMismatchError(ValueError):
    """Subject ids of two inputs do not match (a ``ValueError``)."""


def describe_mismatch(requested, available, what, *, fix=None):
    """Message for ids of ``requested`` that are missing from ``available``.

    Parameters
    ----------
    requested, available : sequence of ids
    what : str
        What ``available`` is, e.g. ``"genotype IIDs"`` or ``"GRM ids"``.
    fix : str, optional
        What the user should do; a default advice is given.

    Examples
    --------
    >>> from hcl_sklearn.data.subjects import describe_mismatch
    >>> describe_mismatch(["a", "b", "c"], ["a", "z"], "GRM ids")[:47]
    '1 of 3 requested subject ids are in the GRM ids'
    """
    requested = pd.Index(requested)
    available = pd.Index(available)
    present = requested.isin(available)
    missing = [str(s) for s in requested[~present][:5]]
    fix = fix or ("Align the ids (the index of every table = the IID of the genotypes) or "
                  "subset to the common subjects first.")
    return (f"{int(present.sum())} of {len(present)} requested subject ids are in the {what} "
            f"({len(available)} ids); not found, e.g.: {missing}. {fix}")

"""Mixins shared by the package's estimators."""

from __future__ import annotations

import os
import sys

__all__ = ["SharesDataOnClone", "resolve_device"]


def resolve_device(device):
    """``'auto'`` -> ``'cuda'`` when torch sees a GPU, else ``'cpu'``; others as given.

    Without an NVIDIA device node torch is not imported at all (its import costs a second
    or two of start-up that a CPU-only GWAS should not pay).
    """
    device = str(device)
    if device != "auto":
        return device
    if "torch" not in sys.modules and not os.path.exists("/dev/nvidiactl"):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SharesDataOnClone:
    """``clone`` shares the data-valued parameters instead of deep-copying them.

    scikit-learn's :func:`~sklearn.base.clone` deep-copies every parameter that is not an
    estimator; for a genetics estimator that means a second n x n GRM, a copy of the
    covariate table and of the genotype handle for every GridSearchCV candidate. The
    parameters named in ``_shared_params`` hold read-only inputs (the estimators never
    modify them), so the clone refers to the same objects; every other parameter is
    cloned as scikit-learn does.
    """

    _shared_params: tuple = ()

    def __sklearn_clone__(self):
        from sklearn.base import clone

        params = self.get_params(deep=False)
        new = {k: v if k in self._shared_params else clone(v, safe=False)
               for k, v in params.items()}
        return type(self)(**new)

"""hcl-sklearn: heritable contrastive brain representations from paired T1/T2 MRI.

The public estimators are imported lazily so that ``import hcl_sklearn`` stays
fast and light (torch is only imported when a neural estimator is used).
"""

import importlib

from . import _compat
from ._version import __version__

_compat.install()  # the module paths of before the layered layout stay importable

# public name -> submodule that defines it
_LAZY = {
    "MomentumContrastiveEmbedder": "embed.contrastive",
    "AutoencoderEmbedder": "embed.autoencoder",
    "ModalityPCA": "embed.reduction",
    "CrossModalCCA": "embed.reduction",
    "HeritabilityScorer": "genetics.heritability",
    "genetic_correlation": "genetics.heritability",
    "CrossModalGWAS": "genetics.gwas",
    "GeneBasedTest": "targets.gene_test",
    "ProWAS": "targets.prowas",
    "DrugTargetEnrichment": "targets.drugs",
    "CrossModalTargets": "targets.shared",
    "PairedVolumes": "data.volumes",
    "pairs_from_bids": "data.volumes",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'hcl_sklearn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

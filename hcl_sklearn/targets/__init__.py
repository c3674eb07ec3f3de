"""From loci to targets: gene-based tests, protein associations (ProWAS) and drug-target
enrichment, and the genes, proteins and drug classes the T1 and T2 representations share.

Imported lazily: ``from hcl_sklearn.targets import GeneBasedTest`` loads only its module.
"""

import importlib

_LAZY = {
    "GeneBasedTest": "gene_test",
    "ProWAS": "prowas",
    "DrugTargetEnrichment": "drugs",
    "CrossModalTargets": "shared",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

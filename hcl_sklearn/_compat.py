"""Old module paths of the package, kept importable after the move to layered sub-packages.

Models pickled before the move refer to their classes by the old paths (e.g.
``hcl_sklearn.contrastive.MoCoNet``); user code may import them. A meta-path finder maps
each old name to its new module, so both names refer to the same module object.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old module -> new module (sub-modules of an old package follow their package)
MOVED = {
    "hcl_sklearn.subjects": "hcl_sklearn.data.subjects",
    "hcl_sklearn.volumes": "hcl_sklearn.data.volumes",
    "hcl_sklearn.contrastive": "hcl_sklearn.embed.contrastive",
    "hcl_sklearn.autoencoder": "hcl_sklearn.embed.autoencoder",
    "hcl_sklearn.reduction": "hcl_sklearn.embed.reduction",
    "hcl_sklearn.callbacks": "hcl_sklearn.embed.callbacks",
    "hcl_sklearn.nn": "hcl_sklearn.embed.nn",
    "hcl_sklearn.reml": "hcl_sklearn.genetics.reml",
    "hcl_sklearn.haseman_elston": "hcl_sklearn.genetics.haseman_elston",
    "hcl_sklearn.heritability": "hcl_sklearn.genetics.heritability",
    "hcl_sklearn.gwas": "hcl_sklearn.genetics.gwas",
    "hcl_sklearn.metrics": "hcl_sklearn.evaluation.metrics",
    "hcl_sklearn.cli": "hcl_sklearn.app.cli",
    "hcl_sklearn.demo": "hcl_sklearn.app.demo",
    "hcl_sklearn.report": "hcl_sklearn.app.report",
}


def new_name(old):
    """The module that ``old`` now is, or None if it did not move."""
    for prefix, target in MOVED.items():
        if old == prefix or old.startswith(prefix + "."):
            return target + old[len(prefix):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):  # the target module is already executed
        pass


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = new_name(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install():
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())

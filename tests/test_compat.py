"""The layered layout keeps the old module paths and the models saved before the move.

``tests/data/*_v0.joblib`` were written by ``joblib.dump`` of a fitted embedder from the
package as it was before the move (classes at ``hcl_sklearn.contrastive``,
``hcl_sklearn.nn.moco``, ``hcl_sklearn.autoencoder`` ...), with the embeddings it gave for
``pre_move_input.npy``. Loading them must work, and transform must give the same numbers:
the same weights through the same float32 code on the same 8 subjects; the tolerance is
float32 roundoff of a reduction over the largest layer (a few hundred terms, 1e-5
relative), for a kernel other than the one that wrote the file.
"""

import importlib
from pathlib import Path

import joblib
import numpy as np
import pytest

import hcl_sklearn
from hcl_sklearn._compat import MOVED

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_are_the_new_modules(old):
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_old_submodule_and_class_paths_resolve():
    from hcl_sklearn.contrastive import MomentumContrastiveEmbedder as Old
    from hcl_sklearn.gwas.estimator import CrossModalGWAS as OldGWAS
    from hcl_sklearn.nn.moco import MomentumContrast as OldMoCo

    assert Old is hcl_sklearn.MomentumContrastiveEmbedder
    assert OldGWAS is hcl_sklearn.CrossModalGWAS
    assert OldMoCo.__module__ == "hcl_sklearn.embed.nn.moco"


@pytest.mark.parametrize("kind", ["contrastive", "autoencoder"])
def test_models_saved_before_the_move_load_and_embed_the_same(kind):
    model = joblib.load(DATA / f"{kind}_v0.joblib")
    X = np.load(DATA / "pre_move_input.npy")
    expected = np.load(DATA / f"pre_move_{kind}.npy")
    np.testing.assert_allclose(model.transform(X), expected, rtol=1e-5, atol=1e-6)
    assert type(model).__module__.startswith("hcl_sklearn.embed.")

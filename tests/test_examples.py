"""Every example script runs (at a reduced size) and produces sensible outputs.

No numeric tolerances here: values are checked to be finite and inside the range their
definition gives (MAE > 0, h2 and CV scores in [0, 1]), which holds on any kernel; the
learning quality at this size (<= 80 subjects, 1 epoch) is not asserted.
"""

import importlib.util
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_age_regression_pipeline():
    res = _load("age_regression_pipeline").main(n_subjects=80, max_epochs=1)
    assert np.isfinite(res["mae"]) and res["mae"] > 0
    assert list(res["table"].index) == ["ridge", "svr"]
    assert np.isfinite(res["table"][["mae", "pearson_r", "cv_r_mean"]].to_numpy()).all()


def test_grid_search_heritability(tmp_path):
    res = _load("grid_search_heritability").main(n_subjects=60, max_epochs=1,
                                                  workdir=tmp_path)
    scores = res["search"].cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.all((scores >= 0) & (scores <= 1))
    assert res["search"].best_params_["embed__temperature"] in (0.07, 0.2)
    assert len(res["h2"]) == 8


def test_file_workflow(tmp_path):
    res = _load("file_workflow").main(tmp_path, n_subjects=60, max_epochs=1)
    for name in ("embedder.joblib", "embeddings.tsv", "h2.tsv", "sumstats.tsv.gz",
                 "miami.png"):
        assert (tmp_path / name).is_file(), name
    assert list(res["h2"].index) == list(res["pcs"].columns)
    assert res["pcs"].index.str.startswith("S").all()  # subject ids, not positions
    assert set(res["gwas"].loci_) == {"t1", "t2"}
    assert res["h2"]["n"].eq(60).all()


def test_examples_are_listed():
    names = {p.stem for p in EXAMPLES.glob("*.py")}
    assert {"age_regression_pipeline", "grid_search_heritability", "file_workflow"} <= names


def test_user_guide_covers_the_public_api_and_commands():
    import inspect

    import hcl_sklearn
    from hcl_sklearn import evaluation
    from hcl_sklearn.app.cli import build_parser

    guide = (EXAMPLES.parent / "docs" / "user_guide.md").read_text(encoding="utf-8")
    public = [n for n in hcl_sklearn.__all__ if n != "__version__"]
    public += [n for n in evaluation.__all__
               if inspect.isfunction(getattr(evaluation, n)) and n != "split_modalities"]
    missing = [n for n in public if n not in guide]
    assert not missing, f"docs/user_guide.md does not mention {missing}"
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing_cmds = [c for c in sub.choices if f"hcl {c}" not in guide]
    assert not missing_cmds, f"docs/user_guide.md does not show {missing_cmds}"
    for example in EXAMPLES.glob("*.py"):
        assert f"examples/{example.name}" in guide, example.name

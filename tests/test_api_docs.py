"""docs/api.md is generated from the docstrings and must match the public API."""

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import build_api  # noqa: E402


def test_api_page_is_in_sync_with_the_code():
    page = (ROOT / "docs" / "api.md").read_text()
    assert page == build_api.build(), "docs/api.md is stale: run python docs/build_api.py"


@pytest.mark.parametrize("modname", [m for m, _ in build_api.MODULES])
def test_every_public_callable_is_documented(modname):
    page = (ROOT / "docs" / "api.md").read_text()
    module = importlib.import_module(modname)
    for name in module.__all__:
        obj = getattr(module, name)
        if callable(obj) and not name.startswith("_"):
            assert f"`{modname}.{name}`" in page, f"{modname}.{name} missing from docs/api.md"
            assert (obj.__doc__ or "").strip(), f"{modname}.{name} has no docstring"


def test_check_mode_detects_drift(tmp_path, monkeypatch):
    monkeypatch.setattr(build_api, "OUT", tmp_path / "api.md")
    (tmp_path / "api.md").write_text("# stale\n")
    assert build_api.main(["--check"]) == 1
    assert build_api.main([]) == 0 and build_api.main(["--check"]) == 0

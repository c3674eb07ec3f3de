"""Every Examples section in the package's docstrings runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import hcl_sklearn

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(hcl_sklearn.__path__, "hcl_sklearn.")
    if not name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"

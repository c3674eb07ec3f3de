"""Write docs/api.md, the API reference, from the package's docstrings.

Run:  python docs/build_api.py        (rewrites docs/api.md)
      python docs/build_api.py --check (exit 1 if docs/api.md is out of date)

``tests/test_api_docs.py`` runs the check, so the page cannot drift from the code.
"""

import argparse
import importlib
import inspect
import sys
from pathlib import Path

# the public modules, in reading order; each documents the names in its __all__
MODULES = [
    ("hcl_sklearn", "Estimators and top-level functions"),
    ("hcl_sklearn.data.volumes", "Data layer: paired T1/T2 volumes"),
    ("hcl_sklearn.datasets", "Data sets and the simulator"),
    ("hcl_sklearn.genetics", "Genotypes and the GRM"),
    ("hcl_sklearn.evaluation.metrics", "Embedding metrics"),
    ("hcl_sklearn.evaluation", "Evaluation protocol"),
    ("hcl_sklearn.genetics.gwas", "GWAS, loci and plots"),
    ("hcl_sklearn.targets", "Genes, proteins and drug targets"),
]

OUT = Path(__file__).with_name("api.md")


def _summary_and_params(obj):
    doc = inspect.getdoc(obj) or ""
    paragraphs = doc.split("\n\n")
    summary = " ".join(paragraphs[0].split()) if paragraphs else ""
    params = []
    lines = doc.splitlines()
    if "Parameters" in lines:
        i = lines.index("Parameters") + 2  # skip the dashes
        while i < len(lines) and lines[i].strip() and not set(lines[i].strip()) <= {"-"}:
            line = lines[i]
            if line and not line.startswith(" "):
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                if set(nxt.strip()) <= {"-"} and nxt.strip():
                    break  # next section header
                params.append(line.strip())
            i += 1
    return summary, params


def _signature(name, obj):
    try:
        return f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return name


def build():
    parts = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/build_api.py`; "
        "`tests/test_api_docs.py` keeps it in sync with the code. Full docstrings: "
        "`help(name)` in Python.",
        "",
    ]
    for modname, title in MODULES:
        module = importlib.import_module(modname)
        names = [n for n in getattr(module, "__all__", []) if not n.startswith("_")]
        parts += [f"## {title} — `{modname}`", ""]
        for name in names:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or callable(obj)):
                continue
            summary, params = _summary_and_params(obj)
            kind = "class" if inspect.isclass(obj) else "function"
            parts += [f"### `{modname}.{name}` ({kind})", "",
                      f"```python\n{_signature(name, obj)}\n```", "", summary or "(no docstring)", ""]
            if params:
                parts += ["Parameters: " + "; ".join(f"`{p}`" for p in params), ""]
    return "\n".join(parts).rstrip() + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = build()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print("docs/api.md is out of date: run python docs/build_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.name}: {text.count('### ')} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())

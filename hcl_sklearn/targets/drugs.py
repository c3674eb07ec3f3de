"""Drug-target enrichment of a gene list: one-sided Fisher exact test per drug class (GREP).

For each drug class, GREP's 2x2 table of genes:

==========================  =====================  ==========================
                            in the class           not in the class
==========================  =====================  ==========================
input genes                 ``a``                  ``c``
other background genes      ``b``                  ``d``
==========================  =====================  ==========================

with the *background* the genes targeted by any drug in the table: ``a`` = input ∩ class,
``b`` = class − a, ``c`` = (input ∩ background) − a, ``d`` = background − (input ∩
background) − b; ``p = fisher_exact([[a, b], [c, d]], "greater")``, i.e. the
hypergeometric tail ``P(X >= a)`` for ``a + c`` genes drawn from the background, and the
sample odds ratio ``a d / (b c)``. Input genes outside the background carry no
information on drug classes and are left out (listed in ``unknown_genes_``).

The embedded table is a DrugCentral snapshot (Ursu et al., Nucleic Acids Res 2017;
CC BY 4.0, ``hcl_sklearn/datasets/data/drugcentral/LICENSE``): drugs -> target genes,
drugs -> classes of a class system (``'PA'`` MeSH pharmacological action, ``'EPC'`` FDA
established pharmacologic class, ``'MoA'`` mechanism of action, ``'PE'`` physiologic
effect, ``'Chemical/Ingredient'``, ``'has role'`` ChEBI roles). GREP's DrugBank/TTD
tables are CC BY-NC-ND and are not shipped; a user who has them passes the file
(:func:`read_grep_table`).
"""

from __future__ import annotations

from numbers import Integral, Real
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

__all__ = ["DrugTargetEnrichment", "load_drugcentral", "read_grep_table", "CLASS_SYSTEMS"]

#: DrugCentral class systems (``TYPE`` of its pharmacologic-class table).
CLASS_SYSTEMS = ("PA", "EPC", "MoA", "PE", "Chemical/Ingredient", "has role")

#: Columns of a tidy drug-gene-class table.
TABLE_COLUMNS = ["drug", "gene", "drug_class"]


def _drugcentral_dir():
    from importlib import resources

    return Path(str(resources.files("hcl_sklearn.datasets").joinpath("data", "drugcentral")))


def load_drugcentral(class_system="PA"):
    """The embedded DrugCentral drug -> target gene -> class table.

    Parameters
    ----------
    class_system : str, default='PA'
        One of :data:`CLASS_SYSTEMS`.

    Returns
    -------
    pandas.DataFrame
        Columns ``drug, gene, drug_class``: one row per (drug, target gene, class);
        the genes of multi-protein targets (``A|B``) are split.

    Examples
    --------
    >>> from hcl_sklearn.targets.drugs import load_drugcentral
    >>> t = load_drugcentral("EPC")
    >>> list(t.columns)
    ['drug', 'gene', 'drug_class']
    """
    if class_system not in CLASS_SYSTEMS:
        raise ValueError(f"class_system must be one of {CLASS_SYSTEMS}; got "
                         f"{class_system!r}.")
    d = _drugcentral_dir()
    tgt = pd.read_csv(d / "drug_target.tsv.gz", sep="\t", usecols=["DRUG_ID", "DRUG_NAME",
                                                                    "GENE"])
    tgt = tgt.dropna(subset=["GENE"])
    tgt = tgt.assign(GENE=tgt["GENE"].str.split("|")).explode("GENE")
    tgt["GENE"] = tgt["GENE"].str.strip().str.upper()
    cls = pd.read_csv(d / "pharm_class.tsv.gz", sep="\t", usecols=["DRUG_ID", "TYPE", "CLASS"])
    cls = cls[cls["TYPE"] == class_system]
    out = tgt.merge(cls[["DRUG_ID", "CLASS"]], on="DRUG_ID", how="left")
    out = out.rename(columns={"DRUG_NAME": "drug", "GENE": "gene", "CLASS": "drug_class"})
    return out[TABLE_COLUMNS].drop_duplicates().reset_index(drop=True)


def read_grep_table(path, atc_level=1):
    """Read a drug-target table in GREP's format (DrugBank / TTD, supplied by the user).

    Tab-separated, no header, four columns: ATC code, drug, gene symbol, UniProt id.
    The drug class is the ATC code cut to its level: 1 -> ``'N'`` (anatomical main
    group), 2 -> ``'N05'``, 3 -> ``'N05A'``, 4 -> ``'N05AH'``, 5 -> the whole code.

    Parameters
    ----------
    path : str or path-like
    atc_level : int, default=1

    Returns
    -------
    pandas.DataFrame
        Columns ``drug, gene, drug_class``.
    """
    cut = {1: 1, 2: 3, 3: 4, 4: 5, 5: 7}
    if atc_level not in cut:
        raise ValueError(f"atc_level must be 1..5; got {atc_level!r}.")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for k, line in enumerate(fh, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            f = line.split("\t")
            if len(f) != 4 or not f[0].strip() or not f[2].strip():
                raise ValueError(
                    f"{path}, line {k}: expected 4 tab-separated fields (ATC code, drug, "
                    f"gene symbol, UniProt id) with an ATC code and a gene; got {line!r}.")
            rows.append((f[1].strip(), f[2].strip().upper(), f[0].strip()[:cut[atc_level]]))
    if not rows:
        raise ValueError(f"{path} holds no drug-target rows.")
    return pd.DataFrame(rows, columns=TABLE_COLUMNS).drop_duplicates().reset_index(drop=True)


def _bh(p):
    """Benjamini-Hochberg q-values."""
    p = np.asarray(p, dtype=float)
    n = p.size
    if n == 0:
        return p
    order = np.argsort(p)
    q = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


class DrugTargetEnrichment(BaseEstimator):
    """Drug classes enriched for the targets of a gene list (GREP's one-sided Fisher test).

    Parameters
    ----------
    table : DataFrame, str or path-like, default=None
        None: the embedded DrugCentral table of ``class_system``. A DataFrame with
        columns ``drug, gene, drug_class``, or the path of a GREP-format file
        (:func:`read_grep_table`, classes at ``atc_level``).
    class_system : str, default='PA'
        DrugCentral class system (:data:`CLASS_SYSTEMS`) when ``table`` is None.
    atc_level : int, default=1
        ATC level of the classes of a GREP-format file.
    min_class_genes : int, default=1
        Classes with fewer target genes in the background are not tested.
    alpha : float, default=0.05
        BH-FDR level of ``significant``.
    tarone : bool, default=True
        Count in the FDR only the classes that could reach ``alpha``: a class whose
        smallest attainable p (all its background genes among the hits, given the number
        of hits) exceeds ``alpha`` cannot be significant whatever the data, and counting
        it only dilutes the correction (Tarone, Biometrics 1990; for the FDR Gilbert,
        J R Stat Soc C 2005). Such classes keep their p-value, ``testable`` False and
        ``q_value`` NaN. With a small background (one chromosome: a dozen drug-target
        genes) most classes are untestable. False: BH over every class (GREP's).

    Attributes
    ----------
    results_ : pandas.DataFrame
        One row per tested class, smallest p first: ``drug_class, a, b, c, d,
        n_class_genes, odds_ratio, p_value, q_value, significant, testable,
        min_attainable_p, genes`` (the input genes in the class, ``;``-joined) and
        ``drugs`` (the drugs of the class that target them).
    background_ : list of str
        Genes targeted by any drug of the table (and in ``universe`` when given to
        :meth:`fit`).
    genes_ : list of str
        The input genes in the background (upper case).
    unknown_genes_ : list of str
        Input genes not targeted by any drug of the table (not counted).

    Examples
    --------
    >>> from hcl_sklearn.targets import DrugTargetEnrichment
    >>> enr = DrugTargetEnrichment(class_system="EPC").fit(["DRD2", "HTR2A", "DRD3"])
    >>> bool(enr.results_["p_value"].iloc[0] < 0.05)
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "table": [pd.DataFrame, str, Path, None],
        "class_system": [str],
        "atc_level": [Interval(Integral, 1, 5, closed="both")],
        "min_class_genes": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "tarone": ["boolean"],
    }

    def __init__(self, table=None, class_system="PA", *, atc_level=1, min_class_genes=1,
                 alpha=0.05, tarone=True):
        self.table = table
        self.class_system = class_system
        self.atc_level = atc_level
        self.min_class_genes = min_class_genes
        self.alpha = alpha
        self.tarone = tarone

    def _table(self):
        if self.table is None:
            return load_drugcentral(self.class_system)
        if isinstance(self.table, pd.DataFrame):
            missing = [c for c in TABLE_COLUMNS if c not in self.table.columns]
            if missing:
                raise ValueError(f"table lacks the columns {missing}; it needs "
                                 f"{TABLE_COLUMNS} (one row per drug, target gene, class).")
            t = self.table[TABLE_COLUMNS].copy()
            t["gene"] = t["gene"].astype(str).str.strip().str.upper()
            return t
        return read_grep_table(self.table, atc_level=self.atc_level)

    def fit(self, genes, y=None, *, universe=None):
        """Test every drug class for the genes ``genes`` (a list of gene symbols).

        Parameters
        ----------
        genes : list of str
            The gene symbols to test (e.g. the significant genes of a gene-based test).
        y : ignored
        universe : list of str, optional
            The genes that *could* have been in ``genes``: every gene the gene-based test
            tested. The background is then the drug-target genes among them (a gene that
            was never tested cannot be a hit, and counting it in ``b`` or ``d`` biases the
            test towards 1), and a class is tested only where it has at least
            ``min_class_genes`` genes in that background, so the FDR runs over the classes
            that could be enriched. None: GREP's background, every drug-target gene of
            the table. ``genes`` outside the universe raise an error.

        Returns
        -------
        self
        """
        from scipy.stats import hypergeom

        self._validate_params()
        if isinstance(genes, str):
            raise TypeError("genes must be a list of gene symbols, not one string.")
        query = sorted({str(g).strip().upper() for g in genes if str(g).strip()})
        if not query:
            raise ValueError("genes is empty: pass the gene symbols to test (e.g. the "
                             "significant genes of GeneBasedTest.results_).")
        t = self._table()
        background = set(t["gene"])
        if universe is not None:
            if isinstance(universe, str):
                raise TypeError("universe must be a list of gene symbols, not one string.")
            uni = {str(g).strip().upper() for g in universe if str(g).strip()}
            outside = [g for g in query if g not in uni]
            if outside:
                raise ValueError(f"{len(outside)} of the genes are not in universe (e.g. "
                                 f"{outside[:3]}); the universe must hold every tested gene, "
                                 "hits included.")
            background &= uni
            t = t[t["gene"].isin(background)]
        self.background_ = sorted(background)
        self.genes_ = [g for g in query if g in background]
        self.unknown_genes_ = [g for g in query if g not in background]
        t = t.dropna(subset=["drug_class"])
        hits = set(self.genes_)
        N, K = len(background), len(hits)
        rows = []
        for cls, grp in t.groupby("drug_class", sort=True):
            cg = set(grp["gene"])
            if len(cg) < self.min_class_genes:
                continue
            inter = sorted(cg & hits)
            a = len(inter)
            b = len(cg) - a
            c = K - a
            d = N - K - b
            drugs = sorted(set(grp.loc[grp["gene"].isin(inter), "drug"]))
            rows.append((cls, a, b, c, d, len(cg), ";".join(inter), ";".join(drugs)))
        res = pd.DataFrame(rows, columns=["drug_class", "a", "b", "c", "d", "n_class_genes",
                                          "genes", "drugs"])
        a, b, c, d = (res[k].to_numpy(dtype=np.int64) for k in "abcd")
        # P(X >= a), X ~ hypergeometric(N background genes, a + b class genes, K draws)
        res["p_value"] = np.minimum(hypergeom.sf(a - 1, N, a + b, K), 1.0) if len(res) else []
        with np.errstate(divide="ignore", invalid="ignore"):
            orr = (a * d).astype(float) / (b * c).astype(float)
        orr[(a * d == 0) & (b * c == 0)] = np.nan
        res["odds_ratio"] = orr
        # smallest p a class could reach: all its background genes among the K hits
        n_c = a + b
        res["min_attainable_p"] = (hypergeom.sf(np.minimum(n_c, K) - 1, N, n_c, K)
                                   if len(res) else [])
        res["testable"] = (res["min_attainable_p"] <= self.alpha if self.tarone
                           else np.ones(len(res), dtype=bool))
        q = np.full(len(res), np.nan)
        q[res["testable"].to_numpy()] = _bh(res.loc[res["testable"], "p_value"].to_numpy())
        res["q_value"] = q
        res["significant"] = res["q_value"] <= self.alpha
        cols = ["drug_class", "a", "b", "c", "d", "n_class_genes", "odds_ratio", "p_value",
                "q_value", "significant", "testable", "min_attainable_p", "genes", "drugs"]
        self.results_ = (res[cols].sort_values(["p_value", "drug_class"], kind="stable")
                         .reset_index(drop=True))
        return self

    def plot(self, top=15, ax=None):
        """Bar chart of ``-log10 p`` of the ``top`` classes; returns the Figure."""
        import matplotlib.pyplot as plt

        from ..genetics.gwas.plotting import NLP_LABEL

        if not hasattr(self, "results_"):
            raise AttributeError("Call fit first.")
        r = self.results_.head(top).iloc[::-1]
        fig, ax = (plt.subplots(figsize=(6, 0.3 * len(r) + 1)) if ax is None
                   else (ax.figure, ax))
        ax.barh(r["drug_class"].astype(str), -np.log10(r["p_value"].clip(lower=1e-300)),
                color=np.where(r["significant"], "#c00000", "#888888"))
        ax.set_xlabel(f"{NLP_LABEL} (one-sided Fisher)")
        fig.tight_layout()
        return fig

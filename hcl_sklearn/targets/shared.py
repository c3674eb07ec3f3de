"""The genes, proteins and drug classes the T1 and the T2 representations share.

:class:`CrossModalTargets` gathers a fitted :class:`~hcl_sklearn.targets.GeneBasedTest`
(and optionally a fitted :class:`~hcl_sklearn.targets.ProWAS`) by modality:

- **genes**: significant for a modality when its combined test across the modality's
  dimensions (``GeneBasedTest.modality_results_``, Bonferroni over genes) is; without
  that table, when any dimension's own test is significant after Bonferroni over genes
  *and* dimensions of the modality. *Shared*: significant for both.
- **proteins**: significant for a modality when a pair (protein, dimension of that
  modality) is Bonferroni-significant in the ProWAS (over all proteins x dimensions).
- **drug classes**: :class:`~hcl_sklearn.targets.DrugTargetEnrichment` of the T1 genes, of
  the T2 genes and of the shared genes, each against the drug-target genes the gene test
  tested (``universe``); a class is shared when it is significant for T1 and for T2.

Tables: :attr:`CrossModalTargets.genes_`, ``proteins_``, ``drugs_``, the counts in
``summary_`` (the headline figure: T1, T2 and shared for each kind) and :meth:`plot`.
"""

from __future__ import annotations

from numbers import Real
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import HasMethods, Interval

from ..data.modalities import modality_of

__all__ = ["CrossModalTargets"]

_GENE_KEY = ["gene", "chrom", "start", "end"]


def _frame_of(obj, attr, name):
    if obj is None or isinstance(obj, pd.DataFrame):
        return obj
    if not hasattr(obj, attr):
        raise TypeError(f"{name} must be a fitted estimator with {attr} or a DataFrame; got "
                        f"{type(obj).__name__}.")
    return getattr(obj, attr)


def _need(frame, columns, name):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}; it needs {columns}.")


class CrossModalTargets(BaseEstimator):
    """Genes, proteins and drug classes significant for T1, for T2, and shared.

    Parameters
    ----------
    modalities : tuple of 2 str, default=('t1', 't2')
        The two modalities compared (prefixes of the embedding dimensions).
    enrichment : DrugTargetEnrichment or None, default=None
        Template of the drug-target enrichment, cloned for each gene set; None: the
        embedded DrugCentral table, MeSH pharmacological actions (``'PA'``).
    use_universe : bool, default=True
        The enrichment's background is the drug-target genes the gene test tested (see
        :meth:`DrugTargetEnrichment.fit`); False: every drug-target gene (GREP's).
    alpha : float, default=0.05
        Family-wise level of the protein hits (``p_bonferroni <= alpha``) and of the genes
        of a per-dimension table (Bonferroni over genes x the modality's dimensions). The
        per-modality gene table's own ``significant`` is used as it is, and the drug
        classes use the enrichment's FDR.

    Attributes
    ----------
    genes_ : pandas.DataFrame
        One row per tested gene: ``gene, chrom, start, end``, then per modality ``m``
        ``p_<m>`` and ``significant_<m>``, then ``shared``; significant genes first.
    proteins_ : pandas.DataFrame or None
        One row per protein: ``protein``, per modality ``p_<m>`` (the smallest Bonferroni
        p over the modality's dimensions), ``dimension_<m>`` (the dimension giving it)
        and ``significant_<m>``, then ``shared``.
    drugs_ : pandas.DataFrame
        One row per drug class: per gene set ``s`` in (the two modalities, ``'shared'``)
        ``p_<s>``, ``q_<s>``, ``significant_<s>`` and ``genes_<s>``, then ``shared``
        (significant for both modalities).
    enrichments_ : dict of str to DrugTargetEnrichment
        The fitted enrichment of each gene set (``results_`` has the drugs of each class).
    summary_ : pandas.DataFrame
        Counts: rows ``genes``, ``proteins``, ``drug classes``; columns the two modalities
        and ``shared``; with ``drug classes of shared genes`` as a fourth row.

    Examples
    --------
    >>> import pandas as pd
    >>> from hcl_sklearn.targets import CrossModalTargets
    >>> genes = pd.DataFrame({
    ...     "modality": ["t1", "t1", "t2", "t2"], "gene": ["COMT", "XKR3", "COMT", "TBX1"],
    ...     "chrom": "22", "start": [19929130, 17280659, 19929130, 19744226],
    ...     "end": [19957498, 17302584, 19957498, 19771116],
    ...     "p_value": [1e-9, 0.3, 1e-7, 1e-6], "significant": [True, False, True, True]})
    >>> cmt = CrossModalTargets().fit(genes)
    >>> cmt.genes_.loc[cmt.genes_["shared"], "gene"].tolist()
    ['COMT']
    >>> cmt.summary_.loc["genes"].tolist()
    [1, 2, 1]
    """

    _parameter_constraints: ClassVar[dict] = {
        "modalities": [tuple, list],
        "enrichment": [HasMethods(["fit"]), None],
        "use_universe": ["boolean"],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(self, modalities=("t1", "t2"), *, enrichment=None, use_universe=True,
                 alpha=0.05):
        self.modalities = modalities
        self.enrichment = enrichment
        self.use_universe = use_universe
        self.alpha = alpha

    def fit(self, gene_test, prowas=None):
        """Collect the hits of each modality and intersect them.

        Parameters
        ----------
        gene_test : GeneBasedTest or pandas.DataFrame
            A fitted gene test (its ``modality_results_`` when set, else ``results_``), or
            one of those tables (e.g. read back from ``hcl genes``' output): columns
            ``gene, chrom, start, end, p_value, significant`` and ``modality`` or
            ``phenotype``.
        prowas : ProWAS or pandas.DataFrame, optional
            A fitted ProWAS or its ``results_`` (``protein, dimension, p_bonferroni``).

        Returns
        -------
        self
        """
        self._validate_params()
        mods = tuple(str(m).lower() for m in self.modalities)
        if len(mods) != 2 or mods[0] == mods[1]:
            raise ValueError(f"modalities must be two distinct names; got {self.modalities!r}.")
        table = None
        if not isinstance(gene_test, pd.DataFrame):
            table = getattr(gene_test, "modality_results_", None)
        if table is None:
            table = _frame_of(gene_test, "results_", "gene_test")
        if table is None:
            raise ValueError("gene_test is required (a fitted GeneBasedTest or its table).")
        self.genes_ = self._genes(table, mods)
        self.proteins_ = None
        if prowas is not None:
            self.proteins_ = self._proteins(_frame_of(prowas, "results_", "prowas"), mods)
        self.drugs_, self.enrichments_ = self._drugs(mods)
        self.summary_ = self._summary(mods)
        self.modalities_ = mods
        return self

    # ------------------------------------------------------------------ pieces
    def _genes(self, table, mods):
        _need(table, _GENE_KEY + ["p_value", "significant"], "the gene table")
        t = table.copy()
        if "modality" not in t.columns:
            if "phenotype" not in t.columns:
                raise ValueError("the gene table needs a 'modality' or a 'phenotype' column.")
            t["modality"] = t["phenotype"].map(modality_of)
            # per-dimension tests: Bonferroni over the modality's genes x dimensions
            n_genes = t.groupby("phenotype")["gene"].transform("size")
            n_dims = t.groupby("modality")["phenotype"].transform("nunique")
            t["significant"] = t["p_value"] * n_genes * n_dims <= self.alpha
        t["modality"] = t["modality"].astype(str).str.lower()
        t["chrom"] = t["chrom"].astype(str)
        t = t[t["modality"].isin(mods)]
        if t.empty:
            raise ValueError(f"the gene table has no rows of the modalities {mods}; its "
                             f"modalities are {sorted(table.get('modality', pd.Series()).unique())}.")
        agg = t.groupby(_GENE_KEY + ["modality"], sort=False).agg(
            p=("p_value", "min"), sig=("significant", "any")).reset_index()
        wide = agg.pivot_table(index=_GENE_KEY, columns="modality", values=["p", "sig"],
                               aggfunc="first")
        out = wide.index.to_frame(index=False)
        for m in mods:
            out[f"p_{m}"] = (wide[("p", m)].to_numpy(dtype=float) if ("p", m) in wide
                             else np.nan)
            out[f"significant_{m}"] = (wide[("sig", m)].fillna(False).to_numpy(dtype=bool)
                                       if ("sig", m) in wide else False)
        out["shared"] = out[f"significant_{mods[0]}"] & out[f"significant_{mods[1]}"]
        order = np.lexsort((np.fmin(out[f"p_{mods[0]}"], out[f"p_{mods[1]}"]).fillna(1.0),
                            -(out[f"significant_{mods[0]}"] | out[f"significant_{mods[1]}"]),
                            -out["shared"]))
        return out.iloc[order].reset_index(drop=True)

    def _proteins(self, res, mods):
        _need(res, ["protein", "dimension", "p_bonferroni"], "the ProWAS table")
        r = res.copy()
        r["modality"] = (r["modality"] if "modality" in r.columns
                         else r["dimension"].map(modality_of)).astype(str).str.lower()
        r = r[r["modality"].isin(mods)]
        proteins = pd.Index(pd.unique(res["protein"]), name="protein")
        out = pd.DataFrame(index=proteins)
        for m in mods:
            rm = r[r["modality"] == m]
            best = rm.loc[rm.groupby("protein")["p_bonferroni"].idxmin()] if len(rm) else rm
            best = best.set_index("protein")
            out[f"p_{m}"] = best["p_bonferroni"].reindex(proteins).to_numpy(dtype=float)
            out[f"dimension_{m}"] = best["dimension"].reindex(proteins).to_numpy()
            out[f"significant_{m}"] = out[f"p_{m}"].to_numpy() <= self.alpha
        out["shared"] = out[f"significant_{mods[0]}"] & out[f"significant_{mods[1]}"]
        out = out.reset_index()
        best_p = np.fmin(out[f"p_{mods[0]}"], out[f"p_{mods[1]}"]).fillna(1.0)
        order = np.lexsort((best_p, -(out[f"significant_{mods[0]}"]
                                      | out[f"significant_{mods[1]}"]), -out["shared"]))
        return out.iloc[order].reset_index(drop=True)

    def _drugs(self, mods):
        from .drugs import DrugTargetEnrichment

        template = self.enrichment if self.enrichment is not None else DrugTargetEnrichment()
        universe = self.genes_["gene"].tolist() if self.use_universe else None
        sets = {m: self.genes_.loc[self.genes_[f"significant_{m}"], "gene"].tolist()
                for m in mods}
        sets["shared"] = self.genes_.loc[self.genes_["shared"], "gene"].tolist()
        fitted, frames = {}, []
        for name, genes in sets.items():
            if not genes:
                continue
            enr = clone(template).fit(genes, universe=universe)
            fitted[name] = enr
            if enr.results_.empty:
                continue
            frames.append(enr.results_.set_index("drug_class")[
                ["p_value", "q_value", "significant", "genes"]].add_suffix(f"_{name}"))
        if frames:
            out = pd.concat(frames, axis=1)
        else:
            out = pd.DataFrame(index=pd.Index([], name="drug_class"))
        for name in (*mods, "shared"):
            for col, fill in (("p_value", np.nan), ("q_value", np.nan),
                              ("significant", False), ("genes", "")):
                if f"{col}_{name}" not in out.columns:
                    out[f"{col}_{name}"] = fill
            out[f"significant_{name}"] = out[f"significant_{name}"].fillna(False).astype(bool)
            out[f"genes_{name}"] = out[f"genes_{name}"].fillna("")
        out = out.rename(columns=lambda c: c.replace("p_value_", "p_").replace("q_value_", "q_"))
        out["shared"] = out[f"significant_{mods[0]}"] & out[f"significant_{mods[1]}"]
        cols = [f"{c}_{s}" for s in (*mods, "shared") for c in ("p", "q", "significant",
                                                               "genes")]
        out = out[cols + ["shared"]].reset_index().rename(columns={"index": "drug_class"})
        best = out[[f"p_{s}" for s in (*mods, "shared")]].min(axis=1).fillna(1.0)
        out = out.iloc[np.lexsort((out["drug_class"].astype(str), best,
                                   -out["significant_shared"], -out["shared"]))]
        return out.reset_index(drop=True), fitted

    def _summary(self, mods):
        rows = {"genes": self.genes_}
        if self.proteins_ is not None:
            rows["proteins"] = self.proteins_
        rows["drug classes"] = self.drugs_
        data = {k: [int(v[f"significant_{m}"].sum()) for m in mods] + [int(v["shared"].sum())]
                for k, v in rows.items()}
        data["drug classes of shared genes"] = [np.nan, np.nan,
                                                int(self.drugs_["significant_shared"].sum())]
        return pd.DataFrame(data, index=[*mods, "shared"]).T.astype("Int64")

    def plot(self, ax=None):
        """Bars of the T1, T2 and shared counts of genes, proteins and drug classes.

        Returns
        -------
        matplotlib Figure
        """
        import matplotlib.pyplot as plt

        if not hasattr(self, "summary_"):
            raise AttributeError("Call fit first.")
        s = self.summary_.drop(index="drug classes of shared genes").fillna(0)
        fig, ax = plt.subplots(figsize=(6, 3.2)) if ax is None else (ax.figure, ax)
        x = np.arange(len(s))
        colors = {"shared": "#6a3d9a"}
        for k, col in enumerate(s.columns):
            bars = ax.bar(x + (k - 1) * 0.27, s[col].astype(float), width=0.27, label=col.upper()
                          if col != "shared" else "shared", color=colors.get(col, f"C{k}"))
            ax.bar_label(bars, fontsize=8)
        ax.set_xticks(x, s.index)
        ax.set_ylabel("significant")
        ax.legend(frameon=False)
        fig.tight_layout()
        return fig

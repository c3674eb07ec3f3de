"""The demo report: one section per result, figures where people would rather look."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .config import (COLORS, EMBEDDINGS, LABELS, SECTIONS, SHARED, SPECIFIC, TRUTH_TITLES,
                     DemoConfig, StageUnavailable, _bunch_get, _get, _h2_table, _kinds)


def build_report(results, config, timings=None):
    """Assemble the HTML report from the stages' results (see :data:`SECTIONS`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from ..report import HTMLReport

    report = HTMLReport("hcl-sklearn demo: heritable contrastive brain representations",
                        subtitle="Simulated paired T1/T2 cohort on the real MNI152 template "
                                 "with real 1000 Genomes chr22 genotypes.")
    timings = timings or {}
    builders = {
        "overview": ("Cohort and run", _section_overview),
        "training": ("Training curves", _section_training),
        "alignment": ("T1-T2 alignment and retrieval", _section_alignment),
        "age": ("Age prediction", _section_age),
        "disorder": ("Disorder classification", _section_disorder),
        "heritability": ("Heritability per dimension", _section_heritability),
        "genetic-correlation": ("T1 x T2 genetic correlation", _section_rg),
        "gwas": ("Cross-modal GWAS", _section_gwas),
        "targets": ("Genes and drug classes shared by T1 and T2", _section_targets),
        "relatives": ("GWAS on related subjects: OLS vs mixed model", _section_relatives),
        "loci-overlap": ("Loci and T1∩T2 overlap vs the baselines", _section_loci),
        "truth": ("Recovery of the planted truth", _section_truth),
        "comparison": ("Comparison: contrastive vs autoencoder vs the reference rows",
                       _section_comparison),
        "reproduce": ("Reproduce this report", _section_reproduce),
    }
    for sid in SECTIONS:
        title, fn = builders[sid]
        sec = report.add_section(title, section_id=sid)
        try:
            fn(sec, results, config, timings)
        except StageUnavailable as exc:
            sec.add_unavailable(str(exc))
    return report


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _grouped_bars(ax, table, cols):
    """One group of bars per column of ``cols``, one bar per embedding (row of ``table``,
    indexed by its label), in the embedding's colour."""
    width = 0.8 / len(table)
    for i, (name, row) in enumerate(table.iterrows()):
        kind = next(k for k in EMBEDDINGS if LABELS[k] == name)
        ax.bar(np.arange(len(cols)) + i * width, row[cols].astype(float), width, label=name,
               color=COLORS[kind])
    ax.set_xticks(np.arange(len(cols)) + width * (len(table) - 1) / 2, cols)


def _section_overview(sec, results, cfg, timings):
    sec.add_text(
        "Every number below comes from one run of `hcl demo` on simulated data with a known "
        "truth: brain factors of planted SNP heritability change tissue shape and contrast in "
        "paired T1 and T2 volumes rendered from the real MNI152 template, with genotypes "
        "resampled from real 1000 Genomes chr22 haplotype segments. The contrastive embedder "
        "and the autoencoder baseline are trained on the same training split; all models are "
        "scored on the same subjects.")
    sim = results.get("simulate")
    metrics = {"subjects": cfg.n_subjects, "grid": "x".join(map(str, cfg.shape)),
               "PCs per modality": cfg.n_components, "encoder": cfg.encoder,
               "contrastive epochs": cfg.max_epochs, "autoencoder epochs": cfg.ae_max_epochs}
    if isinstance(sim, dict):
        G = _bunch_get(sim["cohort"], "genotypes")
        if G is not None:
            metrics["SNPs"] = int(G.shape[1]) if hasattr(G, "shape") else None
        metrics["train / test"] = f"{len(sim['train'])} / {len(sim['test'])}"
    sec.add_metrics(metrics)
    if timings:
        t = pd.DataFrame({"seconds": pd.Series(timings)})
        t["status"] = ["skipped: " + str(results[k]) if isinstance(results.get(k),
                                                                     StageUnavailable)
                       else "done" for k in t.index]
        t.loc["total"] = [t["seconds"].sum(), ""]
        t.index.name = "stage"
        sec.add_table(t, "Wall-clock time per stage")
    if isinstance(sim, StageUnavailable):
        raise sim


def _section_training(sec, results, cfg, timings):
    plt = _plt()
    curves = {k: results.get(f"train_{k}") for k in ("contrastive", "autoencoder")}
    avail = {k: v for k, v in curves.items() if isinstance(v, dict)}
    if not avail:
        raise StageUnavailable(str(curves["contrastive"]))
    fig, axes = plt.subplots(1, len(avail), figsize=(5 * len(avail), 3.2), squeeze=False)
    for ax, (kind, tr) in zip(axes[0], avail.items()):
        h = tr["history"]
        if len(h):
            ax.plot(h["epoch"], h["train_loss"], "o-", label="train", color=COLORS[kind])
            if h["valid_loss"].notna().any():
                ax.plot(h["epoch"], h["valid_loss"], "s--", label="validation", color="k")
        ax.set_title(f"{LABELS[kind]} ({tr['fit_seconds']:.0f} s)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("InfoNCE loss" if kind == "contrastive" else "masked MSE")
        ax.legend()
    fig.tight_layout()
    sec.add_figure(fig, "Loss per epoch (contrastive: symmetric InfoNCE; autoencoder: "
                        "reconstruction MSE inside the brain mask)")
    for kind, v in curves.items():
        if isinstance(v, StageUnavailable):
            sec.add_note(f"{LABELS[kind]}: {v}")


def _section_alignment(sec, results, cfg, timings):
    ev = _get(results, "evaluation")
    al = ev["alignment"]
    if not al:
        raise StageUnavailable("no trained embedder to align")
    table = pd.concat({LABELS[k]: al[k].iloc[0] for k in _kinds(al)}, axis=1).T
    table.index.name = "embedding"
    sec.add_text("Held-out subjects only. Contrastive: the L2-normalised projection (the space "
                 "the InfoNCE loss aligns); autoencoder: the two latents. Retrieval: for "
                 "each subject's T1 embedding, the rank of its own T2 among all subjects "
                 "(cosine similarity), both directions averaged. Chance top-1 is 1/n. "
                 "CKA of the true pairs is compared with randomly re-paired subjects.")
    keep = [c for c in ["mean_cca_r", "linear_cka", "linear_cka_shuffled", "rbf_cka",
                        "rbf_cka_shuffled", "top1", "recall@5", "recall@10", "median_rank",
                        "chance_top1", "n"] if c in table.columns]
    sec.add_table(table[keep], "Alignment of the T1 and T2 embeddings")
    plt = _plt()
    cols = [c for c in ("top1", "recall@5", "recall@10") if c in table.columns]
    fig, ax = plt.subplots(figsize=(5.5, 3))
    _grouped_bars(ax, table, cols)
    if "chance_top1" in table.columns:
        ax.axhline(float(table["chance_top1"].iloc[0]), color="k", ls=":", label="chance top-1")
    ax.set_ylabel("fraction of subjects")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    sec.add_figure(fig, "Cross-modal retrieval")


def _section_age(sec, results, cfg, timings):
    ev = _get(results, "evaluation")
    age = ev["age"]
    table = pd.concat({LABELS[k]: age[k] for k in _kinds(age)}, names=["embedding", "model"])
    sec.add_text(f"{2 * cfg.n_components} features (T1 and T2 PCs) → StandardScaler → "
                 "regressor; held-out MAE, RMSE and Pearson r on a random 20% split, and the "
                 "mean Pearson r over 5 cross-validation folds.")
    sec.add_table(table.reset_index(), index=False, caption="Age prediction")
    best = {LABELS[k]: age[k]["mae"].min() for k in _kinds(age)}
    sec.add_metrics({f"best MAE, {k} (years)": v for k, v in best.items()})


def _section_disorder(sec, results, cfg, timings):
    ev = _get(results, "evaluation")
    dis = ev["disorder"]
    if not dis:
        raise StageUnavailable("the simulator returned no disorder label")
    table = pd.concat({LABELS[k]: dis[k] for k in _kinds(dis)}, names=["embedding", "fold"])
    sec.add_text("Class-balanced logistic regression in nested cross-validation: outer "
                 "stratified 3-fold; inner 2-fold over C ∈ {0.01, 0.1, 1, 10} and penalty "
                 "l1 / l2 / none, scored by ROC-AUC.")
    sec.add_metrics({f"ROC-AUC, {LABELS[k]}": dis[k].loc["mean", "roc_auc"] for k in _kinds(dis)})
    sec.add_table(table.reset_index(), index=False, caption="Disorder classification per "
                                                            "outer fold")


def _section_heritability(sec, results, cfg, timings):
    her = _get(results, "heritability")
    kinds = _kinds(her)
    n_dims = len(_h2_table(her[kinds[0]]))
    plotted = [k for k in kinds if len(_h2_table(her[k])) == n_dims]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.4))
    width = 0.8 / len(plotted)
    summary = {}
    names = list(_h2_table(her[kinds[0]]).index)
    for i, kind in enumerate(kinds):
        t = _h2_table(her[kind])
        if kind in plotted:
            x = np.arange(len(t)) + i * width
            ax.bar(x, t["h2"], width, yerr=t.get("h2_se"), label=LABELS[kind],
                   color=COLORS[kind], error_kw={"lw": 0.6})
        summary[LABELS[kind]] = {
            "mean_h2": t["h2"].mean(), "max_h2": t["h2"].max(),
            "n_nominal_p<0.05": int((t["pvalue"] < 0.05).sum()) if "pvalue" in t else None,
            "n_dims": len(t)}
    ax.set_xticks(np.arange(len(names)) + width * (len(plotted) - 1) / 2,
                  [str(n).replace("_pc", ":") for n in names], rotation=90, fontsize=7)
    ax.set_ylabel("SNP heritability (REML)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    sec.add_text("SNP heritability of every PC by REML on one genomic relationship matrix "
                 "(chr22 SNPs), with covariates; error bars are standard errors.")
    sec.add_figure(fig, "h² per dimension (T1 PCs, then T2 PCs)")
    table = pd.DataFrame.from_dict(summary, orient="index")
    table.index.name = "embedding"
    sec.add_table(table, "Heritability summary")


def _rg_matrix(rg):
    if isinstance(rg, pd.DataFrame) and "rg" in rg.columns:
        a, b = [c for c in rg.columns if c not in ("rg",)][:2]
        return rg.pivot(index=a, columns=b, values="rg")
    for attr in ("rg_", "rg"):
        if hasattr(rg, attr):
            return _rg_matrix(getattr(rg, attr))
    return pd.DataFrame(rg)


def _section_rg(sec, results, cfg, timings):
    res = _get(results, "genetic_correlation")
    M = _rg_matrix(res["rg"]).astype(float)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    im = ax.imshow(M.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_yticks(range(M.shape[0]), [str(i) for i in M.index], fontsize=7)
    ax.set_xticks(range(M.shape[1]), [str(c) for c in M.columns], fontsize=7, rotation=90)
    ax.set_ylabel("T1 dimension")
    ax.set_xlabel("T2 dimension")
    fig.colorbar(im, ax=ax, label="genetic correlation")
    fig.tight_layout()
    sec.add_text("Genetic correlation between every T1 and every T2 PC "
                 "(bivariate Haseman–Elston regression on the same GRM, covariates regressed out; not bounded to [-1, 1]). Shared genetic architecture between the "
                 "modalities shows up as large |rg| off the zero line.")
    sec.add_figure(fig, f"T1 x T2 genetic correlation of the {LABELS[res['kind']]} dimensions")
    vals = np.abs(M.to_numpy()[np.isfinite(M.to_numpy())])
    metrics = {"pairs with rg defined": f"{vals.size} of {M.size}"}
    if vals.size:
        metrics.update({"mean |rg|": vals.mean(), "max |rg|": vals.max()})
    sec.add_metrics(metrics)
    if vals.size < M.size:
        sec.add_note("rg is undefined (blank cell) where either dimension's h² estimate is not "
                     "positive; small cohorts leave many pairs undefined.")


def _section_gwas(sec, results, cfg, timings):
    gw = _get(results, "gwas")
    kind = "contrastive" if "contrastive" in gw else _kinds(gw)[0]
    g = gw[kind]
    sec.add_text("One GWAS per dimension (exact OLS with age, sex and 10 ancestry PCs as "
                 "covariates, MAF ≥ 0.01); per SNP the minimum p over a modality's "
                 "dimensions; genome-wide threshold 5e-8 divided by the number of dimensions; "
                 "loci by LD clumping (r² 0.1, 250 kb), padded ±125 kb and merged.")
    sec.add_figure(g.plot_miami(), f"Miami plot ({LABELS[kind]}): T1 minP up, T2 minP down")
    if "autoencoder" in gw and kind != "autoencoder":
        sec.add_figure(gw["autoencoder"].plot_miami(), "Miami plot (Autoencoder baseline)")
    sec.add_figure(g.plot_qq(), f"QQ plot of all {LABELS[kind]} dimensions")
    lam = pd.Series({LABELS[k]: float(np.nanmedian(gw[k].lambda_gc_)) for k in _kinds(gw)})
    sec.add_metrics({f"median λGC, {k}": v for k, v in lam.items()})


def _section_targets(sec, results, cfg, timings):
    tg = _get(results, "targets")
    planted = tg["planted"]
    sec.add_text(
        "Gene-based test (MAGMA's SNP-wise mean model, genes ±10 kb, in-sample LD) of each "
        "modality's dimensions together (statistic Σ over dimensions and SNPs of z², exact "
        "null Σ λ_i μ_j χ²₁), Bonferroni over genes; drug-target enrichment (one-sided "
        f"Fisher per DrugCentral {cfg.drug_class_system} class, background the drug-target "
        "genes tested, FDR over the classes that can reach 0.05) of the T1 genes, the T2 "
        "genes and the genes significant for both (shared). "
        + (f"Planted path: the shared factors' causal SNPs lie in the {len(planted)} chr22 "
           f"target genes of '{cfg.planted_drug_class}' ({', '.join(planted)}); the "
           "modality-specific factors' causal SNPs lie anywhere." if planted else ""))
    sec.add_table(tg["table"], "Genes significant per modality and shared, the planted "
                                "genes among the shared ones, and the planted drug class "
                                "among the classes of the shared genes (rank by p)")
    fits = tg["fits"]
    kind = "contrastive" if "contrastive" in fits else _kinds(fits)[0]
    cm = fits[kind]
    sec.add_table(cm.summary_, f"{LABELS[kind]}: genes and drug classes, T1, T2 and shared")
    genes = cm.genes_.loc[cm.genes_[[c for c in cm.genes_.columns
                                     if c.startswith("significant_")]].any(axis=1)]
    sec.add_table(genes.head(25), f"{LABELS[kind]}: significant genes (shared first)",
                  index=False)
    drugs = cm.drugs_.loc[cm.drugs_["p_shared"].notna(),
                          ["drug_class", "p_shared", "q_shared", "genes_shared", "p_t1",
                           "p_t2"]].sort_values("p_shared", kind="stable").head(10)
    sec.add_table(drugs, f"{LABELS[kind]}: drug classes of the shared genes", index=False)
    if "shared" in cm.enrichments_:
        fig = cm.enrichments_["shared"].plot(top=10)
        sec.add_figure(fig, f"{LABELS[kind]}: drug classes of the shared genes (red: FDR "
                            "significant)")
    sec.add_figure(cm.plot(), f"{LABELS[kind]}: counts per modality and shared")


def _section_relatives(sec, results, cfg, timings):
    rel = _get(results, "relatives")
    tab = rel["table"]
    sec.add_text(
        f"A second, genetic-only cohort of {cfg.related_subjects} subjects, "
        f"{2 * rel['n_pairs']} of them in {rel['n_pairs']} related pairs (siblings, "
        f"parent-offspring), {cfg.related_chromosomes} pseudo-chromosomes, "
        f"{int(tab['n_phenotypes'].max())} planted brain factors (h² 0.6, 0.4 of it "
        "polygenic on the odd chromosomes). Each factor's null SNPs are the even "
        "chromosomes without its causal SNPs. OLS is inflated by the relatives "
        "(theory: λ = 1 + f r² h² = 1.12); the mixed model (GRM, leave one chromosome out, "
        "REML per factor) is calibrated. Power at the planted SNPs is compared after "
        "genomic control (each factor's statistics divided by its λ), the fair comparison "
        "for an inflated test.")
    cols = ["lambda_gc", "mean_chi2_null", "power", "power_gc", "mean_chi2_causal_gc",
            "seconds"]
    sec.add_table(tab[cols], "Calibration (null SNPs) and power (planted SNPs)")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for key, color in (("ols", "#d62728"), ("lmm", "#1f77b4")):
        fit = rel[key]
        obs = np.sort(-fit._log10_p.ravel())[::-1]
        exp = -np.log10((np.arange(1, obs.size + 1) - 0.5) / obs.size)
        # the 2000 strongest and 3000 evenly spread: the same curve, a light figure
        keep = np.unique(np.r_[np.arange(min(2000, obs.size)),
                               np.linspace(0, obs.size - 1, 3000).astype(int)])
        ax.plot(exp[keep], obs[keep], ".", ms=2, color=color,
                label=f"{'OLS' if key == 'ols' else 'LMM (LOCO)'}")
    top = float(-np.log10(0.5 / obs.size))
    ax.plot([0, top], [0, top], "k--", lw=0.8)
    ax.set_xlabel("expected -log10 p")
    ax.set_ylabel("observed -log10 p")
    ax.legend(fontsize=8)
    fig.tight_layout()
    sec.add_figure(fig, "QQ plot, all SNPs and factors (the planted and polygenic signal "
                        "lifts the tail of both)")


def _section_loci(sec, results, cfg, timings):
    comp = _get(results, "comparison")
    cols = [c for c in comp.columns if c.startswith("loci")]
    if not cols:
        raise StageUnavailable("the GWAS stage did not run")
    sec.add_text("Number of merged loci per modality and the loci shared by T1 and T2 (merged "
                 "intervals that overlap), for the contrastive embedding and the baselines.")
    sec.add_table(comp[cols], "Loci found")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    _grouped_bars(ax, comp, cols)
    ax.set_ylabel("loci")
    ax.legend(fontsize=8)
    fig.tight_layout()
    sec.add_figure(fig, "Loci per modality and T1∩T2 overlap")


def _section_truth(sec, results, cfg, timings):
    tr = _get(results, "truth")
    sec.add_text(
        "The simulator plants factors with a known effect on the images: heritable shape "
        "factors seen in both T1 and T2 (shared), heritable factors seen in one modality "
        "only (modality-specific), age, disorder and non-genetic shape variation. For each "
        "factor a ridge regression on all PCs of an embedding (both modalities; penalty by "
        "leave-one-out on the training split) predicts it on the held-out subjects; R² does "
        "not depend on how the embedding is rotated. A cross-modal objective is built to "
        "keep what T1 and T2 share, so the claim concerns the shared rows; modality-specific "
        "factors are reported apart.")
    sec.add_metrics(tr["summary"])
    r2 = tr["r2"]
    sec.add_table(r2, TRUTH_TITLES["r2"])
    plt = _plt()
    kinds = [k for k in EMBEDDINGS if LABELS[k] in r2.columns and k != "oracle"]
    her = r2[r2["group"].isin([SHARED, SPECIFIC])]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(len(kinds), 1)
    for i, kind in enumerate(kinds):
        ax.bar(np.arange(len(her)) + i * width, her[LABELS[kind]].clip(lower=0), width,
               label=LABELS[kind], color=COLORS[kind])
    ax.set_xticks(np.arange(len(her)) + width * (len(kinds) - 1) / 2,
                  [f"{n}\n({g})" for n, g in zip(her.index, her["group"])], fontsize=7)
    ax.set_ylabel("held-out R²")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    sec.add_figure(fig, "Held-out R² of the planted heritable factors (negative R² shown as 0)")
    for key in ("regions", "spurious"):
        if key in tr:
            sec.add_table(tr[key], TRUTH_TITLES[key])


def _section_comparison(sec, results, cfg, timings):
    comp = _get(results, "comparison")
    sec.add_text(
        "The headline comparison on this run. Lower MAE is better; higher is better for the "
        "rest. top1: held-out cross-modal retrieval (contrastive: projection; PCA → CCA: "
        "canonical variates; blank where the two modalities do not share a space). "
        "shared_r2 / specific_r2: mean held-out R² of the shared and of the "
        "modality-specific heritable factors (the _min columns: the worst factor); "
        "shared_regions / specific_regions: their causal regions overlapped by a locus. "
        "Reference rows: PCA on the z-scored voxels, the linear cross-modal model "
        "(PCA(64) → CCA on z-scored voxels) and the oracle (the planted factors "
        "themselves). Written to comparison.tsv beside the report.")
    sec.add_table(comp, "Contrastive vs autoencoder vs the reference rows")


def _section_reproduce(sec, results, cfg, timings):
    default = DemoConfig()
    args = []
    for field in dataclasses.fields(DemoConfig):
        v = getattr(cfg, field.name)
        if v != getattr(default, field.name):
            flag = "--" + field.name.replace("_", "-")
            args.append(f"{flag} {' '.join(map(str, v)) if isinstance(v, tuple) else v}")
    sec.add_text("hcl demo " + " ".join(args) if args else "hcl demo")
    cfg_table = pd.DataFrame({"value": {f.name: str(getattr(cfg, f.name))
                                        for f in dataclasses.fields(DemoConfig)}})
    cfg_table.index.name = "setting"
    sec.add_table(cfg_table, "Configuration")

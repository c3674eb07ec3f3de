"""The end-to-end demo behind ``hcl demo``: simulate, train, embed, test genetically, report.

Stages (each a function of the previous stages' results):

1. **simulate** a paired T1/T2 cohort on the real MNI152 template with real 1000 Genomes
   chr22 genotypes and planted heritable factors (:func:`hcl_sklearn.datasets.make_paired_cohort`);
2. **train** the momentum-contrastive embedder and the autoencoder baseline on a training split;
3. **embed** every subject with the reference protocol: the encoder's output (the contrastive
   encoder's full token grid, the autoencoder's latent) → StandardScaler → PCA per modality
   (:class:`~hcl_sklearn.ModalityPCA`), fitted on the training split. Reference rows, all on
   the same z-scored volumes the networks see: PCA on the voxels, the linear cross-modal
   model (PCA → CCA, :class:`~hcl_sklearn.CrossModalCCA`) and the oracle (the planted
   factors themselves);
4. **heritability** of every dimension (REML on one GRM) and the T1 x T2 **genetic
   correlation** of the contrastive dimensions;
5. **GWAS** of every dimension (:class:`~hcl_sklearn.CrossModalGWAS`): loci and T1∩T2 overlap;
   then **targets**: the gene-based test of each modality's dimensions
   (:class:`~hcl_sklearn.GeneBasedTest`), drug-target enrichment of the T1, T2 and shared
   genes (:class:`~hcl_sklearn.CrossModalTargets`); the shared factors' causal SNPs lie in
   the chr22 target genes of one DrugCentral class, a planted gene → drug-class path;
6. **evaluation**: alignment, age prediction, disorder classification, and per planted
   factor the held-out ridge R² and the causal regions found, shared and modality-specific
   heritable factors apart;
7. the **report**: one self-contained HTML file.

A stage whose module is not installed is shown as "not available" in the report instead of
stopping the run; any other error stops the run.

Examples
--------
Run the demo at its smallest size from Python (the command line equivalent is
``hcl demo --quick``)::

    from hcl_sklearn.app.demo import run_demo
    result = run_demo("hcl_report", quick=True)
    print(result.report_path)
"""

from __future__ import annotations

import dataclasses
import importlib  # noqa: F401  (tests patch importlib.import_module through this module)
import logging
import time
from pathlib import Path

import pandas as pd

# re-exported for callers of this module: the report's constants and the stage helper
from .config import (COLORS, EMBEDDINGS, LABELS, SECTIONS, DemoConfig,  # noqa: F401
                     DemoResult, StageUnavailable)
from .sections import build_report
from .stages import (_STAGES, _need, _stage_comparison, _stage_embed,  # noqa: F401
                     _stage_evaluation, _stage_genetic_correlation, _stage_gwas,
                     _stage_heritability, _stage_relatives, _stage_simulate,
                     _stage_targets, _stage_train, _stage_truth)

logger = logging.getLogger(__name__)

__all__ = ["DemoConfig", "DemoResult", "StageUnavailable", "build_report", "run_demo"]


def run_demo(output_dir="hcl_report", *, quick=False, config=None, verbose=1, **overrides):
    """Run the whole demo and write ``<output_dir>/report.html``.

    Parameters
    ----------
    output_dir : str or Path, default="hcl_report"
    quick : bool, default=False
        Use :meth:`DemoConfig.quick` (a reduced run, about a minute) instead of the defaults.
    config : DemoConfig, optional
        Full control over sizes; ``overrides`` are applied on top.
    verbose : int, default=1
        0: silent; 1: a progress bar over stages and the training progress.
    **overrides
        Any :class:`DemoConfig` field, e.g. ``n_subjects=300``.

    Returns
    -------
    DemoResult
    """
    from tqdm.auto import tqdm

    if config is None:
        config = DemoConfig.quick(**overrides) if quick else DemoConfig(**overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    _check_config(config)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results, timings = {}, {}
    runners = {
        "simulate": lambda: _stage_simulate(config, results),
        "train_contrastive": lambda: _stage_train(config, results, "contrastive", verbose),
        "train_autoencoder": lambda: _stage_train(config, results, "autoencoder", verbose),
        "embed": lambda: _stage_embed(config, results),
        "heritability": lambda: _stage_heritability(config, results, verbose),
        "genetic_correlation": lambda: _stage_genetic_correlation(config, results),
        "gwas": lambda: _stage_gwas(config, results, verbose),
        "targets": lambda: _stage_targets(config, results),
        "relatives": lambda: _stage_relatives(config, results),
        "evaluation": lambda: _stage_evaluation(config, results),
        "truth": lambda: _stage_truth(config, results),
        "comparison": lambda: _stage_comparison(config, results),
    }
    bar = tqdm(_STAGES, desc="hcl demo", unit="stage", disable=verbose <= 0)
    for key, label in bar:
        bar.set_postfix_str(label)
        logger.info("%s ...", label)
        t0 = time.perf_counter()
        try:
            results[key] = runners[key]()
        except StageUnavailable as exc:
            logger.warning("%s: skipped (%s)", label, exc)
            results[key] = exc
        timings[key] = time.perf_counter() - t0
    bar.close()
    report = build_report(results, config, timings)
    path = report.save(output_dir / "report.html")
    _save_tables(results, output_dir)
    logger.info("report written to %s", path)
    return DemoResult(report_path=path, config=config, results=results, timings=timings)


def _check_config(cfg):
    if cfg.n_subjects < 40:
        raise ValueError(f"n_subjects={cfg.n_subjects} is too small for the evaluation "
                         "(nested CV, train/test split); use at least 40.")
    if len(cfg.shape) != 3 or min(cfg.shape) < 8:
        raise ValueError(f"shape must be 3 integers >= 8, got {cfg.shape}.")
    if cfg.max_epochs < 1 or cfg.ae_max_epochs < 1:
        raise ValueError("max_epochs and ae_max_epochs must be >= 1.")


def _save_tables(results, output_dir):
    comp = results.get("comparison")
    if isinstance(comp, pd.DataFrame):
        comp.to_csv(output_dir / "comparison.tsv", sep="\t")

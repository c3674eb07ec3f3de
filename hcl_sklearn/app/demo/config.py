"""The demo's configuration, result type and the names shared by its stages and report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

__all__ = ["DemoConfig", "DemoResult", "StageUnavailable"]


EMBEDDINGS = ("contrastive", "autoencoder", "voxel_pca", "pca_cca", "oracle")


LABELS = {"contrastive": "Contrastive (MoCo)", "autoencoder": "Autoencoder",
          "voxel_pca": "PCA on voxels", "pca_cca": "PCA → CCA (linear cross-modal)",
          "oracle": "Oracle (planted factors)"}


COLORS = {"contrastive": "#1f77b4", "autoencoder": "#ff7f0e", "voxel_pca": "#7f7f7f",
          "pca_cca": "#2ca02c", "oracle": "#000000"}


#: Planted heritable factors by what they touch: both modalities, or one.
SHARED, SPECIFIC = "shared", "modality-specific"


#: Report section ids, in order (the demo test checks every one is present).
SECTIONS = ("overview", "training", "alignment", "age", "disorder", "heritability",
            "genetic-correlation", "gwas", "targets", "relatives", "loci-overlap", "truth",
            "comparison", "reproduce")


class StageUnavailable(RuntimeError):
    """A stage cannot run because a module it needs is not available (or an earlier stage)."""


@dataclasses.dataclass
class DemoConfig:
    """Sizes and settings of one demo run (defaults: the full demo, < 10 min on 2 CPU cores).

    ``DemoConfig.quick()`` returns the reduced configuration used by ``hcl demo --quick``
    and by the test suite.
    """

    n_subjects: int = 1000
    shape: tuple = (24, 28, 24)
    n_causal: int = 5
    h2: float = 0.6
    #: the shared factors' causal SNPs lie in the chr22 target genes of this drug class
    #: (DrugCentral, ``drug_class_system``): the planted gene -> drug-class path
    planted_drug_class: str = "Enzyme Inhibitors"
    drug_class_system: str = "PA"
    realism: str = "basic"
    encoder: str = "cnn"
    cnn_widths: tuple = (8, 16)
    embed_dim: int = 24
    pooling: object = "grid"
    proj_dim: int = 32
    projector_batchnorm: str = "per_modality"
    momentum: float = 0.9
    temperature: float = 0.1
    queue_modalities: str = "both"
    lr: float = 1e-3
    lr_schedule: str = "constant"
    #: linear lr warm-up over the first 2 epochs, at no time cost: in the recipe
    #: benchmark at this scale it raised the shared factors' held-out R² by 0.03-0.05 over
    #: two seeds; in the demo runs, the specific factors' by 0.06-0.08 and the shared
    #: ones' by < 0.01 (docs/embedder.md, docs/results.md)
    warmup_epochs: float = 2
    augment: str = "intensity"
    proj_hidden_dim: object = 256
    max_epochs: int = 80
    ae_latent_dim: int = 64
    ae_base_channels: int = 4
    ae_lr: float = 1e-3
    ae_max_epochs: int = 3
    batch_size: int = 16
    n_components: int = 16
    test_size: float = 0.2
    device: str = "cpu"
    random_state: int = 0
    #: the related-subjects GWAS study (genetic only): subjects, factors, chromosomes
    related_subjects: int = 800
    related_factors: int = 6
    related_chromosomes: int = 8

    @classmethod
    def quick(cls, **overrides):
        """The reduced run: ~100 subjects at 16x20x16, 2 epochs, 4 components per modality."""
        base = dict(n_subjects=120, shape=(16, 20, 16), max_epochs=2,
                    ae_max_epochs=2, batch_size=16, n_components=4,
                    related_subjects=200, related_factors=3, related_chromosomes=8)
        base.update(overrides)
        return cls(**base)


@dataclasses.dataclass
class DemoResult:
    """What :func:`run_demo` returns: the report's path, the config and every stage's output."""

    report_path: Path
    config: DemoConfig
    results: dict
    timings: dict

    def comparison(self):
        """The headline comparison table (contrastive vs autoencoder vs PCA on voxels)."""
        return self.results.get("comparison")


def _get(results, key):
    value = results.get(key)
    if value is None or isinstance(value, StageUnavailable):
        raise StageUnavailable(f"needs the '{key}' stage, which did not run")
    return value


def _bunch_get(bunch, *names, default=None):
    for name in names:
        if isinstance(bunch, dict) and name in bunch:
            return bunch[name]
        if hasattr(bunch, name):
            return getattr(bunch, name)
    return default


#: Titles of the truth stage's tables in the report.
TRUTH_TITLES = {
    "r2": "Held-out ridge R² of each planted factor from each embedding's PCs (fitted on "
          "the training split, scored on the held-out subjects)",
    "regions": "Causal regions (±125 kb) of each heritable factor overlapped by a "
               "genome-wide locus of the embedding",
    "spurious": "Loci outside every causal region",
}


def _h2_table(res):
    return res if isinstance(res, pd.DataFrame) else pd.DataFrame(res)


def _kinds(d):
    return [k for k in EMBEDDINGS if k in d]

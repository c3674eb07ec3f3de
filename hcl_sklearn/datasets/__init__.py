"""Data sets: the vendored real 1000 Genomes chr22 genotypes and the paired-cohort simulator."""

from ._base import get_1000g_chr22, get_ukb_height_sumstats
from .bids import write_cohort
from .cohort import make_paired_cohort
from .genotypes import simulate_related_genotypes

__all__ = ["get_1000g_chr22", "get_ukb_height_sumstats", "make_paired_cohort",
           "simulate_related_genotypes", "write_cohort"]

"""Data sets: the vendored real 1000 Genomes chr22 genotypes and the paired-cohort simulator."""

from ._base import get_1000g_chr22, get_ukb_height_sumstats

__all__ = ["get_1000g_chr22", "get_ukb_height_sumstats"]

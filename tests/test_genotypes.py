"""Genotypes: PLINK reading, sample alignment, imputation/standardization, QC, errors.

Tolerances (docs/testing.md): the toy data have <= 40 subjects, so a float64 mean, sd or
standardized value computed in two orders differs by <= gamma_40 = 4.4e-15 relative
(|z| <= ~6 here); atol 1e-12 leaves a factor ~40. Comparisons without a tolerance use
assert_allclose's default rtol 1e-7, far above that roundoff (measured <= 8.3e-16 under
OPENBLAS_CORETYPE=Haswell and SkylakeX).
"""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from bed_reader import to_bed

from hcl_sklearn.datasets import get_1000g_chr22
from hcl_sklearn.genetics import GenotypeFileError, Genotypes, SampleMismatchError


@pytest.fixture(scope="module")
def g1000():
    return Genotypes.from_plink(get_1000g_chr22())


def _toy(rng, n=40, m=25, missing=0.1):
    p = rng.uniform(0.05, 0.5, size=m)
    G = rng.binomial(2, p, size=(n, m)).astype(float)
    G[:, 3] = 1.0                      # monomorphic
    G[rng.random((n, m)) < missing] = np.nan
    G[:, 7] = np.nan
    G[:30, 7] = 0.0
    G[0, 7] = 1.0                      # 25% missing, MAF 1/60
    iid = [f"s{i:03d}" for i in range(n)]
    return G, iid


@pytest.fixture
def toy_plink(tmp_path):
    rng = np.random.default_rng(0)
    G, iid = _toy(rng)
    m = G.shape[1]
    prefix = tmp_path / "toy"
    to_bed(str(prefix) + ".bed", G, properties={
        "iid": iid, "fid": iid, "sid": [f"rs{j}" for j in range(m)],
        "chromosome": ["1"] * m, "bp_position": np.arange(1, m + 1) * 100,
        "allele_1": ["A"] * m, "allele_2": ["G"] * m})
    return prefix, G, iid


def test_plink_metadata_matches_bim_fam(g1000):
    bim = pd.read_csv(get_1000g_chr22() + ".bim", sep=r"\s+", header=None)
    fam = pd.read_csv(get_1000g_chr22() + ".fam", sep=r"\s+", header=None)
    assert g1000.shape == (len(fam), len(bim))
    assert list(g1000.iid) == fam[1].astype(str).tolist()
    assert list(g1000.snps.columns[:5]) == ["chrom", "pos", "variant_id", "a1", "a2"]
    np.testing.assert_array_equal(g1000.snps["a1"], bim[4].astype(str))
    np.testing.assert_array_equal(g1000.snps["pos"], bim[3])
    np.testing.assert_array_equal(g1000.snps["variant_id"], bim[1])


@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed")
def test_a1_freq_matches_plink2(g1000, tmp_path):
    """Allele frequency of A1 (the counted allele) against plink2 --freq (ALT = A1)."""
    out = tmp_path / "frq"
    subprocess.run(["plink2", "--bfile", get_1000g_chr22(), "--freq", "--out", str(out),
                    "--threads", "1", "--silent"], check=True)
    frq = pd.read_csv(str(out) + ".afreq", sep="\t")
    st = g1000.stats()
    assert (frq["ALT"].to_numpy() == g1000.snps["a1"].to_numpy()).all()
    # plink2 prints ALT_FREQS to 6 significant digits: for a frequency < 1 the rounding is
    # <= 5e-7 (half a unit in the 6th decimal); measured max 4.97e-7; atol 1e-6 = 2x
    np.testing.assert_allclose(st["a1_freq"], frq["ALT_FREQS"], atol=1e-6)
    assert (st["n"] == g1000.n_samples).all()


def test_blocks_cover_all_snps_and_follow_sample_order(g1000):
    samples = list(g1000.iid[[5, 0, 300, 17]])
    full = g1000.read(samples=samples, standardize=False)
    seen = []
    for idx, block in g1000.iter_blocks(block_size=5000, samples=samples, standardize=False):
        assert block.shape == (4, idx.size)
        np.testing.assert_array_equal(block, full[:, idx])
        seen.append(idx)
    np.testing.assert_array_equal(np.concatenate(seen), np.arange(g1000.n_snps))
    # rows really are the requested samples: row 2 is sample position 300
    direct = g1000.read(samples=np.array([300]), snps=np.arange(50))
    np.testing.assert_array_equal(full[2, :50], direct[0])


def test_plink_and_array_agree_with_missing(toy_plink):
    prefix, G, iid = toy_plink
    gp = Genotypes.from_plink(prefix)
    ga = Genotypes.from_array(G, iid)
    samples = iid[::-1][:30]
    for std in (False, True):
        bp = [b for _, b in gp.iter_blocks(7, samples=samples, standardize=std)]
        ba = [b for _, b in ga.iter_blocks(7, samples=samples, standardize=std)]
        for x, y in zip(bp, ba):
            np.testing.assert_allclose(x, y, atol=1e-12)  # roundoff: module docstring


def test_imputation_and_standardization_by_hand(toy_plink):
    prefix, G, iid = toy_plink
    g = Genotypes.from_plink(prefix)
    rows = np.arange(5, 35)
    samples = [iid[i] for i in rows]
    Z = g.read(samples=samples, standardize=True)
    C = g.read(samples=samples, standardize=False)
    sub = G[rows]
    mu = np.nanmean(sub, axis=0)
    imputed = np.where(np.isnan(sub), mu, sub)
    np.testing.assert_allclose(C, imputed)
    sd = imputed.std(axis=0)
    expected = np.where(sd > 0, (imputed - mu) / np.where(sd > 0, sd, 1), 0.0)
    np.testing.assert_allclose(Z, expected, atol=1e-12)  # roundoff: module docstring
    assert np.all(Z[:, 3] == 0)  # monomorphic column -> 0


def test_stats_and_qc_counts(toy_plink):
    prefix, G, iid = toy_plink
    g = Genotypes.from_plink(prefix)
    st = g.stats()
    np.testing.assert_allclose(st["a1_freq"], np.nanmean(G, axis=0) / 2)
    np.testing.assert_allclose(st["missing_rate"], np.isnan(G).mean(axis=0))
    np.testing.assert_array_equal(st["n"], (~np.isnan(G)).sum(axis=0))

    view, report = g.qc(maf=0.05, max_missing=0.2)
    miss = np.isnan(G).mean(axis=0) > 0.2
    obs = [np.unique(c[~np.isnan(c)]) for c in G.T]
    mono = np.array([u.size < 2 for u in obs]) & ~miss
    f = np.nanmean(G, axis=0) / 2
    low = (np.minimum(f, 1 - f) < 0.05) & ~miss & ~mono
    assert report == {"n_snps_in": G.shape[1], "removed_missing": int(miss.sum()),
                      "removed_monomorphic": int(mono.sum()), "removed_maf": int(low.sum()),
                      "n_snps_out": int((~(miss | mono | low)).sum())}
    assert report["removed_missing"] >= 1 and report["removed_monomorphic"] >= 1
    keep = ~(miss | mono | low)
    assert list(view.snps["variant_id"]) == [f"rs{j}" for j in np.flatnonzero(keep)]
    np.testing.assert_allclose(view.read(), g.read(snps=keep))


def test_subset_is_a_view_over_positions(g1000):
    sub = g1000.subset(np.array([10, 2, 5000]))
    assert sub.n_snps == 3
    assert list(sub.snps.variant_id) == list(g1000.snps.variant_id.iloc[[10, 2, 5000]])
    np.testing.assert_array_equal(
        sub.read(standardize=False), g1000.read(standardize=False)[:, [10, 2, 5000]])
    mask = np.zeros(g1000.n_snps, bool)
    mask[[1, 3]] = True
    assert g1000.subset(mask).n_snps == 2


def test_align_mismatch_message(g1000):
    np.testing.assert_array_equal(g1000.align(g1000.iid[[3, 1]]), [3, 1])
    with pytest.raises(SampleMismatchError, match=r"2 of 4 requested.*NOPE1"):
        g1000.align([g1000.iid[0], "NOPE1", g1000.iid[2], "NOPE2"])
    with pytest.raises(ValueError):  # SampleMismatchError is a ValueError
        next(g1000.iter_blocks(samples=["x"]))


def test_from_array_snps_id_column_and_errors():
    G = np.array([[0, 1, 2], [1, 1, 0]], float)
    g = Genotypes.from_array(G, ["a", "b"], snps=pd.DataFrame({"id": ["x", "y", "z"]}))
    assert list(g.snps.variant_id) == ["x", "y", "z"]
    assert isinstance(g.iid, pd.Index) and all(isinstance(i, str) for i in g.iid)
    with pytest.raises(ValueError, match="allele counts"):
        Genotypes.from_array(G * 2, ["a", "b"])
    with pytest.raises(ValueError, match="one id per row"):
        Genotypes.from_array(G, ["a"])
    with pytest.raises(ValueError, match="duplicated"):
        Genotypes.from_array(G, ["a", "a"])
    with pytest.raises(ValueError, match="3 columns"):
        Genotypes.from_array(G, ["a", "b"], snps=pd.DataFrame({"id": ["x"]}))


def test_missing_and_truncated_files(toy_plink, tmp_path):
    prefix, G, iid = toy_plink
    with pytest.raises(GenotypeFileError, match="not found"):
        Genotypes.from_plink(tmp_path / "nothing")
    data = open(str(prefix) + ".bed", "rb").read()
    trunc = tmp_path / "trunc"
    for ext in (".bim", ".fam"):
        shutil.copy(str(prefix) + ext, str(trunc) + ext)
    open(str(trunc) + ".bed", "wb").write(data[:-5])
    with pytest.raises(GenotypeFileError, match="truncated"):
        Genotypes.from_plink(trunc)
    open(str(trunc) + ".bed", "wb").write(b"abc" + data[3:])
    with pytest.raises(GenotypeFileError, match="magic"):
        Genotypes.from_plink(trunc)
    import os
    os.remove(str(trunc) + ".fam")
    with pytest.raises(GenotypeFileError, match=r"trunc\.fam"):
        Genotypes.from_plink(trunc)


@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed")
def test_bgen_reader_matches_plink_source(toy_plink, tmp_path):
    """BGEN exported by plink2 (with missing calls) reads as the same genotypes."""
    pytest.importorskip("cbgen")
    prefix, G, iid = toy_plink
    out = tmp_path / "toy"
    subprocess.run(["plink2", "--bfile", str(prefix), "--export", "bgen-1.2", "bits=8",
                    "--out", str(out), "--threads", "1", "--silent"], check=True)
    gb = Genotypes.from_bgen(str(out) + ".bgen")
    gp = Genotypes.from_plink(prefix)
    assert list(gb.iid) == list(gp.iid)
    pd.testing.assert_frame_equal(gb.snps, gp.snps)
    samples = iid[::3]
    # hard calls are exact in 8-bit BGEN probabilities, so both reads standardize the same
    # integers: roundoff only (module docstring); measured 0
    np.testing.assert_allclose(gb.read(samples=samples, standardize=True),
                               gp.read(samples=samples, standardize=True), atol=1e-12)
    np.testing.assert_allclose(gb.stats()["missing_rate"], np.isnan(G).mean(axis=0))
    with pytest.raises(GenotypeFileError, match="not found"):
        Genotypes.from_bgen(tmp_path / "absent.bgen")


@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed")
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95, -7])
def test_truncated_bgen_is_a_clear_error(toy_plink, tmp_path, keep):
    """A BGEN cut short (an interrupted copy) raises GenotypeFileError naming the file and
    the fix, in this process: cbgen does not validate the file and crashes (SIGSEGV) on
    one, so the package indexes it in a child process and checks its end."""
    pytest.importorskip("cbgen")
    prefix, G, iid = toy_plink
    out = tmp_path / "toy"
    subprocess.run(["plink2", "--bfile", str(prefix), "--export", "bgen-1.2", "bits=8",
                    "--out", str(out), "--threads", "1", "--silent"], check=True)
    data = (tmp_path / "toy.bgen").read_bytes()
    cut = int(len(data) * keep) if keep > 0 else len(data) + keep   # -7: the last 7 bytes
    bad = tmp_path / "cut.bgen"
    bad.write_bytes(data[:cut])
    shutil.copy(tmp_path / "toy.sample", tmp_path / "cut.sample")
    with pytest.raises(GenotypeFileError, match="truncated or corrupt.*copy or export it"):
        Genotypes.from_bgen(bad)
    assert Genotypes.from_bgen(tmp_path / "toy.bgen").n_snps == G.shape[1]   # whole: fine


def test_malformed_fam_and_bim_are_named(toy_plink, tmp_path):
    """.fam/.bim are parsed by pandas; a wrong column count, a non-integer position or
    an empty file raises GenotypeFileError naming the file and what is wrong."""
    prefix, G, iid = toy_plink
    bad = tmp_path / "bad"
    for ext in (".bed", ".bim", ".fam"):
        shutil.copy(str(prefix) + ext, str(bad) + ext)
    ok = Genotypes.from_plink(bad)
    assert list(ok.iid) == list(Genotypes.from_plink(prefix).iid)
    bim = open(str(prefix) + ".bim").read().splitlines()
    open(str(bad) + ".bim", "w").write("\n".join(" ".join(line.split()[:5]) for line in bim))
    with pytest.raises(GenotypeFileError, match=r"bad\.bim has 5 columns"):
        Genotypes.from_plink(bad)
    fields = [line.split() for line in bim]
    fields[0][3] = "12x"
    open(str(bad) + ".bim", "w").write("\n".join("\t".join(f) for f in fields))
    with pytest.raises(GenotypeFileError, match="must be integers"):
        Genotypes.from_plink(bad)
    shutil.copy(str(prefix) + ".bim", str(bad) + ".bim")
    open(str(bad) + ".fam", "w").write("")
    with pytest.raises(GenotypeFileError, match=r"bad\.fam is empty"):
        Genotypes.from_plink(bad)

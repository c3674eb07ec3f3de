"""The summary-statistics writers: vectorised text against Python's own formatting, and
files read back (pandas / pyarrow) against the arrays they were written from."""

import gzip
from decimal import Decimal, localcontext

import numpy as np
import pandas as pd
import pytest

from hcl_sklearn.genetics.gwas import sumstats as S
from hcl_sklearn.genetics.gwas.sumstats import (SSF_COLUMNS, SUMSTATS_COLUMNS, long_frame,
                                                phenotype_filename, write_parquet,
                                                write_sumstats, write_tsv_gz)

# 7 significant digits ('%.6e'): |x - text| <= half a unit of the 7th digit = 5e-7 of the
# mantissa (>= 1), so <= 5e-7 relative; the 1e-9 on top covers the float parse of the text
RTOL = 5e-7 * (1 + 1e-9)

GWAS_SSF = ["chromosome", "base_pair_location", "effect_allele", "other_allele", "beta",
            "standard_error", "p_value", "effect_allele_frequency", "n", "variant_id"]


def _render(slot, value, n):
    """Text of one column rendered alone (values separated by tabs)."""
    offs, width = S._offsets([slot])
    buf = S._Buffers(n, width)
    slot.put(buf, 0, value)
    return bytes(buf.text()).decode().split("\t")[:-1]


def test_float_text_is_pythons_percent_6e():
    """1e5 random floats over 620 decades (subnormals to 1e300, both signs), and edge
    cases (halfway values, carries into the next decade, extremes), against '%.6e' % x.

    No difference is allowed: the vectorised mantissa is within 3 ulp of the exact one
    and the values that close to a halfway point are rounded by Python itself, so the
    text is Python's for every float64 (not only for this seed)."""
    rng = np.random.default_rng(0)
    n = 100_000
    x = (rng.uniform(1, 10, n) * 10.0 ** rng.integers(-320, 300, n)
         * rng.choice([-1.0, 1.0], n))
    edge = [0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, -5e-324, 2.2250738585072014e-308,
            1.7976931348623157e308, 1.0, 10.0, 0.1, 9.9999995, 9.999999499999999,
            9.9999995e-300, 9.9999995e200, 9999999.5, 1234567.5, 1234568.5, 12345665.0,
            12345675.0, 0.5, 2.5e-8, 1e-5, 1e22, 1e23, 123456789012345678.0,
            -3.0000005e-7, 0.30000005, 1.0000005, 1.0000015]
    x[:len(edge)] = edge
    got = _render(S._Float(), S._float_digits(x), n)
    ref = ["NA" if v != v else "%.6e" % v for v in x]
    bad = [(x[i], got[i], ref[i]) for i in range(n) if got[i] != ref[i]]
    assert bad == []


def test_ties_round_half_even_like_python():
    # exactly representable halfway cases: both Python and numpy's rint round to even
    x = np.array([1234567.5, 1234568.5, 12345665.0, 12345675.0, 0.5, 9999999.5])
    assert _render(S._Float(), S._float_digits(x), x.size) == ["%.6e" % v for v in x]


def test_int_text():
    rng = np.random.default_rng(1)
    v = rng.integers(-10 ** 15, 10 ** 15, 10_000)
    v[:6] = [0, 7, -5, 10 ** 15, -(10 ** 15), 9999]
    assert _render(S._Int(S._Int.digits_of(v)), v, v.size) == [str(i) for i in v]


def test_p_value_text_from_log10_p_beyond_float64():
    """p from log10 p: '%.6e' of the float 10**lp down to 1e-300, from the log below;
    against the exactly rounded decimal 10**lp (of the float lp).

    Allowed: a last-digit difference only where the exact value lies within the error
    of the float computation of a halfway point: 10**lp (or 10**(lp - floor(lp))) is
    within ~ln(10) |lp| 1.1e-16 + 2.2e-16 relative of 10**lp, i.e. 2.5e-9 (|lp| + 1)
    units of the 7th digit; none in these 5000 values."""
    rng = np.random.default_rng(2)
    lp = -rng.uniform(0, 3000, 5000)
    lp[:8] = [0.0, -400.0, -1e-12, -299.999, -300.001, -307.5, -323.9, -12345.5]
    text = _render(S._Float(S._exp_digits_of_log10(lp)), S._log10_p_digits(lp), lp.size)
    assert text[:2] == ["1.000000e+00", "1.000000e-400"]
    assert text[7] == "3.162278e-12346"
    bad = []
    with localcontext() as ctx:
        ctx.prec = 60
        for v, got in zip(lp, text):
            exact = Decimal(10) ** Decimal(float(v))
            m, e = format(exact, ".6e").split("e")
            ref = f"{m}e{int(e):+03d}"
            if got != ref:
                scaled = exact.scaleb(6 - exact.adjusted())
                half = abs(scaled - scaled.to_integral_value("ROUND_FLOOR") - Decimal("0.5"))
                assert half < Decimal(2.5e-9 * (abs(v) + 1)), (v, got, ref)
                bad.append(v)
    assert bad == []
    specials = _render(S._Float(), S._log10_p_digits(np.array([np.nan, -np.inf])), 2)
    assert specials == ["NA", "0.000000e+00"]


# --------------------------------------------------------------------------- files
@pytest.fixture(scope="module")
def scan():
    """Compact scan arrays: 2 sample groups, untested SNPs, tiny and missing values."""
    rng = np.random.default_rng(3)
    M, P = 300, 5
    snps = pd.DataFrame({
        "chrom": np.where(np.arange(M) < 200, "1", "X"),
        "pos": np.arange(M) * 1013 + 1,
        "variant_id": [f"rs{i}" if i % 7 else f"{1 + (i >= 200)}:{i}_A_G" for i in range(M)],
        "a1": rng.choice(["A", "C", "AT"], M),
        "a2": rng.choice(["G", "T", "GCC"], M),
    })
    beta = rng.normal(scale=0.1, size=(M, P)) * 10.0 ** rng.integers(-3, 2, (M, P))
    se = np.abs(rng.normal(0.05, 0.01, (M, P)))
    t = beta / se
    log10_p = -np.abs(rng.normal(0, 3, (M, P)))
    log10_p[0, 0] = -400.0                          # below float64: from the log
    log10_p[1, 0] = -1234.56789
    log10_p[2, 1] = -320.0
    t[5, 2] = t[17, 2] = t[5, 4] = np.nan           # untested: rows left out
    freq = rng.uniform(0.01, 0.99, (M, 2))
    freq[3, 1] = np.nan                             # written as NA
    group_of = np.array([0, 0, 1, 1, 0])
    n = np.array([500, 500, 480, 480, 500])
    phenotypes = ["t1_000", "t1_001", "t2 wm/000", "t2_001", "age"]
    return dict(snps=snps, phenotypes=phenotypes, beta=beta, se=se, t=t, log10_p=log10_p,
                freq=freq, group_of=group_of, n=n)


def _args(s):
    return (s["snps"], s["phenotypes"], s["beta"], s["se"], s["t"], s["log10_p"],
            s["freq"], s["group_of"], s["n"])


def _expected(s, j):
    """Phenotype j's rows as the writers must give them (untested SNPs left out)."""
    keep = ~np.isnan(s["t"][:, j])
    snps = s["snps"][keep]
    lp = s["log10_p"][keep, j]
    with np.errstate(under="ignore"):
        p = 10.0 ** lp
    return pd.DataFrame({
        "chromosome": snps["chrom"].to_numpy(), "base_pair_location": snps["pos"].to_numpy(),
        "effect_allele": snps["a1"].to_numpy(), "other_allele": snps["a2"].to_numpy(),
        "beta": s["beta"][keep, j], "standard_error": s["se"][keep, j], "p_value": p,
        "effect_allele_frequency": s["freq"][keep, s["group_of"][j]],
        "n": np.full(keep.sum(), s["n"][j]), "variant_id": snps["variant_id"].to_numpy(),
        "t_stat": s["t"][keep, j], "neg_log10_p": -lp})


def _compare(back, exp, rtol):
    assert list(back.columns[:len(exp.columns)]) == list(exp.columns)
    assert len(back) == len(exp)
    for c in exp.columns:
        b, e = back[c], exp[c]
        if e.dtype.kind == "f":
            if c == "p_value":                      # the float parse underflows < 1e-308
                ok = e.to_numpy() >= 1e-300
                b, e = b[ok], e[ok]
            np.testing.assert_allclose(b.to_numpy(float), e.to_numpy(), rtol=rtol, err_msg=c)
        elif e.dtype.kind in "iu":
            np.testing.assert_array_equal(b.to_numpy(), e.to_numpy(), err_msg=c)
        else:
            assert (b.astype(str).to_numpy() == e.astype(str).to_numpy()).all(), c


def test_ssf_columns_start_with_the_standard():
    assert SSF_COLUMNS[:10] == GWAS_SSF and SSF_COLUMNS[10:] == ["t_stat", "neg_log10_p"]


def test_tsv_per_phenotype_round_trip(scan, tmp_path):
    files = write_sumstats(tmp_path / "ssf", *_args(scan), n_jobs=2)
    names = [phenotype_filename(p, ".tsv.gz") for p in scan["phenotypes"]]
    assert [f.name for f in files] == names and "t2_wm_000.tsv.gz" in names
    for j, f in enumerate(files):
        back = pd.read_csv(f, sep="\t", dtype={"chromosome": str, "variant_id": str})
        assert list(back.columns) == SSF_COLUMNS
        _compare(back, _expected(scan, j), RTOL)
    with gzip.open(files[0], "rt") as fh:
        lines = fh.read().splitlines()
    assert lines[0].split("\t") == SSF_COLUMNS
    # p below float64, written from log10 p (pandas reads it as 0.0)
    assert lines[1].split("\t")[6] == "1.000000e-400"
    assert lines[2].split("\t")[6] == "2.704643e-1235"      # 10**-1234.56789
    assert "NA" == gzip.open(files[2], "rt").read().splitlines()[4].split("\t")[7]
    nb = pd.read_csv(files[2], sep="\t")
    assert nb["effect_allele_frequency"].isna().sum() == 1
    assert len(nb) == 300 - 2 and len(pd.read_csv(files[4], sep="\t")) == 299


def test_tsv_long_file_is_gzip_members_of_all_phenotypes(scan, tmp_path):
    (f,) = write_sumstats(tmp_path / "all.tsv.gz", *_args(scan), per_phenotype=False,
                          n_jobs=3)
    back = pd.read_csv(f, sep="\t", dtype={"chromosome": str, "variant_id": str})
    assert list(back.columns) == SSF_COLUMNS + ["phenotype"]
    assert list(back.phenotype.unique()) == scan["phenotypes"]
    for j, name in enumerate(scan["phenotypes"]):
        part = back[back.phenotype == name].reset_index(drop=True)
        _compare(part, _expected(scan, j), RTOL)
    with gzip.open(f, "rb") as fh:                  # one stream to gzip readers
        assert fh.read().count(b"\n") == 1 + len(back)


def test_text_is_the_same_for_any_number_of_threads(scan, tmp_path):
    one = write_sumstats(tmp_path / "a.tsv.gz", *_args(scan), per_phenotype=False, n_jobs=1)
    many = write_sumstats(tmp_path / "b.tsv.gz", *_args(scan), per_phenotype=False, n_jobs=4)
    assert one[0].read_bytes() == many[0].read_bytes()


def test_parquet_round_trip(scan, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    files = write_sumstats(tmp_path / "pq", *_args(scan), format="parquet", n_jobs=2)
    assert [f.name for f in files] == [phenotype_filename(p, ".parquet")
                                       for p in scan["phenotypes"]]
    for j, f in enumerate(files):
        table = pq.read_table(f)
        assert table.schema.names == SSF_COLUMNS
        assert pa.types.is_dictionary(table.schema.field("chromosome").type)
        back = pd.read_parquet(f)
        _compare(back, _expected(scan, j), rtol=0)    # float64 kept exactly
    (f,) = write_sumstats(tmp_path / "all.parquet", *_args(scan), format="parquet",
                          per_phenotype=False)
    back = pd.read_parquet(f)
    assert list(back.columns) == SSF_COLUMNS + ["phenotype"]
    assert isinstance(back.phenotype.dtype, pd.CategoricalDtype)
    for j, name in enumerate(scan["phenotypes"]):
        part = back[back.phenotype == name].reset_index(drop=True)
        exp = _expected(scan, j)
        _compare(part, exp, rtol=0)
        # float64 p underflows where neg_log10_p does not
        np.testing.assert_array_equal(part.neg_log10_p, exp.neg_log10_p)


def test_inputs_checked_and_edge_cases(scan, tmp_path):
    args = list(_args(scan))
    with pytest.raises(ValueError, match="shape"):
        write_sumstats(tmp_path / "x", args[0], args[1], args[2][:, :2], *args[3:])
    with pytest.raises(ValueError, match="same file name"):
        write_sumstats(tmp_path / "x", args[0], ["a b", "a_b", "c", "d", "e"], *args[2:])
    with pytest.raises(ValueError, match="format"):
        write_sumstats(tmp_path / "x", *args, format="csv")
    # no phenotype: no file, or a long file with the header only
    empty = (args[0], [], *(a[:, :0] for a in args[2:6]), args[6], args[7][:0], args[8][:0])
    assert write_sumstats(tmp_path / "none", *empty) == []
    (f,) = write_sumstats(tmp_path / "none.tsv.gz", *empty, per_phenotype=False)
    assert pd.read_csv(f, sep="\t").columns.tolist() == SSF_COLUMNS + ["phenotype"]
    # a phenotype with no tested SNP: the header only
    t = args[4].copy()
    t[:, 1] = np.nan
    files = write_sumstats(tmp_path / "untested", *args[:4], t, *args[5:])
    assert len(pd.read_csv(files[1], sep="\t")) == 0
    # no SNP at all
    none = (args[0][:0], args[1], *(a[:0] for a in args[2:7]), args[7], args[8])
    files = write_sumstats(tmp_path / "nosnp", *none)
    assert all(len(pd.read_csv(f, sep="\t")) == 0 for f in files)


# --------------------------------------------------------------------------- frames
def _frames(s):
    for j, name in enumerate(s["phenotypes"]):
        yield name, long_frame(s["snps"], name, s["beta"][:, j], s["se"][:, j], s["t"][:, j],
                               s["log10_p"][:, j], s["freq"][:, s["group_of"][j]],
                               s["n"][j])


def test_frame_writers_round_trip(scan, tmp_path):
    frames = list(_frames(scan))
    ss = pd.concat([f for _, f in frames], ignore_index=True)
    assert list(ss.columns) == SUMSTATS_COLUMNS
    (f,) = write_tsv_gz(iter(frames), tmp_path / "all.tsv.gz", n_jobs=2)
    back = pd.read_csv(f, sep="\t", dtype={"chromosome": str, "variant_id": str})
    assert list(back.columns) == SUMSTATS_COLUMNS and len(back) == len(ss)
    for c in ("beta", "standard_error", "t_stat", "neg_log10_p", "effect_allele_frequency"):
        np.testing.assert_allclose(back[c], ss[c], rtol=RTOL, err_msg=c)
    ok = ss.p_value >= 1e-300
    np.testing.assert_allclose(back.p_value[ok], ss.p_value[ok], rtol=RTOL)
    for c in ("phenotype", "chromosome", "variant_id", "effect_allele", "other_allele"):
        assert (back[c] == ss[c]).all(), c
    assert (back.n == ss.n).all() and (back.base_pair_location == ss.base_pair_location).all()
    with gzip.open(f, "rt") as fh:                  # p = 0.0 in the frame: from the log
        rows = fh.read().splitlines()
    assert rows[1].split("\t")[SUMSTATS_COLUMNS.index("p_value")] == "1.000000e-400"
    files = write_tsv_gz(iter(frames), tmp_path / "per", per_phenotype=True)
    assert [p.name for p in files] == [phenotype_filename(n, ".tsv.gz")
                                       for n in scan["phenotypes"]]
    one = pd.read_csv(files[3], sep="\t", dtype={"chromosome": str})
    pd.testing.assert_series_equal(one.beta, frames[3][1].beta, rtol=RTOL)
    pytest.importorskip("pyarrow")
    (f,) = write_parquet(iter(frames), tmp_path / "all.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(f), ss)
    files = write_parquet(iter(frames), tmp_path / "perpq", per_phenotype=True, n_jobs=2)
    pd.testing.assert_frame_equal(pd.read_parquet(files[2]), frames[2][1])


def test_frame_writer_any_dtypes(tmp_path):
    """Object strings with None, categoricals, booleans, NaN and nullable integers."""
    df = pd.DataFrame({
        "name": np.array(["a", None, "ü", "d"], dtype=object),
        "cat": pd.Categorical(["x", "y", "x", "y"]),
        "flag": [True, False, True, False],
        "x": [1.5, np.nan, -np.inf, 0.0],
        "k": pd.array([1, None, -3, 40], dtype="Int64"),
        "m": np.array([-1, 0, 12345678901, 7]),
    })
    (f,) = write_tsv_gz([("p", df)], tmp_path / "d.tsv.gz", n_jobs=1)
    with gzip.open(f, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert lines[0] == "name\tcat\tflag\tx\tk\tm"
    assert lines[1:] == ["a\tx\tTrue\t1.500000e+00\t1\t-1",
                         "NA\ty\tFalse\tNA\tNA\t0",
                         "ü\tx\tTrue\t-inf\t-3\t12345678901",
                         "d\ty\tFalse\t0.000000e+00\t40\t7"]


@pytest.mark.parametrize("per_phenotype", [True, False])
def test_rows_rendered_in_pieces_give_the_same_text(scan, tmp_path, monkeypatch,
                                                    per_phenotype):
    """Large tables are rendered _CHUNK_ROWS rows at a time (one gzip member each);
    the decompressed text does not depend on the piece size."""
    def texts(where, chunk):
        monkeypatch.setattr(S, "_CHUNK_ROWS", chunk)
        files = write_sumstats(where / "a", *_args(scan), per_phenotype=per_phenotype,
                               n_jobs=3)
        files += write_tsv_gz(_frames(scan), where / "b", per_phenotype=per_phenotype)
        return [gzip.decompress(f.read_bytes()) for f in files]

    whole, pieces = texts(tmp_path / "whole", 1 << 16), texts(tmp_path / "pieces", 7)
    assert pieces == whole


def test_parquet_without_phenotypes_or_snps(scan, tmp_path):
    pytest.importorskip("pyarrow")
    args = list(_args(scan))
    empty = (args[0], [], *(a[:, :0] for a in args[2:6]), args[6], args[7][:0], args[8][:0])
    (f,) = write_sumstats(tmp_path / "none.parquet", *empty, format="parquet",
                          per_phenotype=False)
    back = pd.read_parquet(f)
    assert list(back.columns) == SSF_COLUMNS + ["phenotype"] and len(back) == 0
    assert back["beta"].dtype == np.float64 and back["n"].dtype == np.int64
    none = (args[0][:0], args[1], *(a[:0] for a in args[2:7]), args[7], args[8])
    files = write_sumstats(tmp_path / "nosnp", *none, format="parquet")
    assert all(len(pd.read_parquet(f)) == 0 for f in files)
    # a codec for every column
    (f,) = write_sumstats(tmp_path / "z.parquet", *args, format="parquet",
                          per_phenotype=False, compression="zstd")
    assert pd.read_parquet(f).shape[0] == int(np.isfinite(scan["t"]).sum())

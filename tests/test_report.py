"""The HTML report: self-contained, well-formed, figures decodable, numbers formatted."""

import base64
import io
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hcl_sklearn.app.report import HTMLReport, format_number  # noqa: E402

_VOID = {"meta", "img", "br", "hr", "link", "input"}


class _TagChecker(HTMLParser):
    """Checks that every non-void tag is closed in order; collects ids and img srcs."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.ids, self.srcs = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.srcs.append(attrs.get("src", ""))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def _build(tmp_path):
    report = HTMLReport("Test run", subtitle="hcl demo --quick")
    sec = report.add_section("Age prediction")
    sec.add_text("First paragraph <b>escaped</b>.\n\nSecond paragraph.")
    sec.add_metrics({"MAE (years)": 3.14159, "subjects": 12345, "p-value": 3.2e-12})
    sec.add_table(pd.DataFrame({"mae": [3.14159, 4.0], "pvalue": [1.234e-9, 0.5],
                                "n": [100, 2000]}, index=pd.Index(["ridge", "svr"],
                                                                  name="model")))
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(np.arange(5), np.arange(5) ** 2)
    sec.add_figure(fig, "squares")
    other = report.add_section("Genetics")
    other.add_unavailable("the GWAS module is not installed")
    other.add_table(pd.DataFrame({"x": np.arange(80)}), "long table", max_rows=10)
    path = report.save(tmp_path / "sub" / "report.html")
    return path, fig


def test_report_is_one_wellformed_selfcontained_file(tmp_path):
    path, fig = _build(tmp_path)
    text = path.read_text(encoding="utf-8")
    checker = _TagChecker()
    checker.feed(text)
    assert checker.errors == [] and checker.stack == []
    assert {"age-prediction", "genetics"} <= set(checker.ids)
    # nothing is loaded from outside the file
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", text)
    assert "<script" not in text
    # the figure is an embedded PNG that decodes to the size matplotlib rendered
    assert len(checker.srcs) == 1 and checker.srcs[0].startswith("data:image/png;base64,")
    png = base64.b64decode(checker.srcs[0].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(io.BytesIO(png), format="png")
    # a 3 x 2 inch figure: 200 x 300 px at 100 dpi; 50 and 100 px are sanity floors (a real
    # rendering, not an empty or 1-px image) that hold down to 50 dpi even after a tight
    # bounding box trims the margins; not a numeric tolerance
    assert img.shape[0] > 50 and img.shape[1] > 100
    assert not plt.fignum_exists(fig.number)  # closed after embedding


def test_report_text_is_escaped_and_numbers_formatted(tmp_path):
    path, _ = _build(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert "&lt;b&gt;escaped&lt;/b&gt;" in text and "<b>escaped" not in text
    assert ">3.14<" in text and "3.14159" not in text
    assert ">12,345<" in text and ">2,000<" in text
    assert ">1.2e-09<" in text and ">3.2e-12<" in text  # p-value columns and tiles
    assert "Not available: the GWAS module is not installed" in text
    assert "first 10 of 80 rows" in text
    assert text.count("<tr>") == 1 + 2 + 1 + 10  # header + 2 rows, header + 10 rows


@pytest.mark.parametrize("x", [0.123456, 3.14159, 123.456, 0.0123456, 98765.4321, -2.71828,
                               0.5, 1e-5, 4.56e8])
def test_format_number_keeps_three_significant_digits(x):
    out = format_number(x)
    # three significant digits, except that large numbers keep their integer part
    expected = float(f"{x:.3g}") if abs(x) < 1000 or abs(x) >= 1e7 else round(x)
    # both sides are short decimal strings parsed by float(): equal digits give the same
    # double; one wrong digit is >= 1e-4 relative; rel=1e-12 only absorbs float64
    # representation (u = 1.1e-16)
    assert float(out.replace(",", "")) == pytest.approx(expected, rel=1e-12)


def test_format_number_special_values():
    assert format_number(np.int64(1234567)) == "1,234,567"
    assert format_number(float("nan")) == "–"
    assert format_number(None) == "–"
    assert format_number(np.float64(2.0)) == "2"
    assert format_number(5e-300, pvalue=True) == "5.0e-300"
    assert format_number(0.0421, pvalue=True) == "0.0421"
    assert format_number("ridge") == "ridge"


def test_duplicate_section_ids_are_rejected():
    report = HTMLReport("x")
    report.add_section("Results")
    with pytest.raises(ValueError, match="already exists"):
        report.add_section("results")

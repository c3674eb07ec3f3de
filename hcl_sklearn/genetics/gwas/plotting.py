"""Manhattan, Miami and QQ plots of summary statistics (matplotlib; each returns the Figure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

__all__ = ["manhattan", "miami", "qq", "qq_points"]

_COLORS = ("#1f4e79", "#6fa8dc")
#: Axis label of -log10 p in plain Unicode: mathtext would cost ~0.3 s of parsing the
#: first time a figure is drawn (~40% of saving a Miami and a QQ plot in `hcl gwas`).
NLP_LABEL = "−log₁₀ p"


def _chrom_key(c):
    c = str(c)
    return (0, int(c), "") if c.isdigit() else (1, 0, c)


def _genome_x(table):
    """Cumulative x position of each SNP (chromosomes in natural order), tick centres."""
    chrom = table["chromosome"].astype(str).to_numpy()
    pos = table["base_pair_location"].to_numpy(dtype=np.float64)
    x = np.empty(len(pos))
    ticks, labels, parity = [], [], np.zeros(len(pos), dtype=int)
    offset = 0.0
    for k, c in enumerate(sorted(pd.unique(chrom), key=_chrom_key)):
        m = chrom == c
        lo, hi = pos[m].min(), pos[m].max()
        x[m] = offset + pos[m] - lo
        ticks.append(offset + (hi - lo) / 2)
        labels.append(c)
        parity[m] = k % 2
        offset += hi - lo + max(1e6, 0.01 * (hi - lo))
    return x, parity, ticks, labels


def _x_axis(ax, table, ticks, labels):
    """Chromosome ticks; on a single chromosome, positions in Mb instead."""
    if len(labels) == 1:
        lo = float(table["base_pair_location"].min())
        x0, x1 = ax.get_xlim()
        # ticks at round megabases of the real position (x is position - lo)
        mb = MaxNLocator(nbins=8).tick_values((x0 + lo) / 1e6, (x1 + lo) / 1e6)
        mb = mb[(mb * 1e6 - lo >= x0) & (mb * 1e6 - lo <= x1)]
        ax.set_xticks(mb * 1e6 - lo)
        ax.set_xticklabels([f"{v:g}" for v in mb])
        ax.set_xlim(x0, x1)
        ax.set_xlabel(f"chromosome {labels[0]} position (Mb)")
    else:
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels)
        ax.set_xlabel("chromosome")


def _new_ax(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def manhattan(table, threshold=None, ax=None, title=None, sign=1.0):
    """Manhattan plot.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``chromosome, base_pair_location`` and ``neg_log10_p`` (or ``p_value``).
    threshold : float, optional
        p-value of the significance line.
    ax : matplotlib Axes, optional
    title : str, optional
    sign : {1, -1}
        -1 draws downwards (used by :func:`miami`).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"chromosome": ["1", "1", "2"], "base_pair_location": [1, 5, 3],
    ...                   "p_value": [0.5, 1e-9, 0.01]})
    >>> fig = manhattan(t, threshold=5e-8)
    >>> len(fig.axes)
    1
    """
    fig, ax = _new_ax(ax, (10, 3.5))
    nlp = (table["neg_log10_p"].to_numpy(dtype=np.float64) if "neg_log10_p" in table
           else -np.log10(table["p_value"].to_numpy(dtype=np.float64)))
    ok = np.isfinite(nlp)
    x, parity, ticks, labels = _genome_x(table)
    for k in (0, 1):
        m = ok & (parity == k)
        ax.scatter(x[m], sign * nlp[m], s=4, c=_COLORS[k], linewidths=0, rasterized=True)
    if threshold is not None:
        ax.axhline(sign * -np.log10(threshold), color="#c00000", lw=0.8, ls="--")
    _x_axis(ax, table, ticks, labels)
    ax.set_ylabel(NLP_LABEL)
    if title:
        ax.set_title(title)
    return fig


def miami(top, bottom, labels=("t1", "t2"), thresholds=(None, None), ax=None):
    """Miami plot: ``top`` table upwards, ``bottom`` table downwards, shared x axis.

    Parameters
    ----------
    top, bottom : pandas.DataFrame
        As for :func:`manhattan`.
    labels : tuple of str
    thresholds : tuple of float or None

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _new_ax(ax, (10, 5))
    both = pd.concat([top.assign(_side=0), bottom.assign(_side=1)], ignore_index=True)
    x, parity, ticks, tick_labels = _genome_x(both)
    nlp = (both["neg_log10_p"].to_numpy(dtype=np.float64) if "neg_log10_p" in both
           else -np.log10(both["p_value"].to_numpy(dtype=np.float64)))
    side = both["_side"].to_numpy()
    for s, sign in ((0, 1.0), (1, -1.0)):
        for k in (0, 1):
            m = np.isfinite(nlp) & (side == s) & (parity == k)
            ax.scatter(x[m], sign * nlp[m], s=4, c=_COLORS[k], linewidths=0,
                       rasterized=True)
        if thresholds[s] is not None:
            ax.axhline(sign * -np.log10(thresholds[s]), color="#c00000", lw=0.8, ls="--")
    ax.axhline(0, color="black", lw=0.5)
    _x_axis(ax, both, ticks, tick_labels)
    ax.set_ylabel(f"{NLP_LABEL}   ({labels[0]} up, {labels[1]} down)")
    yt = ax.get_yticks()
    ax.set_yticks(yt)
    ax.set_yticklabels([f"{abs(v):g}" for v in yt])
    return fig


#: Cells per axis of the grid on which the QQ plot keeps one marker per occupied cell
#: (a 4.5 in figure at 100 dpi has 450 pixels per axis).
_QQ_GRID = 2000
#: The largest ``-log10 p`` values placed exactly (the tail, where hits stand out); the
#: bulk below them is placed from a histogram, to within one grid cell.
_QQ_EXACT = 4 * _QQ_GRID


def _thin(exp, obs, lim, top, grid):
    """Of consecutive points (both coordinates falling) in one cell of a ``grid``² grid,
    keep the first."""
    ce = np.floor(exp * (grid / max(lim, 1e-300)))
    co = np.floor(obs * (grid / max(top, 1e-300)))
    keep = np.ones(exp.size, dtype=bool)
    keep[1:] = (np.diff(ce) != 0) | (np.diff(co) != 0)
    return exp[keep], obs[keep]


def qq_points(neg_log10_p, grid=_QQ_GRID, exact=_QQ_EXACT):
    """Markers of a QQ plot: ``(expected, observed)`` ``-log10 p``, descending.

    The ``exact`` largest values are placed exactly. Below them, the observed quantile
    at a rank is read off a histogram of ``grid`` bins, exact to one bin (1/grid of the
    axis, a quarter pixel at the default size), in O(n) time and memory: a biobank scan's
    10⁹ p-values need no sort. Of consecutive markers in one cell of a ``grid``² grid the
    first is kept, so at most ~2 · grid + exact markers are drawn.

    Examples
    --------
    >>> import numpy as np
    >>> nlp = -np.log10(np.random.default_rng(0).uniform(size=10**6))
    >>> exp, obs = qq_points(nlp)
    >>> exp.size < 10**4, bool(obs[0] == nlp.max()), round(float(exp[0]), 3)
    (True, True, 6.301)
    """
    obs = np.asarray(neg_log10_p, dtype=np.float64).ravel()
    obs = obs[np.isfinite(obs)]
    n = obs.size
    if n == 0:
        return np.empty(0), np.empty(0)
    lim = -np.log10(0.5 / n)                         # the largest expected value
    if n <= exact:
        obs = np.sort(obs)[::-1]
        exp = -np.log10((np.arange(1, n + 1) - 0.5) / n)
        return _thin(exp, obs, lim, obs[0], grid) if n > grid else (exp, obs)
    cut = n - exact
    part = np.partition(obs, cut)
    head = np.sort(part[cut:])[::-1]                 # ranks 1..exact, exact values
    top = max(head[0], 0.0)
    width = max(top, 1e-300) / grid
    rest = part[:cut]                                # ranks exact+1..n, all <= head[-1]
    b = np.clip(np.floor(rest / width), 0, grid - 1).astype(np.intp)
    counts = np.bincount(b, minlength=grid)[::-1]    # bins from the top down
    upper = top - width * np.arange(grid)            # each bin's upper edge
    first = exact + np.concatenate([[0], np.cumsum(counts)[:-1]])   # rank before the bin
    # ranks to place: the first of each non-empty bin, and the first of each cell of the
    # expected axis (exp(r) = -log10((r - 0.5) / n) falls below k * lim / grid after
    # r = n 10^(-k lim / grid) + 0.5)
    k = np.arange(grid + 1)
    r_exp = np.floor(n * 10.0 ** (-k * lim / grid) + 0.5).astype(np.int64) + 1
    ranks = np.unique(np.concatenate([first[counts > 0] + 1, r_exp]))
    ranks = ranks[(ranks > exact) & (ranks <= n)]
    # observed value at a rank: linear in rank within its bin
    j = np.searchsorted(first, ranks, side="left") - 1
    o = upper[j] - width * (ranks - first[j] - 0.5) / np.maximum(counts[j], 1)
    exp = -np.log10((np.concatenate([np.arange(1, exact + 1), ranks]) - 0.5) / n)
    return _thin(exp, np.concatenate([head, np.minimum(o, head[-1])]), lim, top, grid)


def qq(neg_log10_p, lambda_gc=None, ax=None, title=None):
    """QQ plot of observed vs expected ``-log10 p`` under the uniform null.

    Parameters
    ----------
    neg_log10_p : array-like
    lambda_gc : float, optional
        Shown in the legend.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = qq(-np.log10(np.random.default_rng(0).uniform(size=500)), lambda_gc=1.0)
    >>> fig.axes[0].get_legend().get_texts()[0].get_text()
    'λGC = 1.000'
    """
    fig, ax = _new_ax(ax, (4.5, 4.5))
    exp, obs = qq_points(neg_log10_p)
    lim = exp.max() if exp.size else 1.0
    label = f"λGC = {lambda_gc:.3f}" if lambda_gc is not None else None
    ax.scatter(exp, obs, s=5, c=_COLORS[0], linewidths=0, label=label, rasterized=True)
    ax.plot([0, lim], [0, lim], color="#c00000", lw=0.8)
    ax.set_xlabel(f"expected {NLP_LABEL}")
    ax.set_ylabel(f"observed {NLP_LABEL}")
    if label:
        ax.legend(loc="upper left", frameon=False)
    if title:
        ax.set_title(title)
    return fig

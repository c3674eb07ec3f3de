"""T1- and T2-weighted contrast from tissue maps, with per-modality acquisition nuisance.

Both images of a subject are rendered from the *same* warped tissue fractions (grey matter,
white matter, cerebrospinal fluid), as MRI simulators such as BrainWeb do:

* T1-weighted: WM > GM > CSF (relative intensities 1.0, 0.62, 0.30);
* T2-weighted: CSF > GM > WM (1.0, 0.62, 0.42).

Modality-specific biology: a T1-only factor scales white-matter T1 brightness along a smooth
front-to-back gradient (a myelination-like signal), and a T2-only factor sets a
periventricular white-matter hyperintensity load (log-normal, as lesion loads are), seen in
T2 only. Each image then gets its own nuisance, which a good representation should ignore:
a global intensity scale (log-normal), a smooth multiplicative bias field (exponential of a
random quadratic polynomial) and Rician noise inside the brain. The background (outside the
warped brain mask) is exactly 0, as in skull-stripped inputs.
"""

from __future__ import annotations

import functools

import numpy as np

from .anatomy import voxel_centres

T1_INTENSITY = {"csf": 0.30, "gm": 0.62, "wm": 1.00}
T2_INTENSITY = {"csf": 1.00, "gm": 0.62, "wm": 0.42}
MYELIN_GAIN = 0.06  # relative WM T1 change per unit of the T1-only factor (at the pattern's peak)
WMH_BASE = 0.15  # T2 WM hyperintensity at the pattern's peak for a factor value of 0
WMH_LOG_GAIN = 0.6  # log-load change per unit of the T2-only factor
WMH_MAX = 0.6

__all__ = ["T1_INTENSITY", "T2_INTENSITY", "render_pair"]


@functools.lru_cache(maxsize=8)
def _bias_axes(shape):
    """Normalised coordinates in [-1, 1] along each axis, shaped for broadcasting."""
    out = []
    for a, c in enumerate(voxel_centres(shape)):
        x = (c - c.mean()) / (c.max() - c.mean())
        sh = [1, 1, 1]
        sh[a] = -1
        out.append(x.reshape(sh).astype(np.float32))
    return tuple(out)


def bias_field(shape, rng, strength):
    """Smooth multiplicative field ``exp(p(x, y, z))`` with ``p`` a random quadratic.

    The nine non-constant monomials of degree <= 2 get coefficients ~ N(0, strength / 3),
    so the log field's SD over the image is about ``strength``.
    """
    x, y, z = _bias_axes(tuple(shape))
    c = rng.normal(0.0, strength / 3.0, size=9).astype(np.float32)
    log_field = (c[0] * x + c[1] * y + c[2] * z + c[3] * (x * x - 0.33) + c[4] * (y * y - 0.33)
                 + c[5] * (z * z - 0.33) + c[6] * x * y + c[7] * x * z + c[8] * y * z)
    return np.exp(log_field)


def render_pair(tissues, brain, rng, *, t1_factor=0.0, t2_factor=0.0, patterns,
                noise_level=0.03, bias_strength=0.1, scale_sd=0.2, t2_tissues=None,
                t2_brain=None, intensity_gain=None):
    """Render one subject's T1 and T2 images.

    Parameters
    ----------
    tissues : dict of ndarrays (D, H, W)
        Warped tissue fractions ``gm``, ``wm``, ``csf`` (summing to 1 in the brain).
    brain : ndarray of bool (D, H, W)
        Warped brain mask; everything outside is set to exactly 0.
    rng : numpy.random.Generator
        Source of the nuisance (scale, bias field, noise).
    t1_factor, t2_factor : float
        Values of the T1-only (myelination) and T2-only (WM hyperintensity) factors.
    patterns : dict of ndarrays
        ``myelin`` and ``wmh`` spatial patterns (:func:`anatomy.spatial_patterns`).
    noise_level : float or (float, float)
        Rician noise SD relative to the brightest tissue's intensity (one value, or T1's and
        T2's).
    bias_strength : float
        SD of the log bias field.
    scale_sd : float
        SD of the log global intensity scale.
    t2_tissues, t2_brain : dict of ndarrays and ndarray of bool, optional
        The T2 image's own tissue fractions and brain mask (a misregistered T2, a brain
        extraction of its own); default: ``tissues`` and ``brain``.
    intensity_gain : dict, optional
        ``{'t1': {'csf': g, 'gm': g, 'wm': g}, 't2': {...}}``: multiplicative changes of the
        tissue intensities (scanner / site contrast differences); default: none.

    Returns
    -------
    t1, t2 : float32 ndarrays (D, H, W), zero outside ``brain``, positive inside.
    """
    t2_tissues = tissues if t2_tissues is None else t2_tissues
    t2_brain = brain if t2_brain is None else t2_brain
    gain = intensity_gain or {}
    g1 = {k: T1_INTENSITY[k] * gain.get("t1", {}).get(k, 1.0) for k in T1_INTENSITY}
    g2 = {k: T2_INTENSITY[k] * gain.get("t2", {}).get(k, 1.0) for k in T2_INTENSITY}
    gm, wm, csf = tissues["gm"], tissues["wm"], tissues["csf"]
    myelin = 1.0 + MYELIN_GAIN * t1_factor * patterns["myelin"]
    t1 = g1["csf"] * csf + g1["gm"] * gm + g1["wm"] * myelin * wm
    load = min(WMH_BASE * float(np.exp(WMH_LOG_GAIN * t2_factor)), WMH_MAX)
    gm, wm, csf = t2_tissues["gm"], t2_tissues["wm"], t2_tissues["csf"]
    t2 = g2["csf"] * csf + g2["gm"] * gm + (g2["wm"] + load * patterns["wmh"]) * wm
    levels = np.broadcast_to(np.asarray(noise_level, dtype=float), (2,))
    out = []
    for img, mask, level in ((t1, brain, levels[0]), (t2, t2_brain, levels[1])):
        scale = 1000.0 * float(np.exp(rng.normal(0.0, scale_sd)))
        img = img * (scale * bias_field(mask.shape, rng, bias_strength))
        sigma = level * scale
        vals = img[mask]
        n_in = int(mask.sum())
        n1 = rng.normal(0.0, sigma, n_in).astype(np.float32)
        n2 = rng.normal(0.0, sigma, n_in).astype(np.float32)
        res = np.zeros(mask.shape, dtype=np.float32)
        # Rician magnitude; > 0 almost surely, floor keeps the brain mask = image != 0
        res[mask] = np.maximum(np.sqrt((vals + n1) ** 2 + n2 ** 2), 1e-3 * scale)
        out.append(res)
    return out[0], out[1]

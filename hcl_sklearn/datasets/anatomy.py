"""Real anatomy for the simulator: the MNI152 template's tissue maps and smooth deformations.

The tissue maps are nilearn's MNI152 2009a grey- and white-matter probability maps and its
brain mask (shipped with nilearn, no download); cerebrospinal fluid is the rest of the mask,
``CSF = clip(mask - GM - WM, 0, 1)``. They are placed on the FSL MNI152 1 mm field of view
(182 x 218 x 182 mm, origin (-90, -126, -72) mm, the grid of the reference inputs) and
resampled to the requested ``shape`` with an anti-aliasing Gaussian, so one ``shape`` always
covers the same physical field of view (voxel size = 182/D x 218/H x 182/W mm).

Subject anatomy = template tissue maps warped by a smooth displacement field ``u(x)`` (mm):
the subject's tissue at ``x`` is the template's at ``x + u(x)``. ``u`` is a linear combination
of fixed basis fields (one per latent factor) defined on a coarse 6 mm control grid in
physical space and upsampled multilinearly. Because multilinear interpolation cannot create
a steeper gradient than the control grid's forward differences, the bound
:func:`gradient_bound` holds everywhere; a subject whose bound reaches 0.9 is scaled down to
0.9, so ``I + grad u`` has spectral norm distance < 1 from the identity and the Jacobian
determinant is positive everywhere (the map is invertible).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

# FSL MNI152 1 mm grid (182 x 218 x 182) in mm, RAS; the reference inputs live on it.
FOV_MM = np.array([182.0, 218.0, 182.0])
ORIGIN_MM = np.array([-90.0, -126.0, -72.0])  # centre of voxel (0, 0, 0) at 1 mm
CONTROL_SPACING_MM = 6.0
_BASIS_SEED = 20260521  # the "biology" (where factors act) is fixed, not drawn per cohort
MAX_GRADIENT = 0.9

__all__ = [
    "FOV_MM",
    "affine_for_shape",
    "gradient_bound",
    "template_tissues",
    "voxel_size",
]


def voxel_size(shape):
    """Voxel size in mm of a grid of ``shape`` covering the MNI152 field of view."""
    return FOV_MM / np.asarray(shape, dtype=float)


def voxel_centres(shape):
    """Physical coordinates (mm) of the voxel centres along each axis, as 3 1-D arrays."""
    vs = voxel_size(shape)
    # voxel edges span [origin - 0.5, origin - 0.5 + FOV] on every grid
    return [ORIGIN_MM[a] - 0.5 + (np.arange(s) + 0.5) * vs[a] for a, s in enumerate(shape)]


def affine_for_shape(shape):
    """RAS affine (4 x 4) of a ``shape`` grid covering the MNI152 field of view.

    Examples
    --------
    >>> from hcl_sklearn.datasets.anatomy import affine_for_shape
    >>> affine_for_shape((182, 218, 182))[:3, 3].tolist()
    [-90.0, -126.0, -72.0]
    """
    vs = voxel_size(shape)
    aff = np.eye(4)
    aff[:3, :3] = np.diag(vs)
    aff[:3, 3] = ORIGIN_MM - 0.5 + 0.5 * vs
    return aff


def _check_shape(shape):
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of 3 ints (D, H, W); got {shape!r}.") from None
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(
            f"shape must be 3 ints >= 8 (D, H, W), e.g. (32, 40, 32) or the 1 mm grid "
            f"(182, 218, 182); got {shape}."
        )
    return shape


@functools.lru_cache(maxsize=1)
def _template_1mm():
    """GM, WM, brain-mask maps of MNI152 2009a cut to the FSL 182 x 218 x 182 grid."""
    from nilearn import datasets

    out = {}
    for name, loader in (("gm", datasets.load_mni152_gm_template),
                         ("wm", datasets.load_mni152_wm_template),
                         ("mask", datasets.load_mni152_brain_mask)):
        img = loader(resolution=1)
        data = np.asarray(img.get_fdata(), dtype=np.float32)
        # nilearn's grid starts at (-98, -134, -72) mm with 1 mm voxels: integer offset
        start = np.round(ORIGIN_MM - img.affine[:3, 3]).astype(int)
        sl = tuple(slice(b, b + int(n)) for b, n in zip(start, FOV_MM))
        out[name] = data[sl]
    return out


@functools.lru_cache(maxsize=8)
def template_tissues(shape):
    """Template tissue maps resampled to ``shape``.

    Parameters
    ----------
    shape : tuple of 3 int

    Returns
    -------
    maps : dict of read-only float32 ndarrays of ``shape``
        ``gm``, ``wm``, ``csf`` tissue probabilities (summing to 1 inside the brain)
        and ``mask`` (brain probability in [0, 1]).

    Examples
    --------
    >>> from hcl_sklearn.datasets.anatomy import template_tissues
    >>> maps = template_tissues((32, 40, 32))
    >>> sorted(maps), maps["gm"].shape
    (['csf', 'gm', 'mask', 'wm'], (32, 40, 32))
    """
    shape = _check_shape(shape)
    src = _template_1mm()
    vs = voxel_size(shape)
    # target voxel centres in 1 mm voxel indices; a triangle kernel of half-width one
    # target voxel (linear interpolation when upsampling) averages out what a coarse grid
    # cannot hold, applied separably as three matrix products
    mats = [_kernel_matrix(int(FOV_MM[a]), c - ORIGIN_MM[a], max(1.0, vs[a]))
            for a, c in enumerate(voxel_centres(shape))]
    out = {}
    for name in ("gm", "wm", "mask"):
        res = src[name]
        for axis, mat in enumerate(mats if shape != tuple(int(f) for f in FOV_MM) else []):
            res = np.moveaxis(np.tensordot(mat, res, axes=([1], [axis])), 0, axis)
        out[name] = np.clip(res, 0.0, 1.0).astype(np.float32)
    out["csf"] = np.clip(out["mask"] - out["gm"] - out["wm"], 0.0, 1.0)
    for v in out.values():
        v.setflags(write=False)
    return out


def _kernel_matrix(n_src, x, half_width):
    """(len(x), n_src) float32 matrix of normalised triangle weights centred at ``x``."""
    j = np.arange(n_src)
    w = np.clip(1.0 - np.abs(j[None, :] - np.asarray(x, float)[:, None]) / half_width, 0, None)
    return (w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _interp_matrix(n_src, x):
    """Dense (len(x), n_src) matrix of linear interpolation at fractional indices ``x``."""
    x = np.clip(np.asarray(x, dtype=float), 0, n_src - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n_src - 1)
    w = x - lo
    mat = np.zeros((len(x), n_src))
    rows = np.arange(len(x))
    np.add.at(mat, (rows, lo), 1 - w)
    np.add.at(mat, (rows, hi), w)
    return mat


# --------------------------------------------------------------------------- control grid
def control_shape():
    return tuple(int(np.ceil(f / CONTROL_SPACING_MM)) + 1 for f in FOV_MM)


def control_coords():
    """Physical coordinates of the control points (3 1-D arrays, mm)."""
    return [ORIGIN_MM[a] - 0.5 + np.arange(n) * CONTROL_SPACING_MM
            for a, n in enumerate(control_shape())]


@functools.lru_cache(maxsize=8)
def upsampling_matrices(shape):
    """Per-axis (n_target, n_control) multilinear interpolation matrices (float32)."""
    shape = _check_shape(shape)
    mats = []
    for a, c in enumerate(voxel_centres(shape)):
        frac = (c - (ORIGIN_MM[a] - 0.5)) / CONTROL_SPACING_MM
        mats.append(_interp_matrix(control_shape()[a], frac).astype(np.float32))
    return tuple(mats)


def upsample_fields(fields, shape):
    """Upsample control-grid fields ``(..., cx, cy, cz)`` to ``(..., D, H, W)`` (multilinear)."""
    mx, my, mz = upsampling_matrices(shape)
    out = np.tensordot(fields, mz, axes=([-1], [1]))           # (..., cx, cy, W)
    out = np.tensordot(out, my, axes=([-2], [1]))               # (..., cx, W, H)
    out = np.tensordot(out, mx, axes=([-3], [1]))               # (..., W, H, D)
    return np.ascontiguousarray(np.swapaxes(out, -1, -3))       # (..., D, H, W)


def gradient_bound(fields):
    """Upper bound of the Frobenius norm of ``grad u`` of multilinearly interpolated fields.

    Inside one control-grid cell, ``d u_c / d x_a`` of the multilinear interpolant is a convex
    combination of the forward differences of ``u_c`` along ``a`` on the cell's four edges
    parallel to ``a``, so it is bounded by their largest magnitude; the bound is the largest
    over cells of ``sqrt(sum_{c,a} edge_max^2) / spacing``.

    Parameters
    ----------
    fields : ndarray of shape (..., 3, cx, cy, cz)
        Displacements (mm) on the control grid.

    Returns
    -------
    bound : ndarray of shape (...)
    """
    fields = np.asarray(fields, dtype=np.float32)
    total = 0.0
    for axis in (-3, -2, -1):
        d = np.abs(np.diff(fields, axis=axis))
        for other in (-3, -2, -1):
            if other != axis:  # max over the two edges of the cell along ``other``
                lo = [slice(None)] * d.ndim
                hi = [slice(None)] * d.ndim
                lo[other], hi[other] = slice(0, -1), slice(1, None)
                d = np.maximum(d[tuple(lo)], d[tuple(hi)])
        total = total + (d ** 2).sum(axis=-4)  # sum over components
    return np.sqrt(total.max(axis=(-3, -2, -1))) / CONTROL_SPACING_MM


# --------------------------------------------------------------------------- basis fields
def _control_mesh():
    cx, cy, cz = control_coords()
    return np.stack(np.meshgrid(cx, cy, cz, indexing="ij"))  # (3, cx, cy, cz)


def radial_field(centre, sigma, strength):
    """Regional expansion (``strength > 0``) or shrinkage (< 0) around ``centre`` (mm).

    ``u(x) = -strength (x - c) exp(-|x - c|^2 / (2 sigma^2))``: sampling the template
    nearer to ``c`` enlarges what lies at ``c`` by a linear factor ~ ``1 + strength``.
    """
    mesh = _control_mesh()
    d = mesh - np.asarray(centre, dtype=float)[:, None, None, None]
    g = np.exp(-(d ** 2).sum(0) / (2.0 * sigma ** 2))
    return (-strength * d * g).astype(np.float32)


def random_smooth_field(rng, sigma_mm, rms_mm):
    """Gaussian-smoothed white-noise displacement field with the given RMS (mm)."""
    sig = sigma_mm / CONTROL_SPACING_MM
    f = rng.standard_normal((3, *control_shape()))
    f = np.stack([ndimage.gaussian_filter(c, sig, mode="nearest") for c in f])
    f *= rms_mm / np.sqrt((f ** 2).sum(0).mean())
    return f.astype(np.float32)


@functools.lru_cache(maxsize=1)
def landmarks():
    """MNI coordinates (mm) used by the factor fields: lateral ventricles, hippocampi."""
    maps = template_tissues((91, 109, 91))
    csf = maps["csf"] > 0.5
    cx, cy, cz = np.meshgrid(*voxel_centres((91, 109, 91)), indexing="ij")
    central = csf & (np.abs(cx) < 25) & (cy > -45) & (cy < 25) & (cz > 0) & (cz < 35)
    vents = []
    for side in (-1, 1):
        sel = central & (side * cx > 2)
        vents.append([float(cx[sel].mean()), float(cy[sel].mean()), float(cz[sel].mean())])
    return {"ventricles": vents, "hippocampi": [[-26.0, -22.0, -14.0], [26.0, -22.0, -14.0]]}


def _brain_points(rng, n):
    """``n`` random points inside the brain's grey/white matter (mm), well apart."""
    maps = template_tissues((46, 55, 46))
    sel = np.argwhere((maps["gm"] + maps["wm"]) > 0.8)
    centres = voxel_centres((46, 55, 46))
    pts = []
    while len(pts) < n:
        i, j, k = sel[rng.integers(len(sel))]
        p = np.array([centres[0][i], centres[1][j], centres[2][k]])
        if all(np.linalg.norm(p - q) > 35 for q in pts) or len(pts) > 50:
            pts.append(p)
    return pts


@functools.lru_cache(maxsize=16)
def factor_basis(kinds):
    """Displacement basis field of each deformation factor on the control grid.

    Parameters
    ----------
    kinds : tuple of str
        Kind of each deformation factor, in order: ``'heritable'`` (a regional volume change
        at a fixed brain location plus a smooth whole-brain shape change), ``'age'``
        (ventricle enlargement), ``'disorder'`` (hippocampal shrinkage with mild ventricle
        enlargement) or ``'noise'`` (a smooth non-genetic shape change).

    Returns
    -------
    basis : read-only float32 ndarray of shape (n_factors, 3, cx, cy, cz)
        Displacement in mm per unit of the factor.
    """
    rng = np.random.default_rng(_BASIS_SEED)
    lm = landmarks()
    n_her = sum(k == "heritable" for k in kinds)
    centres = iter(_brain_points(rng, max(n_her, 1)))
    out = []
    for i, kind in enumerate(kinds):
        frng = np.random.default_rng([_BASIS_SEED, i])
        if kind == "heritable":
            sign = 1.0 if i % 2 == 0 else -1.0
            f = radial_field(next(centres), 11.0, 0.07 * sign)
            f += random_smooth_field(frng, 18.0, 0.5)
        elif kind == "age":
            f = sum(radial_field(c, 13.0, 0.09) for c in lm["ventricles"])
        elif kind == "disorder":
            f = sum(radial_field(c, 9.0, -0.12) for c in lm["hippocampi"])
            f += sum(radial_field(c, 13.0, 0.08) for c in lm["ventricles"])
        elif kind == "noise":
            f = random_smooth_field(frng, 20.0, 0.7)
        else:
            raise ValueError(f"unknown deformation factor kind {kind!r}; use 'heritable', "
                             "'age', 'disorder' or 'noise'.")
        out.append(np.asarray(f, dtype=np.float32))
    basis = np.stack(out) if out else np.zeros((0, 3, *control_shape()), np.float32)
    basis.setflags(write=False)
    return basis


@functools.lru_cache(maxsize=8)
def spatial_patterns(shape):
    """Fixed smooth patterns (values in [0, 1]) on ``shape`` used by the contrast signals.

    ``wmh``: periventricular white matter (where T2 hyperintensities appear);
    ``myelin``: a smooth frontal-to-occipital gradient of T1 white-matter brightness;
    ``cortex``: weight of cortical (outer) grey matter for age-related thinning.
    """
    shape = _check_shape(shape)
    x, y, z = np.meshgrid(*voxel_centres(shape), indexing="ij")
    lm = landmarks()
    d2 = np.min([(x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2
                 for c in lm["ventricles"]], axis=0)
    wmh = np.exp(-d2 / (2 * 16.0 ** 2))
    myelin = 0.5 + 0.5 * np.tanh((y + 20.0) / 40.0)
    r = np.sqrt((x / 70.0) ** 2 + ((y + 18.0) / 90.0) ** 2 + ((z - 10.0) / 70.0) ** 2)
    cortex = np.clip((r - 0.45) / 0.4, 0.0, 1.0)
    out = {"wmh": wmh, "myelin": myelin, "cortex": cortex}
    for k in out:
        out[k] = out[k].astype(np.float32)
        out[k].setflags(write=False)
    return out


def warp_maps(maps, displacement):
    """Warp maps by a displacement field (mm), trilinearly: ``out(x) = map(x + u(x))``.

    Points sampled outside the grid read 0 (the background).

    Parameters
    ----------
    maps : sequence of ndarrays of shape (D, H, W)
    displacement : ndarray of shape (3, D, H, W), mm

    Returns
    -------
    list of float32 ndarrays of shape (D, H, W)
    """
    shape = displacement.shape[1:]
    vs = voxel_size(shape).astype(np.float32)
    coords = np.indices(shape, dtype=np.float32)
    coords += displacement / vs[:, None, None, None]
    return [ndimage.map_coordinates(m, coords, order=1, mode="constant", cval=0.0,
                                    prefilter=False) for m in maps]

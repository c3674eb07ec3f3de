"""The 3-D Vision Transformer encoder of the reference implementation.

A volume ``(B, 1, D, H, W)`` is cut into non-overlapping patches by a ``Conv3d`` whose
kernel equals its stride (``patch_size``; the reference uses (14, 16, 14) on the
182 x 224 x 182 grid -> 13 x 14 x 13 = 2366 tokens), fixed 3-D sine-cosine positions
are added, and ``depth`` pre-norm transformer blocks follow. There is no CLS token:
the encoder returns all tokens and the caller mean-pools them.

Volumes whose shape is not a multiple of ``patch_size`` are zero-padded at the end
of each axis (zero is the background value after the reference z-scoring), so no
brain voxel is dropped. A patch larger than the volume along an axis is an error.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VisionTransformer3d", "check_patch_size", "sincos_position_embedding_3d"]


def check_patch_size(volume_shape, patch_size):
    """Validate ``patch_size`` against ``volume_shape``; return the token grid.

    Raises
    ------
    ValueError
        If a patch is larger than the volume along an axis (the message proposes a
        patch size that fits).

    Examples
    --------
    >>> from hcl_sklearn.embed.nn.vit import check_patch_size
    >>> check_patch_size((182, 224, 182), (14, 16, 14))
    (13, 14, 13)
    >>> check_patch_size((46, 56, 46), (14, 16, 14))  # padded to 56 x 64 x 56
    (4, 4, 4)
    """
    volume_shape = tuple(int(s) for s in volume_shape)
    patch_size = tuple(int(p) for p in patch_size)
    if len(patch_size) != 3 or min(patch_size) < 1:
        raise ValueError(f"patch_size must be 3 positive ints; got {patch_size}.")
    if any(p > s for p, s in zip(patch_size, volume_shape)):
        fit = tuple(max(1, s // 4) for s in volume_shape)
        raise ValueError(
            f"patch_size={patch_size} is larger than the volume {volume_shape} along at "
            f"least one axis, so the ViT would see no complete patch. Use a smaller patch "
            f"(e.g. patch_size={fit} gives about 4 patches per axis), a larger volume "
            "(smaller downsample), or encoder='cnn'."
        )
    return tuple(-(-s // p) for s, p in zip(volume_shape, patch_size))


def _sincos_1d(positions, dim):
    """``(len(positions), dim)`` sin/cos features of 1-D positions (``dim`` even)."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_position_embedding_3d(grid, dim):
    """Fixed 3-D sine-cosine position embedding of shape ``(prod(grid), dim)``.

    Each axis gets ``2 * (dim // 6)`` channels (sin and cos of the position at
    geometrically spaced frequencies, as in MAE's 2-D version); any remainder
    channels are zero. Tokens are ordered like ``Conv3d`` output flattened (D, H, W).

    Examples
    --------
    >>> from hcl_sklearn.embed.nn.vit import sincos_position_embedding_3d
    >>> sincos_position_embedding_3d((13, 14, 13), 384).shape
    torch.Size([2366, 384])
    """
    per_axis = 2 * (dim // 6)
    if per_axis == 0:
        raise ValueError(f"embed_dim must be at least 6 for 3-D positions; got {dim}.")
    d, h, w = grid
    zd, zh, zw = torch.meshgrid(torch.arange(d), torch.arange(h), torch.arange(w),
                                indexing="ij")
    parts = [_sincos_1d(z.reshape(-1), per_axis) for z in (zd, zh, zw)]
    emb = torch.cat(parts, dim=1)
    if emb.shape[1] < dim:
        emb = F.pad(emb, (0, dim - emb.shape[1]))
    return emb.to(torch.float32)


class PatchEmbed3d(nn.Module):
    """Non-overlapping 3-D patches -> tokens (``Conv3d`` with kernel = stride)."""

    def __init__(self, patch_size, in_chans, embed_dim):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=self.patch_size,
                              stride=self.patch_size)

    def forward(self, x):
        pads = [(-s) % p for s, p in zip(x.shape[-3:], self.patch_size)]
        if any(pads):  # zero-pad the end of each axis to a multiple of the patch
            x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
        x = self.proj(x)  # (B, C, gd, gh, gw)
        return x.flatten(2).transpose(1, 2)  # (B, N, C)


class Attention(nn.Module):
    """Multi-head self-attention on ``torch.nn.functional.scaled_dot_product_attention``."""

    def __init__(self, dim, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.n_heads, c // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))`` then ``x + mlp(LN(x))``."""

    def __init__(self, dim, n_heads, mlp_ratio=4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, n_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer3d(nn.Module):
    """3-D ViT returning all tokens, as in the reference encoder.

    Parameters
    ----------
    volume_shape : tuple of 3 int
        Spatial shape of the input volumes.
    patch_size : tuple of 3 int, default=(14, 16, 14)
    in_chans : int, default=1
    embed_dim : int, default=384
    depth : int, default=12
    n_heads : int, default=6
    mlp_ratio : float, default=4.0

    Attributes
    ----------
    grid : tuple of 3 int
        Token grid; ``n_tokens = prod(grid)``.

    Examples
    --------
    >>> import torch
    >>> from hcl_sklearn.embed.nn.vit import VisionTransformer3d
    >>> vit = VisionTransformer3d((16, 16, 16), patch_size=(8, 8, 8), embed_dim=12,
    ...                           depth=1, n_heads=2)
    >>> vit(torch.zeros(2, 1, 16, 16, 16)).shape
    torch.Size([2, 8, 12])
    """

    def __init__(self, volume_shape, patch_size=(14, 16, 14), in_chans=1, embed_dim=384,
                 depth=12, n_heads=6, mlp_ratio=4.0):
        super().__init__()
        if embed_dim % n_heads:
            raise ValueError(
                f"embed_dim={embed_dim} must be divisible by n_heads={n_heads}; e.g. "
                f"embed_dim={n_heads * max(1, round(embed_dim / n_heads))}."
            )
        self.grid = check_patch_size(volume_shape, patch_size)
        self.embed_dim = embed_dim
        self.n_tokens = math.prod(self.grid)
        self.patch_embed = PatchEmbed3d(patch_size, in_chans, embed_dim)
        self.register_buffer("pos_embed",
                             sincos_position_embedding_3d(self.grid, embed_dim)[None],
                             persistent=False)
        self.blocks = nn.ModuleList(Block(embed_dim, n_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self):
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        """Tokens ``(B, n_tokens, embed_dim)`` of volumes ``(B, in_chans, D, H, W)``."""
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

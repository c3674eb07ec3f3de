"""Where and how a torch model runs: device resolution, autocast precision, seeding.

Shared by the neural estimators (:class:`~hcl_sklearn.MomentumContrastiveEmbedder`,
:class:`~hcl_sklearn.AutoencoderEmbedder`) so that ``device='auto'`` and
``precision='auto'`` mean the same thing everywhere:

* ``device='auto'`` -> ``cuda`` when a GPU is visible, else ``cpu``;
* ``precision='auto'`` -> bf16 autocast on a GPU that supports it, fp16 autocast on
  other GPUs, full fp32 on the CPU (CPU autocast is slower than fp32 for 3-D convs).
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from skorch.utils import TeeGenerator

from ..._base import resolve_device as _resolve_device_name

__all__ = [
    "PRECISIONS",
    "autocast_context",
    "needs_grad_scaler",
    "make_grad_scaler",
    "resolve_device",
    "resolve_precision",
    "seed_everything",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device="auto"):
    """Turn ``'auto'``/``'cpu'``/``'cuda'``/``'cuda:1'``/a :class:`torch.device` into a device.

    Parameters
    ----------
    device : str or torch.device, default='auto'
        ``'auto'`` picks ``cuda`` when :func:`torch.cuda.is_available`, else ``cpu``.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        If the string is not a device name, or a CUDA device is requested but no GPU
        is visible.

    Examples
    --------
    >>> from hcl_sklearn.embed.nn.runtime import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        dev = device
    elif device is None or device == "auto":
        dev = torch.device(_resolve_device_name("auto"))  # the package's one 'auto' rule
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(
                f"device={device!r} is not a torch device name; use 'auto', 'cpu', 'cuda' "
                "or 'cuda:<index>'."
            ) from exc
    else:
        raise TypeError(f"device must be a str or torch.device; got {type(device).__name__}.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(dev)!r} was requested but no CUDA GPU is visible to torch; use "
            "device='auto' (falls back to the CPU) or device='cpu'."
        )
    return dev


def resolve_precision(device, precision="auto"):
    """Autocast dtype for ``precision`` on ``device`` (``None`` means full fp32).

    ``'auto'`` is bf16 on a GPU that supports it, fp16 on an older GPU and fp32 on the
    CPU. An explicit ``'bf16'``/``'fp16'`` is honoured on any device.

    Examples
    --------
    >>> import torch
    >>> from hcl_sklearn.embed.nn.runtime import resolve_precision
    >>> resolve_precision(torch.device("cpu")) is None
    True
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}.")
    device = resolve_device(device)
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return _DTYPES[precision]


def autocast_context(device, precision="auto"):
    """Context manager running the forward pass at the resolved precision.

    Returns :func:`torch.autocast` for bf16/fp16 and a null context for fp32.

    Examples
    --------
    >>> import torch
    >>> from hcl_sklearn.embed.nn.runtime import autocast_context
    >>> with autocast_context("cpu", "auto"):
    ...     y = torch.ones(2, 2) @ torch.ones(2, 2)
    >>> y.dtype
    torch.float32
    """
    device = resolve_device(device)
    dtype = resolve_precision(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_grad_scaler(device, precision="auto"):
    """Whether training at this precision needs a :class:`torch.amp.GradScaler` (fp16 only)."""
    return resolve_precision(device, precision) is torch.float16


def make_grad_scaler(device, precision="auto"):
    """A :class:`torch.amp.GradScaler` for the device's type when fp16 needs one, else None.

    The scaler is built for the device the model runs on (``'cuda'`` or ``'cpu'``), so
    the fp16 path scales and unscales the loss on a CPU exactly as on a GPU.

    Examples
    --------
    >>> from hcl_sklearn.embed.nn.runtime import make_grad_scaler
    >>> make_grad_scaler("cpu", "fp32") is None
    True
    >>> make_grad_scaler("cpu", "fp16").is_enabled()
    True
    """
    if not needs_grad_scaler(device, precision):
        return None
    return torch.amp.GradScaler(resolve_device(device).type)


def seed_everything(random_state):
    """Seed python, numpy and torch from ``random_state``; return the integer seed used.

    Parameters
    ----------
    random_state : None, int or numpy.random.RandomState
        ``None`` draws a fresh seed (non-reproducible run). An int or a RandomState
        gives reproducible CPU runs; CUDA kernels may still be non-deterministic.

    Returns
    -------
    seed : int

    Examples
    --------
    >>> import torch
    >>> from hcl_sklearn.embed.nn.runtime import seed_everything
    >>> _ = seed_everything(0); a = torch.rand(1)
    >>> _ = seed_everything(0); b = torch.rand(1)
    >>> bool(a == b)
    True
    """
    from sklearn.utils import check_random_state

    if random_state is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31 - 1))
    else:
        seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
    random.seed(seed)
    np.random.seed(seed % (2**32 - 1))
    torch.manual_seed(seed)
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        torch.cuda.manual_seed_all(seed)
    return seed


class AmpTrainStep:
    """The training step of the package's skorch nets, mixed precision written once.

    Mixed into a :class:`skorch.NeuralNet` that has a ``precision`` attribute:
    ``initialize`` creates ``grad_scaler_`` (a GradScaler for fp16, else None);
    ``train_step_single`` implementations call :meth:`_backward`; ``train_step`` unscales
    the gradients *before* ``on_grad_computed`` (so a gradient-clipping callback sees the
    true gradients), then steps the optimiser through the scaler.
    """

    def initialize(self):
        super().initialize()
        self.grad_scaler_ = make_grad_scaler(self.device, self.precision)
        return self

    def _backward(self, loss):
        scaler = getattr(self, "grad_scaler_", None)
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def train_step(self, batch, **fit_params):
        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        scaler = getattr(self, "grad_scaler_", None)
        if scaler is not None:
            scaler.unscale_(self.optimizer_)
        self.notify("on_grad_computed",
                    named_parameters=TeeGenerator(self.get_all_learnable_params()),
                    batch=batch, training=True)
        if scaler is not None:
            scaler.step(self.optimizer_)
            scaler.update()
        else:
            self.optimizer_.step()
        return step

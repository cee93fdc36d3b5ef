"""Which torch device the model extractors use: Apple GPU first, then CUDA, then CPU."""

from __future__ import annotations

from typing import Literal

from core.errors import ModelUnavailableError

DevicePref = Literal["auto", "mps", "cuda", "cpu"]


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def available_devices() -> list[str]:
    out = []
    if _mps_available():
        out.append("mps")
    if _cuda_available():
        out.append("cuda")
    out.append("cpu")
    return out


def pick_device(pref: DevicePref = "auto") -> str:
    """The device to run on. An explicit preference that this machine lacks is an error, not a
    quiet CPU run: the user asked for it, so they should learn it is not there."""
    devices = available_devices()
    if pref == "auto":
        return devices[0]
    if pref not in devices:
        raise ModelUnavailableError(
            None,
            f"extractors.device is {pref!r} but this machine offers only {devices}",
            "set extractors.device: auto (or one of the devices listed)",
        )
    return pref

"""Image IO: any common image to RGB float [0,1]; resize policies; atomic save in the format the suffix names.

Decoding uses Pillow (EXIF orientation, palette, gray, RGBA, CMYK, 16-bit): a well-kept decoder that handles
the long tail of files a user points us at. Alpha is composited on white. 16-bit gray images keep their
precision (scaled by 1/65535, resized as 32-bit float) instead of being truncated to 8 bits; Pillow decodes
16-bit colour PNG/TIFF to 8 bits per channel, so those are exact to 1/255.

Resize policies (``policy``, with a target ``size`` in pixels):

* ``shorter``   — the shorter side becomes ``size``, aspect kept (AdaIN/SANet test scripts' convention);
* ``longer``    — the longer side becomes ``size``, aspect kept;
* ``exact``     — ``size`` x ``size`` (aspect not kept);
* ``multiple16``— shorter side to ``size``, then each side rounded down to a multiple of 16 by a centre
  crop, so every encoder level has integer sizes (a side under 16 px is an error);
* ``none``      — unchanged.

Resampling is antialiased bicubic (Pillow) on the 8/16-bit data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .config import RESIZE_POLICIES
from .errors import ImageError, shorten
from .io import atomic_write_bytes

SAVE_FORMATS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
    ".tiff": "TIFF",
}


def _wide_to_float(img: Image.Image) -> Image.Image:
    """16/32-bit integer modes -> mode "F" in [0,1], so resizing keeps their precision; others unchanged.

    ``I;16*`` is scaled by 1/65535 (any byte order: Pillow's own I;16B -> RGB conversion saturates at 255).
    ``I`` (32-bit) holds 16-bit data when its maximum exceeds 255, else 8-bit data.
    """
    if img.mode.startswith("I;16"):
        return Image.fromarray(np.asarray(img, dtype=np.float32) / 65535.0)
    if img.mode == "I":
        arr = np.asarray(img, dtype=np.float32)
        return Image.fromarray(arr / (65535.0 if arr.max(initial=0) > 255 else 255.0))
    return img


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Decoded PIL image -> float32 HxWx3 in [0,1]."""
    img = _wide_to_float(img)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        return np.repeat(np.clip(arr, 0, 1)[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _unreadable(path: Path, e: Exception) -> ImageError:
    if isinstance(e, FileNotFoundError):
        return ImageError(f"{path}: no such file; check the path")
    if isinstance(e, IsADirectoryError):
        return ImageError(f"{path}: a folder, not an image file; check the path")
    why = f"{type(e).__name__}: {shorten(str(e), 120)}"
    return ImageError(f"{path}: not a readable image ({why}); use PNG/JPEG/WebP/TIFF")


def decode(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            return im
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise _unreadable(path, e) from None


def probe(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding the pixels (milliseconds even
    for a 6000x4000 photograph); an :class:`ImageError` when it is missing or not an image."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)  # EXIF: 5-8 rotate by 90 degrees
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise _unreadable(path, e) from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def require_min_side(path: str | os.PathLike, wh: tuple[int, int], min_side: int, who: str) -> None:
    """An :class:`ImageError` naming ``path`` when the image (before any resize) has a side under
    ``min_side`` px: upscaling a tiny image to the run size would score a picture of nothing."""
    if min(wh) < min_side:
        raise ImageError(
            f"{path}: {wh[0]}x{wh[1]} px is under {who}'s minimum of {min_side} px per side; "
            f"use an image at least {min_side}x{min_side} px"
        )


def save_format(path: str | os.PathLike) -> str:
    """The Pillow format the suffix of ``path`` names (.png .jpg .jpeg .webp .bmp .tif .tiff)."""
    suffix = Path(path).suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise ImageError(
            f"{path}: unknown image suffix {suffix or '(none)'!r}; name the output "
            f"{', '.join(SAVE_FORMATS)}"
        )
    return SAVE_FORMATS[suffix]


def target_size(w: int, h: int, size: int | None, policy: str) -> tuple[int, int]:
    if policy not in RESIZE_POLICIES:
        raise ImageError(f"unknown resize policy {policy!r}; choose one of {', '.join(RESIZE_POLICIES)}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ImageError(f"resize size must be a positive integer number of pixels, got {size!r}")
    if size is None or policy == "none":
        tw, th = w, h
    elif policy == "exact":
        tw, th = size, size
    else:
        scale = size / (min(w, h) if policy in ("shorter", "multiple16") else max(w, h))
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    if policy == "multiple16" and min(tw, th) < 16:
        raise ImageError(f"{w}x{h} image becomes {tw}x{th}, under 16 px; multiple16 needs size >= 16")
    return tw, th


def resize_pil(img: Image.Image, size: int | None, policy: str = "shorter") -> Image.Image:
    w, h = img.size
    tw, th = target_size(w, h, size, policy)
    if (tw, th) != (w, h):
        img = _wide_to_float(img)
        if img.mode not in ("RGB", "L", "F"):
            img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
        img = img.resize((tw, th), Image.Resampling.BICUBIC, reducing_gap=None)
    if policy == "multiple16":
        cw, ch = tw // 16 * 16, th // 16 * 16
        left, top = (tw - cw) // 2, (th - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    return img


def load_image(path: str | os.PathLike, size: int | None = None, policy: str = "shorter") -> Tensor:
    """Read ``path`` as RGB float [1,3,H,W] in [0,1], resized by ``policy`` (see module doc)."""
    img = decode(path)
    try:
        arr = _to_rgb_array(resize_pil(img, size, policy))
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from None
    except ValueError as e:  # a mode Pillow decodes but cannot convert to RGB (e.g. LAB)
        raise ImageError(f"{path}: cannot convert {img.mode} to RGB ({e}); save it as RGB PNG/JPEG") from None
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0).contiguous()


def resize_tensor(x: Tensor, size: int | None, policy: str = "shorter") -> Tensor:
    """Resize an in-memory [N,3,H,W] tensor by ``policy`` (antialiased bicubic)."""
    h, w = x.shape[-2:]
    tw, th = target_size(w, h, size, policy)
    if (tw, th) != (w, h):
        x = torch.nn.functional.interpolate(
            x, size=(th, tw), mode="bicubic", antialias=True, align_corners=False
        )
    if policy == "multiple16":
        cw, ch = tw // 16 * 16, th // 16 * 16
        top, left = (th - ch) // 2, (tw - cw) // 2
        x = x[..., top : top + ch, left : left + cw]
    return x


def to_uint8(x: Tensor) -> np.ndarray:
    """[1,3,H,W] or [3,H,W] float in [0,1] -> HxWx3 uint8 (clamped, rounded)."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ImageError(f"expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    return (x.detach().float().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()


def save_image(x: Tensor, path: str | os.PathLike) -> Path:
    """Save an image tensor (clamped to [0,1]) in the format the suffix of ``path`` names
    (:func:`save_format`; JPEG and WebP at quality 95), atomically: a reader never sees a partial file."""
    import io

    fmt = save_format(path)
    buf = io.BytesIO()
    Image.fromarray(to_uint8(x)).save(buf, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)

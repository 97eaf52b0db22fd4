"""Robust image reading and atomic writing.

Training data comes from users' folders, so every odd file must have a *defined* outcome:
either a float32 RGB image in [0, 1] of shape (H, W, 3), or an :class:`ImageReadError` whose
one-line message names the file and the problem. Nothing is returned half-decoded.

Decisions (and why):

- Decoding uses Pillow with its default ``LOAD_TRUNCATED_IMAGES = False``: a JPEG or PNG cut
  short raises instead of coming back padded with grey (``cv2.imread`` silently returns partial
  JPEGs). If some other code flips that global to True we refuse to read rather than return
  half images (see :func:`_check_truncation_policy`).
- Grayscale is replicated to 3 channels; palette and CMYK images are converted to RGB.
- 16-bit images are scaled by 1/65535. Pillow reduces 16-bit *colour* PNG/TIFF to 8 bits, so
  those are decoded by OpenCV after Pillow has checked the file's integrity.
- Alpha is *dropped*, not composited: the colour stored under the alpha channel is the scene
  data; compositing onto an arbitrary background would invent colours and add artificial edges
  along the matte, which a restoration model would then learn as "clean".
- EXIF orientation is applied, so pictures come out the way cameras and viewers show them.
- Large images are downscaled so the longer side is at most ``max_side`` (INTER_AREA). JPEGs
  use Pillow's DCT-domain ``draft`` first so a 100-megapixel JPEG never occupies full memory.
  Images above ``max_pixels`` are refused with a clear error; below it Pillow's decompression
  bomb warning is silenced for that call only (the limit here replaces it).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from qt_core.atomic import atomic_write_bytes
from qt_core.media import (  # noqa: F401 - the data engine's names for them
    IMAGE_EXTS,
    VIDEO_EXTS,
    DataError,
    MissingDataError,
    list_files,
    list_images,
)
from qt_core.pixels import to_float, to_uint8  # noqa: F401

#: Refuse images with more pixels than this (about 16000 x 10000). It sits below Pillow's own
#: hard limit (2 x Image.MAX_IMAGE_PIXELS) so our clear error is what users see.
MAX_PIXELS = 160_000_000

_EXIF_ORIENTATION = 0x0112


class ImageReadError(ValueError):
    """One file could not be read as an image; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str, kind: str = "image") -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read {kind} {self.path}: {reason}")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_image(
    path: str | os.PathLike,
    max_side: int | None = 4096,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read any supported image file as float32 RGB (H, W, 3) in [0, 1].

    ``max_side`` bounds the longer side (None keeps full size); ``max_pixels`` bounds the
    decoded pixel count before any downscaling. Raises :class:`ImageReadError` for anything
    that is not a complete, decodable image.
    """
    arr = read_image_raw(path, max_side=max_side, max_pixels=max_pixels)
    return to_float(arr)


def read_image_raw(
    path: str | os.PathLike,
    max_side: int | None = 4096,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Like :func:`read_image` but returns the integer array (uint8 or uint16, (H, W, 3)).

    Useful to keep caches small; convert with :func:`to_float`.
    """
    from PIL import Image

    path = Path(path)
    _check_truncation_policy(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(path, "file does not exist") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot stat file ({exc.strerror})") from None
    if path.is_dir():
        raise ImageReadError(path, "is a directory")
    if size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                arr, orientation = _decode_pil(im, path, max_pixels, max_side)
            # Pillow's own buffer is released here, before resizing: lower peak memory.
            arr = _finish(arr, orientation, max_side)
        except ImageReadError:
            raise
        except Image.DecompressionBombError:
            raise ImageReadError(path, f"more than {max_pixels} pixels (decompression bomb "
                                       "limit); downscale it first") from None
        except Image.UnidentifiedImageError:
            raise ImageReadError(path, f"not a recognised image format ({size} bytes)") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
            raise ImageReadError(path, _reason(exc)) from None
        except MemoryError:
            raise ImageReadError(path, "out of memory while decoding") from None
    return arr


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) after EXIF orientation, read from the header only (cheap probe).

    Raises :class:`ImageReadError` for files whose header cannot be parsed; a truncated body
    is only found by a full :func:`read_image`.
    """
    from PIL import Image

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(path, "file is empty (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                orientation = _orientation(im)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(path, "file does not exist") from None
    except Image.DecompressionBombError:
        raise ImageReadError(path, "too many pixels (decompression bomb limit)") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise ImageReadError(path, _reason(exc)) from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _check_truncation_policy(path: Path) -> None:
    from PIL import ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageReadError(
            path, "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process, so truncated "
                  "files cannot be detected; set it back to False")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "truncated" in text.lower():
        return f"file is truncated or incomplete ({text})"
    return f"corrupt or unsupported data ({text})"


def _orientation(im) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # malformed EXIF must not make a good image unreadable
        return 1


def _verify_png(path: Path) -> None:
    """Check every chunk's CRC: Pillow's decoder returns a partly black image, without an error,
    when bytes inside the compressed data are damaged (a file of the right length)."""
    from PIL import Image

    with Image.open(path) as fresh:
        try:
            fresh.verify()
        except SyntaxError as exc:
            raise ImageReadError(path, f"damaged PNG ({exc}); re-export or re-copy the file") from None


def _decode_pil(im, path: Path, max_pixels: int,
                max_side: int | None = None) -> tuple[np.ndarray, int]:
    """Decode fully (raising on damaged data); returns (array, EXIF orientation)."""
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageReadError(path, f"invalid size {w}x{h}")
    if w * h > max_pixels:
        raise ImageReadError(path, f"{w}x{h} is more than the {max_pixels}-pixel limit; "
                                   "downscale it first or raise max_pixels")
    if im.format == "PNG":
        _verify_png(path)
    if max_side is not None and im.format == "JPEG" and max(w, h) > max_side:
        # DCT-domain downscale by 1/2, 1/4 or 1/8 while keeping both sides >= the target:
        # memory stays proportional to the output, not the 100-megapixel original.
        scale = max_side / max(w, h)
        im.draft(im.mode, (max(1, int(w * scale)), max(1, int(h * scale))))
    im.load()  # full decode: raises on truncated data
    # Orientation only after the decode: Pillow's PNG getexif() decodes the image itself, and an
    # error swallowed there left a half-decoded image that the load above then accepted.
    orientation = _orientation(im)

    # Pillow keeps only 8 bits of 16-bit colour: decode those with OpenCV (integrity already
    # checked by the load above).
    arr = _decode_cv2_unchanged(path) if _is_16bit_colour(im, path) else _pil_to_array(im, path)
    return arr, orientation


def _finish(arr: np.ndarray, orientation: int, max_side: int | None) -> np.ndarray:
    """Orientation, then INTER_AREA downscale to ``max_side``; always a writable copy."""
    arr = _apply_orientation(arr, orientation)
    if max_side is not None and max(arr.shape[:2]) > max_side:
        scale = max_side / max(arr.shape[:2])
        new_w = max(1, round(arr.shape[1] * scale))
        new_h = max(1, round(arr.shape[0] * scale))
        arr = cv2.resize(np.ascontiguousarray(arr), (new_w, new_h),
                         interpolation=cv2.INTER_AREA)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C")
    return arr


def _is_16bit_colour(im, path: Path) -> bool:
    if im.format == "PNG":
        with open(path, "rb") as fh:
            head = fh.read(26)
        return len(head) == 26 and head[24] == 16 and head[25] in (2, 6)
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)
        if isinstance(bits, tuple) and len(bits) >= 3 and bits[0] == 16:
            return True
    return False


def _decode_cv2_unchanged(path: Path) -> np.ndarray:
    buf = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3:
        raise ImageReadError(path, "16-bit colour data could not be decoded")
    arr = arr[..., :3]  # drop alpha (see module docstring)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def _pil_to_array(im, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im)
        if mode == "I":  # 32-bit container; 16-bit PNGs decode to it with values <= 65535
            a = np.clip(a, 0, 65535)
        a = a.astype(np.uint16)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return np.repeat(a[..., None], 3, axis=2)
    if mode in ("L", "1"):
        a = np.asarray(im.convert("L"))
        return np.repeat(a[..., None], 3, axis=2)
    if mode in ("LA", "La"):
        a = np.asarray(im.convert("LA"))[..., 0]
        return np.repeat(a[..., None], 3, axis=2)
    if mode in ("RGBA", "RGBa", "RGBX", "PA", "P"):
        # Palette images may carry transparency; go through RGBA and drop alpha.
        rgba = im.convert("RGBA") if mode != "RGBA" else im
        return np.asarray(rgba)[..., :3]
    if mode == "RGB":
        return np.asarray(im)
    try:
        return np.asarray(im.convert("RGB"))  # CMYK, YCbCr, LAB, HSV, ...
    except (ValueError, OSError) as exc:
        raise ImageReadError(path, f"unsupported image mode {mode!r} ({exc})") from None


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation (1..8) with numpy views; works for any dtype."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(arr, k=-1)
    if orientation == 7:
        return arr.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(arr, k=1)
    return arr


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def write_image(
    path: str | os.PathLike,
    img: np.ndarray,
    bits: int = 8,
    quality: int = 95,
) -> Path:
    """Atomically write an RGB (or gray) image; float input is taken as [0, 1].

    The bytes go to a temporary file in the same directory which is then ``os.replace``-d over
    the target, so a crash never leaves a half-written image behind. ``bits=16`` writes a
    16-bit PNG or TIFF. Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTS:
        raise ValueError(f"cannot write {path}: unknown image suffix {suffix!r} "
                         f"(use one of {', '.join(IMAGE_EXTS)})")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if bits == 16 and suffix not in (".png", ".tif", ".tiff"):
        raise ValueError(f"cannot write {path}: 16-bit output needs .png or .tif")
    arr = _quantise(np.asarray(img), bits)
    if arr.ndim == 3:
        if arr.shape[2] == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
        elif arr.shape[2] == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
        elif arr.shape[2] == 1:
            arr = arr[..., 0]
        else:
            raise ValueError(f"cannot write {path}: {arr.shape[2]} channels")
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    ok, buf = cv2.imencode(suffix, arr, params)
    if not ok:
        raise ValueError(f"cannot write {path}: encoding to {suffix} failed")
    atomic_write_bytes(path, buf.tobytes())
    return path


def _quantise(arr: np.ndarray, bits: int) -> np.ndarray:
    top = 255 if bits == 8 else 65535
    dtype = np.uint8 if bits == 8 else np.uint16
    if arr.dtype == dtype:
        return arr
    if arr.dtype == np.uint8 and bits == 16:
        return arr.astype(np.uint16) * 257
    if arr.dtype == np.uint16 and bits == 8:
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr)
        return to_uint8(arr) if bits == 8 else np.rint(np.clip(arr, 0.0, 1.0) * top).astype(dtype)
    raise ValueError(f"cannot write array of dtype {arr.dtype}")

"""Image IO: decoding of the common kinds of file to RGB [0,1], resize policies, atomic PNG save."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sanet_bench import images
from sanet_bench.errors import ImageError, SanetBenchError
from sanet_bench.images import load_image, resize_tensor, save_image, target_size


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot encode one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _as_hwc(x: torch.Tensor) -> np.ndarray:
    assert x.dim() == 4 and x.shape[:2] == (1, 3) and x.dtype == torch.float32
    return x[0].permute(1, 2, 0).numpy()


def test_gray_becomes_three_equal_channels(tmp_path):
    arr = np.arange(12 * 10, dtype=np.uint8).reshape(10, 12)
    Image.fromarray(arr, "L").save(tmp_path / "g.png")
    out = _as_hwc(load_image(tmp_path / "g.png"))
    assert out.shape == (10, 12, 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], arr / 255.0, atol=1e-7)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 20, 40)
    rgba[:, 0, 3] = 0  # transparent -> white
    rgba[:, 1, 3] = 255  # opaque -> the colour
    rgba[:, 2, 3] = 128  # half -> blend
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = _as_hwc(load_image(tmp_path / "a.png"))
    np.testing.assert_allclose(out[0, 0], (1, 1, 1), atol=1e-6)
    np.testing.assert_allclose(out[0, 1], np.array((200, 20, 40)) / 255, atol=1e-6)
    blend = (np.array((200, 20, 40)) * 128 + 255 * 127) / 255 / 255
    np.testing.assert_allclose(out[0, 2], blend, atol=2 / 255)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 2))
    img.putpalette([0, 0, 255, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    img.info["transparency"] = 0  # palette index 0 (blue) is transparent -> white
    img.save(tmp_path / "p.png", transparency=0)
    out = _as_hwc(load_image(tmp_path / "p.png"))
    np.testing.assert_allclose(out[0, 0], (1, 1, 1), atol=1e-6)
    np.testing.assert_allclose(out[0, 1], (1, 0, 0), atol=1e-6)


def test_palette_without_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 200, 30] + [0] * (256 * 3 - 3))
    img.save(tmp_path / "p.gif")
    np.testing.assert_allclose(
        _as_hwc(load_image(tmp_path / "p.gif"))[0, 0], np.array((10, 200, 30)) / 255, atol=1e-6
    )


@pytest.mark.parametrize("fmt,dtype", [("PNG", "<u2"), ("TIFF", "<u2"), ("TIFF", ">u2")])
def test_16bit_gray_keeps_precision(tmp_path, fmt, dtype):
    # values that differ by less than one 8-bit step must stay distinct
    arr = np.array([[0, 257, 40000, 40100, 65535, 1]], dtype=dtype)
    path = tmp_path / f"g16.{fmt.lower()}"
    Image.fromarray(arr).save(path, format=fmt)
    out = _as_hwc(load_image(path))[..., 0]
    np.testing.assert_allclose(out[0], arr[0].astype(np.float64) / 65535, atol=1e-6)


@pytest.mark.parametrize("fmt,dtype", [("PNG", "<u2"), ("TIFF", ">u2")])
def test_16bit_gray_resized_stays_in_range_and_smooth(tmp_path, fmt, dtype):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(dtype), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.img", format=fmt)
    out = _as_hwc(load_image(tmp_path / "ramp.img", size=16, policy="shorter"))
    assert out.shape == (16, 32, 3)
    assert 0.0 <= out.min() and out.max() <= 1.0
    row = out[8, :, 0]
    assert np.all(np.diff(row) > 0), "a ramp must stay increasing"
    assert row[0] < 0.05 and row[-1] > 0.95


def test_16bit_rgb_png_to_unit_range(tmp_path):
    arr = np.zeros((3, 4, 3), np.uint16)
    arr[..., 0], arr[..., 1], arr[..., 2] = 40000, 65535, 300
    (tmp_path / "rgb16.png").write_bytes(_png16_rgb(arr))
    out = _as_hwc(load_image(tmp_path / "rgb16.png"))
    np.testing.assert_allclose(out[1, 2], arr[1, 2] / 65535, atol=1 / 255)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)  # pure red
    out = _as_hwc(load_image(tmp_path / "c.jpg"))
    assert out.shape == (8, 16, 3)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), (1, 0, 0), atol=0.04)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(tmp_path, fmt):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:8, :8] = (255, 0, 0)  # a red block at the stored top-left
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / f"o.{fmt.lower()}"
    img.save(path, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    out = _as_hwc(load_image(path))
    assert out.shape == (40, 20, 3), "portrait once rotated"
    assert out[:6, -6:, 0].mean() > 0.8 and out[:6, -6:, 1].mean() < 0.2, "the block moves to the top-right"
    assert out[:6, :6, 0].mean() < 0.2


@pytest.mark.parametrize(
    "policy,size,expected",
    [
        ("shorter", 32, (64, 32)),
        ("longer", 32, (32, 16)),
        ("exact", 24, (24, 24)),
        ("multiple16", 40, (80, 32)),  # 80x40 -> centre crop to 80x32
        ("none", 999, (100, 50)),
        ("shorter", None, (100, 50)),
    ],
)
def test_resize_policies(tmp_path, policy, size, expected):
    arr = np.random.default_rng(0).integers(0, 256, (50, 100, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "r.png")
    x = load_image(tmp_path / "r.png", size=size, policy=policy)
    assert tuple(x.shape[-1:-3:-1]) == expected
    # the tensor path agrees on the geometry
    t = resize_tensor(torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255, size, policy)
    assert tuple(t.shape[-1:-3:-1]) == expected


def test_shorter_keeps_aspect_of_portrait():
    assert target_size(300, 451, 128, "shorter") == (128, 192)
    assert target_size(300, 451, 128, "longer") == (85, 128)


def test_multiple16_crop_is_centred(tmp_path):
    arr = np.zeros((16, 40, 3), np.uint8)
    arr[:, 4:36] = 255  # the central 32 columns are white, 4 black columns each side
    Image.fromarray(arr).save(tmp_path / "m.png")
    out = _as_hwc(load_image(tmp_path / "m.png", policy="multiple16"))
    assert out.shape == (16, 32, 3)
    assert out.min() == 1.0, "a centred crop removes exactly the black margins"


@pytest.mark.parametrize("size,policy", [(8, "multiple16"), (0, "shorter"), (-3, "exact"), (2.5, "shorter")])
def test_bad_sizes_are_user_errors(tmp_path, size, policy):
    Image.new("RGB", (40, 20)).save(tmp_path / "s.png")
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "s.png", size=size, policy=policy)
    assert "s.png" in str(e.value)


def test_tiny_image_with_multiple16_is_an_error_not_black_padding(tmp_path):
    Image.new("RGB", (12, 30), (255, 255, 255)).save(tmp_path / "t.png")
    with pytest.raises(ImageError, match="16"):
        load_image(tmp_path / "t.png", policy="multiple16")


def test_unknown_policy():
    with pytest.raises(ImageError, match="shorter, longer, exact, multiple16"):
        target_size(10, 10, 5, "fit")


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    for path, words in ((bad, "not a readable image"), (tmp_path / "nope.png", "no such file")):
        with pytest.raises(ImageError) as e:
            load_image(path)
        msg = str(e.value)
        assert str(path) in msg and words in msg and "\n" not in msg
        assert isinstance(e.value, SanetBenchError)


def test_save_roundtrip_and_clamp(tmp_path):
    x = torch.rand(1, 3, 9, 7)
    x[0, 0, 0, 0], x[0, 1, 0, 0] = 1.7, -0.4
    path = save_image(x, tmp_path / "sub" / "o.png")
    back = np.asarray(Image.open(path))
    assert back.shape == (9, 7, 3)
    np.testing.assert_array_equal(back, images.to_uint8(x))
    assert back[0, 0, 0] == 255 and back[0, 0, 1] == 0
    assert Image.open(path).format == "PNG"


def test_save_leaves_no_temp_files_and_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "o.png")
    finally:
        os.umask(old)
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o644


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "o.png"
    save_image(torch.zeros(1, 3, 4, 4), target)
    before = target.read_bytes()

    def boom(src, dst):
        raise OSError("disk went away")

    monkeypatch.setattr(images.os, "replace", boom)
    with pytest.raises(OSError):
        save_image(torch.ones(1, 3, 4, 4), target)
    assert target.read_bytes() == before, "the old file is intact"
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"], "the temporary file is removed"


def test_batch_of_two_cannot_be_saved(tmp_path):
    with pytest.raises(ImageError, match="batch of 2"):
        save_image(torch.zeros(2, 3, 4, 4), tmp_path / "o.png")


def test_webp_and_bmp(tmp_path):
    arr = np.full((6, 5, 3), (30, 60, 90), np.uint8)
    for fmt, ext in (("WEBP", "webp"), ("BMP", "bmp")):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
        Path(tmp_path / f"i.{ext}").write_bytes(buf.getvalue())
        np.testing.assert_allclose(
            _as_hwc(load_image(tmp_path / f"i.{ext}"))[2, 2], arr[2, 2] / 255, atol=1e-6
        )


@pytest.mark.parametrize(("suffix", "fmt"), [("jpg", "JPEG"), ("jpeg", "JPEG"), ("webp", "WEBP"),
                                             ("bmp", "BMP"), ("tif", "TIFF"), ("png", "PNG")])
def test_save_image_writes_the_format_the_suffix_names(tmp_path, suffix, fmt):
    out = save_image(torch.rand(1, 3, 20, 30), tmp_path / f"x.{suffix}")
    with Image.open(out) as im:
        assert im.format == fmt and im.size == (30, 20)


def test_save_image_refuses_an_unknown_suffix_and_writes_nothing(tmp_path):
    with pytest.raises(ImageError, match=r"x\.jpgg: unknown image suffix '\.jpgg'"):
        save_image(torch.rand(1, 3, 8, 8), tmp_path / "x.jpgg")
    assert not list(tmp_path.iterdir())


def test_probe_reads_the_header_size_and_names_a_bad_file(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    assert images.probe(tmp_path / "a.png") == (30, 20)
    (tmp_path / "b.png").write_bytes(b"nope")
    with pytest.raises(ImageError, match=r"b\.png: not a readable image"):
        images.probe(tmp_path / "b.png")


def test_shorten_cuts_at_a_clause_end_with_an_ellipsis():
    from sanet_bench.errors import shorten

    text = ("DefaultCPUAllocator: can't allocate memory: you tried to allocate 6144000000 bytes. Error code "
            "12 (Cannot allocate memory), while running the encoder")
    assert shorten(text, 500) == text
    cut = shorten(text, 100)
    assert cut == "DefaultCPUAllocator: can't allocate memory: you tried to allocate 6144000000 bytes. …"
    assert len(shorten(text, 30)) <= 30 and shorten(text, 30).endswith(" …")

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sanet_bench.data import CropSource, PairBatches, list_images
from sanet_bench.errors import ConfigError, ImageError


def _img(path: Path, w: int, h: int, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def wikiart(tmp_path) -> Path:
    """WikiArt-like layout: one folder per movement, plus junk the scanner must ignore."""
    root = tmp_path / "wikiart"
    _img(root / "Impressionism" / "a.jpg", 40, 30, 10)
    _img(root / "Impressionism" / "b.PNG", 30, 50, 20)
    _img(root / "Cubism" / "c.png", 64, 64, 30)
    _img(root / ".hidden" / "d.png", 64, 64, 40)
    (root / "Cubism" / "notes.txt").write_text("not an image")
    return root


def test_list_images_recursive_sorted_skips_hidden_and_other_files(wikiart):
    files = list_images(wikiart)
    assert [p.relative_to(wikiart).as_posix() for p in files] == [
        "Cubism/c.png", "Impressionism/a.jpg", "Impressionism/b.PNG"
    ]


def test_empty_or_missing_folder_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no images found"):
        list_images(tmp_path / "empty")
    with pytest.raises(ConfigError, match="not a folder"):
        list_images(tmp_path / "nope")


def test_crops_shape_range_and_shorter_side_resize(wikiart):
    src = CropSource(wikiart, batch=3, crop=32, load_size=48, seed=0)
    x, skipped = src.batch_at(0)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32 and skipped == []
    assert 0.0 <= x.min() and x.max() <= 1.0
    # a 30x50 image becomes 48x80 (shorter side 48): every crop offset must fit
    for it in range(20):
        assert src.batch_at(it)[0].shape == (3, 3, 32, 32)


def test_batches_are_a_pure_function_of_seed_and_iteration(wikiart):
    a = CropSource(wikiart, batch=2, crop=16, load_size=24, seed=5)
    b = CropSource(wikiart, batch=2, crop=16, load_size=24, seed=5)
    later = [a.batch_at(i)[0] for i in range(6)]
    assert torch.equal(b.batch_at(4)[0], later[4])  # drawn out of order: same batch
    c = CropSource(wikiart, batch=2, crop=16, load_size=24, seed=6)
    assert any(not torch.equal(c.batch_at(i)[0], later[i]) for i in range(6))


def test_each_epoch_visits_every_file_once(wikiart):
    src = CropSource(wikiart, batch=1, crop=16, load_size=24, seed=1)
    n = len(src)
    for epoch in range(3):
        assert sorted(src.index(epoch * n + j) for j in range(n)) == list(range(n))


def test_unreadable_files_are_skipped_and_reported(wikiart):
    bad = wikiart / "Cubism" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    src = CropSource(wikiart, batch=1, crop=16, load_size=24, seed=0)
    seen: list[str] = []
    for it in range(len(src)):
        x, skipped = src.batch_at(it)
        assert x.shape == (1, 3, 16, 16)
        seen += skipped
    assert seen == [str(bad)]  # one epoch touches the broken file exactly once


def test_all_unreadable_is_one_line_error(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"junk")
    src = CropSource(tmp_path, batch=1, crop=16, load_size=16)
    with pytest.raises(ImageError, match="none of its 1 image files is readable"):
        src.batch_at(0)


def test_bad_settings_are_config_errors(wikiart):
    with pytest.raises(ConfigError, match="load_size=16 is smaller than crop=32"):
        CropSource(wikiart, batch=1, crop=32, load_size=16)
    with pytest.raises(ConfigError, match="not a training resize"):
        CropSource(wikiart, batch=1, crop=16, load_size=16, resize="longer")


def test_pair_batches_content_and_style_streams_differ(wikiart):
    ds = PairBatches(CropSource(wikiart, 2, 16, 24, stream=0), CropSource(wikiart, 2, 16, 24, stream=1))
    c, s, skipped = ds[3]
    assert c.shape == s.shape == (2, 3, 16, 16) and skipped == []
    assert not torch.equal(c, s)

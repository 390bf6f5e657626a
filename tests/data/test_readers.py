"""Image readers (kecae.data.readers): PNG, TIFF, JPEG and DICOM to grey in [0, 1], every read
failure named with its fix, and the preprocessing to [-1, 1]."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kecae.data.readers import (
    IMAGE_SUFFIXES,
    is_dicom,
    is_image_file,
    load_image,
    preprocess,
    read_image,
)
from kecae.errors import KecaeError


def test_png_8_and_16_bit_scaled_by_bit_depth(tmp_path, write_image):
    a8 = np.array([[0, 51, 255], [1, 128, 254]], np.uint8)
    a16 = np.array([[0, 13107, 65535], [1, 32768, 4095]], np.uint16)
    p8 = write_image(tmp_path / "a.png", a8)
    p16 = write_image(tmp_path / "b.png", a16)
    np.testing.assert_allclose(read_image(p8), a8 / 255.0, atol=1e-7)
    got = load_image(p16)
    assert got.bits == 16 and got.format == "PNG" and got.pixels.dtype == np.float32
    np.testing.assert_allclose(got.pixels, a16 / 65535.0, atol=1e-7)


def test_tiff_8_and_16_bit(tmp_path, write_image):
    a16 = np.array([[0, 1000], [40000, 65535]], np.uint16)
    np.testing.assert_allclose(
        read_image(write_image(tmp_path / "a.tif", a16)), a16 / 65535.0, atol=1e-7
    )
    a8 = np.array([[0, 100], [200, 255]], np.uint8)
    np.testing.assert_allclose(
        read_image(write_image(tmp_path / "b.tiff", a8)), a8 / 255.0, atol=1e-7
    )


def test_rgb_and_rgba_saved_grey_are_grey(tmp_path, write_image):
    grey = np.array([[0, 60, 120], [180, 240, 255]], np.uint8)
    rgb_png = write_image(tmp_path / "g.png", grey, rgb=True)
    got = load_image(rgb_png)
    assert not got.colour
    np.testing.assert_allclose(got.pixels, grey / 255.0, atol=1e-6)  # luma of equal channels
    Image.fromarray(grey).convert("RGBA").save(tmp_path / "g4.png")
    np.testing.assert_allclose(read_image(tmp_path / "g4.png"), grey / 255.0, atol=1e-6)


def test_rgb_jpeg_grey_vs_colour(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    Image.fromarray(ramp).convert("RGB").save(tmp_path / "grey.jpg", quality=90)
    grey = load_image(tmp_path / "grey.jpg")
    assert grey.format == "JPEG" and not grey.colour
    np.testing.assert_allclose(grey.pixels, ramp / 255.0, atol=4 / 255)  # JPEG is lossy
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[..., 0] = 200  # red left half, blue right half
    colour[:, 32:] = (0, 0, 200)
    Image.fromarray(colour).save(tmp_path / "colour.jpg", quality=90)
    got = load_image(tmp_path / "colour.jpg")
    assert got.colour
    # BT.601 luma: 0.299 * 200 / 255 on the red half, 0.114 * 200 / 255 on the blue half
    assert got.pixels[32, 8] == pytest.approx(0.299 * 200 / 255, abs=0.03)
    assert got.pixels[32, 56] == pytest.approx(0.114 * 200 / 255, abs=0.03)


def test_dicom_monochrome2_min_max_without_window(tmp_path, write_dicom):
    a = np.array([[100, 200], [300, 500]], np.uint16)
    got = load_image(write_dicom(tmp_path / "m2.dcm", a, bits_stored=12))
    assert got.format == "DICOM" and got.bits == 12
    np.testing.assert_allclose(got.pixels, (a - 100) / 400.0, atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path, write_dicom):
    a = np.array([[100, 200], [300, 500]], np.uint16)
    got = read_image(write_dicom(tmp_path / "m1.dcm", a, photometric="MONOCHROME1", bits_stored=12))
    np.testing.assert_allclose(got, 1.0 - (a - 100) / 400.0, atol=1e-6)


def test_dicom_12_bits_stored_in_16_ignores_high_bits(tmp_path, write_dicom):
    stored = np.array([[0, 1], [4095, 564]], np.uint16)
    garbage = np.array([[0xF000, 0xF001], [0x0FFF, 0x1234]], np.uint16)  # same low 12 bits
    path = write_dicom(
        tmp_path / "hb.dcm",
        stored,
        bits_stored=12,
        window=(2048, 4096),
        raw_bytes=garbage.astype("<u2").tobytes(),
    )
    # LINEAR window (PS3.3 C.11.2.1.2): y = (x - (c - 0.5)) / (w - 1) + 0.5, clipped to [0, 1]
    expected = np.clip((stored - 2047.5) / 4095.0 + 0.5, 0, 1)
    np.testing.assert_allclose(read_image(path), expected, atol=1e-6)


def test_dicom_rescale_then_window(tmp_path, write_dicom):
    # stored s -> modality value 2 s - 1000; window c=2048, w=1024 spans (1536, 2559]
    stored = np.array([[0, 1268], [1524, 1780]], np.uint16)
    path = write_dicom(
        tmp_path / "w.dcm", stored, bits_stored=12, slope=2, intercept=-1000, window=(2048, 1024)
    )
    got = read_image(path)
    values = 2.0 * stored - 1000  # -1000, 1536, 2048, 2560
    expected = np.clip((values - 2047.5) / 1023.0 + 0.5, 0, 1)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[0, 0] == 0.0 and got[0, 1] == 0.0 and got[1, 1] == 1.0  # 1536 sits on the floor
    assert got[1, 0] == pytest.approx(0.5 + 0.5 / 1023.0)


def test_dicom_first_of_several_windows_is_used(tmp_path, write_dicom):
    a = np.array([[0, 50], [100, 200]], np.uint16)
    got = read_image(write_dicom(tmp_path / "mw.dcm", a, window=([101, 1000], [201, 50])))
    np.testing.assert_allclose(got, np.clip((a - 100.5) / 200.0 + 0.5, 0, 1), atol=1e-6)


def test_dicom_detected_without_extension(tmp_path, write_dicom):
    a = np.array([[0, 10], [20, 30]], np.uint16)
    path = write_dicom(tmp_path / "1.2.840.113619.2.55.3", a, bits_stored=16)  # a UID-style name
    assert is_dicom(path) and is_image_file(path)
    np.testing.assert_allclose(read_image(path), a / 30.0, atol=1e-6)


@pytest.mark.parametrize("implicit_vr", [True, False])
def test_dicom_without_preamble_or_file_meta(tmp_path, implicit_vr):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.set_pixel_data(np.array([[0, 5], [10, 20]], np.uint16), "MONOCHROME2", 16)
    del ds.file_meta  # an old ACR-NEMA style file: no preamble, no transfer syntax
    path = tmp_path / "old.dcm"
    ds.save_as(path, implicit_vr=implicit_vr, little_endian=True)
    assert not is_dicom(path)  # found by its .dcm suffix instead
    np.testing.assert_allclose(read_image(path), [[0, 0.25], [0.5, 1]], atol=1e-7)


def test_image_file_detection(tmp_path, write_image):
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm"} <= IMAGE_SUFFIXES
    write_image(tmp_path / ".hidden.png")
    (tmp_path / "notes.txt").write_text("x")
    assert not is_image_file(tmp_path / ".hidden.png")
    assert not is_image_file(tmp_path / "notes.txt")
    assert not is_dicom(tmp_path / "notes.txt")


def test_truncated_png_names_file_and_fix(tmp_path, write_image):
    good = write_image(tmp_path / "good.png", shape=(64, 64))
    data = good.read_bytes()
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(KecaeError, match=r"cut\.png.*re-export"):
        read_image(bad)


def test_text_named_png_and_missing_file(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("this is not an image\n")
    with pytest.raises(KecaeError, match=r"fake\.png: cannot read"):
        read_image(fake)
    with pytest.raises(KecaeError, match=r"absent\.png: file not found"):
        read_image(tmp_path / "absent.png")


def test_truncated_and_pixel_less_dicom(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "t.dcm", np.zeros((64, 64), np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000])
    with pytest.raises(KecaeError, match=r"t\.dcm: cannot decode DICOM"):
        read_image(path)

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PatientID = "x"
    ds.save_as(tmp_path / "report.dcm", enforce_file_format=False)
    with pytest.raises(KecaeError, match=r"report\.dcm: DICOM file without pixel data"):
        read_image(tmp_path / "report.dcm")


def test_preprocess_crop_keeps_the_centre_square():
    img = np.zeros((20, 40), np.float32)
    img[:, 10:30] = 1.0  # the centred 20 x 20 square is white, the sides black
    out = preprocess(img, 20, fit="crop")
    assert out.shape == (20, 20) and out.dtype == np.float32
    np.testing.assert_array_equal(out, 1.0)
    np.testing.assert_allclose(preprocess(img, 8, fit="crop"), 1.0, atol=1e-6)
    tall = img.T  # (40, 20): the crop is vertical now
    np.testing.assert_array_equal(preprocess(tall, 20, fit="crop"), 1.0)


def test_preprocess_pad_black_and_edge():
    img = np.full((20, 40), 0.75, np.float32)
    out = preprocess(img, 40, fit="pad")  # 10 black rows above and below
    np.testing.assert_array_equal(out[:10], -1.0)
    np.testing.assert_array_equal(out[30:], -1.0)
    np.testing.assert_allclose(out[10:30], 0.5)  # 0.75 -> 2 * 0.75 - 1
    np.testing.assert_allclose(preprocess(img, 40, fit="pad-edge"), 0.5)
    odd = preprocess(np.ones((3, 6), np.float32), 6, fit="pad")  # 3 pad rows: 1 above, 2 below
    np.testing.assert_array_equal(odd[:, 0], [-1, 1, 1, 1, -1, -1])


def test_preprocess_resize_is_antialiased_and_deterministic():
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)  # period 2 pixels
    small = preprocess(checker, 16)
    # an antialiased 4x reduction averages the pattern to mid-grey (0 in [-1, 1]);
    # plain subsampling would give only -1 or 1
    assert np.abs(small).max() < 0.05
    np.testing.assert_array_equal(small, preprocess(checker, 16))
    ramp = np.linspace(0, 1, 100, dtype=np.float32)[None].repeat(100, axis=0)
    big = preprocess(ramp, 299)
    assert big.shape == (299, 299) and big.min() >= -1 and big.max() <= 1
    assert np.all(np.diff(big[150]) >= -1e-4)  # still a ramp


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 0}, "size must be a positive"),
        ({"size": 16.0}, "size must be a positive"),
        ({"size": 16, "fit": "stretch"}, "fit must be one of"),
    ],
)
def test_preprocess_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        preprocess(np.zeros((8, 8), np.float32), **kwargs)
    with pytest.raises(ValueError, match="non-empty"):
        preprocess(np.zeros((8,), np.float32), 4)

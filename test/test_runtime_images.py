import cv2
import numpy as np
import pytest

from twinbrain_ros.runtime.images import compressed_to_rgb, image_cdr_fields, image_to_rgb, rgb_to_image_fields

RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _fields(pixels, encoding, pad=0, bigendian=False):
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1).view(np.uint8) if pixels.dtype == np.uint8 else (
        pixels.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(h, -1))
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return dict(encoding=encoding, height=h, width=w, step=padded.shape[1], is_bigendian=bigendian,
                data=padded.tobytes())


@pytest.mark.parametrize("pad", [0, 3])
def test_color_encodings(pad):
    alpha = np.full((5, 7, 1), 255, np.uint8)
    cases = {"rgb8": RGB, "bgr8": RGB[:, :, ::-1], "rgba8": np.concatenate([RGB, alpha], 2),
             "bgra8": np.concatenate([RGB[:, :, ::-1], alpha], 2)}
    for enc, pixels in cases.items():
        out = image_to_rgb(**_fields(np.ascontiguousarray(pixels), enc, pad))
        assert out.shape == (5, 7, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, RGB, err_msg=enc)


def test_rgb8_without_padding_is_zero_copy():
    fields = rgb_to_image_fields(RGB)
    buf = bytearray(fields["data"])
    out = image_to_rgb(**{**fields, "data": buf})
    buf[0] ^= 0xFF
    assert out[0, 0, 0] == RGB[0, 0, 0] ^ 0xFF


@pytest.mark.parametrize("enc", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_honours_endianness_and_padding(enc, bigendian):
    mono = np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000
    out = image_to_rgb(**_fields(mono, enc, pad=2, bigendian=bigendian))
    np.testing.assert_array_equal(out[:, :, 0], (mono >> 8).astype(np.uint8))
    assert np.all(out[:, :, 0] == out[:, :, 2])


def test_mono8():
    mono = RGB[:, :, 0].copy()
    out = image_to_rgb(**_fields(mono[:, :, None], "mono8", pad=1))
    np.testing.assert_array_equal(out[:, :, 1], mono)


def test_errors():
    with pytest.raises(ValueError, match="unsupported image encoding 'yuv422'"):
        image_to_rgb("yuv422", 2, 2, 4, False, bytes(8))
    with pytest.raises(ValueError, match="expected step\\*height"):
        image_to_rgb("rgb8", 5, 7, 21, False, bytes(10))
    with pytest.raises(ValueError, match="step 5 is smaller"):
        image_to_rgb("rgb8", 5, 7, 5, False, bytes(100))
    with pytest.raises(ValueError, match="could not decode compressed image"):
        compressed_to_rgb("jpeg", b"not an image")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed(ext):
    big = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_NEAREST)
    ok, data = cv2.imencode(ext, big[:, :, ::-1])
    out = compressed_to_rgb(ext[1:], data.tobytes())
    tol = 0 if ext == ".png" else 40
    assert out.shape == big.shape and np.abs(out.astype(int) - big).mean() <= tol / 4


def test_a_serialized_image_parses_to_the_same_pixels_as_rclpy_and_bad_bytes_are_refused():
    """The raw-subscription path: the CDR bytes rclpy would deserialize, read in place."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    for frame_id, pad in (("", 0), ("front_camera_optical", 3)):
        msg = Image(height=5, width=7, encoding="rgb8", step=7 * 3 + pad)
        msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 12, 250_000_000, frame_id
        msg.data = np.pad(rgb, ((0, 0), (0, pad // 3), (0, 0))).reshape(5, -1)[:, :7 * 3 + pad].tobytes()
        buf = serialize_message(msg)
        stamp, fields = image_cdr_fields(buf)
        assert stamp == 12.25 and fields["encoding"] == "rgb8" and fields["step"] == 7 * 3 + pad
        np.testing.assert_array_equal(image_to_rgb(**fields), rgb)
        with pytest.raises(ValueError, match="truncated"):
            image_cdr_fields(buf[:-4])
    with pytest.raises(ValueError, match="CDR"):
        image_cdr_fields(b"\x00")

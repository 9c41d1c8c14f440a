"""sensor_msgs/Image and CompressedImage payloads -> RGB uint8 arrays (no ROS imports: plain fields).

Zero-copy where the layout allows it (rgb8 without row padding is a view on the message buffer);
``step`` row padding and the big-endian flag are honoured; unsupported encodings raise ValueError.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

# encoding -> (channels, bytes per channel)
_LAYOUT = {
    "rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1), "8UC3": (3, 1),
    "mono8": (1, 1), "8UC1": (1, 1), "mono16": (1, 2), "16UC1": (1, 2),
}
SUPPORTED_ENCODINGS = tuple(_LAYOUT)


def resize_rgb(rgb: np.ndarray, size) -> np.ndarray:
    """``rgb`` at ``size`` (height, width), area-averaged (what the policy does to camera frames); as is
    when it already has that size."""
    h, w = size
    return rgb if rgb.shape[:2] == (h, w) else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def image_to_rgb(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data) -> np.ndarray:
    """Decode a raw image message's fields into an (H, W, 3) uint8 RGB array."""
    if encoding not in _LAYOUT:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, depth = _LAYOUT[encoding]
    row_bytes = width * channels * depth
    if height <= 0 or width <= 0:
        raise ValueError(f"image has no pixels ({width}x{height})")
    if step < row_bytes:
        raise ValueError(f"image step {step} is smaller than width*channels*depth = {row_bytes}")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < step * height:
        raise ValueError(f"image data has {buf.size} bytes, expected step*height = {step * height}")
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]      # drops row padding, still a view
    if depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        mono = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
        # 16-bit mono/depth: keep the high byte so the full range maps onto 0..255.
        return np.repeat((mono >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    pixels = rows.reshape(height, width, channels)
    if encoding == "rgb8":
        return pixels
    if encoding in ("bgr8", "8UC3"):
        return pixels[:, :, ::-1]
    if encoding == "rgba8":
        return pixels[:, :, :3]
    if encoding == "bgra8":
        return pixels[:, :, 2::-1]
    return np.repeat(pixels, 3, axis=2)   # mono8 / 8UC1


def image_cdr_fields(buf) -> tuple[float, dict]:
    """A serialized sensor_msgs/Image (the CDR bytes a raw subscription hands over) -> (stamp in seconds,
    the fields ``image_to_rgb`` takes, ``data`` a zero-copy view on ``buf``). Skips what rclpy would
    otherwise do per frame: build a Python message and copy the pixels into it. Raises ValueError on a
    truncated or big-endian-encapsulated buffer (ROS 2 middlewares send little-endian CDR)."""
    view = memoryview(buf)
    if len(view) < 4 or view[1] not in (0x01, 0x03):   # CDR_LE / PL_CDR_LE encapsulation
        raise ValueError("not a little-endian CDR sensor_msgs/Image")
    body, pos = view[4:], 0                            # alignment counts from the end of the header

    def take(fmt: str, align: int):
        nonlocal pos
        pos += -pos % align
        (value,) = struct.unpack_from(fmt, body, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("<I", 4)
        text = bytes(body[pos:pos + max(n - 1, 0)]).decode("utf-8", "replace")
        pos += n
        return text

    try:
        sec, nanosec = take("<i", 4), take("<I", 4)
        string()                                       # header.frame_id
        height, width = take("<I", 4), take("<I", 4)
        encoding = string()
        is_bigendian = take("<B", 1)
        step, size = take("<I", 4), take("<I", 4)
    except struct.error as exc:
        raise ValueError(f"truncated sensor_msgs/Image: {exc}") from None
    if pos + size > len(body):
        raise ValueError(f"truncated sensor_msgs/Image: {size} data bytes announced, {len(body) - pos} present")
    data = np.frombuffer(body, np.uint8, size, pos)
    return sec + nanosec * 1e-9, {"encoding": encoding, "height": height, "width": width, "step": step,
                                  "is_bigendian": bool(is_bigendian), "data": data}


def compressed_to_rgb(fmt: str, data) -> np.ndarray:
    """Decode a CompressedImage (jpeg/png) into (H, W, 3) uint8 RGB."""
    buf = np.frombuffer(data, dtype=np.uint8)
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if decoded is None:
        raise ValueError(f"could not decode compressed image (format {fmt!r}, {buf.size} bytes); expected jpeg or png")
    return decoded[:, :, ::-1]


def rgb_to_image_fields(rgb: np.ndarray) -> dict:
    """The inverse for publishers (sim, tests): rgb8 fields of a sensor_msgs/Image."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    return {"encoding": "rgb8", "height": h, "width": w, "step": w * 3, "is_bigendian": 0, "data": rgb.tobytes()}


def rgb_to_jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of an RGB frame, for a sensor_msgs/CompressedImage (format "rgb8; jpeg compressed bgr8",
    image_transport's convention): ~20x smaller than rgb8 on the sim's 224 x 224 scenes."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()

"""The ``rgb_array`` render mode: the episode transcript drawn as a fixed-size image, so
video recorders and tooling that asks for frames (SB3's ``make_vec_env`` passes
``render_mode="rgb_array"``) work on the text env."""

from __future__ import annotations

import textwrap

import numpy as np

__all__ = ["FRAME_SHAPE", "text_to_rgb"]

#: (height, width, channels) of every frame
FRAME_SHAPE = (480, 640, 3)
_LINE_PX = 11  # Pillow's default bitmap font is about 6 x 11 pixels
_CHARS = FRAME_SHAPE[1] // 6 - 2


def text_to_rgb(text: str) -> np.ndarray:
    """``text`` (its last lines when too long, wrapped to the width) on a white frame."""
    from PIL import Image, ImageDraw

    lines = [w for line in text.splitlines() for w in (textwrap.wrap(line, _CHARS) or [""])]
    lines = lines[-(FRAME_SHAPE[0] // _LINE_PX - 1) :]
    image = Image.new("RGB", (FRAME_SHAPE[1], FRAME_SHAPE[0]), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((4, 4 + i * _LINE_PX), line, fill="black")
    return np.asarray(image, dtype=np.uint8).copy()

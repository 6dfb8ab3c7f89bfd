"""Grid pictures of molecules, as numpy arrays (for TensorBoard) or PNG files.

Generated SMILES are often invalid; a picture of a batch should still show
*where* the invalid ones were, so they are drawn as empty cells that keep
their legend (e.g. the score) instead of being dropped, and no input (empty
list, all invalid) makes drawing fail: logging a picture must never stop a
training run.

Drawing uses ``rdkit.Chem.Draw.MolsToGridImage`` with RDKit's Cairo backend,
which needs no display.  The array is ``uint8`` of shape ``[H, W, 3]``, as
``SummaryWriter.add_image(tag, array, step, dataformats="HWC")`` expects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rdkit import Chem
from rdkit.Chem import Draw

from seiko.chem.filters import to_mol as _parse

__all__ = ["grid_image", "save_grid"]


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB on white: RDKit may return RGBA with a transparent (black) fill."""
    if img.mode == "RGB":
        return img
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _font(size: int):
    try:
        return ImageFont.load_default(size=max(8, size // 13))
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def grid_image(
    smiles: Sequence[str],
    legends: Sequence[str] | None = None,
    per_row: int = 4,
    size: int = 200,
) -> np.ndarray:
    """Draw ``smiles`` in a grid of ``size`` x ``size`` cells, ``per_row`` wide.

    Returns a ``uint8`` array ``[H, W, 3]`` with W = ``per_row * size`` and
    H = ``size`` times the number of rows.  Invalid SMILES become empty
    cells that still show their legend (RDKit draws no legend for them, so
    it is written with PIL at RDKit's legend position).  An empty list gives
    a blank white ``size`` x ``size`` image.
    """
    if per_row < 1:
        raise ValueError(f"per_row must be >= 1, got {per_row}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    smiles = list(smiles)
    if legends is not None:
        legends = ["" if x is None else str(x) for x in legends]
        if len(legends) != len(smiles):
            raise ValueError(
                f"legends has {len(legends)} entries for {len(smiles)} smiles"
            )
    if not smiles:
        return np.full((size, size, 3), 255, dtype=np.uint8)

    mols = [_parse(s) for s in smiles]
    # An atom-less molecule draws as an empty cell; None cells come out
    # transparent.  Use the former so every cell has a white background.
    drawable = [m if m is not None else Chem.Mol() for m in mols]
    img = Draw.MolsToGridImage(
        drawable,
        molsPerRow=per_row,
        subImgSize=(size, size),
        legends=legends,
        returnPNG=False,
    )
    if not isinstance(img, Image.Image):  # e.g. PNG bytes in some environments
        import io

        img = Image.open(io.BytesIO(img))
    img = _to_rgb(img)

    if legends is not None and any(m is None for m in mols):
        canvas = ImageDraw.Draw(img)
        font = _font(size)
        for i, (mol, legend) in enumerate(zip(mols, legends)):
            if mol is not None or not legend:
                continue
            row, col = divmod(i, per_row)
            x = col * size + size / 2
            y = row * size + size * 0.935
            canvas.text((x, y), legend, fill=(0, 0, 0), font=font, anchor="ms")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def save_grid(
    path: str | os.PathLike,
    smiles: Sequence[str],
    legends: Sequence[str] | None = None,
    per_row: int = 4,
    size: int = 200,
) -> Path:
    """Write :func:`grid_image` of ``smiles`` to ``path`` as PNG; return the path.

    Parent folders are created, so a run can save pictures into a fresh
    output directory.
    """
    path = Path(path)
    array = grid_image(smiles, legends=legends, per_row=per_row, size=size)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path

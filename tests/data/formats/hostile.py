"""Builders of hostile release files for the limit and security tests (small files that declare
or reference huge tables)."""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

import numpy as np

from migalab.data.formats.miga2025 import write_openpose_table

SHEET = "xl/worksheets/sheet1.xml"


def base_xlsx(path: Path, rows: int = 2) -> Path:
    """A real (rows, 411) OpenPose xlsx as the release writes it."""
    table = np.zeros((rows, 411))
    table[:, 0::3], table[:, 1::3], table[:, 2::3] = 100.0, 200.0, 0.5
    return write_openpose_table(path, table)


def rewrite_sheet(src: Path, dst: Path, dimension: str | None = None, extra: str = "",
                  sheet_data: str | None = None) -> Path:  # fmt: skip
    """Copy the xlsx ``src`` to ``dst`` with the sheet's ``<dimension ref>`` replaced, ``extra``
    appended to its ``<sheetData>``, or the whole ``<sheetData>`` body replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == SHEET:
                text = data.decode()
                if dimension is not None:
                    text = re.sub(r'<dimension ref="[^"]*"/>', f'<dimension ref="{dimension}"/>',
                                  text)  # fmt: skip
                if sheet_data is not None:
                    text = re.sub(r"<sheetData>.*</sheetData>", f"<sheetData>{sheet_data}"
                                  "</sheetData>", text, flags=re.S)  # fmt: skip
                text = text.replace("</sheetData>", extra + "</sheetData>")
                data = text.encode()
            zout.writestr(info.filename, data)
    return dst


def far_cell_xlsx(src: Path, dst: Path, ref: str = "XFD999999") -> Path:
    """An honest ``<dimension>`` but one cell at ``ref``: calamine allocates every cell up to it
    (rows x columns x 32 bytes) and aborts the process when that fails."""
    row = re.sub(r"^[A-Z]+", "", ref)
    return rewrite_sheet(src, dst, extra=f'<row r="{row}"><c r="{ref}"><v>1</v></c></row>')


def lying_size_zip(src: Path, dst: Path, entry: str = SHEET) -> Path:
    """``src`` with ``entry``'s declared uncompressed size (local header and central directory)
    set to 16 bytes while its stream holds the whole sheet."""
    data = bytearray(src.read_bytes())
    name = entry.encode()
    for sig, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (pos := data.find(sig, start)) >= 0:
            start = pos + 4
            name_at = pos + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                data[pos + size_at : pos + size_at + 4] = struct.pack("<I", 16)
    dst.write_bytes(bytes(data))
    return dst


def zip_bomb_xlsx(src: Path, dst: Path, megabytes: int = 64) -> Path:
    """``src`` plus an entry of ``megabytes`` MB of zeros (deflate: ~1000x)."""
    dst.write_bytes(src.read_bytes())
    with zipfile.ZipFile(dst, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/media/image1.bin", bytes(megabytes << 20))
    return dst

"""A miniature CelebA in the official layout, and a real HTTP server to download it from."""

import hashlib
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

ATTRIBUTE_NAMES = [
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
]
"""The 40 attribute names, in the order of the official list_attr_celeba.txt."""

PARTITION = (0,) * 12 + (1,) * 5 + (2,) * 5 + (0, 0)
"""Split code of image i + 1: mostly contiguous as in the official file, two train images last."""


@dataclass
class MiniCelebA:
    folder: Path
    files: list[str]
    """Image file names (000001.jpg, ...) in partition-file order."""
    colours: np.ndarray
    """uint8 (N, 3): the flat colour of each image."""
    attributes: np.ndarray
    """int64 (N, 40) of 0/1, what the datamodule should return."""

    def split(self, code: int) -> list[int]:
        """Row indices of the images in split `code`, in file order."""
        return [i for i, c in enumerate(PARTITION) if c == code]

    def md5(self, name: str) -> str:
        return hashlib.md5((self.folder / name).read_bytes()).hexdigest()


def make_celeba(folder: Path, *, zipped: bool = False, attributes: bool = True) -> MiniCelebA:
    """Write 24 flat-coloured 178x218 JPEGs, list_eval_partition.txt and (optionally)
    list_attr_celeba.txt into `folder`, as the official release lays them out."""
    folder.mkdir(parents=True, exist_ok=True)
    count = len(PARTITION)
    files = [f"{i:06d}.jpg" for i in range(1, count + 1)]
    rng = np.random.default_rng(0)
    colours = rng.integers(20, 236, (count, 3), dtype=np.uint8)
    values = rng.integers(0, 2, (count, 40), dtype=np.int64)
    if zipped:
        with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as archive:
            for name, colour in zip(files, colours, strict=True):
                with archive.open(f"img_align_celeba/{name}", "w") as member:
                    _face(colour).save(member, format="JPEG", quality=95)
    else:
        (folder / "img_align_celeba").mkdir(exist_ok=True)
        for name, colour in zip(files, colours, strict=True):
            _face(colour).save(folder / "img_align_celeba" / name, quality=95)
    # The official text files end their lines with \r\n.
    partition_lines = [f"{name} {code}" for name, code in zip(files, PARTITION, strict=True)]
    (folder / "list_eval_partition.txt").write_bytes(_crlf(partition_lines))
    if attributes:
        rows = [
            name + "".join(f" {2 * v - 1:2d}" for v in row)
            for name, row in zip(files, values, strict=True)
        ]
        header = [str(count), " ".join(ATTRIBUTE_NAMES) + " "]
        (folder / "list_attr_celeba.txt").write_bytes(_crlf(header + rows))
    return MiniCelebA(folder, files, colours, values)


def _face(colour: np.ndarray, size: tuple[int, int] = (178, 218)) -> Image.Image:
    return Image.new("RGB", size, tuple(int(c) for c in colour))


def _crlf(lines: list[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def write_jpeg(path: Path, size: tuple[int, int], colour=(128, 128, 128)) -> None:
    """Overwrite `path` with a flat JPEG of `size` (width, height)."""
    _face(np.array(colour), size).save(path, format="JPEG")


@contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 for the duration of the block; yields its base URL."""
    handler = partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

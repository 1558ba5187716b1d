"""CelebA (Liu et al., 2015) as a LightningDataModule: aligned face photos, colour, official split.

- Files, in torchvision's layout: ``img_align_celeba/`` (the 202 599 aligned 178x218 JPEGs) or
  ``img_align_celeba.zip`` (read without unpacking; also when the folder beside it lacks images,
  as an interrupted unzip leaves it), ``list_eval_partition.txt`` (the official
  split: 0 train, 1 valid, 2 test) and, for ``return_attributes=True``, ``list_attr_celeba.txt``
  (40 attributes of -1/1). Looked for in ``data_dir/celeba``, ``data_dir``, then the same two under
  ``$LIGHTNING_VAE_DATA``.
- ``prepare_data`` (rank zero) finds or downloads the files, then preprocesses each split once
  (centre 148x148 crop, the usual CelebA crop, resized to ``image_size``) into a uint8 ``.npy``
  cache (:mod:`.images`): about 2.4 GB for all splits at 64x64, 9.7 GB at 128x128. Later runs
  with the same settings reuse it; other settings build their own.
- Batches are ``(images, labels)``: float32 (B, 3, S, S) in [0, 1] (continuous intensities, for a
  Gaussian likelihood; no binarization) and either the attributes as int64 (B, 40) of 0/1
  (``return_attributes=True``) or int64 zeros (B,). They are drawn on the training device when
  the split fits the memory budget (:mod:`.device_loader`), else by a ``DataLoader``.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import constants
from pytorch_lightning.utilities.rank_zero import rank_zero_warn

from lightning_vae.checks import check_bool
from lightning_vae.data.base import ImageDataModule
from lightning_vae.data.device_loader import LoaderKind
from lightning_vae.data.download import DownloadError, download_file
from lightning_vae.data.images import ImageTransform, build_uint8_cache
from lightning_vae.data.sources import DATA_ENV

IMAGE_DIR = "img_align_celeba"
IMAGE_ZIP = "img_align_celeba.zip"
PARTITION_FILE = "list_eval_partition.txt"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
INPUT_SIZE = (178, 218)
"""(width, height) of every aligned CelebA image; the crop is only meaningful at this size."""
SPLITS = {"train": 0, "val": 1, "test": 2}
"""Split name → its code in list_eval_partition.txt."""
SPLIT_NAMES = {code: name for name, code in SPLITS.items()}
DAMAGED = "the file is damaged: delete it and download it again"
SHOWN_MISSING = 3
"""Missing images named in the error; the count says how many more."""
NUM_ATTRIBUTES = 40

MD5 = {
    IMAGE_ZIP: "00d2c5bc6d35e252742224ab0c1e8fcb",
    PARTITION_FILE: "d32c9cbf5e040fd4025c592c306e6668",
    ATTRIBUTE_FILE: "75e246fa4810816ffd6ee81facbd244c",
}
"""MD5s of the official files, as torchvision's ``CelebA.file_list`` gives them."""

HUB_REPO = "Yuehao/celeba"
HUB_REVISION = "main"
"""Git revision of `HUB_REPO` to fetch. The MD5s above, not the revision, vouch for the bytes."""
OFFICIAL_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


def hub_mirrors() -> tuple[str, ...]:
    """Base URLs the files are fetched from: a Hugging Face dataset repository holding the
    official files in torchvision's layout (Google Drive, torchvision's source, refuses automated
    downloads too often to be relied on). ``$HF_ENDPOINT`` selects a Hub mirror, as it does for
    huggingface_hub."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return (f"{endpoint}/datasets/{HUB_REPO}/resolve/{HUB_REVISION}/",)


@dataclass(frozen=True)
class CelebAFiles:
    """Where one complete copy of the CelebA files lives."""

    folder: Path
    images: Path
    """The ``img_align_celeba`` folder's parent (`folder`), or the zip archive."""
    partition: Path
    attributes: Path | None


def search_dirs(data_dir: str | Path) -> list[Path]:
    """Folders searched, in order: data_dir/celeba, data_dir, the same under $LIGHTNING_VAE_DATA."""
    roots = [Path(data_dir)]
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    return [folder for root in roots for folder in (root / "celeba", root)]


def find_files(folder: Path, need_attributes: bool) -> CelebAFiles | None:
    """The CelebA files in `folder` (images as a folder preferred over the zip), or None."""
    if (folder / IMAGE_DIR).is_dir():
        images = folder
    elif (folder / IMAGE_ZIP).is_file():
        images = folder / IMAGE_ZIP
    else:
        return None
    attributes = folder / ATTRIBUTE_FILE
    if not (folder / PARTITION_FILE).is_file() or (need_attributes and not attributes.is_file()):
        return None
    return CelebAFiles(
        folder, images, folder / PARTITION_FILE, attributes if attributes.is_file() else None
    )


def locate_celeba(
    data_dir: str | Path, download: bool, need_attributes: bool, *, progress: bool = True
) -> CelebAFiles:
    """The first complete copy in `search_dirs`; else, with `download`, fetch into
    ``data_dir/celeba`` whichever files it lacks; else a FileNotFoundError with manual steps."""
    dirs = search_dirs(data_dir)
    for folder in dirs:
        found = find_files(folder, need_attributes)
        if found is not None:
            return found
    target = Path(data_dir) / "celeba"
    wanted = [IMAGE_ZIP, PARTITION_FILE] + ([ATTRIBUTE_FILE] if need_attributes else [])
    if not download:
        raise FileNotFoundError(_missing_message(dirs, wanted, target))
    have_images = (target / IMAGE_DIR).is_dir()
    missing = [
        name for name in wanted
        if not (target / name).is_file() and not (name == IMAGE_ZIP and have_images)
    ]
    download_celeba(target, missing, progress=progress)
    found = find_files(target, need_attributes)
    assert found is not None, f"{target} lacks CelebA files just downloaded"
    return found


def download_celeba(
    folder: Path, names: list[str], *, mirrors: tuple[str, ...] | None = None,
    md5: dict[str, str] = MD5, progress: bool = True,
) -> None:
    """Fetch `names` into `folder` from `mirrors` (default `hub_mirrors()`, unless HF_HUB_OFFLINE
    keeps the Hub off), each checked against its MD5 before it appears in place; on failure,
    raise with the manual steps."""
    if mirrors is None and constants.HF_HUB_OFFLINE:
        raise DownloadError(f"CelebA is downloaded from the Hugging Face Hub, but HF_HUB_OFFLINE "
                            f"is set: unset it to download, or\n{_manual_steps(folder, names)}")
    for name in names:
        urls = [base + name for base in (mirrors or hub_mirrors())]
        try:
            download_file(urls, folder / name, f"md5:{md5[name]}", progress=progress)
        except DownloadError as error:
            raise DownloadError(f"{error}\n{_manual_steps(folder, names)}") from error


def _manual_steps(target: Path, names: list[str]) -> str:
    files = "\n".join(
        f"       {hub_mirrors()[0]}{name}\n         md5 {MD5[name]}" for name in names)
    return (
        "To get CelebA by hand:\n"
        f"  1. Download these files (the official ones, mirrored on the Hugging Face Hub):\n"
        f"{files}\n"
        f"     or take them from the official Google Drive folder linked at {OFFICIAL_PAGE}\n"
        f"     (Img/{IMAGE_ZIP}, Eval/{PARTITION_FILE}, Anno/{ATTRIBUTE_FILE}).\n"
        f"  2. Check each with `md5sum` against the md5 above.\n"
        f"  3. Put them in {target}/ ({IMAGE_ZIP} can stay zipped, or be unzipped there into "
        f"{IMAGE_DIR}/), then run again."
    )


def _missing_message(dirs: list[Path], wanted: list[str], target: Path) -> str:
    looked = []
    for folder in dirs:
        present = [name for name in (IMAGE_DIR, *wanted) if (folder / name).exists()]
        looked.append(f"  {folder}/" + (f"  (has only: {', '.join(present)})" if present else ""))
    expected = "\n".join(
        f"  {name}" + (f"  (or the unzipped folder {IMAGE_DIR}/)" if name == IMAGE_ZIP else "")
        for name in wanted
    )
    return (
        f"CelebA not found (download=False). Expected these files together in one folder:\n"
        f"{expected}\nLooked in:\n" + "\n".join(looked) + "\n"
        f"Pass download=True to fetch them into {target}/, set ${DATA_ENV} to a folder that "
        f"holds them, or:\n{_manual_steps(target, wanted)}"
    )


def read_partition(path: Path) -> dict[int, list[str]]:
    """list_eval_partition.txt → {0: train file names, 1: valid, 2: test}, in file order.

    An image listed twice is refused: the splits would overlap, and a model would be tested on
    images it was trained on."""
    splits: dict[int, list[str]] = {code: [] for code in SPLITS.values()}
    seen: dict[str, tuple[int, int]] = {}  # image → (line, split code) where first listed
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise _not_text(path, error) from None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ValueError(
                f"{path}, line {number}: expected '<image>.jpg <0|1|2>', got {line!r}; {DAMAGED}")
        name, code = fields[0], int(fields[1])
        if name in seen:
            first, first_code = seen[name]
            raise ValueError(
                f"{path}, line {number}: {name} is listed again, in the {SPLIT_NAMES[code]} "
                f"split (line {first} put it in the {SPLIT_NAMES[first_code]} split); each "
                f"image belongs to one split only: {DAMAGED}")
        seen[name] = (number, code)
        splits[code].append(name)
    return splits


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """list_attr_celeba.txt → (the 40 attribute names, image names, int64 (N, 40) of 0/1).

    The official layout: a line with the image count, a line with the names, then one line per
    image, ``<image>.jpg`` and 40 values of -1 or 1 separated by runs of spaces.
    """
    try:
        with path.open(encoding="utf-8") as lines:
            count, names = lines.readline().strip(), lines.readline().split()
    except UnicodeDecodeError as error:
        raise _not_text(path, error) from None
    if not count.isdigit() or len(names) != NUM_ATTRIBUTES:
        raise ValueError(
            f"{path}: expected the image count on line 1 and 40 attribute names on line 2; "
            f"{DAMAGED}")
    try:  # numpy's C parser, under a second for the full file; it checks every row's length
        table = np.loadtxt(path, dtype=np.int64, skiprows=2, converters={0: lambda _: 0}, ndmin=2)
        images = np.loadtxt(path, dtype=str, skiprows=2, usecols=0, ndmin=1).tolist()
    except ValueError as error:
        raise ValueError(f"{path}: {error}; {DAMAGED}") from error
    if table.shape[1] != 1 + NUM_ATTRIBUTES:
        raise ValueError(f"{path}: rows hold {table.shape[1] - 1} values, expected 40; {DAMAGED}")
    values = table[:, 1:]
    bad = np.flatnonzero(~np.isin(values, (-1, 1)).all(axis=1))
    if bad.size:
        raise ValueError(
            f"{path}: the line of {images[bad[0]]} holds values other than -1 and 1; {DAMAGED}")
    if len(images) != int(count):
        raise ValueError(f"{path}: line 1 announces {count} images, found {len(images)}; {DAMAGED}")
    return names, images, (values + 1) // 2


def _not_text(path: Path, error: UnicodeDecodeError) -> ValueError:
    """The error for an annotation file that is not text (a binary file saved under its name)."""
    return ValueError(f"{path}: not a text file ({error}); {DAMAGED}")


def check_images(
    files: CelebAFiles, partition: dict[int, list[str]], download: bool
) -> CelebAFiles:
    """`files`, once its images (the ``img_align_celeba/`` folder or the zip) are known to
    include every image `partition` lists. A folder lacking some (an interrupted unzip, a
    deleted file) gives way, with a warning, to the zip beside it when that holds them all;
    else a FileNotFoundError counts the missing images and says how to fix the folder or the zip
    (as fits `download`). A zip that cannot be read is named when its images are read."""
    listed = [name for names in partition.values() for name in names]
    if files.images.suffix == ".zip":
        members = _zip_members(files.images)
        missing = [] if members is None else [
            name for name in listed if f"{IMAGE_DIR}/{name}" not in members]
        if missing:
            raise FileNotFoundError(
                f"{_lacks(files.images, missing, listed, files.partition)}: it is not the whole "
                f"official archive. {_refetch_zip(files.folder, download)}")
        return files
    folder, archive = files.images / IMAGE_DIR, files.folder / IMAGE_ZIP
    present = set(os.listdir(folder))
    missing = [name for name in listed if name not in present]
    if not missing:
        return files
    nested = folder / IMAGE_DIR
    state = (f"they are one folder too deep, in {nested}/: move them up a level"
             if len(missing) == len(listed) and nested.is_dir() else
             "it looks incompletely extracted")
    lacks = f"{_lacks(f'{folder}/', missing, listed, files.partition)}: {state}"
    if _zip_holds(archive, listed):
        rank_zero_warn(f"{lacks}, so the images are read from {archive}, which holds them all. "
                       "Extract the zip again, or delete the folder, to silence this warning.")
        return replace(files, images=archive)
    raise FileNotFoundError(f"{lacks}. {_refill_steps(files.folder, download)}")


def _lacks(where: str | Path, missing: list[str], listed: list[str], partition: Path) -> str:
    """"`where` lacks N of the M images listed in `partition` (the first few, and how many
    more)"."""
    more = f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
    return (f"{where} lacks {len(missing)} of the {len(listed)} images listed in {partition} "
            f"({', '.join(missing[:SHOWN_MISSING])}{more})")


def _refetch_zip(folder: Path, download: bool) -> str:
    """How to replace an incomplete ``img_align_celeba.zip`` in `folder`."""
    archive = folder / IMAGE_ZIP
    fetch = ("download=True, as now, then downloads it again" if download
             else f"put the official one in {folder}, or pass download=True to download it")
    return f"Delete {archive} (the official one has md5 {MD5[IMAGE_ZIP]}): {fetch}."


def _refill_steps(folder: Path, download: bool) -> str:
    """How to replace an incomplete ``img_align_celeba/`` in `folder`: extract the zip again, or
    read the zip itself (downloaded, said as fits `download`)."""
    archive = folder / IMAGE_ZIP
    damaged = (f"{archive} beside it does not hold every listed image either: delete it too. "
               if archive.is_file() else "")
    fetch = ("download=True, as now, then downloads it" if download
             else f"put it in {folder}, or pass download=True to download it")
    return (f"{damaged}To fix it, extract the official {IMAGE_ZIP} (md5 {MD5[IMAGE_ZIP]}) into "
            f"{folder} again (`unzip -o {IMAGE_ZIP}` there), or delete {folder / IMAGE_DIR}/ and "
            f"let the zip be read without unzipping: {fetch}.")


def _zip_members(archive: Path) -> set[str] | None:
    """The member names of the zip `archive`; None when it is missing or no readable zip."""
    try:
        with zipfile.ZipFile(archive) as opened:
            return set(opened.namelist())
    except (OSError, zipfile.BadZipFile):
        return None


def _zip_holds(archive: Path, names: list[str]) -> bool:
    """Whether `archive` is a readable zip holding every one of `names` in ``img_align_celeba/``."""
    members = _zip_members(archive)
    return members is not None and all(f"{IMAGE_DIR}/{name}" in members for name in names)


class CelebADataModule(ImageDataModule):
    """Aligned CelebA faces, colour, with the official train / valid / test split.

    Args:
        data_dir: where to look for the files (see the module docstring) and download them.
        image_size: side of the square images, in pixels.
        crop_size: side of the centred square cut from each 178x218 image before resizing;
            148 (the usual choice, e.g. in VAE and GAN papers) keeps the face and drops most of
            the background. None takes the largest square, 178x178.
        batch_size: training batch size.
        download: fetch missing files (checked by MD5); False never uses the network.
        loader: ``"auto"`` (device-resident when a split fits the memory budget), ``"device"``
            or ``"dataloader"``.
        seed: seed of the training order (the split itself is the official one).
        cache_dir: folder for the preprocessed ``.npy`` files (default: ``cache/`` beside the
            CelebA files); point it elsewhere when that folder is read-only.
        return_attributes: labels are the 40 attributes, int64 (B, 40) of 0/1, instead of zeros.
        drop_last: drop the last incomplete training batch.
        eval_batch_size: validation/test batch size (default: ``batch_size``).
        progress: show progress bars while downloading and preprocessing.
    """

    dataset_name = "celeba"

    def __init__(
        self,
        data_dir: str = "data",
        image_size: int = 64,
        crop_size: int | None = 148,
        batch_size: int = 128,
        download: bool = True,
        loader: LoaderKind = "auto",
        seed: int = 0,
        cache_dir: str | None = None,
        return_attributes: bool = False,
        drop_last: bool = False,
        eval_batch_size: int | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         seed=seed, loader=loader, drop_last=drop_last, download=download,
                         progress=progress)
        check_bool("return_attributes", return_attributes)
        self.transform = ImageTransform(image_size, 3, crop_size, INPUT_SIZE)
        if crop_size is not None and crop_size > min(INPUT_SIZE):
            raise ValueError(
                f"crop_size={crop_size} must lie in [1, {min(INPUT_SIZE)}] (CelebA images are "
                f"{INPUT_SIZE[0]}x{INPUT_SIZE[1]}), or be None for the largest square"
            )
        self.cache_dir, self.return_attributes = cache_dir, return_attributes
        self.image_shape = (3, image_size, image_size)
        self.attribute_names: list[str] = []

    @property
    def preprocessing(self) -> dict[str, object]:
        """The input convention a model trained on this data keeps (``lightning_vae.preprocess``):
        the centred ``crop_size`` square of a 178x218 image, grey levels."""
        return {"binarize": "none", "crop_size": self.transform.crop_size,
                "input_size": list(INPUT_SIZE)}

    def prepare_data(self) -> None:
        """Find or download the files, then preprocess every split into the cache (rank zero)."""
        files, partition = self._locate(self.download)
        for split in SPLITS:
            self._cached_images(files, partition, split)

    def _build_splits(self) -> None:
        """Load the ``train`` / ``val`` / ``test`` splits from the cache, building any missing."""
        files, partition = self._locate(download=False)
        if self.return_attributes:
            self.attribute_names, attributed, values = read_attributes(files.attributes)
            row_of = {name: row for row, name in enumerate(attributed)}
        for split, code in SPLITS.items():
            images = torch.from_numpy(self._cached_images(files, partition, split))
            if self.return_attributes:
                rows = _rows(row_of, partition[code], files)
                labels = torch.from_numpy(values[rows])
            else:
                labels = torch.zeros(len(images), dtype=torch.int64)
            self.splits[split] = (images, labels)

    def _locate(self, download: bool) -> tuple[CelebAFiles, dict[int, list[str]]]:
        """The files (:func:`locate_celeba`, :func:`check_images`) and the official split
        they hold (:func:`read_partition`)."""
        files = locate_celeba(
            self.data_dir, download, self.return_attributes, progress=self.progress)
        partition = read_partition(files.partition)
        return check_images(files, partition, self.download), partition

    def _cached_images(
        self, files: CelebAFiles, partition: dict[int, list[str]], split: str
    ) -> np.ndarray:
        names = [f"{IMAGE_DIR}/{name}" for name in partition[SPLITS[split]]]
        if not names:
            raise ValueError(f"{files.partition} lists no images for the {split} split")
        return build_uint8_cache(
            names, files.images, self.cache_dir or files.folder / "cache", self.transform,
            prefix=f"celeba-{split}", progress=self.progress,
        )


def _rows(row_of: dict[str, int], names: list[str], files: CelebAFiles) -> list[int]:
    """Rows of the attribute table holding `names`, in that order."""
    try:
        return [row_of[name] for name in names]
    except KeyError as error:
        raise ValueError(
            f"{files.attributes} has no line for {error.args[0]}, listed in {files.partition}; "
            "the two files come from different copies: download them again"
        ) from None

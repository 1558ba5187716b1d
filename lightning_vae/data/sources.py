"""Where the MNIST-family IDX files come from, and where to find copies already on disk.

A :class:`IDXDatasetSpec` names a data set's four files, their shapes, the canonical ``.gz``
checksums (as torchvision lists them) and the mirrors. :func:`locate_files` reuses any copy it can
recognise before downloading: in ``data_dir``, in torchvision's layout ``data_dir/<Name>/raw``, the
same two under ``$LIGHTNING_VAE_DATA``, and system folders such as Debian's
``/usr/share/datasets/fashion-mnist``. A file is recognised by its IDX header and uncompressed size
(:func:`~lightning_vae.data.idx.idx_mismatch`), gzipped or not, never by the ``.gz`` hash:
recompressed copies hold identical IDX bytes under a different MD5. A split's images and labels
are always taken from the same folder, so one copy's images never get another copy's labels.
MNIST and Fashion-MNIST files share names, shapes and sizes, so a label file whose IDX bytes are
exactly the other data set's is passed over, saying so, and its folder with it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from lightning_vae.data.download import DownloadError, download_file
from lightning_vae.data.idx import IDXError, idx_mismatch, read_idx_bytes, read_idx_header

DATA_ENV = "LIGHTNING_VAE_DATA"
SPLIT_FILES = ("train_images", "train_labels", "test_images", "test_labels")
LABEL_FILES = ("train_labels", "test_labels")
PAIRS = (("train_images", "train_labels"), ("test_images", "test_labels"))
"""Files taken together from one folder, so images are never paired with another copy's labels."""


@dataclass(frozen=True)
class IDXFile:
    """One IDX file: its canonical (gzipped) name, that ``.gz``'s MD5, and the array shape.

    Copies on disk are recognised by the shape after its first axis, so a subset (a tiny test
    copy, say) in ``data_dir`` is used as is; the canonical length is ``shape[0]``.
    """

    name: str
    md5: str
    shape: tuple[int, ...]
    idx_md5: str | None = None
    """MD5 of the canonical file's uncompressed IDX bytes, the same in every recompressed copy.
    :func:`locate_files` checks it only for the label files (``LABEL_FILES``, 60 KB at most),
    where it is cheap and tells data sets apart; for every file, it is what a copy fetched by
    hand should have (:func:`refetch_advice`)."""


@dataclass(frozen=True)
class IDXDatasetSpec:
    """A data set stored as IDX files: folder name, mirrors, files keyed by ``SPLIT_FILES``."""

    name: str
    mirrors: tuple[str, ...]
    files: dict[str, IDXFile]
    system_dirs: tuple[Path, ...] = ()
    install_hint: str = ""


def _mnist_layout(
    md5s: tuple[str, str, str, str], idx_md5s: tuple[str, str, str, str]
) -> dict[str, IDXFile]:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    shapes = ((60000, 28, 28), (60000,), (10000, 28, 28), (10000,))
    return {
        key: IDXFile(name, md5, shape, idx_md5)
        for key, name, md5, shape, idx_md5 in zip(
            SPLIT_FILES, names, md5s, shapes, idx_md5s, strict=True
        )
    }


# The .gz checksums are torchvision's (torchvision/datasets/mnist.py: MNIST.resources,
# FashionMNIST.resources); the uncompressed ones are MNIST's published ones and those of
# Fashion-MNIST's original files (as Debian's dataset-fashion-mnist holds them).
MNIST = IDXDatasetSpec(
    name="MNIST",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    files=_mnist_layout(
        (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
        (
            "6bbc9ace898e44ae57da46a324031adb",
            "a25bea736e30d166cdddb491f175f624",
            "2646ac647ad5339dbf082846283269ea",
            "27ae3e4e09519cfbb04c329615203637",
        ),
    ),
)

FASHION_MNIST = IDXDatasetSpec(
    name="FashionMNIST",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    files=_mnist_layout(
        (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
        (
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "9018921c3c673c538a1fc5bad174d6f9",
            "8181f5470baa50b63fa0f6fddb340f0a",
            "15d484375f8d13e6eb1aabb0c3f46965",
        ),
    ),
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    install_hint="on Debian/Ubuntu, `sudo apt-get install dataset-fashion-mnist`",
)

DATA_SETS = (MNIST, FASHION_MNIST)
"""The data sets a copy on disk may be mistaken for one another."""


def search_dirs(spec: IDXDatasetSpec, data_dir: str | Path) -> list[Path]:
    """Folders searched, in order: data_dir, data_dir/<Name>/raw, the same under
    $LIGHTNING_VAE_DATA, then the spec's system folders."""
    roots = [Path(data_dir)]
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    dirs = [d for root in roots for d in (root, root / spec.name / "raw")]
    return dirs + list(spec.system_dirs)


def download_dir(spec: IDXDatasetSpec, data_dir: str | Path) -> Path:
    """Where downloads go: torchvision's layout, ``data_dir/<Name>/raw``."""
    return Path(data_dir) / spec.name / "raw"


def _holds_another_data_set(spec: IDXDatasetSpec, key: str, path: Path) -> str | None:
    """Why ``path`` is not ``spec``'s file ``key`` although it has its shape: it holds exactly
    another data set's file (MNIST's labels in a folder searched for Fashion-MNIST, say), or
    cannot be read. None when neither, and for image files (too large to hash at every start;
    the label file beside them decides their folder)."""
    if key not in LABEL_FILES:
        return None
    owners = {other.files[key].idx_md5: other.name for other in DATA_SETS
              if other.name != spec.name and other.files[key].idx_md5}
    if not owners:
        return None
    try:
        digest = hashlib.md5(read_idx_bytes(path, read_idx_header(path).total_bytes)).hexdigest()
    except IDXError as error:
        return error.reason
    if digest not in owners:
        return None
    return f"holds {owners[digest]}'s {key.replace('_', ' ')}, not {spec.name}'s"


def _find(spec: IDXDatasetSpec, key: str, dirs: list[Path], rejected: list[str]) -> Path | None:
    """The first ``name`` or ``name`` without ``.gz`` in ``dirs`` holding the expected IDX array
    (and not another data set's)."""
    spec_file = spec.files[key]
    raw_name = spec_file.name.removesuffix(".gz")
    for folder in dirs:
        for candidate in (folder / spec_file.name, folder / raw_name):
            if not candidate.is_file():
                continue
            problem = idx_mismatch(candidate, (None, *spec_file.shape[1:]))
            problem = problem or _holds_another_data_set(spec, key, candidate)
            if problem is None:
                return candidate
            rejected.append(f"  {candidate}: {problem}")
            # A warning, not a log line: Python shows each text once, and the files are looked
            # up twice a run (prepare_data, then setup).
            warnings.warn(f"ignoring {candidate}: {problem}", stacklevel=2)
    return None


def _find_pair(
    spec: IDXDatasetSpec, keys: tuple[str, ...], dirs: list[Path], rejected: list[str]
) -> dict[str, Path] | None:
    """The files ``keys`` from the first folder in ``dirs`` that holds all of them usable."""
    for folder in dirs:
        found = {key: _find(spec, key, [folder], rejected) for key in keys}
        if all(found.values()):
            return found
    return None


def _placing_by_hand(spec: IDXDatasetSpec, missing: list[str], target: Path) -> str:
    """Where files fetched by hand may go, for a download that failed: all of them, since the
    rest would fail the same way."""
    names = ", ".join(spec.files[key].name for key in missing)
    return (f"{spec.name} needs {names} (gzipped or not) in one folder: {target}, or any folder "
            f"that data_dir (--data.data_dir) or ${DATA_ENV} points at.")


def locate_files(
    spec: IDXDatasetSpec,
    data_dir: str | Path,
    download: bool,
    *,
    progress: bool = True,
) -> dict[str, Path]:
    """Paths of the spec's files keyed by ``SPLIT_FILES``, reusing copies on disk.

    Each image file is taken from the folder its label file is taken from (the first folder
    holding both, usable), so the two always come from one copy of the data. Missing files are
    downloaded into ``data_dir/<Name>/raw`` when ``download`` is True (checked
    against the canonical MD5s); otherwise no network is touched and a FileNotFoundError says
    where we looked and how to get the data.
    """
    dirs = search_dirs(spec, data_dir)
    rejected: list[str] = []
    found: dict[str, Path | None] = dict.fromkeys(spec.files)
    for keys in PAIRS:
        found.update(_find_pair(spec, keys, dirs, rejected) or {})
    missing = [key for key, path in found.items() if path is None]
    if missing and download:
        target = download_dir(spec, data_dir)
        for key in missing:
            f = spec.files[key]
            urls = [mirror + f.name for mirror in spec.mirrors]
            try:
                found[key] = download_file(urls, target / f.name, f"md5:{f.md5}",
                                           progress=progress)
            except DownloadError as error:
                raise DownloadError(f"{error}\n{_placing_by_hand(spec, missing, target)}"
                                    ) from None
    elif missing:
        names = ", ".join(spec.files[key].name for key in missing)
        looked = "\n".join(f"  {d}" for d in dirs)
        bad = ("\nFiles found but not usable:\n" + "\n".join(rejected)) if rejected else ""
        how = [
            f"pass download=True to fetch them into {download_dir(spec, data_dir)}",
            f"or put them (gzipped or not) in one of the folders above, or set ${DATA_ENV}",
        ]
        if spec.install_hint:
            how.insert(1, f"or {spec.install_hint}")
        raise FileNotFoundError(
            f"{spec.name}: {names} not found together in one folder (download=False). "
            f"Looked in:\n{looked}{bad}\n"
            f"To get the data: " + "; ".join(how) + "."
        )
    return {key: path for key, path in found.items() if path is not None}


def refetch_advice(spec: IDXDatasetSpec, key: str, data_dir: str | Path, download: bool) -> str:
    """How to replace a damaged copy of ``spec``'s file ``key`` that :func:`locate_files`
    accepted (its header and size are right, so only reading it all finds the damage): delete it,
    then a run with ``download=True`` fetches a fresh copy; said as fits ``download``, so that the
    advice never asks for an option already given. Names the MD5 a good copy has."""
    file = spec.files[key]
    where = download_dir(spec, data_dir)
    fetch = (f"run again: with download=True, as now, a fresh copy is downloaded into {where}"
             if download else f"pass download=True to download a fresh copy into {where}")
    check = (f"its uncompressed IDX bytes have MD5 {file.idx_md5} (check with `gunzip -c "
             f"{file.name} | md5sum`: a recompressed .gz, such as Debian's, has another .gz MD5)"
             if file.idx_md5 else f"the canonical {file.name} has MD5 {file.md5}")
    return (f"delete it and {fetch}, checked against the canonical MD5 {file.md5}. Or replace "
            f"it by hand with a good copy: {check}.")

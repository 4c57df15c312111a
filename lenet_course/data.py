"""Where the data lives, and Fashion-MNIST / MNIST as tensors.

One rule decides the data root (:func:`data_root`): an explicit argument, else the environment
variable ``LENET_COURSE_DATA``, else ``data/`` in the repository.  Inside it the files follow
torchvision's layout (``FashionMNIST/raw/train-images-idx3-ubyte[.gz]`` ...), so a folder prepared
by torchvision on an online machine works offline as it is.

Then, in the order the data flows: :func:`read_idx` reads one IDX file (clear
:class:`DatasetFormatError` for damaged ones); :func:`load_dataset` returns a whole split as an
:class:`ImageSet` (uint8 images, int64 labels, class names); :func:`split_train_validation` holds
out a seeded validation part; :func:`normalization_for` takes the statistics from the training
images; :func:`prepare_images` pads and scales uint8 images on their device for a model.
torch is imported inside the functions that need it, so checking files stays fast.
"""

from __future__ import annotations

import gzip
import numbers
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: checking files needs no torch
    import torch

#: The course's data sets: command-line name -> torchvision's folder (and class) name.
DATASETS: dict[str, str] = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}

#: The four IDX files of each data set, without the ``.gz`` that the download carries.
RAW_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

ENV_VAR = "LENET_COURSE_DATA"
REPO_ROOT = Path(__file__).resolve().parent.parent


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are not under the data root and could not be downloaded."""


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root`` if given, else ``$LENET_COURSE_DATA``, else ``<repo>/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        # A relative path is read from the working directory; a notebook kernel runs in
        # notebooks/, so fall back to the repository root when that is where it exists.
        if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
            return REPO_ROOT / path
        return path
    return REPO_ROOT / "data"


def canonical_name(name: str) -> str:
    """Map ``"fashion-mnist"``, ``"FashionMNIST"``, ``"mnist"``... to the course's name."""
    key = name.lower().replace("_", "-")
    aliases = {"fashionmnist": "fashion-mnist", "fashion-mnist": "fashion-mnist", "mnist": "mnist"}
    if key not in aliases:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return aliases[key]


def raw_folder(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds the IDX files of ``name`` under the data root."""
    return data_root(root) / DATASETS[canonical_name(name)] / "raw"


def idx_path(name: str, stem: str, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The IDX file ``stem`` of ``name``: the uncompressed file, else the ``.gz``, else None."""
    folder = raw_folder(name, root)
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def missing_files(name: str, root: str | os.PathLike[str] | None = None) -> list[str]:
    """The IDX files of ``name`` found neither uncompressed nor gzipped under the data root."""
    return [stem for stem in RAW_FILES if idx_path(name, stem, root) is None]


def _not_found_message(name: str, root: Path, missing: list[str], reason: str) -> str:
    folder = raw_folder(name, root)
    return (
        f"{name}: {len(missing)} of {len(RAW_FILES)} files missing in {folder}: "
        f"{', '.join(missing)} (looked for each with and without .gz). {reason}\n"
        f"To fix: connect to the internet and run `python -m lenet_course data --dataset {name}` "
        f"(torchvision downloads them), or set {ENV_VAR} to a folder that holds "
        f"{DATASETS[canonical_name(name)]}/raw/ in torchvision's layout "
        f"(for example {ENV_VAR}=../shared/data)."
    )


def ensure_dataset(
    name: str, root: str | os.PathLike[str] | None = None, download: bool = True
) -> Path:
    """Make sure the four IDX files of ``name`` are under the data root; return the root.

    Missing files are downloaded with torchvision when ``download`` is true (the real download,
    for online users).  If that is off or fails, :class:`DatasetNotFoundError` says which files
    are missing, where they were looked for and how to fix it.
    """
    name = canonical_name(name)
    root_path = data_root(root)
    missing = missing_files(name, root_path)
    if not missing:
        return root_path
    if not download:
        raise DatasetNotFoundError(_not_found_message(name, root_path, missing, "Download is off."))
    import torchvision  # imported here: finding files needs no torch

    dataset_class = getattr(torchvision.datasets, DATASETS[name])
    try:
        for train in (True, False):
            dataset_class(root=str(root_path), train=train, download=True)
    except Exception as error:  # network errors come in many types; all mean the same here
        missing = missing_files(name, root_path)
        reason = f"Downloading them failed: {type(error).__name__}: {error}".strip()
        raise DatasetNotFoundError(_not_found_message(name, root_path, missing, reason)) from error
    missing = missing_files(name, root_path)
    if missing:
        raise DatasetNotFoundError(
            _not_found_message(name, root_path, missing, "The download did not produce them.")
        )
    return root_path


# --- reading IDX files --------------------------------------------------------------------------

#: Class names in label order (label ``i`` is ``CLASS_NAMES[name][i]``), from Zalando's
#: Fashion-MNIST README and, for MNIST, the digits themselves.
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "mnist": tuple(str(digit) for digit in range(10)),
}  # fmt: skip

#: The split names and the prefix of their files.
SPLITS: dict[str, str] = {"train": "train", "test": "t10k"}

#: IDX element type codes (the third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8",
}  # fmt: skip

_REFETCH = (
    "Delete it and run `python -m lenet_course data` to download it again, "
    "or point {env} at an intact copy."
)


class DatasetFormatError(ValueError):
    """An IDX file exists but is not what it should be (truncated, corrupt, wrong kind)."""


def _format_error(path: Path, problem: str) -> DatasetFormatError:
    return DatasetFormatError(f"{path}: {problem}. " + _REFETCH.format(env=ENV_VAR))


def _read_bytes(path: Path) -> bytearray:
    """The file's content (gunzipped when it ends in ``.gz``), as a writable buffer."""
    if path.suffix != ".gz":
        buffer = bytearray(path.stat().st_size)
        with open(path, "rb") as file:
            file.readinto(buffer)
        return buffer
    try:
        with gzip.open(path, "rb") as file:
            return bytearray(file.read())
    except EOFError as error:  # the stream stops before its end marker
        raise _format_error(path, f"truncated gzip file ({error})") from error
    except (OSError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise _format_error(path, f"corrupt gzip file ({error})") from error


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into a numpy array of the shape its header declares.

    The IDX format (LeCun's MNIST page): a magic number ``0x00 0x00 <type> <ndim>``, then
    ``ndim`` big-endian 32-bit sizes, then the data.  Anything else raises
    :class:`DatasetFormatError` naming the file and what is wrong with it.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise _format_error(path, f"only {len(data)} bytes, too short for an IDX header")
    zero, kind, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or kind not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise _format_error(
            path,
            f"wrong IDX magic number 0x{bytes(data[:4]).hex()} (expected 0x0000TTNN with type TT "
            f"in {{{', '.join(f'{k:02x}' for k in _IDX_DTYPES)}}} and 1 <= NN <= 4 dimensions; "
            "is this an IDX file?)",
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _format_error(path, f"{len(data)} bytes, shorter than its {header}-byte header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[kind])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise _format_error(
            path,
            f"truncated: the header declares shape {shape} ({expected} data bytes) "
            f"but the file holds only {found}",
        )
    if found > expected:
        raise _format_error(
            path, f"{found - expected} bytes of trailing data after the declared shape {shape}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array if dtype.isnative or dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


# --- whole data sets as tensors -----------------------------------------------------------------


class ImageSet(NamedTuple):
    """One split of a data set as whole tensors: ``images`` (uint8, N x 28 x 28), ``labels``
    (int64, N) and the ``classes`` names (``classes[label]``).

    It is a tuple, so ``images, labels, classes = data`` works.  ``len(data)`` is 3, as for any
    3-tuple (overriding it would break ``_replace``): count examples with ``len(data.labels)``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ImageSet:
        """The same images and labels on ``device`` (moved once; batches are slices there)."""
        return ImageSet(
            self.images.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            self.classes,
        )

    def subset(self, index: torch.Tensor | slice) -> ImageSet:
        """The examples at ``index`` (a slice, or a tensor of positions or a boolean mask)."""
        if not isinstance(index, slice):
            index = index.to(self.images.device)
        return ImageSet(self.images[index], self.labels[index], self.classes)

    def class_counts(self) -> torch.Tensor:
        """How many examples each class has (int64, one entry per class)."""
        return self.labels.bincount(minlength=len(self.classes))

    def __repr__(self) -> str:
        n, *size = self.images.shape
        return (
            f"ImageSet({n} images {'x'.join(map(str, size))} {str(self.images.dtype)[6:]} "
            f"on {self.images.device}, {len(self.classes)} classes)"
        )


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ImageSet:
    """One split (``"train"`` or ``"test"``) of ``"fashion-mnist"`` or ``"mnist"``, as tensors.

    The files are found by :func:`ensure_dataset` (downloaded with torchvision if missing and
    ``download`` is true, else :class:`DatasetNotFoundError`), read with :func:`read_idx` and
    checked: 28 x 28 uint8 images, one label in 0..9 per image.  The tensors are on the CPU;
    move them to the training device once with ``.to(device)``.
    """
    import torch

    if split not in SPLITS:
        raise ValueError(
            f"split={split!r} is not a split; use 'train' or 'test' "
            "(pass the data root as root=...)"
        )
    name = canonical_name(name)
    root_path = ensure_dataset(name, root, download=download)
    prefix = SPLITS[split]
    image_path = idx_path(name, f"{prefix}-images-idx3-ubyte", root_path)
    label_path = idx_path(name, f"{prefix}-labels-idx1-ubyte", root_path)
    assert image_path is not None and label_path is not None  # ensure_dataset checked
    images, labels = read_idx(image_path), read_idx(label_path)
    classes = CLASS_NAMES[name]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise _format_error(
            image_path,
            f"holds {images.dtype} data of shape {images.shape}; expected uint8 images N x 28 x 28",
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise _format_error(
            label_path, f"holds {labels.dtype} data of shape {labels.shape}; expected uint8 N"
        )
    if len(images) != len(labels):
        raise DatasetFormatError(
            f"{name} {split}: {len(images)} images in {image_path} but {len(labels)} labels in "
            f"{label_path}; the two files must hold the same number of examples. Delete both "
            f"and run `python -m lenet_course data` to download them again, or point {ENV_VAR} "
            "at an intact copy."
        )
    if len(labels) and int(labels.max()) >= len(classes):
        raise _format_error(
            label_path, f"label {int(labels.max())} found; labels must be 0..{len(classes) - 1}"
        )
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels).to(torch.int64), classes)


def split_train_validation(
    data: ImageSet, validation: int | float, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """Split ``data`` at random (fixed ``seed``) into (train, validation).

    ``validation`` is a number of examples (an int, ``0 <= validation < N``) or a fraction
    (a float, ``0 <= validation < 1``).  The same seed always gives the same split, on any device.
    """
    import torch

    n = len(data.labels)
    if isinstance(validation, bool) or not isinstance(validation, numbers.Real):
        raise TypeError(f"validation={validation!r}; give a count (int) or a fraction (float)")
    if isinstance(validation, numbers.Integral):
        count = int(validation)
    else:
        if not 0.0 <= validation < 1.0:
            raise ValueError(f"validation={validation} as a fraction must be in [0, 1)")
        count = round(validation * n)
    if not 0 <= count < n:
        raise ValueError(
            f"validation={validation} examples out of {n}; use 0 <= validation < {n} "
            "so that some training examples remain"
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)  # on the CPU: the same split everywhere
    return data.subset(order[count:]), data.subset(order[:count])


# --- normalisation ------------------------------------------------------------------------------

#: LeCun et al. (1998), Sec. II-B: background (white) -> -0.1, foreground (black) -> 1.175.
#: "This makes the mean input roughly 0, and the variance roughly 1 which accelerates learning."
PAPER_BACKGROUND, PAPER_FOREGROUND = -0.1, 1.175

NORMALIZATIONS = ("standardize", "paper")


def _spec_field(input_spec: Any, field: str) -> Any:
    try:
        return getattr(input_spec, field)
    except AttributeError:
        raise TypeError(
            f"input_spec {input_spec!r} has no .{field}; pass model.input_spec "
            "(an InputSpec with channels, size and normalization)"
        ) from None


def pixel_statistics(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of the pixels of uint8 ``images``, scaled to [0, 1].

    Exact (float64 from a 256-bin histogram), on the images' device, without a float copy.
    """
    import torch

    if images.dtype != torch.uint8:
        raise TypeError(f"images are {images.dtype}; expected uint8 pixel values 0..255")
    if images.numel() == 0:
        raise ValueError("no images: cannot compute pixel statistics of an empty set")
    counts = torch.bincount(images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64, device=counts.device) / 255.0
    total = counts.sum()
    mean = (counts * values).sum() / total
    variance = (counts * (values - mean) ** 2).sum() / total
    return float(mean), float(variance.sqrt())


def normalization_for(input_spec: Any, train_images: torch.Tensor) -> dict[str, Any]:
    """How to scale pixels for a model: ``{"kind": "paper"}`` or ``{"kind": "standardize",
    "mean": m, "std": s}`` with ``m`` and ``s`` computed from ``train_images`` (uint8).

    Pass the training images only (not validation or test), so nothing about the held-out data
    leaks into the model.  The result is JSON-ready and goes into checkpoints.
    """
    kind = _spec_field(input_spec, "normalization")
    if kind == "paper":
        return {"kind": "paper"}
    if kind == "standardize":
        mean, std = pixel_statistics(train_images)
        return {"kind": "standardize", "mean": mean, "std": std}
    raise ValueError(f"input_spec.normalization={kind!r}; expected one of {NORMALIZATIONS}")


def prepare_images(
    images: torch.Tensor, input_spec: Any, normalization: dict[str, Any]
) -> torch.Tensor:
    """uint8 images (N x 28 x 28, or N x 1 x 28 x 28) -> float32 N x C x S x S for a model.

    On the images' own device: pads 28 -> 32 with background (0) when ``input_spec.size`` is
    32, then scales: "standardize" gives ``(x / 255 - mean) / std``, "paper" maps background 0
    to -0.1 and foreground 255 to 1.175, linearly (LeCun et al. 1998).
    """
    import torch

    size, channels = _spec_field(input_spec, "size"), _spec_field(input_spec, "channels")
    expected_kind = _spec_field(input_spec, "normalization")
    if images.dtype != torch.uint8:
        raise TypeError(f"images are {images.dtype}; expected uint8 pixel values 0..255")
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise ValueError(
            f"images of shape {tuple(images.shape)}; expected N x 28 x 28 or N x 1 x 28 x 28"
        )
    kind = normalization.get("kind") if isinstance(normalization, dict) else None
    if kind not in NORMALIZATIONS:
        raise ValueError(
            f"normalization={normalization!r}; expected {{'kind': 'standardize', 'mean': ..., "
            "'std': ...}} or {'kind': 'paper'} (see normalization_for)"
        )
    if kind != expected_kind:
        raise ValueError(
            f"normalization kind {kind!r} does not match input_spec.normalization="
            f"{expected_kind!r}; compute it with normalization_for(model.input_spec, ...)"
        )
    pad, odd = divmod(size - images.shape[-1], 2)
    if pad < 0 or odd:
        raise ValueError(
            f"cannot turn {images.shape[-1]}x{images.shape[-1]} images into input_spec.size="
            f"{size}; expected a size of {images.shape[-1]} or {images.shape[-1]} + an even margin"
        )
    if pad:
        images = torch.nn.functional.pad(images, (pad, pad, pad, pad), value=0)
    if kind == "paper":
        scale, shift = (PAPER_FOREGROUND - PAPER_BACKGROUND) / 255.0, PAPER_BACKGROUND
    else:
        mean, std = float(normalization["mean"]), float(normalization["std"])
        if not std > 0:
            raise ValueError(f"normalization std={std}; it must be positive")
        scale, shift = 1.0 / (255.0 * std), -mean / std
    out = images.to(torch.float32).mul_(scale).add_(shift)
    if channels != 1:
        out = out.expand(-1, channels, -1, -1).contiguous()
    return out

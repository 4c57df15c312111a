"""Fashion-MNIST / MNIST files (torchvision's layout: a folder filled online works offline) ->
read_idx -> load_dataset (an ImageSet) -> prepare_images (the input a model's InputSpec wants)."""

import gzip
import hashlib
import numbers
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

DATASETS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}  # -> torchvision's folder, class
SPLITS = {"train": "train", "test": "t10k"}  # split name -> the prefix of its files
#: The four IDX files of each data set (train-images-idx3-ubyte, ...), without the download's .gz.
_STEMS = ("images-idx3-ubyte", "labels-idx1-ubyte")
RAW_FILES = tuple(f"{prefix}-{stem}" for prefix in SPLITS.values() for stem in _STEMS)
#: The MD5s of the four .gz files in RAW_FILES order, as torchvision's MNIST classes publish them.
_GZ_MD5 = {
    "fashion-mnist": "8d4fb7e6c68d591d4c3dfef9ec88bf0d 25c81989df183df01b3e8a0aad5dffbe "
    "bef4ecab320f06d8554ea6380940ec79 bb300cfdad3c16e7a12a480ee83cd310",
    "mnist": "f68b3c2dcbeaaa9fbdd348bbdeb94873 d53e105ee54ea40749a09fcbcd1e9432 "
    "9fb629c4189551a2d022fa330f9573f3 ec29112dd5afa0611ce80d1b7f02629c",
}
ENV_VAR = "LENET_COURSE_DATA"


def course_root(package: Path, cwd: Path) -> Path:
    """The course's checkout: the package's parent (an editable install), else the first folder
    from ``cwd`` up that holds notebooks/ and benchmarks/ (on a class server the package is
    installed and each student's clone holds the rest, deploy/README.md)."""
    for root in (package.parent, cwd, *cwd.parents):
        if (root / "notebooks").is_dir() and (root / "benchmarks").is_dir():
            return root
    return package.parent


REPO_ROOT = course_root(Path(__file__).resolve().parent, Path.cwd())
#: Class names in label order (Zalando's Fashion-MNIST README; MNIST's are the digits).
_FASHION = "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
CLASS_NAMES = {"fashion-mnist": tuple(_FASHION.split(",")), "mnist": tuple("0123456789")}
#: IDX element type codes (the third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
PathLike = str | os.PathLike[str]


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are not under the data root and could not be downloaded."""


class DatasetFormatError(ValueError):
    """An IDX file exists but is not what it should be (truncated, corrupt, wrong kind)."""


def _format_error(path: Path | str | None, problem: str, it: str = "it") -> DatasetFormatError:
    fix = f"delete {it} and run `python -m lenet_course data`, or point {ENV_VAR} at an intact copy"
    return DatasetFormatError(f"{path}: {problem}; {fix}")


def _refuse_special(path: Path) -> None:
    """Refuse a folder, FIFO or device without opening it: opening a FIFO would wait forever."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise _format_error(path, "is not a regular file (a folder, FIFO or device)")


def _read(path: Path) -> bytes:
    _refuse_special(path)
    try:
        return path.read_bytes()
    except PermissionError:
        raise DatasetFormatError(f"{path}: permission denied; make it readable") from None


def data_root(root: PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$LENET_COURSE_DATA``, else ``<repo>/data``."""
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root={root!r} is not a folder's path; pass a str or a Path, or None")
    env = os.environ.get(ENV_VAR) or REPO_ROOT / "data"
    path = Path(root if root is not None else env).expanduser()
    # A relative path is read from here, else (a notebook runs in notebooks/) from the repository.
    relative = root is None and not path.is_absolute() and not path.exists()
    return REPO_ROOT / path if relative and (REPO_ROOT / path).exists() else path


def canonical_name(name: str) -> str:
    """Map ``"fashion-mnist"``, ``"FashionMNIST"``, ``"mnist"``... to the course's name."""
    key = str(name).lower().replace("_", "-").replace("fashionmnist", "fashion-mnist")
    if not isinstance(name, str) or key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return key


def raw_folder(name: str, root: PathLike | None = None) -> Path:
    return data_root(root) / DATASETS[canonical_name(name)] / "raw"


def idx_path(name: str, stem: str, root: PathLike | None = None) -> Path | None:
    """The IDX file ``stem`` of ``name``: the uncompressed file, else the ``.gz``, else None."""
    folder = raw_folder(name, root)
    try:
        path = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.exists()), None)
    except PermissionError:
        raise DatasetNotFoundError(f"{folder}: permission denied; make it readable") from None
    if path is not None:
        _refuse_special(path)
    return path


def missing_files(name: str, root: PathLike | None = None) -> list[str]:
    return [stem for stem in RAW_FILES if idx_path(name, stem, root) is None]


def _not_found(name: str, root: Path, reason: str) -> DatasetNotFoundError:
    missing, folder = missing_files(name, root), raw_folder(name, root)
    return DatasetNotFoundError(
        f"{name}: {len(missing)} of {len(RAW_FILES)} files missing in {folder}: "
        f"{', '.join(missing)} (with or without .gz). {reason} Run `python -m lenet_course data "
        f"--dataset {name}` online, or set {ENV_VAR} to a folder holding {DATASETS[name]}/raw/."
    )


def ensure_dataset(
    name: str, root: PathLike | None = None, download: bool = True, verify: bool = True
) -> Path:
    """The data root, once the files of ``name`` are there (downloaded) and checked (``verify``)."""
    name, root_path = canonical_name(name), data_root(root)
    if missing_files(name, root_path):
        if not download:
            raise _not_found(name, root_path, "Download is off.")
        _download(name, root_path)
    for stem, md5 in zip(RAW_FILES, _GZ_MD5[name].split(), strict=True):
        path = idx_path(name, stem, root_path)
        if verify and path.suffix == ".gz":
            found = hashlib.md5(_read(path)).hexdigest()
            if found != md5:
                raise _format_error(path, f"its MD5 is {found}, but torchvision publishes {md5}")
    return root_path


def _download(name: str, root: Path) -> None:
    """Download ``name`` with torchvision; if that fails, remove the empty folders it made."""
    import torchvision  # here: it is slow to import and only needed online

    raw = raw_folder(name, root)
    made = [p for p in (raw, *raw.parents) if not p.exists()]  # deepest first
    try:
        for train in (True, False):
            getattr(torchvision.datasets, DATASETS[name])(str(root), train, download=True)
    except Exception as error:  # network errors come in many types; all mean the same here
        for folder in made:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        reason = " ".join(f"Downloading them failed: {type(error).__name__}: {error}".split())
        raise _not_found(name, root, reason) from error  # one line; torchvision's has several
    if missing_files(name, root):
        raise _not_found(name, root, "The download did not produce them.")


def read_idx(path: PathLike) -> np.ndarray:
    """One IDX file (the format of LeCun's MNIST page, plain or ``.gz``) as an array."""
    path = Path(path)
    try:  # a writable copy, so that the arrays made from it are writable too
        data = bytearray(gzip.decompress(_read(path)) if path.suffix == ".gz" else _read(path))
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:  # EOF: the stream stops early
        why = "truncated" if isinstance(error, EOFError) else "corrupt"
        raise _format_error(path, f"{why} gzip file ({error})") from error
    # The header: two zero bytes, the element type, the number of dimensions, each size (4 bytes).
    if len(data) < 4:
        raise _format_error(path, f"only {len(data)} bytes, too short for an IDX header")
    kind, ndim, header = data[2], data[3], 4 + 4 * data[3]
    if data[0] or data[1] or kind not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise _format_error(path, f"wrong IDX magic number 0x{data[:4].hex()}; not an IDX file?")
    if len(data) < header:
        raise _format_error(path, f"{len(data)} bytes, shorter than its {header}-byte header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[kind])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        why = "truncated" if found < expected else f"{found - expected} bytes of trailing data"
        raise _format_error(path, f"{why}: shape {shape} is {expected} bytes, the file has {found}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))  # to this machine's


class ImageSet(NamedTuple):
    """One split as whole tensors: ``images`` (uint8, N x 28 x 28), ``labels`` (int64, N) and
    ``classes`` (names).  ``len(data)`` is 3, as for any 3-tuple: use ``len(data.labels)``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def to(self, device: torch.device | str) -> "ImageSet":
        """The same images and labels on ``device`` (moved once; batches are slices there)."""
        return ImageSet(self.images.to(device), self.labels.to(device), self.classes)

    def subset(self, index: torch.Tensor | slice) -> "ImageSet":
        """The examples at ``index`` (a slice, or a tensor of positions or a boolean mask)."""
        index = index if isinstance(index, slice) else index.to(self.images.device)
        return ImageSet(self.images[index], self.labels[index], self.classes)

    def class_counts(self) -> torch.Tensor:
        return self.labels.bincount(minlength=len(self.classes))

    def __repr__(self) -> str:
        n, *size = self.images.shape
        kind = f"{'x'.join(map(str, size))} {str(self.images.dtype)[6:]}"
        return f"ImageSet({n} images {kind} on {self.images.device}, {len(self.classes)} classes)"


def load_dataset(
    name: str, split: str = "train", root: PathLike | None = None, download: bool = True
) -> ImageSet:
    """A split ("train"/"test") as CPU tensors, checked: 28 x 28 uint8 images, one label each."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; use 'train' or 'test' (and root=... for the data root)")
    if not isinstance(download, bool):
        raise ValueError(f"download={download!r}; use True or False")
    name = canonical_name(name)
    root_path = ensure_dataset(name, root, download=download, verify=False)  # read_idx checks
    image_path, label_path = (idx_path(name, f"{SPLITS[split]}-{s}", root_path) for s in _STEMS)
    images, labels = read_idx(image_path), read_idx(label_path)  # type: ignore[arg-type]
    want = [(image_path, images, (28, 28), "N x 28 x 28 images"), (label_path, labels, (), "N")]
    for path, array, tail, what in want:
        if array.dtype != np.uint8 or array.shape[1:] != tail:
            problem = f"holds {array.dtype} data of shape {array.shape}; expected uint8 {what}"
            raise _format_error(path, problem)
    if len(images) != len(labels):
        problem = f"{len(images)} images in {image_path} but {len(labels)} labels in {label_path}"
        raise _format_error(f"{name} {split}", problem, "both")
    classes = CLASS_NAMES[name]
    if len(labels) and int(labels.max()) >= len(classes):
        problem = f"label {int(labels.max())} found; labels must be 0..{len(classes) - 1}"
        raise _format_error(label_path, problem)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels).long(), classes)


def _check_uint8(images: torch.Tensor, what: str = "images") -> None:
    if images.dtype != torch.uint8:
        raise TypeError(f"{what} are {images.dtype}; expected uint8 pixel values 0..255")


def images_and_labels(data: Any, what: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images, int64 labels) of an ``ImageSet`` or an ``(images, labels)`` pair."""
    pair = (data.images, data.labels) if hasattr(data, "images") else data
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(f"{what} is a {type(data).__name__}; pass an ImageSet or (images, labels)")
    images, labels = pair
    _check_uint8(images, f"{what} images")  # fit normalises them itself
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(f"{what} has {len(images)} images and {len(labels)} labels")
    if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.min() < 0:
        raise ValueError(f"{what} labels must be a tensor of whole numbers >= 0 (class indices)")
    return images, labels.long()


def check_labels(labels: torch.Tensor, outputs: int, model_name: str) -> None:
    """Refuse labels that a model with ``outputs`` class scores cannot be trained on."""
    if int(labels.max()) >= outputs:
        raise ValueError(
            f"the training labels go up to {int(labels.max())}, but {model_name} has {outputs} "
            f"outputs (classes 0..{outputs - 1}); relabel the data, or build a model with "
            f"num_classes={int(labels.max()) + 1}"
        )


def split_train_validation(
    data: ImageSet, validation: int | float, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """(train, validation) parts of ``data``; ``validation`` is a count or a fraction in [0, 1)."""
    n = len(data.labels)
    if isinstance(validation, bool) or not isinstance(validation, numbers.Real):
        raise TypeError(f"validation={validation!r}; give a count (int) or a fraction (float)")
    if not isinstance(validation, numbers.Integral) and not 0.0 <= validation < 1.0:
        raise ValueError(f"validation={validation} as a fraction must be in [0, 1)")
    count = int(validation) if isinstance(validation, numbers.Integral) else round(validation * n)
    if not 0 <= count < n:
        raise ValueError(f"validation={validation} examples out of {n}; use 0 <= validation < {n}")
    # A CPU generator: the same split on every machine.
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return data.subset(order[count:]), data.subset(order[:count])


def random_subset(data: ImageSet, size: int | None, seed: int) -> ImageSet:
    """``size`` examples of ``data`` drawn with ``seed`` (all if None or >= N): --train-subset."""
    if size is None or size >= len(data.labels):
        return data
    if size < 1:
        raise ValueError(f"size={size!r}; expected a positive number of examples, or None for all")
    return split_train_validation(data, size, seed)[1]  # the same draw as a validation set


#: LeCun et al. (1998), Sec. II-B: background (white) -> -0.1, foreground (black) -> 1.175.
#: "This makes the mean input roughly 0, and the variance roughly 1 which accelerates learning."
PAPER_BACKGROUND, PAPER_FOREGROUND = -0.1, 1.175
NORMALIZATIONS: tuple[str, ...] = ("standardize", "paper")
INPUT_SIZES: tuple[int, ...] = (28, 32)


@dataclass(frozen=True)
class InputSpec:
    """A model's input: ``channels`` x ``size`` x ``size`` images, normalised one way
    ("standardize": with the training set's mean and std; "paper": background -0.1, ink 1.175)."""

    channels: int = 1
    size: int = 28
    normalization: str = "standardize"

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"channels={self.channels!r} must be a positive integer")
        if self.size not in INPUT_SIZES:
            raise ValueError(f"size={self.size!r} is not supported; use one of {INPUT_SIZES}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization={self.normalization!r} is unknown; use one of {NORMALIZATIONS}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_input(x: torch.Tensor, spec: InputSpec, model_name: str) -> None:
    """A clear error if ``x`` is not a batch for ``spec`` (not "mat1 and mat2 shapes cannot...")."""
    if x.dim() == 4 and tuple(x.shape[1:]) == spec.shape:
        return
    c, s, side = spec.channels, spec.size, x.shape[-1] if x.dim() else 0
    message = f"{model_name} expects a batch of shape (N, {c}, {s}, {s}); got {tuple(x.shape)}."
    if tuple(x.shape) == spec.shape:
        message += " Add the batch dimension: x.unsqueeze(0)."
    elif x.dim() == 4 and side in INPUT_SIZES and side != s:
        message += (
            f" This model was built for {s}x{s} images; build it with input_size={side} "
            f"for {side}x{side} images, or prepare the images for it with"
            " lenet_course.data.prepare_images(images, model.input_spec, ...)."
        )
    raise ValueError(message)


def pixel_statistics(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 ``images`` scaled to [0, 1], exact (a histogram)."""
    _check_uint8(images)
    if images.numel() == 0:
        raise ValueError("no images: cannot compute pixel statistics of an empty set")
    counts = torch.bincount(images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64, device=counts.device) / 255.0
    mean = (counts * values).sum() / counts.sum()
    variance = (counts * (values - mean) ** 2).sum() / counts.sum()
    return float(mean), float(variance.sqrt())


def normalization_for(input_spec: InputSpec, train_images: torch.Tensor) -> dict[str, Any]:
    """``{"kind": "paper"}``, or ``{"kind": "standardize", "mean": m, "std": s}`` of the uint8
    ``train_images`` (only those: nothing of the held-out data may leak into the model)."""
    kind = input_spec.normalization
    if kind not in NORMALIZATIONS:
        raise ValueError(f"input_spec.normalization={kind!r}; expected one of {NORMALIZATIONS}")
    if kind == "paper":
        return {"kind": "paper"}
    mean, std = pixel_statistics(train_images)
    return {"kind": "standardize", "mean": mean, "std": std}


def prepare_images(
    images: torch.Tensor, input_spec: InputSpec, normalization: dict[str, Any]
) -> torch.Tensor:
    """uint8 images (N x [1 x] 28 x 28) -> the float32 N x C x S x S batch ``input_spec`` wants."""
    if not hasattr(input_spec, "size"):  # a model, say, instead of model.input_spec
        raise TypeError(f"input_spec {input_spec!r} has no .size; pass model.input_spec")
    _check_uint8(images)
    images = images.unsqueeze(1) if images.ndim == 3 else images
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images of shape {tuple(images.shape)}; expected N x [1 x] 28 x 28")
    scale, shift = _scale_and_shift(normalization, input_spec.normalization)
    side, size = images.shape[-1], input_spec.size
    pad, odd = divmod(size - side, 2)
    if pad < 0 or odd:
        raise ValueError(f"cannot pad {side}x{side} images evenly to input_spec.size={size}")
    if pad:  # with 0, the background
        images = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    x = images.to(torch.float32).mul_(scale).add_(shift)
    return x if input_spec.channels == 1 else x.expand(-1, input_spec.channels, -1, -1).contiguous()


def _scale_and_shift(normalization: dict[str, Any], kind: str) -> tuple[float, float]:
    """(scale, shift): a pixel value v (0..255) becomes the input v * scale + shift."""
    if not isinstance(normalization, dict) or normalization.get("kind") != kind:
        raise ValueError(
            f"normalization={normalization!r} does not match input_spec.normalization={kind!r}; "
            "expected the dict of normalization_for(model.input_spec, train_images)"
        )
    if kind == "paper":  # background 0 -> -0.1, foreground 255 -> 1.175, linearly
        return (PAPER_FOREGROUND - PAPER_BACKGROUND) / 255.0, PAPER_BACKGROUND
    mean, std = float(normalization["mean"]), float(normalization["std"])
    if not std > 0:
        raise ValueError(f"normalization std={std}; it must be positive")
    return 1.0 / (255.0 * std), -mean / std


def augment(x: torch.Tensor, crop: int, flip: bool, background: float) -> torch.Tensor:
    """``x`` (N x C x H x W), each image flipped left-right with probability 1/2 (``flip``) and
    shifted up to ``crop`` pixels each way (a random crop of it padded with ``background``)."""
    # Each draw is on x's device, from torch's generator (whose state a checkpoint saves).
    n, _, h, w = x.shape
    if flip:
        x = torch.where(torch.rand(n, 1, 1, 1, device=x.device) < 0.5, x.flip(3), x)
    if crop:
        padded = torch.nn.functional.pad(x, (crop, crop, crop, crop), value=background)
        dy, dx = torch.randint(0, 2 * crop + 1, (2, n, 1, 1), device=x.device)
        rows = dy + torch.arange(h, device=x.device)[:, None]  # N x H x 1
        cols = dx + torch.arange(w, device=x.device)  # N x 1 x W
        x = padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols]  # N x H x W x C
        x = x.permute(0, 3, 1, 2)  # N x C x H x W (its memory stays channels-last)
    return x


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the examples in ``epoch``, from (seed, epoch) on the CPU: alike on resume."""
    seed = (seed * 1_000_003 + epoch) % 2**64  # a generator takes seeds below 2**64
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))

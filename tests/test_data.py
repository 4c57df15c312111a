"""Tests for lenet_course.data: real data, the data-root rules, bad files, normalisation, splits."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lenet_course import data
from lenet_course.data import (
    CLASS_NAMES,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageSet,
    InputSpec,
    check_input,
    load_dataset,
    normalization_for,
    prepare_images,
    random_subset,
    read_idx,
    split_train_validation,
)

torch.set_num_threads(1)  # 2-core machines shared by several jobs

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@dataclass(frozen=True)
class Spec:
    """Stands in for InputSpec: prepare_images reads only these three fields, and a stand-in can
    hold values that InputSpec refuses, to reach prepare_images' own checks."""

    channels: int = 1
    size: int = 28
    normalization: str = "standardize"


# --- writing small IDX files ---------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: bytes | None = None) -> bytes:
    """The IDX encoding of ``array`` (uint8 only needs no byte swapping)."""
    codes = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype(">i2"): 0x0B}
    array = np.asarray(array)
    code = codes[array.dtype if array.dtype.itemsize == 1 else array.dtype.newbyteorder(">")]
    if magic is None:
        magic = bytes([0, 0, code, array.ndim])
    dims = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return magic + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_split(
    root: Path,
    name: str = "fashion-mnist",
    n_images: int = 20,
    n_labels: int | None = None,
    gz: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Write all four IDX files of a tiny fake data set under ``root``; return the train split."""
    rng = np.random.default_rng(seed)
    folder = root / data.DATASETS[name] / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    train = None
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n_images, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_labels or n_images, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            path = folder / f"{prefix}-{kind}-ubyte"
            payload = idx_bytes(array)
            if gz:
                Path(f"{path}.gz").write_bytes(gzip.compress(payload))
            else:
                path.write_bytes(payload)
        if prefix == "train":
            train = (images, labels)
    assert train is not None
    return train


def raw_file(root: Path, stem: str, name: str = "fashion-mnist") -> Path:
    return root / data.DATASETS[name] / "raw" / stem


# --- real data ---------------------------------------------------------------------------------


def test_fashion_mnist_real_counts_and_shapes(real_data_root: Path) -> None:
    train = load_dataset("fashion-mnist", "train", root=real_data_root)
    test = load_dataset("fashion-mnist", "test", root=real_data_root)
    assert train.images.shape == (60_000, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.shape == (60_000,) and train.labels.dtype == torch.int64
    assert test.images.shape == (10_000, 28, 28)
    assert train.class_counts().tolist() == [6000] * 10
    assert test.class_counts().tolist() == [1000] * 10
    assert train.classes == CLASS_NAMES["fashion-mnist"]
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert train.images.is_contiguous() and int(train.images.max()) == 255


def test_mnist_real_counts(real_data_root: Path) -> None:
    train = load_dataset("mnist", "train", root=real_data_root)
    test = load_dataset("MNIST", "test", root=real_data_root)
    assert train.class_counts().tolist() == MNIST_TRAIN_COUNTS
    assert test.class_counts().tolist() == MNIST_TEST_COUNTS
    assert train.classes == tuple("0123456789")


def test_real_gz_and_plain_files_agree(real_data_root: Path) -> None:
    plain = raw_file(real_data_root, "t10k-labels-idx1-ubyte")
    gzipped = Path(f"{plain}.gz")
    if not (plain.is_file() and gzipped.is_file()):
        pytest.fail("the shared data should hold both the .gz and the uncompressed files")
    assert np.array_equal(read_idx(plain), read_idx(gzipped))


def test_real_pixel_statistics(real_data_root: Path) -> None:
    fashion = load_dataset("fashion-mnist", root=real_data_root)
    mnist = load_dataset("mnist", root=real_data_root)
    assert data.pixel_statistics(mnist.images) == pytest.approx((0.1307, 0.3081), abs=5e-5)
    mean, std = data.pixel_statistics(fashion.images)
    assert (mean, std) == pytest.approx((0.2860, 0.3530), abs=5e-5)
    pixels = fashion.images.double() / 255
    assert mean == pytest.approx(pixels.mean().item(), abs=1e-9)
    assert std == pytest.approx(pixels.std(unbiased=False).item(), abs=1e-9)


# --- the data-root rules and missing files -------------------------------------------------------


def test_data_root_argument_beats_env_beats_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "from-env"))
    assert data.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data.data_root() == tmp_path / "from-env"
    monkeypatch.delenv(data.ENV_VAR)
    assert data.data_root() == data.REPO_ROOT / "data"
    monkeypatch.setenv(data.ENV_VAR, "")
    assert data.data_root() == data.REPO_ROOT / "data"


def test_env_var_is_used_by_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = write_split(tmp_path)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    loaded = load_dataset("fashion-mnist", download=False)
    assert np.array_equal(loaded.images.numpy(), images)
    assert np.array_equal(loaded.labels.numpy(), labels)


def test_missing_files_message_names_files_place_and_fix(tmp_path: Path) -> None:
    write_split(tmp_path)
    raw_file(tmp_path, "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("fashion-mnist", "train", root=tmp_path, download=False)
    message = str(caught.value)
    assert "t10k-images-idx3-ubyte" in message
    assert "train-images-idx3-ubyte" not in message  # only the missing one
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert data.ENV_VAR in message and "python -m lenet_course data" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_failed_download_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With download on, torchvision's real downloader is called; its failure is reported."""
    import torchvision

    calls = []

    class Offline:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DatasetNotFoundError, match="no network") as caught:
        load_dataset("mnist", root=tmp_path)
    assert calls == [(str(tmp_path), True, True)]
    assert "train-labels-idx1-ubyte" in str(caught.value)


def test_gz_files_alone_are_enough_and_plain_files_win(tmp_path: Path) -> None:
    images, labels = write_split(tmp_path, gz=True, seed=1)
    assert data.missing_files("fashion-mnist", tmp_path) == []
    loaded = load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert np.array_equal(loaded.images.numpy(), images)
    # An uncompressed copy next to the .gz is read instead of it.
    plain_images, _ = write_split(tmp_path, gz=False, seed=2)
    loaded = load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert np.array_equal(loaded.images.numpy(), plain_images)


def test_bad_split_and_name() -> None:
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_dataset("fashion-mnist", split="validation")
    with pytest.raises(ValueError, match="unknown data set 'cifar10'"):
        load_dataset("cifar10")


# --- bad files -----------------------------------------------------------------------------------


def test_truncated_plain_file(tmp_path: Path) -> None:
    write_split(tmp_path)
    path = raw_file(tmp_path, "train-images-idx3-ubyte")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetFormatError, match="truncated") as caught:
        load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert str(path) in str(caught.value) and "(20, 28, 28)" in str(caught.value)
    assert "python -m lenet_course data" in str(caught.value)


def test_truncated_gzip(tmp_path: Path) -> None:
    write_split(tmp_path, gz=True)
    path = Path(f"{raw_file(tmp_path, 'train-images-idx3-ubyte')}.gz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetFormatError, match="truncated gzip") as caught:
        load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b"this is not gzip" + b[16:], id="not-gzip"),
        pytest.param(lambda b: b[:40] + bytes(x ^ 0xFF for x in b[40:80]) + b[80:], id="flipped"),
        pytest.param(lambda b: b[:-8] + bytes(8), id="bad-crc"),
    ],
)
def test_corrupt_gzip(tmp_path: Path, damage) -> None:
    write_split(tmp_path, gz=True)
    path = Path(f"{raw_file(tmp_path, 'train-images-idx3-ubyte')}.gz")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DatasetFormatError, match="corrupt gzip|truncated gzip") as caught:
        load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert str(path) in str(caught.value)


def test_wrong_magic_number(tmp_path: Path) -> None:
    write_split(tmp_path)
    path = raw_file(tmp_path, "train-labels-idx1-ubyte")
    path.write_bytes(b"\x1f\x8b" + path.read_bytes()[2:])  # e.g. a .gz saved without its suffix
    with pytest.raises(DatasetFormatError, match="wrong IDX magic number 0x1f8b0801") as caught:
        load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert str(path) in str(caught.value)


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    write_split(tmp_path, n_images=20, n_labels=19)
    with pytest.raises(DatasetFormatError, match="20 images .* but 19 labels") as caught:
        load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert "train-images-idx3-ubyte" in str(caught.value)
    assert "train-labels-idx1-ubyte" in str(caught.value)


def test_wrong_dimensions_and_labels(tmp_path: Path) -> None:
    write_split(tmp_path)
    images = raw_file(tmp_path, "train-images-idx3-ubyte")
    images.write_bytes(idx_bytes(np.zeros((20, 28, 27), np.uint8)))
    with pytest.raises(DatasetFormatError, match=r"shape \(20, 28, 27\).*N x 28 x 28"):
        load_dataset("fashion-mnist", root=tmp_path, download=False)
    images.write_bytes(idx_bytes(np.zeros((20, 28, 28), np.uint8)))
    labels = raw_file(tmp_path, "train-labels-idx1-ubyte")
    labels.write_bytes(idx_bytes(np.full(20, 10, np.uint8)))
    with pytest.raises(DatasetFormatError, match="label 10 found; labels must be 0..9"):
        load_dataset("fashion-mnist", root=tmp_path, download=False)


def test_read_idx_header_problems(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetFormatError, match="too short for an IDX header"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DatasetFormatError, match="shorter than its 16-byte header"):
        read_idx(path)
    path.write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)) + b"extra")
    with pytest.raises(DatasetFormatError, match="5 bytes of trailing data"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DatasetFormatError, match="wrong IDX magic number 0x00000701"):
        read_idx(path)
    assert issubclass(DatasetFormatError, ValueError)


@settings(max_examples=30, deadline=None)
@given(
    array=arrays(
        st.sampled_from([np.uint8, np.int8, np.dtype(">i2")]),
        st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple),
    ),
    gz=st.booleans(),
)
def test_read_idx_round_trip(tmp_path_factory: pytest.TempPathFactory, array, gz: bool) -> None:
    path = tmp_path_factory.mktemp("idx") / ("a.gz" if gz else "a")
    payload = idx_bytes(array)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    read = read_idx(path)
    assert read.shape == array.shape and np.array_equal(read, array)
    assert read.dtype.isnative and read.flags.writeable


# --- verified files, refused obstacles, no leftovers (issue 16) ---------------------------------


def test_the_md5_table_is_torchvisions() -> None:
    import torchvision

    for name, folder in data.DATASETS.items():
        published = dict(getattr(torchvision.datasets, folder).resources)
        assert data._GZ_MD5[name].split() == [published[f"{stem}.gz"] for stem in data.RAW_FILES]


def test_ensure_dataset_checks_the_md5_of_each_gz_it_would_read(tmp_path: Path) -> None:
    write_split(tmp_path, gz=True)  # valid IDX files, but not torchvision's downloads
    path = Path(f"{raw_file(tmp_path, 'train-images-idx3-ubyte')}.gz")
    found = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(DatasetFormatError) as caught:
        data.ensure_dataset("fashion-mnist", tmp_path, download=False)
    message = str(caught.value)
    assert message.startswith(f"{path}: its MD5 is {found}, ") and "\n" not in message
    assert "torchvision publishes 8d4fb7e6c68d591d4c3dfef9ec88bf0d" in message
    assert "python -m lenet_course data" in message
    assert load_dataset("fashion-mnist", root=tmp_path, download=False).images.shape[0] == 20
    write_split(tmp_path)  # an uncompressed copy is what is read: its .gz is not checked
    assert data.ensure_dataset("fashion-mnist", tmp_path, download=False) == tmp_path


def test_the_real_downloads_pass_the_check(real_data_root: Path, tmp_path: Path) -> None:
    """torchvision's own Fashion-MNIST .gz files pass (the shared MNIST .gz are recompressed,
    but its uncompressed files are what is read, so `data` accepts the shared folder too)."""
    folder = tmp_path / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    for stem in data.RAW_FILES:
        (folder / f"{stem}.gz").write_bytes(raw_file(real_data_root, f"{stem}.gz").read_bytes())
    assert data.ensure_dataset("fashion-mnist", tmp_path, download=False) == tmp_path
    for name in data.DATASETS:
        assert data.ensure_dataset(name, real_data_root, download=False) == real_data_root


FIFO_SCRIPT = """
import os, sys
from pathlib import Path
from lenet_course import data
root = Path(sys.argv[1])
fifo = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
os.mkfifo(fifo)
for call in (lambda: data.read_idx(fifo), lambda: data.missing_files("fashion-mnist", root),
             lambda: data.load_dataset("fashion-mnist", root=root)):
    try:
        call()
    except data.DatasetFormatError as error:
        print(error)
"""


def test_a_fifo_is_refused_at_once_never_opened(tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer forever: each call must refuse it without opening it."""
    write_split(tmp_path)
    raw_file(tmp_path, "train-images-idx3-ubyte").unlink()
    result = subprocess.run([sys.executable, "-c", FIFO_SCRIPT, str(tmp_path)], timeout=20,
                            capture_output=True, text=True, check=True, cwd=data.REPO_ROOT)
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout + result.stderr
    assert all("train-images-idx3-ubyte: is not a regular file" in line for line in lines)


def test_a_folder_where_an_idx_file_should_be(tmp_path: Path) -> None:
    write_split(tmp_path)
    path = raw_file(tmp_path, "train-labels-idx1-ubyte")
    path.unlink()
    path.mkdir()
    for call in (lambda: read_idx(path), lambda: data.ensure_dataset("fashion-mnist", tmp_path),
                 lambda: load_dataset("fashion-mnist", root=tmp_path)):
        with pytest.raises(DatasetFormatError, match="is not a regular file") as caught:
            call()
        assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
        assert "python -m lenet_course data" in str(caught.value)


def deny(monkeypatch: pytest.MonkeyPatch, method: str, inside: Path) -> None:
    """Path.<method> raises PermissionError under ``inside``, as chmod would for a user (tests
    run as root, whom chmod does not stop)."""
    real = getattr(Path, method)

    def denied(self: Path, *args, **kwargs):
        if str(self).startswith(f"{inside}/"):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, denied)


@pytest.mark.parametrize("gz", [False, True])
def test_an_unreadable_file_gives_one_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gz: bool
) -> None:
    write_split(tmp_path, gz=gz)
    deny(monkeypatch, "open", tmp_path)
    path = Path(f"{raw_file(tmp_path, 'train-images-idx3-ubyte')}{'.gz' if gz else ''}")
    calls = [lambda: read_idx(path), lambda: load_dataset("fashion-mnist", root=tmp_path)]
    calls += [lambda: data.ensure_dataset("fashion-mnist", tmp_path)] if gz else []  # the MD5
    for call in calls:
        with pytest.raises(DatasetFormatError) as caught:
            call()
        assert str(caught.value) == f"{path}: permission denied; make it readable"


def test_an_unreadable_folder_gives_one_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_split(tmp_path)
    folder = tmp_path / "FashionMNIST" / "raw"
    deny(monkeypatch, "stat", folder)  # a folder without x permission: stat fails inside it
    for call in (lambda: data.missing_files("fashion-mnist", tmp_path),
                 lambda: data.ensure_dataset("fashion-mnist", tmp_path),
                 lambda: load_dataset("fashion-mnist", root=tmp_path, download=False)):
        with pytest.raises(DatasetNotFoundError) as caught:
            call()
        assert str(caught.value) == f"{folder}: permission denied; make it readable"


def offline_torchvision(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """torchvision's real MNIST class, its network call failing at once; returns the URLs tried."""
    import torchvision.datasets.mnist as mnist

    tried = []

    def no_network(url: str, *args, **kwargs) -> None:
        tried.append(url)
        raise URLError("no network")

    monkeypatch.setattr(mnist, "download_and_extract_archive", no_network)
    return tried


def test_a_failed_download_leaves_no_new_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = offline_torchvision(monkeypatch)
    root = tmp_path / "new" / "data"
    with pytest.raises(DatasetNotFoundError, match="no network") as caught:
        data.ensure_dataset("mnist", root)
    assert tried and "\n" not in str(caught.value)  # torchvision's error has several lines
    assert list(tmp_path.iterdir()) == []  # new/data/MNIST/raw made by torchvision: all gone
    (root / "MNIST").mkdir(parents=True)  # a folder that was there before stays
    (root / "notes.txt").write_text("mine")
    with pytest.raises(DatasetNotFoundError):
        data.ensure_dataset("mnist", root)
    assert sorted(p.name for p in root.rglob("*")) == ["MNIST", "notes.txt"]


def test_a_failed_download_into_the_repository_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline_torchvision(monkeypatch)
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    (tmp_path / "repo").mkdir()
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "repo" / "data")):
        load_dataset("mnist")
    assert list((tmp_path / "repo").iterdir()) == []


def test_the_missing_files_message_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("mnist", root=tmp_path, download=False)
    assert "\n" not in str(caught.value) and "4 of 4 files missing" in str(caught.value)


# --- ImageSet, split ------------------------------------------------------------------------------


def small_set(n: int = 50, seed: int = 0) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % 10
    return ImageSet(images, labels, CLASS_NAMES["mnist"])


def test_image_set_is_a_named_tuple_that_moves() -> None:
    data_set = small_set()
    images, labels, classes = data_set
    assert classes == CLASS_NAMES["mnist"] and len(data_set) == 3
    assert data_set._replace(classes=("a",) * 10).classes == ("a",) * 10
    moved = data_set.to("cpu")
    assert moved.images is images or torch.equal(moved.images, images)
    assert repr(data_set) == "ImageSet(50 images 28x28 uint8 on cpu, 10 classes)"
    assert data_set.subset(slice(0, 5)).labels.tolist() == [0, 1, 2, 3, 4]


def test_split_is_deterministic_disjoint_and_complete() -> None:
    data_set = small_set(100)
    train_a, valid_a = split_train_validation(data_set, 20, seed=3)
    train_b, valid_b = split_train_validation(data_set, 0.2, seed=3)
    assert torch.equal(valid_a.images, valid_b.images)
    assert torch.equal(train_a.labels, train_b.labels)
    assert len(train_a.labels) == 80 and len(valid_a.labels) == 20
    _, valid_other = split_train_validation(data_set, 20, seed=4)
    assert not torch.equal(valid_a.images, valid_other.images)
    rows = {bytes(image.numpy()) for image in torch.cat([train_a.images, valid_a.images])}
    assert rows == {bytes(image.numpy()) for image in data_set.images}
    assert train_a.classes == data_set.classes
    train_all, empty = split_train_validation(data_set, 0)
    assert len(train_all.labels) == 100 and len(empty.labels) == 0


@pytest.mark.parametrize("bad", [100, -1, 1.0, -0.1, True, "10"])
def test_split_rejects_bad_sizes(bad) -> None:
    with pytest.raises((ValueError, TypeError), match="validation="):
        split_train_validation(small_set(100), bad)


def test_random_subset_is_the_seeded_cpu_draw() -> None:
    """The draw of `--train-subset size --seed seed`: the first ``size`` of a seeded permutation."""
    data_set = small_set(50)
    subset = random_subset(data_set, 7, 4)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(4))[:7]
    assert torch.equal(subset.images, data_set.images[order])
    assert torch.equal(subset.labels, data_set.labels[order])
    assert torch.equal(random_subset(data_set, 7, 4).labels, subset.labels)
    assert not torch.equal(random_subset(data_set, 7, 5).labels, subset.labels)
    assert random_subset(data_set, None, 4) is data_set
    assert random_subset(data_set, 50, 4) is data_set and random_subset(data_set, 99, 4) is data_set
    with pytest.raises(ValueError, match="size=0"):
        random_subset(data_set, 0, 4)


# --- what a model reads -------------------------------------------------------------------------


def test_input_spec_shape_dict_and_checks() -> None:
    spec = InputSpec(1, 32, "paper")
    assert spec.shape == (1, 32, 32)
    assert spec.to_dict() == {"channels": 1, "size": 32, "normalization": "paper"}
    for bad, fragment in [
        (dict(channels=0), "channels=0 must be a positive integer"),
        (dict(size=30), "size=30 is not supported"),
        (dict(normalization="minmax"), "normalization='minmax' is unknown"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            InputSpec(**bad)


def test_check_input_names_the_shape_and_the_fix() -> None:
    spec = InputSpec(1, 28, "standardize")
    check_input(torch.zeros(2, 1, 28, 28), spec, "Net")  # a good batch passes
    with pytest.raises(ValueError, match=r"Net expects a batch of shape \(N, 1, 28, 28\); got"):
        check_input(torch.zeros(2, 1, 32, 32), spec, "Net")
    with pytest.raises(ValueError, match=r"input_size=32 .*data\.prepare_images"):
        check_input(torch.zeros(2, 1, 32, 32), spec, "Net")
    with pytest.raises(ValueError, match=r"x\.unsqueeze\(0\)"):
        check_input(torch.zeros(1, 28, 28), spec, "Net")


# --- normalisation --------------------------------------------------------------------------------


def test_normalization_is_computed_from_the_given_images() -> None:
    images = torch.tensor([[[0, 255], [255, 255]]], dtype=torch.uint8).expand(3, 2, 2)
    norm = normalization_for(Spec(), images)
    assert norm == {"kind": "standardize", "mean": 0.75, "std": pytest.approx(0.4330127, 1e-6)}
    assert normalization_for(Spec(normalization="paper"), images) == {"kind": "paper"}
    with pytest.raises(ValueError, match="'zca'"):
        normalization_for(Spec(normalization="zca"), images)
    with pytest.raises(TypeError, match="expected uint8"):
        normalization_for(Spec(), images.float())


def test_prepare_images_standardize_28() -> None:
    data_set = small_set(64)
    norm = normalization_for(Spec(), data_set.images)
    x = prepare_images(data_set.images, Spec(), norm)
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32
    assert x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert x.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    expected = (data_set.images.double() / 255 - norm["mean"]) / norm["std"]
    torch.testing.assert_close(x[:, 0].double(), expected, atol=1e-5, rtol=0)


def test_prepare_images_paper_32() -> None:
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    images[:, 10:20, 10:20] = 255
    images[1, 0, 0] = 51  # 51/255 = 0.2 of the way from background to foreground
    x = prepare_images(images, Spec(size=32, normalization="paper"), {"kind": "paper"})
    assert x.shape == (2, 1, 32, 32)
    assert x[:, :, :2].eq(torch.tensor(-0.1)).all() and x[:, :, :, -2:].eq(torch.tensor(-0.1)).all()
    assert x[0, 0, 12:22, 12:22].eq(torch.tensor(1.175)).all()
    assert x[1, 0, 2, 2].item() == pytest.approx(-0.1 + 0.2 * 1.275, abs=1e-6)
    assert x.min().item() == pytest.approx(-0.1) and x.max().item() == pytest.approx(1.175)


def test_prepare_images_standardize_32_pads_with_background() -> None:
    data_set = small_set(8)
    norm = {"kind": "standardize", "mean": 0.25, "std": 0.5}
    x = prepare_images(data_set.images.unsqueeze(1), Spec(size=32), norm)
    assert x.shape == (8, 1, 32, 32)
    background = (0 - 0.25) / 0.5
    border = torch.cat([x[..., :2, :].flatten(), x[..., -2:, :].flatten(), x[..., :2].flatten()])
    assert torch.allclose(border, torch.tensor(background))
    inner = prepare_images(data_set.images, Spec(), norm)
    torch.testing.assert_close(x[..., 2:30, 2:30], inner)


def test_prepare_images_channels_and_errors() -> None:
    images = small_set(4).images
    norm = {"kind": "standardize", "mean": 0.5, "std": 0.25}
    x = prepare_images(images, Spec(channels=3), norm)
    assert x.shape == (4, 3, 28, 28) and torch.equal(x[:, 0], x[:, 2])
    with pytest.raises(TypeError, match="expected uint8"):
        prepare_images(images.float(), Spec(), norm)
    with pytest.raises(ValueError, match="does not match input_spec.normalization='paper'"):
        prepare_images(images, Spec(normalization="paper"), norm)
    with pytest.raises(ValueError, match="expected .*normalization_for"):
        prepare_images(images, Spec(), {"mean": 0.5})
    with pytest.raises(ValueError, match="input_spec.size=31"):
        prepare_images(images, Spec(size=31), norm)
    with pytest.raises(ValueError, match="input_spec.size=24"):
        prepare_images(images, Spec(size=24), norm)
    with pytest.raises(ValueError, match="std=0.0"):
        prepare_images(images, Spec(), {"kind": "standardize", "mean": 0.5, "std": 0.0})
    with pytest.raises(TypeError, match="has no .size"):
        prepare_images(images, object(), norm)


def test_prepare_images_with_the_real_input_spec() -> None:
    """The real InputSpec works the same as the stand-in."""
    images = small_set(2).images
    for size, kind in ((32, "paper"), (28, "standardize")):
        spec, stand_in = InputSpec(1, size, kind), Spec(1, size, kind)
        norm = normalization_for(spec, images)
        assert norm == normalization_for(stand_in, images)
        assert torch.equal(
            prepare_images(images, spec, norm), prepare_images(images, stand_in, norm)
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_prepare_images_on_cuda_matches_cpu() -> None:
    data_set = small_set(32)
    on_gpu = data_set.to("cuda")
    norm = normalization_for(Spec(), on_gpu.images)
    assert norm == pytest.approx(normalization_for(Spec(), data_set.images))
    x = prepare_images(on_gpu.images, Spec(size=32), norm)
    assert x.device.type == "cuda"
    torch.testing.assert_close(x.cpu(), prepare_images(data_set.images, Spec(size=32), norm))
    train, valid = split_train_validation(on_gpu, 8)
    assert train.images.device.type == "cuda"
    assert torch.equal(valid.images.cpu(), split_train_validation(data_set, 8)[1].images)


# --- image grids (lenet_course.plots, data section) ----------------------------------------------


def test_image_grids() -> None:
    from lenet_course import plots

    data_set = small_set(30)
    fig = plots.show_images(data_set.images[:7].unsqueeze(1), titles=list("abcdefg"), ncols=4)
    assert len(fig.axes) == 8 and fig.axes[6].get_title() == "g"
    with pytest.raises(ValueError, match="2 titles for 7 images"):
        plots.show_images(data_set.images[:7], titles=["a", "b"])
    with pytest.raises(ValueError, match="expected N x H x W"):
        plots.show_images(data_set.images[0])


def test_the_course_root_is_the_checkout_the_notebook_runs_in(tmp_path):
    """Editable: the package's parent. Installed (a class server): the student's clone above
    the notebook's folder, which holds benchmarks/ that notebooks 06, 08, 09 and 10 read."""
    from lenet_course.data import REPO_ROOT, course_root

    assert (REPO_ROOT / "benchmarks").is_dir()
    installed = tmp_path / "venv" / "site-packages" / "lenet_course"
    clone = tmp_path / "home" / "lenet-course"
    for folder in (installed, clone / "notebooks", clone / "benchmarks"):
        folder.mkdir(parents=True)
    assert course_root(installed, clone / "notebooks") == clone
    assert course_root(installed, tmp_path) == installed.parent  # nowhere better: as before

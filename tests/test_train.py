"""lenet_course.train: fit, determinism, resume, checkpoints, divergence, schedules, threads."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import math
import time

import pytest
import torch
import torch.nn.functional as F
import tqdm
from torch import nn

from lenet_course import graphs, run_state
from lenet_course import train as train_module
from lenet_course.checkpoint import HISTORY_COLUMNS, CheckpointError, History, load_checkpoint
from lenet_course.config import RECIPES, RunContract, TrainConfig, learning_rate_at
from lenet_course.data import ImageSet, load_dataset, normalization_for, prepare_images
from lenet_course.models import build_model
from lenet_course.train import (
    TrainingDivergedError,
    check_settings,
    cpu_threads,
    epoch_permutation,
    evaluate,
    fit,
    seed_everything,
)


@pytest.fixture(autouse=True)
def one_thread():
    """2-core machines shared by several processes: tests use one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def fashion(real_data_root) -> tuple[ImageSet, ImageSet]:
    """A fixed, class-balanced-enough subset of the real Fashion-MNIST: 2,048 train, 1,000 test."""
    train = load_dataset("fashion-mnist", "train", root=real_data_root, download=False)
    test = load_dataset("fashion-mnist", "test", root=real_data_root, download=False)
    return train.subset(slice(0, 2048)), test.subset(slice(0, 1000))


@pytest.fixture
def tiny(fashion) -> ImageSet:
    return fashion[0].subset(slice(0, 512))


def small_mlp(dropout: float = 0.0) -> nn.Module:
    """A user's own model: no input_spec, no config."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 10)
    )


def weights_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


QUIET = TrainConfig(progress=False, device="cpu")


# --- training ------------------------------------------------------------------------------------


def test_the_progress_bar_redraws_about_100_times_however_many_steps(tiny, monkeypatch):
    """Each redraw of a notebook's bar is a message to the kernel's client; one that reads only
    after the cell ends (nbval) loses messages past about a thousand, the cell's end among them."""
    draws = []

    class CountingBar(tqdm.std.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, file=io.StringIO(), **kwargs)
            self._time = itertools.count(time.time()).__next__  # a second passes at every look

        def display(self, *args, **kwargs):
            draws.append(self.n)
            return super().display(*args, **kwargs)

    monkeypatch.setattr(train_module, "tqdm", CountingBar)
    config = QUIET.replace(progress=True, epochs=2, batch_size=2)  # 512 steps
    fit(small_mlp(), tiny, config)
    assert draws[-1] == 512
    assert 10 < len(draws) <= 110  # ~100 updates, a postfix an epoch, opening and closing


def test_fit_reaches_a_sane_accuracy_on_a_small_real_subset(fashion):
    train, test = fashion
    seed_everything(0)
    model = build_model("v1", activation="relu", pooling="max")
    history = fit(model, train, QUIET.replace(epochs=4, lr=3e-3, optimizer="adam"), test=test)
    assert isinstance(history, History) and len(history) == 4
    assert history.column("epoch") == [1, 2, 3, 4]
    assert history.last["test_accuracy"] > 0.65  # chance is 0.10; 2,048 images, 4 epochs
    assert history[0]["train_loss"] > history.last["train_loss"]
    assert all(r["examples_per_second"] > 0 and r["seconds"] > 0 for r in history.epochs)
    assert history.last["validation_accuracy"] is None
    assert not model.training  # fit leaves the model in eval mode
    # evaluate() recomputes the same test accuracy from the uint8 images
    norm = normalization_for(model.input_spec, train.images)
    assert evaluate(model, test, norm) == pytest.approx(history.last["test_accuracy"], abs=1e-3)


def test_two_seeded_cpu_runs_are_bitwise_equal(tiny):
    runs = []
    for _ in range(2):
        seed_everything(3)
        model = build_model("v2")
        history = fit(model, tiny, QUIET.replace(epochs=2, lr=0.05, momentum=0.9, seed=3))
        runs.append((model, history))
    (a, ha), (b, hb) = runs
    assert weights_equal(a, b)
    assert ha.column("train_loss") == hb.column("train_loss")


def test_another_seed_shuffles_differently(tiny):
    models = []
    for seed in (0, 1):
        seed_everything(0)  # same initial weights, different shuffles
        model = build_model("v1")
        fit(model, tiny, QUIET.replace(epochs=1, lr=0.05, seed=seed))
        models.append(model)
    assert not weights_equal(*models)


def test_fit_works_with_a_plain_sequential_and_a_validation_set(fashion):
    train, test = fashion
    seed_everything(0)
    model = small_mlp()
    history = fit(
        model, train.subset(slice(0, 1536)), QUIET.replace(epochs=3, lr=0.1, momentum=0.9),
        validation=train.subset(slice(1536, 2048)), test=test,
    )
    assert history.last["validation_accuracy"] > 0.5
    assert history.last["test_accuracy"] > 0.5


def test_fit_works_with_d2l_lenet(tiny):
    d2l = pytest.importorskip("d2l.torch")
    seed_everything(0)
    net = d2l.LeNet()
    net(torch.zeros(1, 1, 28, 28))  # give the lazy layers their shapes
    history = fit(net, tiny, QUIET.replace(epochs=1, lr=0.9), test=tiny)
    assert math.isfinite(history.last["train_loss"])
    assert 0.0 <= history.last["test_accuracy"] <= 1.0


def test_fit_uses_the_models_own_loss_and_scores(tiny):
    seed_everything(0)
    model = build_model("lenet5-1998")  # outputs are RBF penalties: lower is better
    history = fit(model, tiny, QUIET.replace(epochs=1, lr=1e-3, optimizer="adam"), test=tiny)
    assert math.isfinite(history.last["train_loss"])
    # accuracy must use scores = -penalties: recompute it by hand
    x = prepare_images(tiny.images, model.input_spec, normalization_for(model.input_spec, None))
    with torch.no_grad():
        expected = (model(x).argmin(1) == tiny.labels).double().mean().item()
    assert history.last["test_accuracy"] == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="label_smoothing.*lenet5-1998 has its own loss"):
        fit(model, tiny, QUIET.replace(epochs=1, label_smoothing=0.1))


def test_schedules_and_label_smoothing_run(tiny):
    seed_everything(0)
    for schedule in ("onecycle", "cosine", lambda epoch: 0.05 / (epoch + 1)):
        config = QUIET.replace(epochs=2, lr=0.05, momentum=0.9, nesterov=True, schedule=schedule,
                               label_smoothing=0.1)
        history = fit(build_model("v3"), tiny, config)
        assert math.isfinite(history.last["train_loss"])
    assert history.column("lr") == [0.05, 0.025]  # the callable's value in each epoch


def test_bad_settings_name_the_value(tiny):
    model = build_model("v1")
    for kwargs, match in (
        ({"epochs": 0}, "epochs=0"),
        ({"lr": -1.0}, "lr=-1.0"),
        ({"optimizer": "rmsprop"}, "rmsprop"),
        ({"schedule": "step"}, "schedule='step'"),
        ({"momentum": 0.9, "optimizer": "adam"}, "momentum"),
        ({"cuda_graphs": True}, "CUDA"),
        ({"optimizer": "sdlm"}, "sdlm.*LeNet5_1998"),
        ({"label_smoothing": 1.0}, "label_smoothing=1.0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"seed": 2**63}, "seed=9223372036854775808; use 0 <= seed < 2\\*\\*63"),
        ({"seed": -1}, "seed=-1"),
        ({"lr": 1e300}, r"lr=1e\+300; use 0 < lr <= 1e15"),
        ({"lr": float("nan")}, "lr=nan"),
        ({"weight_decay": float("inf")}, "weight_decay=inf"),
        ({"momentum": float("nan")}, "momentum=nan"),
    ):
        with pytest.raises(ValueError, match=match):
            fit(model, tiny, QUIET.replace(**kwargs))
    with pytest.raises(ValueError, match="CUDA"):
        check_settings(model, QUIET.replace(cuda_graphs=True))
    with pytest.raises(ValueError, match="checkpoint"):
        fit(model, tiny, QUIET, resume=True)
    with pytest.raises(TypeError, match="uint8"):
        fit(model, (tiny.images.float(), tiny.labels), QUIET)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_step_a_cuda_graph_records_trains_as_the_plain_loop(tiny, optimizer):
    """recorded_step (what cuda_graphs=True records, run eagerly on the CPU): the batch gathered
    at the step counter, the rate read from a tensor, loss and correct count written by index,
    gives the plain loop's weights, loss and accuracy (a full and a shorter last batch)."""
    extra = {"momentum": 0.9, "nesterov": True} if optimizer == "sgd" else {}
    config = QUIET.replace(epochs=2, batch_size=200, lr=0.05 if optimizer == "sgd" else 3e-3,
                           optimizer=optimizer, schedule="onecycle", weight_decay=5e-4, **extra)
    seed_everything(0)
    plain = build_model("v1")
    history = fit(plain, tiny, config)
    seed_everything(0)
    run = run_state.setup(build_model("v1"), tiny, config, {})
    run.runner = run.model
    lrs = [run.lr_at(step) for step in range(2 * run.batches.steps)]
    step = lambda images, labels: train_module.train_step(run, images, labels)  # noqa: E731
    g = graphs.GraphedSteps(step, run.batches.x, run.batches.y, 200, run.batches.steps, 0, lrs)
    for group in run.optimizer.param_groups:
        group["lr"] = g.lr  # as capture() does: the optimiser reads its rate from the tensor
    for epoch in range(2):
        g.order.copy_(epoch_permutation(512, 0, epoch))
        g.counter.fill_(epoch * g.steps)
        for step in range(g.steps):  # batches of 200, 200 and 112
            g.recorded_step(min(200, 512 - 200 * step))
    assert g.counter.item() == 2 * g.steps == 6
    assert g.lr.item() == pytest.approx(run.lr_at(5))
    sizes = torch.tensor([200.0, 200.0, 112.0])
    assert float((g.losses * sizes).sum() / 512) == pytest.approx(history.last["train_loss"],
                                                                  rel=1e-5)
    assert int(g.correct.sum()) / 512 == history.last["train_accuracy"]
    for name, value in plain.state_dict().items():
        assert torch.allclose(run.model.state_dict()[name], value, rtol=1e-5, atol=1e-6), name


class FakeGraph:
    """torch.cuda.CUDAGraph's stand-in on the CPU: "capturing" notes the step (which also runs,
    like a warm-up step: capture() undoes those), and each replay runs that step again, eagerly,
    with the optimiser settings of the capture (the rate tensor, fused SGD), as a graph would."""

    recording: FakeGraph | None = None

    def replay(self) -> None:
        graphed, size, groups = self.step
        optimizer = graphed.optimizer
        plain, optimizer.param_groups = optimizer.param_groups, groups
        self.recorded_step(graphed, size)
        optimizer.param_groups = plain


@pytest.fixture
def fake_cuda(monkeypatch):
    """The fast path's CUDA calls stood in for on the CPU, to check its logic here: capture(),
    replay_epoch() and fit()'s use of them.  tests/test_gpu.py checks the real thing."""
    recorded_step, capture = graphs.GraphedSteps.recorded_step, graphs.GraphedSteps.capture

    def noting_step(graphed, size):
        if FakeGraph.recording is not None:
            FakeGraph.recording.step = (graphed, size, graphed.optimizer.param_groups)
        recorded_step(graphed, size)

    def noting_capture(graphed, model, optimizer):
        graphed.optimizer = optimizer  # what a replay steps with
        capture(graphed, model, optimizer)

    @contextlib.contextmanager
    def graph(fake):
        FakeGraph.recording, fake.recorded_step = fake, recorded_step
        yield
        FakeGraph.recording = None

    class Stream:
        def wait_stream(self, other):
            pass

    monkeypatch.setattr(graphs.GraphedSteps, "recorded_step", noting_step)
    monkeypatch.setattr(graphs.GraphedSteps, "capture", noting_capture)
    monkeypatch.setattr(run_state, "check_settings", lambda model, config: torch.device("cpu"))
    for name, value in (("CUDAGraph", FakeGraph), ("graph", graph), ("Stream", Stream),
                        ("current_stream", Stream), ("stream", lambda s: contextlib.nullcontext())):
        monkeypatch.setattr(torch.cuda, name, value)


def test_the_fast_path_trains_as_the_plain_loop_with_stand_ins_for_cuda_graphs(tiny, fake_cuda,
                                                                               tmp_path):
    """fit(cuda_graphs=True) with FakeGraph: the warm-up undone, a graph per batch size (200 and
    the last 112), the plain optimiser settings back after capture (so in the checkpoint)."""
    config = QUIET.replace(epochs=2, batch_size=200, lr=0.05, momentum=0.9, nesterov=True,
                           schedule="onecycle", weight_decay=5e-4)
    seed_everything(0)
    plain = build_model("v1")
    plain_history = fit(plain, tiny, config)
    seed_everything(0)
    fast = build_model("v1")
    history = fit(fast, tiny, config.replace(cuda_graphs=True), checkpoint=tmp_path / "c.pt")
    for key in ("train_loss", "train_accuracy", "lr"):
        assert history.column(key) == pytest.approx(plain_history.column(key), rel=1e-5), key
    for name, value in plain.state_dict().items():
        assert torch.allclose(fast.state_dict()[name], value, rtol=1e-5, atol=1e-6), name
    assert history.config["capture_seconds"] > 0
    groups = load_checkpoint(tmp_path / "c.pt")["optimizer"]["param_groups"]
    assert [(g["lr"], g["fused"]) for g in groups] == [(0.05, None)]


def test_the_fast_path_leaves_out_a_last_batch_of_one_as_the_plain_loop(tiny, fake_cuda):
    """Batch normalisation: 201 images in batches of 100 give 2 steps, not a third of one image,
    on both paths (the graphs take their steps from the plain loop's batches)."""
    data = tiny.subset(slice(0, 201))
    config = QUIET.replace(epochs=2, batch_size=100, lr=0.05, momentum=0.9)
    runs = []
    for graphs_on in (False, True):
        seed_everything(0)
        model = build_model("lenet-bn", widths=(2, 2, 4, 4))
        history = fit(model, data, config.replace(cuda_graphs=graphs_on))
        runs.append((model.state_dict(), history))
    (plain, plain_history), (fast, history) = runs
    assert history.column("train_loss") == pytest.approx(plain_history.column("train_loss"),
                                                         rel=1e-5)  # fmt: skip
    for name, value in plain.items():
        assert torch.allclose(fast[name].float(), value.float(), rtol=1e-5, atol=1e-6), name


def test_a_fast_run_resumes_with_stand_ins_for_cuda_graphs(tiny, fake_cuda, tmp_path):
    """Capture happens after resuming: the recorded steps read the resumed weights and momentum."""
    config = QUIET.replace(epochs=3, batch_size=200, lr=0.05, momentum=0.9, cuda_graphs=True)
    seed_everything(0)
    straight = build_model("v1")
    fit(straight, tiny, config)
    seed_everything(0)
    resumed = build_model("v1")
    fit(resumed, tiny, config.replace(epochs=1), checkpoint=tmp_path / "c.pt")
    fit(resumed, tiny, config, checkpoint=tmp_path / "c.pt", resume=True)
    for name, value in straight.state_dict().items():
        assert torch.allclose(resumed.state_dict()[name], value, rtol=1e-5, atol=1e-6), name


def test_a_diverging_run_names_epoch_and_step_and_suggests_a_lower_lr(tiny):
    seed_everything(0)
    with pytest.raises(TrainingDivergedError) as caught:
        fit(build_model("v1"), tiny, QUIET.replace(epochs=2, lr=1e12, momentum=0.9))
    message = str(caught.value)
    assert "epoch 1, step " in message
    assert "Lower the learning rate" in message and "lr=1e+11" in message


class ExplodingLoss(nn.Sequential):
    """A model whose third step's loss is a million times the first: finite, but exploded."""

    steps = 0

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        return F.cross_entropy(outputs, targets) * (1e6 if self.steps == 3 else 1.0)


def test_a_loss_that_explodes_without_becoming_nan_is_divergence(tiny):
    """Rule: a finite step loss above 1000 x max(1, the epoch's first step loss) diverges."""
    seed_everything(0)
    model = ExplodingLoss(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 3 of 8: the loss became "
                                                    r"[0-9.]+e\+06 \(learning rate"):
        fit(model, tiny, QUIET.replace(epochs=1, lr=1e-9, batch_size=64))
    assert all(p.isfinite().all() for p in model.parameters())  # nothing NaN: only the loss


def test_the_largest_seed_shuffles():
    assert sorted(epoch_permutation(10, 2**63 - 1, 7).tolist()) == list(range(10))
    assert torch.equal(epoch_permutation(10, 3, 1), epoch_permutation(10, 3, 1))


def test_thread_policy(monkeypatch):
    monkeypatch.setattr(train_module, "available_cores", lambda: 2)
    assert cpu_threads() == 1
    assert cpu_threads(3) == 3
    monkeypatch.setattr(train_module, "available_cores", lambda: 16)
    assert cpu_threads() is None
    with pytest.raises(ValueError, match="threads=0"):
        cpu_threads(0)


def test_fit_restores_the_thread_count(tiny):
    torch.set_num_threads(1)
    fit(small_mlp(), tiny, QUIET.replace(epochs=1, threads=2))
    assert torch.get_num_threads() == 1


def test_tensorboard_without_the_package_is_a_clear_error(tiny):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install tensorboard"):
            fit(small_mlp(), tiny, QUIET.replace(epochs=1, tensorboard="tb"))
    else:
        pytest.skip("tensorboard is installed")


def test_history_to_csv(tiny, tmp_path):
    history = fit(small_mlp(), tiny, QUIET.replace(epochs=2), test=tiny)
    path = tmp_path / "history.csv"
    history.to_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == list(HISTORY_COLUMNS)
    assert len(lines) == 3
    assert lines[1].split(",")[3] == ""  # no validation set: empty cell


# --- schedules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("steps_per_epoch,epochs", [(10, 3), (7, 5), (1, 10)])
def test_onecycle_matches_torchs_one_cycle_lr(steps_per_epoch, epochs):
    total = steps_per_epoch * epochs
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.4, total_steps=total, cycle_momentum=False
    )
    for step in range(total):
        ours = learning_rate_at("onecycle", 0.4, step, steps_per_epoch, total)
        assert ours == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        opt.step()
        scheduler.step()


def test_cosine_and_callable_schedules():
    assert learning_rate_at("cosine", 0.2, 0, 10, 100) == 0.2
    assert learning_rate_at("cosine", 0.2, 50, 10, 100) == pytest.approx(0.1)
    assert learning_rate_at(None, 0.2, 99, 10, 100) == 0.2
    paper = {0: 5e-4, 1: 5e-4, 2: 2e-4}
    assert learning_rate_at(paper.get, 1.0, 25, 10, 30) == 2e-4  # step 25 is in epoch 2
    with pytest.raises(ValueError, match="returned None for epoch 3"):
        learning_rate_at(paper.get, 1.0, 35, 10, 40)


# --- checkpoints and resume ----------------------------------------------------------------------


def test_resume_continues_to_the_same_weights_as_an_uninterrupted_run(tiny, tmp_path):
    settings = QUIET.replace(
        epochs=3, lr=0.05, momentum=0.9, schedule="onecycle", seed=5, batch_size=100
    )
    seed_everything(5)
    uninterrupted = small_mlp(dropout=0.3)  # dropout: the RNG state must be restored too
    full = fit(uninterrupted, tiny, settings, test=tiny)

    class Interrupted(Exception):
        pass

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Interrupted

    path = tmp_path / "run" / "checkpoint.pt"
    seed_everything(5)
    with pytest.raises(Interrupted):
        fit(small_mlp(dropout=0.3), tiny, settings, test=tiny, checkpoint=path,
            on_epoch_end=stop_after_two)
    assert load_checkpoint(path)["epoch"] == 2

    resumed_model = small_mlp(dropout=0.3)  # fresh weights: the checkpoint replaces them
    resumed = fit(resumed_model, tiny, settings, test=tiny, checkpoint=path, resume=True)
    assert weights_equal(uninterrupted, resumed_model)
    assert resumed.column("train_loss") == full.column("train_loss")
    assert resumed.column("test_accuracy") == full.column("test_accuracy")
    assert load_checkpoint(path)["epoch"] == 3

    with pytest.raises(ValueError, match="cannot resume.*lr=0.05.*lr=0.1.*use the same --lr"):
        fit(small_mlp(dropout=0.3), tiny, settings.replace(lr=0.1), checkpoint=path,
            resume=True)


def test_resume_refuses_other_training_data_and_a_damaged_state(fashion, tmp_path):
    """Same size, same settings, other images: the checksum of the training data differs."""
    path, settings = tmp_path / "checkpoint.pt", QUIET.replace(epochs=2, lr=0.05, threads=1)
    first, second = fashion[0].subset(slice(0, 256)), fashion[0].subset(slice(256, 512))
    fit(small_mlp(), first, settings.replace(epochs=1), checkpoint=path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="cannot resume.*train_data=.*--dataset/--train-subset"):
        fit(small_mlp(), second, settings, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="dataset='fashion-mnist' but this run has dataset='mn"):
        fit(small_mlp(), (first.images, first.labels), settings, checkpoint=path, resume=True)
    assert path.read_bytes() == before  # refused before any epoch
    state = torch.load(path, weights_only=True)
    state["rng"]["torch"] = torch.zeros(3)  # not a generator state
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="is damaged: its saved state cannot be restored"):
        fit(small_mlp(), first, settings, checkpoint=path, resume=True)


def test_the_resume_contract_is_what_a_checkpoint_records(tiny, tmp_path):
    """RunContract: built once by setup, recorded flat in the checkpoint's train_config (so
    checkpoints written before it existed still load), and epochs count only with a schedule."""
    path = tmp_path / "checkpoint.pt"
    seed_everything(0)
    model = build_model("v1")
    history = fit(model, tiny, QUIET.replace(epochs=1, lr=0.05), checkpoint=path)
    saved = RunContract.of(load_checkpoint(path)["train_config"])
    assert saved.model == model.config and saved.train_size == 512 and saved.epochs is None
    assert saved.train_data == history.config["train_data"]
    assert dataclasses.replace(saved, lr=0.05).refusal(saved) is None
    assert "use the same --lr" in dataclasses.replace(saved, lr=0.1).refusal(saved)
    # with a schedule the rate of every step depends on the epochs: they are part of the contract
    scheduled = dataclasses.replace(saved, schedule="cosine", epochs=3)
    assert "epochs=3 but this run has epochs=4" in dataclasses.replace(
        scheduled, epochs=4).refusal(scheduled)  # fmt: skip
    # a checkpoint without a contract entry loads for evaluate and predict, but does not resume
    state = torch.load(path, weights_only=True)
    del state["train_config"]["test_size"]  # as before issue 25
    torch.save(state, path)
    assert load_checkpoint(path)["epoch"] == 1
    with pytest.raises(ValueError, match="trained with test_size=None but this run has test_size"):
        fit(build_model("v1"), tiny, QUIET.replace(epochs=2, lr=0.05), checkpoint=path,
            resume=True)  # fmt: skip


# --- plots ---------------------------------------------------------------------------------------


def test_training_curves_accept_histories_and_checkpoint_records():
    from lenet_course.plots import show_training_curves

    records = [
        {"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5, "validation_accuracy": None,
         "test_accuracy": 0.4 + e / 100}
        for e in (1, 2, 3)
    ]
    figure = show_training_curves({"a": History(records), "b": records[:2]})
    loss_ax, accuracy_ax = figure.axes
    assert len(loss_ax.lines) == 2
    assert [t.get_text() for t in accuracy_ax.get_legend().get_texts()] == [
        "a test", "a train", "b test", "b train",
    ]
    with pytest.raises(ValueError, match="no epochs"):
        show_training_curves({"empty": History()})


# --- the configuration ---------------------------------------------------------------------------


def test_recipes_are_one_frozen_config_each():
    assert RECIPES["classic"] == TrainConfig(epochs=10, batch_size=256, lr=0.9)  # d2l's train_ch6
    modern = RECIPES["modern"]
    assert (modern.schedule, modern.label_smoothing, modern.nesterov) == ("onecycle", 0.1, True)
    assert (RECIPES["sdlm-1998"].optimizer, RECIPES["sdlm-1998"].batch_size) == ("sdlm", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        modern.lr = 1.0  # type: ignore[misc]
    assert modern.replace(epochs=3).epochs == 3 and modern.epochs == 12
    with pytest.raises(ValueError, match="momentum/nesterov apply to SGD"):
        modern.replace(optimizer="adam")  # replace() checks the new settings too


def test_the_paper_schedule_follows_the_pass():
    assert learning_rate_at("paper", 1.0, 25, 10, 200) == 2e-4  # step 25 is in pass 3
    assert learning_rate_at("paper", 1.0, 199, 10, 200) == 1e-5

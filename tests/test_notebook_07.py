"""Notebook 07 (inspecting a trained LeNet): its helpers, and a short papermill run on real data."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch

from lenet_course.data import ImageSet

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "07_inspecting_lenet.ipynb"
UPPER_BODY = {"T-shirt/top", "Pullover", "Coat", "Shirt"}
# the cells that import, draw the figures, and define the error analysis
HELPER_CELLS = ("19c30b38", "b1a3652e", "88de6bee")


@pytest.fixture(scope="module")
def helpers() -> Iterator[dict[str, Any]]:
    """The notebook's own imports and helper functions, defined as the notebook defines them."""
    cells = {cell.id: cell for cell in nbformat.read(NOTEBOOK, as_version=4).cells}
    module = types.ModuleType("notebook_07")  # @dataclass looks its module up in sys.modules
    sys.modules[module.__name__] = module
    for cell_id in HELPER_CELLS:
        source = "\n".join(line for line in cells[cell_id].source.splitlines()
                           if not line.lstrip().startswith(("%", "!")))
        # dont_inherit: the cells' annotations stay objects, as in the notebook
        exec(compile(source, f"07:{cell_id}", "exec", dont_inherit=True), module.__dict__)
    yield module.__dict__
    del sys.modules[module.__name__]


def test_figures_show_what_they_are_given(helpers) -> None:
    show_filters, show_predictions = helpers["show_filters"], helpers["show_predictions"]
    figure = show_filters(helpers["learned_filters"](helpers["build_model"]("lenet5-1998"), "C3"))
    assert len(figure.axes) == 16 * 6  # a row per input map, a column per output map
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    figure = show_predictions(images, [0, 1, 2], [0, 2, 2], list("abc"), [0.9, 0.5, 0.8], ncols=2)
    colors = [ax.title.get_color() for ax in figure.axes[:3]]
    assert colors == ["tab:green", "tab:red", "tab:green"]  # green right, red wrong
    assert figure.axes[1].title.get_text() == "c (0.50)\ntrue: b"
    small = torch.tensor([[3, 1], [0, 4]])
    assert len(helpers["show_confusion_matrix"](small, ["x", "y"]).axes[0].texts) == 4
    accuracy = helpers["per_class_accuracy"](small)
    assert len(helpers["show_per_class_accuracy"](accuracy, ["x", "y"]).axes[0].patches) == 2
    with pytest.raises(ValueError, match="3 images, 2 labels and 3 predictions"):
        show_predictions(images, [0, 1], [0, 1, 2], list("abc"), [1, 1, 1])


def test_error_analysis(helpers) -> None:
    confusion_matrix = helpers["confusion_matrix"]
    per_class_accuracy = helpers["per_class_accuracy"]
    most_confused_pairs = helpers["most_confused_pairs"]
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    confusion = confusion_matrix(labels, torch.tensor([0, 1, 1, 1, 0, 1]), 3)
    assert confusion.tolist() == [[1, 1, 0], [1, 2, 0], [0, 1, 0]]
    accuracy = per_class_accuracy(confusion)
    assert accuracy[:2].tolist() == [0.5, 2 / 3] and accuracy[2] == 0.0
    assert per_class_accuracy(torch.zeros(2, 2, dtype=torch.long))[0].isnan()
    with pytest.raises(ValueError, match=r"prediction 3 is not a class of 0\.\.2"):
        confusion_matrix(labels, torch.tensor([0, 1, 1, 1, 0, 3]), 3)
    with pytest.raises(ValueError, match="6 labels but 2 predictions"):
        confusion_matrix(labels, torch.tensor([0, 1]), 3)
    confusion = torch.tensor([[5, 3, 0], [1, 5, 3], [2, 0, 5]])
    assert most_confused_pairs(confusion, k=3) == [(0, 1, 3), (1, 2, 3), (2, 0, 2)]
    assert most_confused_pairs(confusion, k=10)[-1] == (1, 0, 1)
    assert len(most_confused_pairs(confusion, k=10)) == 4  # zero counts are not pairs
    labels = torch.tensor([0, 1, 1, 0, 2])
    probabilities = torch.tensor(
        [[0.9, 0.1, 0.0], [0.7, 0.3, 0.0], [0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.6, 0.0, 0.4]]
    )
    predictions = probabilities.argmax(dim=1)
    most_confidently_wrong, examples_of = helpers["most_confidently_wrong"], helpers["examples_of"]
    assert most_confidently_wrong(probabilities, labels, k=5).tolist() == [3, 1, 4]
    assert most_confidently_wrong(probabilities, labels, k=1).tolist() == [3]
    assert examples_of(labels, predictions, true=1, predicted=0).tolist() == [1]
    assert examples_of(labels, predictions, true=2, predicted=1).tolist() == []


def test_evaluate_on_agrees_with_a_plain_forward_pass(helpers) -> None:
    torch.manual_seed(5)
    small = helpers["build_model"]("v1")
    generator = torch.Generator().manual_seed(6)
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8, generator=generator)
    data = ImageSet(images, torch.tensor([0, 1, 2, 3, 4, 5, 6]), tuple("abcdefghij"))
    norm = {"kind": "standardize", "mean": 0.3, "std": 0.35}
    result = helpers["evaluate_on"](small, data, norm, batch_size=3)  # 3 batches: 3, 3 and 1
    small.eval()
    with torch.no_grad():
        logits = small(helpers["prepare_images"](images, small.input_spec, norm))
    torch.testing.assert_close(result.probabilities, torch.softmax(logits, dim=1))
    assert torch.equal(result.predictions, logits.argmax(dim=1))
    assert result.accuracy == float((logits.argmax(dim=1) == data.labels).double().mean())
    assert int(result.confusion.sum()) == 7


@pytest.mark.slow
def test_notebook_07_trains_inspects_and_predicts_a_file(run_notebook, real_data_root):
    # use_saved=False: train here so the run does not depend on whether notebook 06 has left a
    # checkpoint in runs/; it trains notebook 06's modern LeNet, 2 epochs of 30,000 images.
    values = run_notebook(
        "07_inspecting_lenet.ipynb",
        use_saved=False,
        saved_checkpoint="../runs/not_there/checkpoint.pt",
        epochs=2,
        train_size=30000,
        image_index=3,
        seed=1,
    )
    assert values["source"] == "trained here"
    assert values["checkpoint_leaf_types"] == ["NoneType", "Tensor", "bool", "float", "int", "str"]
    assert values["test_count"] == 10000
    assert values["confusion_correct"] == round(values["test_accuracy"] * 10000)
    assert values["test_accuracy"] > 0.75  # a short run; the stored 12-epoch model reaches 0.91
    shapes = {"C1": [6, 28, 28], "S2": [6, 14, 14], "C3": [16, 10, 10], "S4": [16, 5, 5]}
    assert values["stage_shapes"] == shapes  # the paper's Fig. 2
    assert values["c1_filters"] == [6, 1, 5, 5]
    # The text's reading of the mistakes: most are between two upper-body classes, the two
    # largest confusions are, and the worst class is one of the four.
    for true, predicted, count in values["most_confused"][:2]:
        assert {true, predicted} <= UPPER_BODY and count > 0
    assert values["upper_body_share"] > 0.5
    assert values["worst_class"] in UPPER_BODY
    # The picture written to disk is light, so it was inverted, and the file is classified as
    # the test image it was made from, the same by the library and the command line.
    assert values["file_inverted"] is True
    assert values["file_prediction"] == values["file_label"] == values["test_image_prediction"]
    assert values["cli_matches_library"] is True
    assert values["json_matches_library"] is True
    # a drawing made in code: the pad and `predict` on the saved drawing read it alike
    assert values["drawing_pad_top"] == values["drawing_predict_top"]

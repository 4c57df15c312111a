"""``lenet_course.plots.draw_architecture``: the 1998 paper's Figure 2, drawn from the model."""

from __future__ import annotations

import pytest
from matplotlib.patches import Rectangle
from torch import nn

from lenet_course.counting import trace_shapes
from lenet_course.lenet1998 import LeNet5_1998
from lenet_course.models import build_model
from lenet_course.plots import architecture_stages, draw_architecture

# LeCun et al. (1998), Figure 2, read off the paper.
PAPER_FIGURE_2 = [
    "INPUT: 1@32x32", "C1: 6@28x28", "S2: 6@14x14", "C3: 16@10x10", "S4: 16@5x5", "C5: 120@1x1",
    "F6: 84", "OUTPUT: 10",
]


def _shape(label: str) -> tuple[int, ...]:
    """'C1: 6@28x28' -> (6, 28, 28); 'F6: 84' -> (84,)."""
    size = label.split(": ")[1].replace("@", "x")
    return tuple(int(n) for n in size.split("x"))


def test_lenet5_1998_is_drawn_as_the_paper_draws_it() -> None:
    figure, labels = draw_architecture(LeNet5_1998(), input_size=32)
    assert labels == PAPER_FIGURE_2
    (ax,) = figure.axes
    drawn = [text.get_text().replace("\n", ": ") for text in ax.texts]
    assert [text for text in drawn if text in labels] == labels  # each label written once
    # Stacked planes: one per map (8 at most) for the 32x32 ... 5x5 stages, one column each
    # for C5 (1x1 maps), F6 and OUTPUT.
    planes = sum(isinstance(patch, Rectangle) for patch in ax.patches)
    assert planes == 1 + 6 + 6 + 8 + 8 + 1 + 1 + 1


@pytest.mark.parametrize(
    ("model", "size"),
    [
        (build_model("v3"), 28),
        (build_model("v2", pooling="max", input_size=32, num_classes=5), 32),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Dropout(),
                       nn.Flatten(), nn.Linear(4 * 13 * 13, 7)), 28),
    ],
)
def test_the_labels_are_the_shapes_that_trace_shapes_sees(model: nn.Module, size: int) -> None:
    _, labels = draw_architecture(model, input_size=size)
    trace = trace_shapes(model, (1, 1, size, size))
    layers = [row.output_shape[1:] for row in trace
              if row.type in ("Conv2d", "AvgPool2d", "MaxPool2d", "Linear")]
    assert [_shape(label) for label in labels] == [(1, size, size), *layers]
    assert labels[0].startswith("INPUT") and labels[-1].startswith("OUTPUT")


def test_stages_are_named_by_kind_and_numbered_in_order() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 13 * 13, 9), nn.ReLU(), nn.Linear(9, 3))
    stages = architecture_stages(model)
    assert [(name, shape) for name, shape, _ in stages] == [
        ("INPUT", (1, 28, 28)), ("C1", (4, 26, 26)), ("S2", (4, 13, 13)), ("F3", (9,)),
        ("OUTPUT", (3,)),
    ]
    assert [operation for _, _, operation in stages][1:] == [
        "convolutions", "subsampling", "full connection", "full connection",
    ]

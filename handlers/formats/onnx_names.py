"""Give an ONNX graph's inputs and outputs exactly the spec's names.

The exporters name graph values after the module's attributes and ops ("embedding",
"linear_1"); asking them for an output called `embedding` then collides with the internal
value of that name ("Duplicate definition of name (embedding)" from onnxruntime). Here any
internal value holding a wanted name is moved aside first, then the graph's inputs and outputs
take their names; onnx_ir renames every use of a value with it.
"""

from __future__ import annotations

from pathlib import Path

from onnxscript import ir  # onnx_ir, through the pinned onnxscript that brings it


def all_values(graph: ir.Graph) -> list[ir.Value]:
    values = [*graph.inputs, *graph.initializers.values()]
    for node in graph.all_nodes():  # subgraphs (If/Loop bodies) included
        values += node.outputs  # never None: an omitted optional output is a Value named ""
    return values


def free_name(base: str, taken: set[str]) -> str:
    index = 0
    while f"{base}__{index}" in taken:
        index += 1
    return f"{base}__{index}"


def name_graph_io(model: ir.Model, inputs: list[str], outputs: list[str]) -> None:
    graph = model.graph
    if len(graph.inputs) != len(inputs) or len(graph.outputs) != len(outputs):
        raise ValueError(
            f"the graph has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs, "
            f"the spec {len(inputs)} and {len(outputs)}"
        )
    wanted = list(zip(graph.inputs, inputs)) + list(zip(graph.outputs, outputs))
    values = all_values(graph)
    taken = {v.name for v in values if v.name}
    targets = {name for _, name in wanted}
    for value in values:  # internal values (or other I/O) holding a wanted name move aside
        if value.name in targets and (value, value.name) not in wanted:
            taken.discard(value.name)
            value.name = free_name(value.name, taken | targets)
            taken.add(value.name)
    for value, name in wanted:
        value.name = name


def rename_onnx_file(path: Path, inputs: list[str], outputs: list[str]) -> None:
    model = ir.load(str(path))  # pyright: ignore[reportUnknownMemberType]  os.PathLike without its argument in onnx_ir
    name_graph_io(model, inputs, outputs)
    ir.save(model, str(path))  # pyright: ignore[reportUnknownMemberType]  as load()

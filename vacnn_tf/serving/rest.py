"""TF Serving's REST formats: the request and response bodies of ``:predict`` and of the model
status and metadata endpoints, read from and written for a SavedModel's own signature defs.

``vacnn serve`` (:mod:`vacnn_tf.serving.server`) answers with these, so a client written for TF
Serving works against it unchanged. The formats, as TF Serving documents them:

* row format: ``{"signature_name": S, "instances": [row, ...]}`` where a row is an object of
  named inputs (or a bare value when the signature has one input); answered with
  ``{"predictions": [...]}``, one object of named outputs per row;
* columnar format: ``{"inputs": {name: batch, ...}}`` (or a bare batch for one input); answered
  with ``{"outputs": {name: batch, ...}}``;
* errors: ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# DataType enum names of the dtypes the exported signatures use (tensorflow/core/framework/types.proto).
_DTYPES = {"DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_INT32": np.int32, "DT_INT64": np.int64,
           "DT_STRING": np.object_}


#: What a client sends a server (:func:`vacnn_tf.serving.classifier.predict_remote`): the serving_default
#: signature's features, the waveform signature's samples, or the audio file itself (:classify).
SEND_MODES: tuple[str, ...] = ("features", "waveform", "audio")


class RequestError(ValueError):
    """A request the server refuses, with the HTTP status to answer (4xx) and the reason."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: dtype enum name and shape (None for a free dimension)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @property
    def numpy_dtype(self) -> Any:
        return _DTYPES[self.dtype]

    def describe(self) -> str:
        dims = ", ".join("batch" if i == 0 and d is None else ("any" if d is None else str(d))
                         for i, d in enumerate(self.shape))
        return f"{self.dtype.removeprefix('DT_').lower()} [{dims}]"


@dataclass(frozen=True)
class Signature:
    """A signature def's inputs and outputs, by name."""

    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


def read_signature_defs(model_dir: str | Path) -> tuple[dict[str, Signature], dict[str, Any]]:
    """The ``serve`` meta graph's signatures of a SavedModel, parsed and as TF Serving's JSON.

    Returns:
        ``(signatures, signature_def_json)``: the parsed signatures (without the internal
        ``__saved_model_init_op``) and the signature def map as ``GET .../metadata`` prints it
        (protobuf JSON with the proto's own field names).
    """
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    from google.protobuf.message import DecodeError

    path = Path(model_dir) / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(path.read_bytes())
    except DecodeError as err:
        raise ValueError(f"{path}: not a readable SavedModel ({err}); export the model again") from None
    graph = next((g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags), None)
    if graph is None:
        raise ValueError(f"{path}: no meta graph tagged 'serve', the tag TF Serving and `vacnn serve` load")

    def info(name: str, tensor: Any) -> TensorInfo:
        dims = tuple(None if d.size < 0 else int(d.size) for d in tensor.tensor_shape.dim)
        return TensorInfo(name, _dtype_name(tensor.dtype), dims)

    signatures = {
        key: Signature(key, {k: info(k, v) for k, v in sig.inputs.items()},
                       {k: info(k, v) for k, v in sig.outputs.items()})
        for key, sig in graph.signature_def.items() if not key.startswith("__")
    }
    as_json = {key: json_format.MessageToDict(sig, preserving_proto_field_name=True)
               for key, sig in graph.signature_def.items()}
    return signatures, as_json


def _dtype_name(enum_value: int) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(enum_value)


def status_body(version: str) -> dict[str, Any]:
    """``GET /v1/models/NAME``: the one loaded version, available."""
    return {"model_version_status": [{"version": str(version), "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def metadata_body(name: str, version: str, signature_defs: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/models/NAME/metadata``, as TF Serving writes it."""
    return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": signature_defs}}}


@dataclass
class PredictRequest:
    """A parsed ``:predict`` body: which signature, its inputs as arrays, and the answer's format."""

    signature: Signature
    inputs: dict[str, np.ndarray]
    row_format: bool

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))


def parse_predict(body: bytes, signatures: dict[str, Signature], max_rows: int) -> PredictRequest:
    """Read a ``:predict`` body in the row or the columnar format and check it against the signature.

    Raises:
        RequestError: malformed JSON, an unknown signature, missing or unknown inputs, values
            that are not numbers of the input's dtype, a wrong shape, more than ``max_rows`` rows.
    """
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"malformed JSON: {err}") from None
    except RecursionError:
        raise RequestError("malformed JSON: nested too deeply") from None
    if not isinstance(request, dict):
        raise RequestError(f"the body must be a JSON object with 'instances' or 'inputs'. Received: {type(request).__name__}")
    name = request.get("signature_name", "serving_default")
    if not isinstance(name, str):
        raise RequestError(f"signature_name must be a string. Received: {type(name).__name__}")
    if name not in signatures:
        raise RequestError(f"signature_name {name!r} not found; this model has {sorted(signatures)}")
    signature = signatures[name]
    if ("instances" in request) == ("inputs" in request):
        raise RequestError("the body must hold exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    row_format = "instances" in request
    columns = (_row_columns(request["instances"], signature, max_rows) if row_format
               else _named(request["inputs"], signature))
    inputs = {key: _array(key, values, signature.inputs[key], row_format) for key, values in columns.items()}
    counts = {key: len(a) for key, a in inputs.items()}
    if len(set(counts.values())) > 1:
        raise RequestError(f"every input needs the same batch size. Received: {counts}")
    rows = next(iter(counts.values()))
    if rows == 0:
        raise RequestError("no rows: the batch is empty")
    _check_rows(rows, max_rows)
    return PredictRequest(signature, inputs, row_format)


def _check_rows(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise RequestError(f"{rows} rows in one request; this server takes at most {max_rows} (--max-rows)", 413)


def _named(value: Any, signature: Signature) -> dict[str, Any]:
    """Columns by input name from an object of named inputs, or from a bare value for one input."""
    names = sorted(signature.inputs)
    if isinstance(value, dict):
        missing = sorted(set(names) - set(value))
        unknown = sorted(set(value) - set(names))
        if missing or unknown:
            raise RequestError(f"signature {signature.name!r} takes inputs {names}"
                               + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
        return {k: value[k] for k in names}
    if len(names) != 1:
        raise RequestError(f"signature {signature.name!r} takes several inputs {names}: name each one")
    return {names[0]: value}


def _row_columns(instances: Any, signature: Signature, max_rows: int) -> dict[str, list[Any]]:
    if not isinstance(instances, list):
        raise RequestError(f"'instances' must be a list of rows. Received: {type(instances).__name__}")
    _check_rows(len(instances), max_rows)  # before converting what may be a huge body
    rows = [_named(row, signature) for row in instances]
    return {k: [row[k] for row in rows] for k in sorted(signature.inputs)}


def _array(key: str, values: Any, spec: TensorInfo, row_format: bool) -> np.ndarray:
    """``values`` as an array of the input's dtype and shape, or a RequestError naming the input."""
    want = f"{spec.describe()}"
    if spec.dtype not in ("DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_INT64"):
        raise RequestError(f"input {key!r} of dtype {spec.dtype} is not supported by this server")
    try:
        numbers = np.array(values)
        if numbers.dtype.kind not in "iuf":  # strings, null, booleans, objects
            raise ValueError("booleans" if numbers.dtype.kind == "b" else "values that are not numbers")
        numbers = numbers.astype(np.float64)
    except RecursionError:
        raise RequestError(f"input {key!r}: nested too deeply; expected {want}") from None
    except (ValueError, TypeError) as err:
        hint = "; rows of one batch must have the same shape" + (
            " (pad each waveform to one width and give its length)" if None in spec.shape[1:] else "")
        raise RequestError(f"input {key!r}: not a rectangular array of numbers ({err}){hint}; expected {want}") from None
    if not np.isfinite(numbers).all():
        raise RequestError(f"input {key!r}: NaN or infinite values")
    if numbers.ndim != len(spec.shape) or any(d is not None and d != n for d, n in zip(spec.shape, numbers.shape)):
        where = "rows of" if row_format else "the batch of"
        raise RequestError(f"input {key!r}: shape {list(numbers.shape)} for {where} {want}")
    if spec.dtype in ("DT_INT32", "DT_INT64"):
        if not np.array_equal(numbers, np.round(numbers)):
            raise RequestError(f"input {key!r}: expected whole numbers ({want})")
        limit = np.iinfo(spec.numpy_dtype)
        if numbers.size and (numbers.min() < limit.min or numbers.max() > limit.max):
            raise RequestError(f"input {key!r}: values outside {spec.dtype}'s range")
    with np.errstate(over="ignore"):
        typed = numbers.astype(spec.numpy_dtype)
    if typed.dtype.kind == "f" and not np.isfinite(typed).all():  # finite in float64, not in float32
        raise RequestError(f"input {key!r}: values too large for {spec.dtype}")
    return typed


def encode_outputs(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """The answer to a ``:predict`` request: ``predictions`` (row format) or ``outputs`` (columnar)."""
    lists = {k: _jsonable(v) for k, v in outputs.items()}
    single = len(lists) == 1
    if row_format:
        n = len(next(iter(lists.values())))
        rows = [{k: v[i] for k, v in lists.items()} for i in range(n)]
        return {"predictions": [next(iter(r.values())) for r in rows] if single else rows}
    return {"outputs": next(iter(lists.values())) if single else lists}


def _jsonable(array: np.ndarray) -> list[Any]:
    if array.dtype == np.object_ or array.dtype.kind == "S":
        return [x.decode() if isinstance(x, bytes) else x for x in array.tolist()]
    return array.tolist()

"""Lab 4 assignment: a TF Serving REST client and the signature check (docs/labs/lab4-deployment.md).

An exported model (``vacnn export``) is a SavedModel whose ``serving_default`` signature takes
``logmel`` float32 `(batch, 224, 224, 1)` and, for models with BOVW, ``bovw`` float32
`(batch, k)`, and returns ``probabilities`` `(batch, classes)` and ``label`` `(batch,)`. A client
computes those inputs, checks them against the signature before sending anything, and talks
to TF Serving's REST API:

    POST {url}/v1/models/{name}:predict
    row format:      {"instances": [{"logmel": ..., "bovw": ...}, ...]}  -> {"predictions": [{...}, ...]}
    columnar format: {"inputs": {"logmel": [...], "bovw": [...]}}        -> {"outputs": {"probabilities": [...], "label": [...]}}
    on failure:      {"error": "..."} (often with an HTTP error status)

Write the five functions below with the standard library, numpy and TensorFlow. The grader
exports a tiny model, serves answers from a local test server, and compares your results
with the package's client (``vacnn_tf.serving.classifier.ServingClient``), so using that does not count.

Grade your work from any folder with

    vacnn lab grade 4 DIR

where DIR is the folder holding this file. Each check prints PASS or FAIL and the reason.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Mapping

import numpy as np

# One input of a signature: its dtype name and shape, None for a dimension of any size.
InputSpec = tuple[str, tuple[int | None, ...]]


def signature_inputs(model_dir: str) -> dict[str, InputSpec]:
    """The inputs of a SavedModel's ``serving_default`` signature.

    Args:
        model_dir: The SavedModel's version folder (``OUT/NAME/VERSION``).

    Returns:
        ``{input name: (dtype name, shape)}``, e.g. ``{"logmel": ("float32", (None, 224, 224, 1)),
        "bovw": ("float32", (None, 32))}``.
    """
    # TODO 1: load the model (tf.saved_model.load) and take its signatures["serving_default"].
    # TODO 2: its structured_input_signature is (args, kwargs); kwargs maps each input name to a
    #         tf.TensorSpec with .dtype.name and .shape (tuple(spec.shape) holds None for any size).
    raise NotImplementedError


def check_inputs(inputs: Mapping[str, np.ndarray], expected: Mapping[str, InputSpec]) -> list[str]:
    """What is wrong with ``inputs`` for a signature, before anything is sent.

    Args:
        inputs: The arrays a client computed, by input name.
        expected: :func:`signature_inputs`'s answer.

    Returns:
        One message per problem, each naming the input: a missing or unexpected input, a
        dtype other than the signature's, a rank or a fixed dimension that differs, inputs
        whose batch sizes (first dimensions) differ. An empty list when everything fits.
    """
    # TODO 1: the names: missing and unexpected inputs.
    # TODO 2: per input present in both: dtype (np.asarray(value).dtype.name), rank, and every
    #         dimension the signature fixes (None accepts any size).
    # TODO 3: the batch sizes of all inputs must agree.
    raise NotImplementedError


def request_body(inputs: Mapping[str, np.ndarray], row_format: bool = True) -> dict[str, Any]:
    """The JSON body of a predict request (a dict ``json.dumps`` can write).

    Args:
        inputs: Arrays by input name, all with the same batch size.
        row_format: True: ``{"instances": [one {name: value} per row]}``; False:
            ``{"inputs": {name: the whole batch}}``.

    Returns:
        The body, with the arrays as (nested) Python lists.
    """
    # TODO 1: the columnar format: every array as a nested list (ndarray.tolist()).
    # TODO 2: the row format: row i of every input together in one dict.
    raise NotImplementedError


def parse_response(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a predict response, whichever format the server answered in.

    Args:
        body: The decoded JSON answer.

    Returns:
        One ``{"probabilities": [...], "label": ...}`` per row, in row order.

    Raises:
        RuntimeError: the answer holds an ``error`` (its text in the message) or neither
            ``predictions`` nor ``outputs``.
    """
    # TODO 1: an "error" key: raise RuntimeError with the server's text.
    # TODO 2: "predictions" (row format) is already one dict per row.
    # TODO 3: "outputs" (columnar) holds one list per output name: turn it into one dict per row.
    raise NotImplementedError


def predict(url: str, inputs: Mapping[str, np.ndarray], model_name: str = "vacnn",
            timeout: float = 10.0) -> list[dict[str, Any]]:
    """Ask a TF Serving REST endpoint for predictions.

    Args:
        url: The server's base URL, e.g. ``http://localhost:8501`` (a trailing slash is allowed).
        inputs: Arrays by input name.
        model_name: The model's name on the server.
        timeout: Seconds to wait for an answer.

    Returns:
        :func:`parse_response`'s rows.

    Raises:
        RuntimeError: the server answered with an HTTP error (its status and text in the
            message), did not answer within ``timeout``, or refused the connection.
    """
    # TODO 1: POST json.dumps(request_body(inputs)) to {url}/v1/models/{model_name}:predict with
    #         the header Content-Type: application/json (urllib.request.Request, urlopen with timeout).
    # TODO 2: decode the answer and return parse_response(...) of it.
    # TODO 3: turn urllib.error.HTTPError (read its body) and URLError / TimeoutError / OSError into RuntimeError.
    raise NotImplementedError

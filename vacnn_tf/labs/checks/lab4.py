"""Lab 4 checks: the student's signature check and REST client against a tiny model exported
by the package's own export code (:func:`vacnn_tf.serving.export.write_savedmodel`) and against
:class:`vacnn_tf.serving.classifier.ServingClient`, talking to a test server on 127.0.0.1.

The model is a pooling layer and one dense layer over the VACNN's two inputs (``logmel``
224x224x1 and an 8-word ``bovw``): the same signature as a real export, written in seconds.
"""

from __future__ import annotations

import json
import socket
import threading
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from vacnn_tf.labs.grading import Check, Fixtures, StudentCode, fail

REFERENCES = ("vacnn_tf.serving.classifier.ServingClient", "vacnn_tf.serving.classifier.predict_remote", "vacnn_tf.serving.classifier.predict_local")
K = 8  # visual words of the test model


class TestServer:
    """A TF Serving stand-in: records each POST and answers with ``reply`` (status, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: tuple[int, dict[str, Any]] = (200, {})
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw.decode())
                except ValueError:
                    body = None
                owner.requests.append({"path": self.path, "content_type": self.headers.get("Content-Type"), "body": body})
                status, payload = owner.reply
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # keep the grader's output to its check lines
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Lab4Fixtures(Fixtures):
    @cached_property
    def classes(self) -> list[str]:
        from vacnn_tf.corpora.labels import classes_for

        return list(classes_for("emodb"))

    @cached_property
    def model_dir(self) -> Path:
        """A SavedModel written by the package's export code, with the VACNN's signature."""
        import keras

        from vacnn_tf.config import BovwConfig, RunConfig
        from vacnn_tf.features.bovw import BovwVocabulary
        from vacnn_tf.serving.export import write_savedmodel

        logmel = keras.Input((224, 224, 1), name="logmel")
        bovw = keras.Input((K,), name="bovw")
        pooled = keras.layers.Flatten()(keras.layers.AveragePooling2D(28)(logmel))
        joined = keras.layers.Concatenate()([keras.layers.Rescaling(1 / 255)(pooled), bovw])
        probabilities = keras.layers.Dense(len(self.classes), activation="softmax")(joined)
        model = keras.Model({"logmel": logmel, "bovw": bovw}, probabilities)
        config = RunConfig(bovw=BovwConfig(k=K))
        centres = np.random.default_rng(0).normal(scale=0.05, size=(K, 64)).astype(np.float32)
        vocabulary = BovwVocabulary(centres, config.bovw, 0, 0).save(self.tmp / "vocabulary.npz")
        return write_savedmodel(model, self.tmp / "models" / "vacnn" / "1", self.classes, config, vocabulary)

    @cached_property
    def expected_signature(self) -> dict[str, tuple[str, tuple]]:
        """The inputs :func:`vacnn_tf.serving.export.write_savedmodel` declares."""
        return {"logmel": ("float32", (None, 224, 224, 1)), "bovw": ("float32", (None, K))}

    @cached_property
    def inputs(self) -> dict[str, np.ndarray]:
        """One utterance's inputs as :class:`vacnn_tf.serving.classifier.Preprocessor` computes them."""
        from vacnn_tf.labs.checks.lab1 import RATE, voice
        from vacnn_tf.serving.classifier import Preprocessor

        return Preprocessor.from_savedmodel(self.model_dir).from_waveform(voice(1.2, 140.0, 0), RATE)

    @cached_property
    def batch(self) -> dict[str, np.ndarray]:
        """Two rows: the utterance and a darker copy of its image."""
        return {name: np.concatenate([value, value * (0.5 if name == "logmel" else 1.0)]) for name, value in self.inputs.items()}

    @cached_property
    def server(self) -> TestServer:
        return TestServer()

    def close(self) -> None:
        if "server" in self.__dict__:  # started by a check
            self.server.close()


def fixtures(tmp: Path) -> Lab4Fixtures:
    return Lab4Fixtures(tmp)


def check_signature(code: StudentCode, fx: Lab4Fixtures) -> None:
    got = code.call("signature_inputs", str(fx.model_dir))
    if not isinstance(got, dict):
        fail(f"signature_inputs returned {type(got).__name__}; expected a dict of input name -> (dtype, shape)")
    try:
        normalised = {name: (str(dtype), tuple(None if d is None else int(d) for d in shape))
                      for name, (dtype, shape) in got.items()}
    except (TypeError, ValueError):
        fail(f"signature_inputs returned {got!r}; expected (dtype name, shape tuple) per input")
    if normalised != fx.expected_signature:
        fail(f"signature_inputs gave {normalised}; the exported model's serving_default takes {fx.expected_signature}")


def _problems(code: StudentCode, inputs: dict[str, np.ndarray], fx: Lab4Fixtures) -> list[str]:
    problems = code.call("check_inputs", inputs, fx.expected_signature)
    if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
        fail(f"check_inputs returned {problems!r}; expected a list of messages")
    return problems


def check_accepts(code: StudentCode, fx: Lab4Fixtures) -> None:
    for name, inputs in (("one utterance", fx.inputs), ("a batch of two", fx.batch)):
        problems = _problems(code, inputs, fx)
        if problems:
            fail(f"check_inputs rejects {name} as vacnn_tf.serving.classifier.Preprocessor computes it: {problems}")


def check_rejects(code: StudentCode, fx: Lab4Fixtures) -> None:
    logmel, bovw = fx.inputs["logmel"], fx.inputs["bovw"]
    cases = [
        ("bovw missing", {"logmel": logmel}, "bovw"),
        ("an extra input 'audio'", {**fx.inputs, "audio": np.zeros((1, 16000), np.float32)}, "audio"),
        ("logmel as float64", {"logmel": logmel.astype(np.float64), "bovw": bovw}, "logmel"),
        ("bovw of 16 words for a model of 8", {"logmel": logmel, "bovw": np.zeros((1, 2 * K), np.float32)}, "bovw"),
        ("logmel without its batch axis", {"logmel": logmel[0], "bovw": bovw}, "logmel"),
        ("logmel 112x112", {"logmel": logmel[:, ::2, ::2], "bovw": bovw}, "logmel"),
        ("batch sizes 2 and 1", {"logmel": fx.batch["logmel"], "bovw": bovw}, ""),
    ]
    for case, inputs, name in cases:
        problems = _problems(code, inputs, fx)
        if not problems:
            fail(f"check_inputs found nothing wrong with {case}")
        if name and not any(name in p for p in problems):
            fail(f"check_inputs reports {problems} for {case}: name the input ({name!r}) in the message")


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def check_request_body(code: StudentCode, fx: Lab4Fixtures) -> None:
    from vacnn_tf.serving.classifier import ServingClient

    for row_format, name in ((True, "row (instances)"), (False, "columnar (inputs)")):
        got = code.call("request_body", fx.batch, row_format=row_format)
        try:
            got = _json(got)
        except TypeError as err:
            fail(f"request_body(row_format={row_format}) cannot be written as JSON ({err}): convert arrays with .tolist()")
        want = ServingClient("http://localhost:8501", row_format=row_format).request_body(fx.batch)
        if got != want:
            keys = sorted(got) if isinstance(got, dict) else type(got).__name__
            fail(f"the {name} body differs from vacnn_tf.serving.classifier.ServingClient's (top-level keys {keys}, "
                 f"expected {sorted(want)})")


def check_parse_response(code: StudentCode, fx: Lab4Fixtures) -> None:
    rows = [{"probabilities": [0.7, 0.3], "label": "angry"}, {"probabilities": [0.2, 0.8], "label": "sad"}]
    answers = {
        "predictions (row format)": {"predictions": rows},
        "outputs (columnar format)": {"outputs": {"probabilities": [r["probabilities"] for r in rows],
                                                  "label": [r["label"] for r in rows]}},
    }
    for name, body in answers.items():
        got = code.call("parse_response", body)
        if got != rows:
            fail(f"parse_response of an answer in {name} gave {got!r}; expected {rows!r}")
    parse = code.get("parse_response")
    error = code.raises(RuntimeError, parse, {"error": "Input to reshape is a tensor with 16 values"})
    if error is None or "16 values" not in str(error):
        fail("an answer {'error': ...} should raise RuntimeError with the server's text" +
             (f"; the message was {str(error)!r}" if error is not None else ""))
    if code.raises(RuntimeError, parse, {"unexpected": 1}) is None:
        fail("an answer with neither predictions nor outputs should raise RuntimeError")


def check_predict(code: StudentCode, fx: Lab4Fixtures) -> None:
    from vacnn_tf.serving.classifier import ServingClient

    rows = [{"probabilities": [0.1] * 6 + [0.4], "label": "sad"}] * 2
    fx.server.reply = (200, {"predictions": rows})
    fx.server.requests.clear()
    got = code.call("predict", fx.server.url + "/", fx.batch, model_name="emotions", timeout=5.0)
    if not fx.server.requests:
        fail("predict sent nothing to the server")
    sent = fx.server.requests[-1]
    if sent["path"] != "/v1/models/emotions:predict":
        fail(f"predict posted to {sent['path']}; TF Serving answers at /v1/models/emotions:predict")
    if not (sent["content_type"] or "").startswith("application/json"):
        fail(f"predict sent Content-Type {sent['content_type']!r}; expected application/json")
    want_body = ServingClient(fx.server.url, "emotions").request_body(fx.batch)
    if sent["body"] != want_body:
        fail("predict's request body is not the row-format body of vacnn_tf.serving.classifier.ServingClient")
    if got != ServingClient(fx.server.url, "emotions").predict(fx.batch):
        fail(f"predict returned {got!r}; expected the rows of the answer, {rows!r}")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_predict_errors(code: StudentCode, fx: Lab4Fixtures) -> None:
    predict = code.get("predict")
    fx.server.reply = (400, {"error": "Input bovw: expected shape [-1,8]"})
    error = code.raises(RuntimeError, predict, fx.server.url, fx.inputs, timeout=5.0)
    if error is None:
        fail("an HTTP 400 answer should raise RuntimeError")
    if "400" not in str(error) and "expected shape" not in str(error):
        fail(f"the error for an HTTP 400 answer says {str(error)!r}; give the status or the server's text")
    if code.raises(RuntimeError, predict, f"http://127.0.0.1:{_closed_port()}", fx.inputs, timeout=2.0) is None:
        fail("a refused connection should raise RuntimeError")


CHECKS = [
    Check("signature_inputs reads the exported model's serving_default inputs", check_signature),
    Check("check_inputs accepts the inputs vacnn_tf.serving.classifier.Preprocessor computes", check_accepts),
    Check("check_inputs names what is wrong (missing, extra, dtype, shape, batch)", check_rejects),
    Check("request_body is the body vacnn_tf.serving.classifier.ServingClient sends (both formats)", check_request_body),
    Check("parse_response reads both answer formats and raises on an error", check_parse_response),
    Check("predict POSTs JSON to /v1/models/NAME:predict and returns the rows", check_predict),
    Check("predict turns an HTTP error and a refused connection into RuntimeError", check_predict_errors),
]

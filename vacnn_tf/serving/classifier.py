"""Turn wav files into the exported signature's inputs, run a SavedModel locally or over REST.

Everything needed to compute the training features is read from the SavedModel's own assets
(``feature_config.json``, ``vocabulary.npz``, ``labels.json``), so a client needs the model
directory and nothing else.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vacnn_tf.config import BovwConfig, FeatureConfig, from_dict
from vacnn_tf.serving.export import ASSET_FEATURES, ASSET_VOCABULARY
from vacnn_tf.serving.rest import SEND_MODES


class ServingError(RuntimeError):
    """A request to a model server failed; the message says which URL and why.

    Attributes:
        status: The HTTP status of the answer, None when there was none.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Prediction:
    """One file's result: a label and per-class probabilities, or an error."""

    path: str
    label: str | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None


class Preprocessor:
    """Computes ``logmel`` and ``bovw`` inputs exactly as in training, from a SavedModel's assets."""

    def __init__(self, features: FeatureConfig, bovw: BovwConfig, classes: list[str], vocabulary: Any = None):
        self.features = features
        self.bovw = bovw
        self.classes = classes
        self.vocabulary = vocabulary

    @classmethod
    def from_savedmodel(cls, model_dir: str | Path) -> "Preprocessor":
        assets = Path(model_dir) / "assets"
        spec_path = assets / ASSET_FEATURES
        if not spec_path.is_file():
            raise FileNotFoundError(
                f"{spec_path} missing: {model_dir} is not a SavedModel written by `vacnn export`."
            )
        spec = json.loads(spec_path.read_text())
        vocabulary = None
        if (assets / ASSET_VOCABULARY).is_file():
            from vacnn_tf.features.bovw import BovwVocabulary

            vocabulary = BovwVocabulary.load(assets / ASSET_VOCABULARY)
        # an unknown setting is an error, never dropped: ignoring one would compute other
        # features than the model was trained on
        return cls(
            from_dict(FeatureConfig, spec["features"], "features.", source=spec_path),
            from_dict(BovwConfig, spec["bovw"], "bovw.", source=spec_path),
            list(spec["classes"]),
            vocabulary,
        )

    @property
    def uses_bovw(self) -> bool:
        return self.vocabulary is not None

    def from_image(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Inputs for one uint8 log-mel image `(image_size, image_size)`."""
        out = {"logmel": image.astype(np.float32)[None, :, :, None]}
        if self.vocabulary is not None:
            out["bovw"] = self.vocabulary.transform(image[None]).astype(np.float32)
        return out

    def from_waveform(self, waveform: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
        from vacnn_tf.features.logmel import logmel_image

        return self.from_image(logmel_image(waveform, sample_rate, self.features))

    def waveform_inputs(self, path: str | Path) -> dict[str, np.ndarray]:
        """Inputs of the ``waveform`` signature for one file: ``waveform`` (1, samples) at
        ``features.sample_rate``, ``length`` (1,), and, for BOVW models, ``bovw`` from the
        Python image (KAZE has no TensorFlow equivalent)."""
        from vacnn_tf.features.logmel import load_audio

        waveform = load_audio(path, self.features.sample_rate, self.features.min_duration)
        inputs = {"waveform": waveform[None], "length": np.array([len(waveform)], np.int32)}
        if self.vocabulary is not None:
            inputs["bovw"] = self.from_waveform(waveform, self.features.sample_rate)["bovw"]
        return inputs

    def from_file(self, path: str | Path) -> dict[str, np.ndarray]:
        """Inputs for one wav file; raises ``features.AudioError`` naming the file for bad audio."""
        from vacnn_tf.features.logmel import load_audio

        waveform = load_audio(path, self.features.sample_rate, self.features.min_duration)
        return self.from_waveform(waveform, self.features.sample_rate)


def _predict_each(pre: Preprocessor, paths: Sequence[str | Path],
                  run: Callable[[dict[str, np.ndarray]], tuple[str, Sequence[float]]],
                  features: Callable[[str | Path], dict[str, np.ndarray]] | None = None) -> list[Prediction]:
    """Features per file (``pre.from_file`` by default), then ``run`` on them; a bad file, or one a
    server refuses or fails (4xx, 5xx), gets an error and the rest go on. A server that does not
    answer at all gets no more files: each left gets an error saying so, and the answers already
    received are kept."""
    results: list[Prediction] = []
    for i, path in enumerate(paths):
        try:
            inputs = (features or pre.from_file)(path)
            label, probs = run(inputs)
        except ServingError as err:
            results.append(Prediction(str(path), error=f"{path}: {err}"))
            if err.status is None:
                results += [Prediction(str(p), error=f"{p}: not sent, the server did not answer for {path}")
                            for p in paths[i + 1:]]
                break
            continue
        except (ValueError, OSError) as err:
            results.append(Prediction(str(path), error=str(err)))
            continue
        results.append(Prediction(str(path), label, dict(zip(pre.classes, map(float, probs)))))
    return results


class EmotionClassifier:
    """An exported SavedModel in this process: label a file or a waveform in two lines.

    Example::

        from vacnn_tf.serving.classifier import EmotionClassifier

        classifier = EmotionClassifier.from_savedmodel("models/vacnn/1")
        classifier.classify_file("a.wav").label                  # "happy"
        classifier.classify_waveform(samples, 44100).probabilities  # {"neutral": 0.02, ...}

    The features are computed in Python from the model's own assets (:class:`Preprocessor`),
    exactly as in training, and go to the ``serving_default`` signature.
    """

    def __init__(self, model_dir: str | Path, preprocessor: Preprocessor, loaded: Any) -> None:
        self.model_dir = Path(model_dir)
        self.preprocessor = preprocessor
        self.signatures = loaded.signatures
        self._loaded = loaded  # the signatures' variables live as long as this object

    @classmethod
    def from_savedmodel(cls, model_dir: str | Path) -> "EmotionClassifier":
        """Load a version directory written by ``vacnn export`` (``OUT/NAME/VERSION``)."""
        import tensorflow as tf

        pre = Preprocessor.from_savedmodel(model_dir)
        return cls(model_dir, pre, tf.saved_model.load(str(model_dir)))

    @property
    def classes(self) -> list[str]:
        return self.preprocessor.classes

    def run(self, inputs: dict[str, np.ndarray], signature: str = "serving_default") -> dict[str, np.ndarray]:
        """One call of a signature on NumPy inputs (a leading batch dimension); NumPy outputs."""
        import tensorflow as tf

        fn = self.signatures[signature]
        specs = fn.structured_input_signature[1]
        outputs = fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    def _prediction(self, name: str, inputs: dict[str, np.ndarray]) -> Prediction:
        outputs = self.run(inputs)
        return Prediction(name, outputs["label"][0].decode(),
                          dict(zip(self.classes, map(float, outputs["probabilities"][0]))))

    def classify_file(self, path: str | Path) -> Prediction:
        """Label one audio file; raises ``features.AudioError`` naming the file for bad audio."""
        return self._prediction(str(path), self.preprocessor.from_file(path))

    def classify_waveform(self, waveform: np.ndarray, sample_rate: int, name: str = "waveform") -> Prediction:
        """Label mono samples at any rate (resampled to ``features.sample_rate``)."""
        return self._prediction(name, self.preprocessor.from_waveform(np.asarray(waveform, np.float32), sample_rate))

    def classify_files(self, paths: Sequence[str | Path]) -> list[Prediction]:
        """Label each file; a bad file gets ``Prediction.error`` and the rest go on."""
        def run(inputs: dict[str, np.ndarray]) -> tuple[str, Sequence[float]]:
            outputs = self.run(inputs)
            return outputs["label"][0].decode(), outputs["probabilities"][0]

        return _predict_each(self.preprocessor, paths, run)


def predict_local(model_dir: str | Path, paths: Sequence[str | Path]) -> list[Prediction]:
    """Run the SavedModel in this process on each file; a bad file gets an error, the rest go on."""
    return EmotionClassifier.from_savedmodel(model_dir).classify_files(paths)


class ServingClient:
    """A small REST client for TF Serving and ``vacnn serve``: ``POST {url}/v1/models/{name}:predict``.

    Args:
        url: The server's base URL, e.g. ``http://localhost:8501``.
        model_name: The model's name on the server.
        timeout: Seconds per request.
        row_format: True: ``{"instances": [...]}``; False: ``{"inputs": {...}}``.
        signature_name: The signature to call (default: the server's ``serving_default``).
    """

    def __init__(self, url: str, model_name: str = "vacnn", timeout: float = 10.0, row_format: bool = True,
                 signature_name: str | None = None):
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.timeout = timeout
        self.row_format = row_format
        self.signature_name = signature_name

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/models/{self.model_name}:predict"

    def request_body(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        body: dict[str, Any] = {"signature_name": self.signature_name} if self.signature_name else {}
        if self.row_format:
            n = len(next(iter(inputs.values())))
            body["instances"] = [{k: v[i].tolist() for k, v in inputs.items()} for i in range(n)]
        else:
            body["inputs"] = {k: v.tolist() for k, v in inputs.items()}
        return body

    def _post(self, endpoint: str, data: bytes, content_type: str) -> dict[str, Any]:
        req = urllib.request.Request(endpoint, data=data, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = json.loads(resp.read().decode())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise ServingError(f"{endpoint}: HTTP {err.code}: {detail}", status=err.code) from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ServingError(f"{endpoint}: no answer within {self.timeout}s or refused ({reason})") from None
        except ValueError as err:  # not JSON
            raise ServingError(f"{endpoint}: the answer is not JSON ({err})") from None
        if "error" in body:
            raise ServingError(f"{endpoint}: server error: {body['error']}")
        return body

    def predict(self, inputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Returns one ``{"probabilities": [...], "label": str}`` per row."""
        body = self._post(self.endpoint, json.dumps(self.request_body(inputs)).encode(), "application/json")
        if "predictions" in body:
            return list(body["predictions"])
        outputs = body.get("outputs")
        if not isinstance(outputs, dict):
            raise ServingError(f"{self.endpoint}: unexpected response keys {sorted(body)}")
        n = len(outputs["probabilities"])
        return [{k: v[i] for k, v in outputs.items()} for i in range(n)]

    def classify(self, audio: bytes) -> dict[str, Any]:
        """``vacnn serve`` only: ``POST :classify`` with a file's bytes; ``{"label", "probabilities", "duration"}``."""
        endpoint = f"{self.url}/v1/models/{self.model_name}:classify"
        return self._post(endpoint, audio, "application/octet-stream")


def predict_remote(model_dir: str | Path | None, paths: Sequence[str | Path], client: ServingClient,
                   send: str = "features") -> list[Prediction]:
    """Label files through a server (TF Serving or ``vacnn serve``).

    Args:
        model_dir: The SavedModel (for its assets); not needed with ``send="audio"``.
        paths: Audio files.
        client: The server.
        send: ``features``: the log-mel image (and BOVW histogram) computed here, to
            ``serving_default``; ``waveform``: the samples at the model's rate (and the histogram
            for BOVW models), to the ``waveform`` signature, the server computes the image;
            ``audio``: the file's bytes to ``vacnn serve``'s ``:classify``, which does everything.

    A bad file, here or refused by the server with a 4xx, gets ``Prediction.error``; the rest go on.
    """
    if send not in SEND_MODES:
        raise ValueError(f"send must be one of {list(SEND_MODES)}. Received: send={send!r}")
    if send == "audio":
        return [_classify_remote(path, client) for path in paths]
    if model_dir is None:
        raise ValueError(f"send={send!r} computes inputs from the SavedModel's assets: give its folder (--model)")
    pre = Preprocessor.from_savedmodel(model_dir)
    if send == "waveform":
        client = ServingClient(client.url, client.model_name, client.timeout, client.row_format, "waveform")

    def run(inputs: dict[str, np.ndarray]) -> tuple[str, Sequence[float]]:
        row = client.predict(inputs)[0]
        probs = [float(p) for p in row["probabilities"]]
        return str(row.get("label") or pre.classes[int(np.argmax(probs))]), probs

    features = pre.waveform_inputs if send == "waveform" else pre.from_file
    return _predict_each(pre, paths, run, features)


def _classify_remote(path: str | Path, client: ServingClient) -> Prediction:
    try:
        data = Path(path).read_bytes()
        answer = client.classify(data)
    except OSError as err:
        return Prediction(str(path), error=f"{path}: {err.strerror or err}")
    except ServingError as err:
        if err.status is not None and 400 <= err.status < 500:
            return Prediction(str(path), error=f"{path}: {err}")
        raise
    return Prediction(str(path), str(answer["label"]), {k: float(v) for k, v in answer["probabilities"].items()})

"""Turn wav files into the exported signature's inputs, run a SavedModel locally or over REST.

Everything needed to compute the training features is read from the SavedModel's own assets
(``feature_config.json``, ``vocabulary.npz``, ``labels.json``), so a client needs the model
directory and nothing else.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vacnn_tf.config import BovwConfig, FeatureConfig
from vacnn_tf.export import ASSET_FEATURES, ASSET_VOCABULARY


class ServingError(RuntimeError):
    """A request to a model server failed; the message says which URL and why."""


def _dataclass_from(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


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
            from vacnn_tf.bovw import BovwVocabulary

            vocabulary = BovwVocabulary.load(assets / ASSET_VOCABULARY)
        return cls(
            _dataclass_from(FeatureConfig, spec["features"]),
            _dataclass_from(BovwConfig, spec["bovw"]),
            list(spec["classes"]),
            vocabulary,
        )

    @property
    def uses_bovw(self) -> bool:
        return self.vocabulary is not None

    def from_image(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Inputs for one uint8 log-mel image (224, 224)."""
        out = {"logmel": image.astype(np.float32)[None, :, :, None]}
        if self.vocabulary is not None:
            out["bovw"] = self.vocabulary.transform(image[None]).astype(np.float32)
        return out

    def from_waveform(self, waveform: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
        from vacnn_tf.features import logmel_image

        return self.from_image(logmel_image(waveform, sample_rate, self.features))

    def from_file(self, path: str | Path) -> dict[str, np.ndarray]:
        """Inputs for one wav file; raises ``features.AudioError`` naming the file for bad audio."""
        from vacnn_tf.features import load_audio

        waveform = load_audio(path, self.features.sample_rate, self.features.min_duration)
        return self.from_waveform(waveform, self.features.sample_rate)


def _predict_each(pre: Preprocessor, paths: Sequence[str | Path],
                  run: Callable[[dict[str, np.ndarray]], tuple[str, Sequence[float]]]) -> list[Prediction]:
    """Features per file, then ``run`` on them; a bad file gets an error and the rest go on."""
    results: list[Prediction] = []
    for path in paths:
        try:
            inputs = pre.from_file(path)
        except (ValueError, OSError) as err:
            results.append(Prediction(str(path), error=str(err)))
            continue
        label, probs = run(inputs)
        results.append(Prediction(str(path), label, dict(zip(pre.classes, map(float, probs)))))
    return results


def predict_local(model_dir: str | Path, paths: Sequence[str | Path]) -> list[Prediction]:
    """Run the SavedModel in this process on each file; a bad file gets an error, the rest go on."""
    import tensorflow as tf

    pre = Preprocessor.from_savedmodel(model_dir)
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]

    def run(inputs: dict[str, np.ndarray]) -> tuple[str, Sequence[float]]:
        outputs = serve(**{k: tf.constant(v) for k, v in inputs.items()})
        return outputs["label"].numpy()[0].decode(), outputs["probabilities"].numpy()[0]

    return _predict_each(pre, paths, run)


class ServingClient:
    """A small TF Serving REST client: ``POST {url}/v1/models/{name}:predict``."""

    def __init__(self, url: str, model_name: str = "vacnn", timeout: float = 10.0, row_format: bool = True):
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.timeout = timeout
        self.row_format = row_format  # True: {"instances": [...]}, False: {"inputs": {...}}

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/models/{self.model_name}:predict"

    def request_body(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        if self.row_format:
            n = len(next(iter(inputs.values())))
            return {"instances": [{k: v[i].tolist() for k, v in inputs.items()} for i in range(n)]}
        return {"inputs": {k: v.tolist() for k, v in inputs.items()}}

    def predict(self, inputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Returns one ``{"probabilities": [...], "label": str}`` per row."""
        data = json.dumps(self.request_body(inputs)).encode()
        req = urllib.request.Request(self.endpoint, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = json.loads(resp.read().decode())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise ServingError(f"{self.endpoint}: HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ServingError(f"{self.endpoint}: no answer within {self.timeout}s or refused ({reason})") from None
        if "error" in body:
            raise ServingError(f"{self.endpoint}: server error: {body['error']}")
        if "predictions" in body:
            return list(body["predictions"])
        outputs = body.get("outputs")
        if not isinstance(outputs, dict):
            raise ServingError(f"{self.endpoint}: unexpected response keys {sorted(body)}")
        n = len(outputs["probabilities"])
        return [{k: v[i] for k, v in outputs.items()} for i in range(n)]


def predict_remote(model_dir: str | Path, paths: Sequence[str | Path], client: ServingClient) -> list[Prediction]:
    """Compute features locally from the SavedModel's assets, then ask the server."""
    pre = Preprocessor.from_savedmodel(model_dir)

    def run(inputs: dict[str, np.ndarray]) -> tuple[str, Sequence[float]]:
        row = client.predict(inputs)[0]
        probs = [float(p) for p in row["probabilities"]]
        return str(row.get("label") or pre.classes[int(np.argmax(probs))]), probs

    return _predict_each(pre, paths, run)

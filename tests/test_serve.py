"""`vacnn serve` in process (Starlette's TestClient, no sockets) and as a subprocess, the batcher,
and `vacnn predict --url`'s client, on an exported model and synthetic utterances."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from vacnn_tf.config import load_config

ENV_QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def wavs(module_tmp) -> list[str]:
    """Synthetic EmoDB utterances (16 kHz, 1-2.5 s)."""
    from vacnn_tf.corpora.synth import generate

    folder = generate(module_tmp / "synthetic", per_class=1, corpora=["emodb"])["emodb"]
    return sorted(str(p) for p in folder.rglob("*.wav"))[:6]


@pytest.fixture(scope="module")
def exported(wavs: list[str], module_tmp) -> Path:
    """An untrained VACNN with BOVW and a vocabulary fitted on the synthetic utterances: the
    server's answers are checked against the same model run in process, so no training is needed."""
    from vacnn_tf.config import ModelConfig
    from vacnn_tf.features.bovw import BovwVocabulary, descriptors_for
    from vacnn_tf.features.logmel import file_image
    from vacnn_tf.models.finetuned import build_finetuned
    from vacnn_tf.models.networks import build_vacnn
    from vacnn_tf.serving.export import write_savedmodel

    config = load_config()
    images = np.stack([file_image(p, config.features) for p in wavs])
    vocabulary = BovwVocabulary.fit(descriptors_for(images, config.bovw, progress=False), config.bovw, seed=0)
    vocabulary.save(module_tmp / "vocabulary.npz")
    classes = ["neutral", "happy", "sad", "angry", "fear", "disgust", "boredom"]
    model = build_finetuned(build_vacnn(7), len(classes), ModelConfig(), use_bovw=True)
    return write_savedmodel(model, module_tmp / "models" / "vacnn" / "1", classes, config, module_tmp / "vocabulary.npz")


@pytest.fixture(scope="module")
def classifier(exported: Path):
    from vacnn_tf.serving.classifier import EmotionClassifier

    return EmotionClassifier.from_savedmodel(exported)


# --- vacnn serve, in process --------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(exported: Path):
    from starlette.testclient import TestClient

    from vacnn_tf.serving.server import ModelServer, ServerLimits, create_app

    server = ModelServer(exported.parent, limits=ServerLimits(max_body_bytes=2 * 2**20, max_seconds=4.0, max_rows=8))
    with TestClient(create_app(server)) as test_client:
        test_client.server = server
        yield test_client


def test_status_and_metadata_answer_as_tf_serving(client):
    status = client.get("/v1/models/vacnn").json()
    assert status["model_version_status"][0] == {"version": "1", "state": "AVAILABLE",
                                                 "status": {"error_code": "OK", "error_message": ""}}
    meta = client.get("/v1/models/vacnn/versions/1/metadata").json()
    assert meta["model_spec"] == {"name": "vacnn", "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "waveform", "waveform_logmel"} <= set(defs)
    assert defs["serving_default"]["inputs"]["logmel"]["dtype"] == "DT_FLOAT"
    assert sorted(defs["waveform"]["inputs"]) == ["bovw", "length", "waveform"]
    assert defs["waveform"]["method_name"] == "tensorflow/serving/predict"


def test_predict_in_row_and_columnar_formats(client, classifier, wavs: list[str]):
    inputs = [classifier.preprocessor.from_file(p) for p in wavs[:2]]
    batch = {k: np.concatenate([i[k] for i in inputs]) for k in inputs[0]}
    expected = classifier.run(batch)
    rows = client.post("/v1/models/vacnn:predict", json={
        "instances": [{k: v[i].tolist() for k, v in batch.items()} for i in range(2)]}).json()["predictions"]
    assert [r["label"] for r in rows] == [x.decode() for x in expected["label"]]
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected["probabilities"], atol=1e-5)
    columns = client.post("/v1/models/vacnn/versions/1:predict", json={
        "inputs": {k: v.tolist() for k, v in batch.items()}}).json()["outputs"]
    assert columns["label"] == [r["label"] for r in rows]
    waves = classifier.preprocessor.waveform_inputs(wavs[0])
    by_wave = client.post("/v1/models/vacnn:predict", json={
        "signature_name": "waveform", "instances": [{k: v[0].tolist() for k, v in waves.items()}]}).json()
    assert by_wave["predictions"][0]["label"] == rows[0]["label"]


def _flac(wave: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, wave, rate, format="FLAC")
    return out.getvalue()


def test_classify_takes_audio_at_any_rate(client, classifier, wavs: list[str]):
    import librosa
    import soundfile as sf

    body = Path(wavs[0]).read_bytes()
    answer = client.post("/v1/models/vacnn:classify", content=body).json()
    local = classifier.classify_file(wavs[0])
    assert answer["label"] == local.label and answer["model_spec"] == {"name": "vacnn", "version": "1"}
    assert answer["probabilities"] == pytest.approx(local.probabilities, abs=1e-5)
    assert answer["duration"] == pytest.approx(sf.info(wavs[0]).duration, abs=1e-3)
    wave, rate = sf.read(wavs[1], dtype="float32")
    at_44k = librosa.resample(wave, orig_sr=rate, target_sr=44100)
    answer = client.post("/v1/models/vacnn:classify", content=_flac(at_44k, 44100)).json()
    assert answer["label"] == classifier.classify_waveform(at_44k, 44100).label


def _wav(wave: np.ndarray, rate: int = 16000) -> bytes:
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, wave, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


_TONE = (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
BAD_REQUESTS = {
    # name: (path, body, status, words in the error)
    "empty": (":classify", b"", 400, "empty"),
    "truncated": (":classify", _wav(_TONE)[:5000], 400, "truncated"),
    "not audio": (":classify", b"<html>hello</html>" * 10, 400, "not a readable audio file"),
    "silent": (":classify", _wav(np.zeros(16000, np.float32)), 400, "all silent"),
    "too short": (":classify", _wav(_TONE[:800]), 400, "too short"),
    "too long": (":classify", _wav(np.tile(_TONE, 5)), 400, "too long"),
    "too large": (":classify", b"\0" * (3 * 2**20), 413, "larger than"),
    "malformed JSON": (":predict", b'{"instances": [', 400, "malformed JSON"),
    "not an object": (":predict", b"[1, 2]", 400, "JSON object"),
    "both formats": (":predict", b'{"instances": [], "inputs": {}}', 400, "exactly one"),
    "wrong shape": (":predict", json.dumps({"instances": [{"logmel": [[0.0] * 4], "bovw": [0.0] * 128}]}).encode(),
                    400, "shape"),
    "wrong dtype": (":predict", json.dumps({"inputs": {"logmel": "abc", "bovw": [[0.0] * 128]}}).encode(), 400,
                    "not numbers"),
    "missing input": (":predict", json.dumps({"instances": [{"bovw": [0.0] * 128}]}).encode(), 400, "missing ['logmel']"),
    "ragged waveforms": (":predict", json.dumps({"signature_name": "waveform", "instances": [
        {"waveform": [0.1] * 3000, "length": 3000, "bovw": [0.0] * 128},
        {"waveform": [0.1] * 2000, "length": 2000, "bovw": [0.0] * 128}]}).encode(), 400, "pad each waveform"),
    "fractional length": (":predict", json.dumps({"signature_name": "waveform", "inputs": {
        "waveform": [[0.1] * 3000], "length": [2999.5], "bovw": [[0.0] * 128]}}).encode(), 400, "whole numbers"),
    "silent waveform": (":predict", json.dumps({"signature_name": "waveform", "inputs": {
        "waveform": [[0.0] * 3000], "length": [3000], "bovw": [[0.0] * 128]}}).encode(), 400, "all silent"),
    "unknown signature": (":predict", b'{"signature_name": "nope", "instances": [1]}', 400, "not found"),
    "too many rows": (":predict", json.dumps({"instances": [{"logmel": 0, "bovw": 0}] * 9}).encode(), 413, "at most 8"),
    "unnamed input": (":predict", json.dumps({"instances": [[0.0]]}).encode(), 400, "name each one"),
    "signature name not a string": (":predict", b'{"signature_name": [], "instances": []}', 400,
                                    "signature_name must be a string"),
    "nested too deeply": (":predict", b"[" * 5000, 400, "nested too deeply"),
    "beyond float32": (":predict", json.dumps({"inputs": {"logmel": [[[[1e39]] * 224] * 224],
                                                          "bovw": [[0.0] * 128]}}).encode(), 400, "too large for DT_FLOAT"),
    "waveform too long": (":predict", json.dumps({"signature_name": "waveform", "inputs": {
        "waveform": [[0.1] * 80000], "length": [80000], "bovw": [[0.0] * 128]}}).encode(), 413, "waveform too long"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_and_a_reason(client, case: str):
    path, body, status, words = BAD_REQUESTS[case]
    response = client.post(f"/v1/models/vacnn{path}", content=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_outputs_that_are_not_finite_get_a_4xx_not_a_crash(client, monkeypatch):
    """JSON has no NaN: a model answering NaN for extreme inputs must not turn into a 500."""
    classifier = client.server.classifier
    real = classifier.run

    def nan_run(inputs, signature="serving_default"):
        outputs = real(inputs, signature)
        return {**outputs, "probabilities": np.full_like(outputs["probabilities"], np.nan)}

    monkeypatch.setattr(classifier, "run", nan_run)
    body = json.dumps({"inputs": {"logmel": np.zeros((1, 224, 224, 1)).tolist(), "bovw": [[0.0] * 128]}}).encode()
    answer = client.post("/v1/models/vacnn:predict", content=body)
    assert answer.status_code == 400 and "not finite" in answer.json()["error"]


def test_wrong_paths_and_methods_answer_json(client, wavs: list[str]):
    assert client.get("/v1/models/other").status_code == 404
    assert "Servable not found" in client.get("/v1/models/other/metadata").json()["error"]
    assert client.get("/v1/models/vacnn/versions/7").status_code == 404
    assert client.get("/v1/models/vacnn:predict").status_code == 405
    assert client.post("/v1/models/vacnn:regress", content=b"{}").status_code == 404
    assert client.get("/nowhere").json()["error"].startswith("Not Found")
    # after all that, the server still answers
    assert client.post("/v1/models/vacnn:classify", content=Path(wavs[0]).read_bytes()).status_code == 200


def test_batcher_groups_concurrent_calls_and_isolates_a_bad_one():
    from vacnn_tf.serving.rest import RequestError
    from vacnn_tf.serving.server import Batcher, ServerBusy

    sizes = []

    def run(signature: str, inputs: dict) -> dict:
        sizes.append(len(inputs["x"]))
        if (inputs["x"] < 0).any():
            raise RequestError("negative")
        return {"y": inputs["x"][:, :1] * 2}

    async def scenario() -> list:
        batcher = Batcher(run, max_batch=8, timeout=0.05, max_queue=12)
        await batcher.start()
        try:
            calls = [batcher.submit("s", {"x": np.full((1, 1 + i % 3), float(i))}) for i in range(10)]
            calls.append(batcher.submit("s", {"x": np.full((1, 2), -1.0)}))
            results = await asyncio.gather(*calls, return_exceptions=True)
            with pytest.raises(ServerBusy):
                await asyncio.gather(*[batcher.submit("s", {"x": np.ones((1, 1))}) for _ in range(13)])
            return results
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert [float(r["y"][0, 0]) for r in results[:10]] == [2.0 * i for i in range(10)]
    assert isinstance(results[10], RequestError)
    assert max(sizes) == 8  # batched, and never above max_batch


def test_batcher_survives_any_failure_of_one_call():
    """Not only a RequestError: an error of any kind (out of memory in the model, inputs that cannot
    be stacked) fails only the calls that caused it, and the loop goes on answering."""
    from vacnn_tf.serving.server import Batcher

    def run(signature: str, inputs: dict) -> dict:
        if (inputs["x"] > 100).any():
            raise MemoryError("too big")
        return {"y": inputs["x"].sum(axis=tuple(range(1, inputs["x"].ndim)))}

    async def scenario() -> list:
        batcher = Batcher(run, max_batch=8, timeout=0.05, max_queue=12)
        await batcher.start()
        try:
            calls = [batcher.submit("s", {"x": np.full((1, 2), 1.0)}),
                     batcher.submit("s", {"x": np.full((1, 2), 500.0)}),   # the model fails on it
                     batcher.submit("s", {"x": np.full((1, 2, 2), 1.0)}),  # cannot be stacked with the others
                     batcher.submit("s", {"x": np.full((1, 2), 2.0)})]
            first = await asyncio.gather(*calls, return_exceptions=True)
            later = await batcher.submit("s", {"x": np.full((1, 2), 3.0)})
            return [*first, later]
        finally:
            await batcher.stop()

    ok, big, odd, ok2, later = asyncio.run(scenario())
    assert float(ok["y"][0]) == 2.0 and float(ok2["y"][0]) == 4.0 and float(later["y"][0]) == 6.0
    assert isinstance(big, MemoryError)
    assert float(odd["y"][0]) == 4.0  # alone, it runs


def test_a_body_that_trickles_in_gets_408():
    """Clients sending a byte now and then must not hold the server's request slots for ever."""
    from types import SimpleNamespace

    from vacnn_tf.serving.rest import RequestError
    from vacnn_tf.serving.server import ServerLimits, _Endpoints

    class Trickle:
        headers: dict = {}

        def __init__(self, pause: float) -> None:
            self.pause = pause

        async def stream(self):
            yield b'{"instances": '
            await asyncio.sleep(self.pause)
            yield b"[]}"

    async def handler(body: bytes) -> bytes:
        return body

    endpoints = _Endpoints(SimpleNamespace(limits=ServerLimits(read_timeout_s=0.2)))
    with pytest.raises(RequestError, match="--read-timeout") as raised:
        asyncio.run(endpoints._body_then(Trickle(pause=2), handler))
    assert raised.value.status == 408
    patient = _Endpoints(SimpleNamespace(limits=ServerLimits(read_timeout_s=30)))
    assert asyncio.run(patient._body_then(Trickle(pause=0.05), handler)) == b'{"instances": []}'


def test_a_broken_saved_model_is_named(tmp_path: Path):
    from vacnn_tf.serving.rest import read_signature_defs

    (tmp_path / "saved_model.pb").write_bytes(b"\x0a\xff")  # a field promising more bytes than follow
    with pytest.raises(ValueError, match=r"saved_model.pb: not a readable SavedModel"):
        read_signature_defs(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"")  # valid, and holds no graph
    with pytest.raises(ValueError, match=r"saved_model.pb: no meta graph tagged 'serve'"):
        read_signature_defs(tmp_path)


def test_server_limits_must_be_finite():
    from vacnn_tf.serving.server import ServerLimits

    for name in ("max_seconds", "batch_timeout_ms", "read_timeout_s"):
        with pytest.raises(ValueError, match=f"{name} must be a positive finite number"):
            ServerLimits(**{name: float("nan")})


# --- vacnn serve as a process, and vacnn predict --url ------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_subprocess_answers_predict_and_classify(exported: Path, classifier, wavs: list[str]):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "vacnn_tf", "serve", "--model", str(exported), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV_QUIET)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v1/models/vacnn", timeout=2) as resp:
                    assert json.loads(resp.read())["model_version_status"][0]["state"] == "AVAILABLE"
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "vacnn serve did not answer within 90 s"
                time.sleep(0.5)
        request = urllib.request.Request(f"{url}/v1/models/vacnn:classify", data=Path(wavs[0]).read_bytes())
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert json.loads(resp.read())["label"] == classifier.classify_file(wavs[0]).label
        cmd = [sys.executable, "-m", "vacnn_tf", "predict", "--json", "--model", str(exported), "--url", url,
               "--send", "waveform", *wavs[:2]]
        result = subprocess.run(cmd, capture_output=True, text=True, env=ENV_QUIET, timeout=120)
        assert result.returncode == 0, result.stderr
        labels = [json.loads(line)["label"] for line in result.stdout.splitlines()]
        assert labels == [classifier.classify_file(p).label for p in wavs[:2]]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_predict_url_sends_features_waveforms_or_audio(client, exported: Path, classifier, wavs: list[str], monkeypatch):
    """The client side of `vacnn predict --url`, against the in-process app: the same labels three ways."""
    from vacnn_tf.serving.classifier import ServingClient, ServingError, predict_remote

    def post(self, endpoint: str, data: bytes, content_type: str) -> dict:
        answer = client.post(endpoint.removeprefix(self.url), content=data, headers={"Content-Type": content_type})
        if answer.status_code != 200:
            raise ServingError(f"{endpoint}: HTTP {answer.status_code}: {answer.text}", answer.status_code)
        return answer.json()

    monkeypatch.setattr(ServingClient, "_post", post)
    remote = ServingClient("http://testserver", "vacnn")
    expected = [classifier.classify_file(p).label for p in wavs[:2]]
    for send in serving_modes():
        model = None if send == "audio" else exported
        results = predict_remote(model, [*wavs[:2], "missing.wav"], remote, send=send)
        assert [r.label for r in results[:2]] == expected, send
        assert results[2].error and "missing.wav" in results[2].error



def test_a_failing_server_costs_no_answer_already_received(classifier, wavs: list[str]):
    """A 5xx is that file's error and the next file is sent; a server that does not answer at all
    gets no more files, each left says so, and the answers received before are kept."""
    from vacnn_tf.serving.classifier import ServingError, _predict_each

    outcomes = iter([("happy", [1 / 7] * 7), ServingError("HTTP 500: boom", 500), ("sad", [1 / 7] * 7),
                     ServingError("connection refused", None)])

    def run(inputs: dict) -> tuple:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    results = _predict_each(classifier.preprocessor, wavs[:6], run)
    assert [r.label for r in results] == ["happy", None, "sad", None, None, None]
    assert "HTTP 500" in results[1].error and "connection refused" in results[3].error
    assert all("not sent, the server did not answer" in r.error for r in results[4:])


def serving_modes() -> tuple[str, ...]:
    from vacnn_tf.serving.rest import SEND_MODES

    return SEND_MODES


def test_stored_feature_settings_are_read_back_with_the_config_checks(tmp_path: Path):
    from vacnn_tf.config import ConfigError
    from vacnn_tf.serving.classifier import Preprocessor
    from vacnn_tf.serving.export import ASSET_FEATURES, _feature_assets

    config = load_config(overrides=["features.n_mels=64", "bovw.k=16"])
    assets = _feature_assets(config, ["neutral", "sad"], uses_bovw=False, waveform_note=None)
    spec = tmp_path / "assets" / ASSET_FEATURES
    spec.parent.mkdir()
    spec.write_text(json.dumps(assets))
    pre = Preprocessor.from_savedmodel(tmp_path)
    assert pre.features == config.features and pre.bovw == config.bovw and pre.classes == ["neutral", "sad"]
    # a setting this code does not know would change the features if ignored: it is refused
    assets["features"]["n_melz"] = 32
    spec.write_text(json.dumps(assets))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(spec))}: Unknown config key\(s\) \['features.n_melz'\]"):
        Preprocessor.from_savedmodel(tmp_path)

"""``vacnn serve``: TF Serving's REST API for one exported model, and audio in, emotion out.

Endpoints (``NAME`` is the model name, by default the folder above the version folder)::

    GET  /v1/models/NAME                  version status, as TF Serving answers it
    GET  /v1/models/NAME/metadata         the signature defs, as TF Serving answers them
    POST /v1/models/NAME:predict          TF Serving's row ("instances") or columnar ("inputs") body
    POST /v1/models/NAME:classify         the bytes of a wav, flac or ogg file (any sample rate)

and the same under ``/v1/models/NAME/versions/VERSION``. ``:classify`` runs the whole feature
path of training in Python (resampling, log-mel image, KAZE, the vocabulary from the model's
assets) and answers ``{"label", "probabilities", "duration"}``; it is ours, not TF Serving's
``:classify`` (which takes tf.Example rows for classification signatures the model does not have).

Concurrent calls of one signature are batched (:class:`Batcher`): a call waits at most
``batch_timeout_ms`` for others, a batch holds at most ``max_batch`` rows. At most
``max_queue`` requests are in the server at once; more get 503 at once. Every bad request gets a
4xx and a JSON ``{"error": reason}``; the server goes on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import numpy as np

from vacnn_tf.serving.rest import RequestError, encode_outputs, metadata_body, parse_predict, read_signature_defs, status_body

if TYPE_CHECKING:
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ServerLimits:
    """What one request may carry and how calls are batched (the ``vacnn serve`` flags).

    Attributes:
        max_body_bytes: Largest request body; larger ones get 413.
        max_seconds: Longest audio ``:classify`` accepts (seconds, read from the file's header).
        max_rows: Most rows in one ``:predict`` request.
        max_batch: Most rows in one model call.
        batch_timeout_ms: Longest a call waits for others to join its batch.
        max_queue: Most requests in the server at once; more get 503.
        workers: Threads decoding audio, computing features and parsing JSON; 0: one per core.
        read_timeout_s: Longest a client may take to send its body; slower ones get 408, so
            that clients trickling bytes cannot hold every slot of ``max_queue``.
    """

    max_body_bytes: int = 16 * 2**20
    max_seconds: float = 30.0
    max_rows: int = 64
    max_batch: int = 32
    batch_timeout_ms: float = 5.0
    max_queue: int = 128
    workers: int = 0
    read_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0 or (value == 0 and f.name not in ("workers", "batch_timeout_ms")):
                raise ValueError(f"server limit {f.name} must be a positive finite number. Received: {f.name}={value!r}")


class ServerBusy(Exception):
    """More requests than ``max_queue``: answered 503, the client may retry."""


@dataclass
class _Call:
    signature: str
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack the inputs of several calls; a free dimension (a waveform's width) is zero-padded
    to the widest, which the ``length`` input makes harmless."""
    out = {}
    for key in parts[0]:
        arrays = [p[key] for p in parts]
        widest = np.max([a.shape for a in arrays], axis=0)
        arrays = [np.pad(a, [(0, 0)] + [(0, int(w - n)) for w, n in zip(widest[1:], a.shape[1:])]) for a in arrays]
        out[key] = np.concatenate(arrays)
    return out


class Batcher:
    """Groups concurrent calls of one signature into one model call, run on one thread.

    Args:
        run: ``run(signature, inputs) -> outputs``, NumPy in and out, a leading batch dimension.
        max_batch: Most rows in one call (a single larger request runs alone).
        timeout: Seconds the first call of a batch waits for others.
        max_queue: Most calls waiting.
    """

    def __init__(self, run: Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]], max_batch: int,
                 timeout: float, max_queue: int) -> None:
        self.run = run
        self.max_batch = max_batch
        self.timeout = timeout
        self.max_queue = max_queue
        self.batches = 0  # model calls made, for the load test and the tests
        self._queue: asyncio.Queue[_Call] | None = None
        self._task: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="vacnn-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.max_queue)
        self._start_loop()

    def _start_loop(self) -> None:
        self._task = asyncio.create_task(self._loop())
        self._task.add_done_callback(self._loop_ended)

    def _loop_ended(self, task: asyncio.Task) -> None:
        # the loop handles every error of a batch itself; should it still die, the calls already
        # queued would wait forever, so it is logged and started again
        if not task.cancelled() and task.exception() is not None:
            log.error("the batching loop failed; starting it again", exc_info=task.exception())
            self._start_loop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._thread.shutdown(wait=True)

    async def submit(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs of ``inputs`` (their own rows), once the batch they joined has run."""
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not called (the app's lifespan did not run)")
        call = _Call(signature, inputs, len(next(iter(inputs.values()))), asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(call)
        except asyncio.QueueFull:
            raise ServerBusy(f"{self.max_queue} calls wait for the model (--max-queue); retry later") from None
        return await call.future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        held: _Call | None = None  # a call that did not fit the last batch
        while True:
            first = held or await self._queue.get()
            held = None
            batch, rows = [first], first.rows
            deadline = loop.time() + self.timeout
            while rows < self.max_batch:
                try:
                    call = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        call = await asyncio.wait_for(self._queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                if call.signature != first.signature or rows + call.rows > self.max_batch:
                    held = call
                    break
                batch.append(call)
                rows += call.rows
            await self._run(batch)

    async def _run(self, batch: list[_Call]) -> None:
        loop = asyncio.get_running_loop()
        try:
            inputs = _concatenate([c.inputs for c in batch]) if len(batch) > 1 else batch[0].inputs
            outputs = await loop.run_in_executor(self._thread, self.run, batch[0].signature, inputs)
            self.batches += 1
        except Exception as err:  # noqa: BLE001 - handed to the request that caused it
            if len(batch) > 1:  # one bad or huge request must not fail the others of its batch
                for call in batch:
                    await self._run([call])
                return
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(err)
            return
        start = 0
        for call in batch:
            if not call.future.done():  # done: the client went away
                call.future.set_result({k: v[start:start + call.rows] for k, v in outputs.items()})
            start += call.rows


def resolve_model_dir(path: str | Path, name: str | None = None) -> tuple[Path, str, str]:
    """``(version directory, model name, version)`` for ``OUT/NAME/VERSION`` or ``OUT/NAME``.

    A model folder serves its highest numbered version, as TF Serving does.
    """
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        numbered = path.name.isdigit()
        version_dir, model, version = path, (path.parent.name if numbered else path.name), (path.name if numbered else "1")
    else:
        versions = sorted(int(p.name) for p in path.glob("*") if p.name.isdigit() and (p / "saved_model.pb").is_file())
        if not versions:
            raise FileNotFoundError(f"{path}: neither a SavedModel (saved_model.pb) nor a model folder of numbered "
                                    "versions; give OUT/NAME or OUT/NAME/VERSION as `vacnn export` writes them")
        version_dir, model, version = path / str(versions[-1]), path.name, str(versions[-1])
    model = name or model
    if not _NAME.match(model):
        raise ValueError(f"model name {model!r} cannot be a URL path segment; choose one with --name")
    return version_dir, model, version


def _tf_reason(err: Exception) -> str:
    """The message of a failed graph assertion, without TensorFlow's graph trace."""
    text = getattr(err, "message", str(err))
    found = re.search(r"assertion failed: \[([^\]]+)\]", text)
    return found.group(1) if found else text.strip().splitlines()[0]


class ModelServer:
    """One loaded model and what answering requests for it needs (see the module docstring).

    Args:
        model_dir: ``OUT/NAME/VERSION`` or ``OUT/NAME`` (its highest version).
        name: The model name in URLs (default: the model folder's name).
        limits: Request limits and batching.
    """

    def __init__(self, model_dir: str | Path, name: str | None = None, limits: ServerLimits = ServerLimits()) -> None:
        from vacnn_tf.serving.classifier import EmotionClassifier

        self.version_dir, self.name, self.version = resolve_model_dir(model_dir, name)
        self.limits = limits
        self.signatures, self.signature_defs = read_signature_defs(self.version_dir)
        self.classifier = EmotionClassifier.from_savedmodel(self.version_dir)
        self.batcher = Batcher(self.run, limits.max_batch, limits.batch_timeout_ms / 1000, limits.max_queue)
        self.workers = ThreadPoolExecutor(limits.workers or os.cpu_count() or 1, thread_name_prefix="vacnn-features")
        self.in_flight = 0
        self._warm_up()

    def _warm_up(self) -> None:
        """One call before the first request, so that it does not pay TensorFlow's first-call costs."""
        spec = self.signatures["serving_default"].inputs
        self.run("serving_default", {k: np.zeros((1, *s.shape[1:]), s.numpy_dtype) for k, s in spec.items()})

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One model call; a graph assertion on the inputs (a waveform too short, silent, ...) is a RequestError."""
        import tensorflow as tf

        try:
            return self.classifier.run(inputs, signature)
        except tf.errors.InvalidArgumentError as err:
            raise RequestError(f"signature {signature!r}: {_tf_reason(err)}") from None

    def check_target(self, name: str, version: str | None) -> None:
        if name != self.name or (version is not None and version != self.version):
            wanted = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise RequestError(f"Servable not found for request: {wanted}; this server has {self.name} "
                               f"version {self.version}", 404)

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.workers, fn, *args)

    async def predict(self, body: bytes) -> dict[str, Any]:
        request = await self.in_thread(parse_predict, body, self.signatures, self.limits.max_rows)
        self._check_waveform_width(request.inputs)
        outputs = await self.batcher.submit(request.signature.name, request.inputs)
        for key, value in outputs.items():
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise RequestError(f"output {key!r} is not finite for these inputs: values far outside what the "
                                   "model was trained on (log-mel images hold 0-255)")
        return encode_outputs(outputs, request.row_format)

    def _check_waveform_width(self, inputs: dict[str, np.ndarray]) -> None:
        """``--max-seconds`` for samples sent to a waveform signature, as for ``:classify``'s files:
        a batch pads every row to its widest, so one long row would cost every row its width."""
        waveform = inputs.get("waveform")
        if waveform is None or waveform.ndim < 2:
            return
        rate = self.classifier.preprocessor.features.sample_rate
        seconds = waveform.shape[1] / rate
        if seconds > self.limits.max_seconds:
            raise RequestError(f"waveform too long: {waveform.shape[1]} samples ({seconds:.1f} s at {rate} Hz); this "
                               f"server takes at most {self.limits.max_seconds:g} s (--max-seconds)", 413)

    async def classify(self, body: bytes) -> dict[str, Any]:
        inputs, duration = await self.in_thread(self._features, body)
        outputs = await self.batcher.submit("serving_default", inputs)
        probs = outputs["probabilities"][0]
        return {"label": outputs["label"][0].decode(),
                "probabilities": dict(zip(self.classifier.classes, map(float, probs))),
                "duration": round(float(duration), 4),
                "model_spec": {"name": self.name, "version": self.version}}

    def _features(self, body: bytes) -> tuple[dict[str, np.ndarray], float]:
        from vacnn_tf.features.logmel import decode_audio

        pre = self.classifier.preprocessor
        try:
            waveform, duration = decode_audio(body, pre.features.sample_rate, pre.features.min_duration,
                                              self.limits.max_seconds, name="request body")
            return pre.from_waveform(waveform, pre.features.sample_rate), duration
        except ValueError as err:  # features.AudioError, or silent once trimmed
            raise RequestError(str(err)) from None


# A body over the limit is still read (and dropped) up to this many times the limit, so that a
# client that sends it whole before reading (urllib, most scripts) gets the 413 rather than a
# reset connection; beyond it the server answers at once.
_DRAIN_FACTOR = 4


async def _read_body(request: Any, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise RequestError(f"Content-Length {declared!r} is not a number")
    too_large = RequestError(f"body larger than this server takes ({limit} bytes, --max-body-mb)", 413)
    if declared is not None and int(declared) > _DRAIN_FACTOR * limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > _DRAIN_FACTOR * limit:
            break
    if size > limit:
        raise too_large
    return b"".join(chunks)


def create_app(server: ModelServer) -> Any:
    """The Starlette (ASGI) application answering for ``server``; run it with any ASGI server."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    endpoints = _Endpoints(server)
    routes = [
        Route("/v1/models/{model}", endpoints.model_endpoint, methods=["GET", "POST"]),
        Route("/v1/models/{model}/metadata", endpoints.metadata, methods=["GET"]),
        Route("/v1/models/{model}/versions/{version}", endpoints.model_endpoint, methods=["GET", "POST"]),
        Route("/v1/models/{model}/versions/{version}/metadata", endpoints.metadata, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=endpoints.lifespan,
                     exception_handlers={HTTPException: endpoints.http_error, Exception: endpoints.failure})


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _target(request: Request) -> tuple[str, str | None, str | None]:
    """(name, version, verb) from /v1/models/NAME[:verb] or /v1/models/NAME/versions/V[:verb]."""
    model, version = request.path_params["model"], request.path_params.get("version")
    last, _, verb = (version if version is not None else model).partition(":")
    if version is not None:
        if ":" in model:
            raise RequestError(f"no such path: {request.url.path}", 404)
        return model, last, verb or None
    return last, None, verb or None


class _Endpoints:
    """The handlers of :func:`create_app`'s routes, errors and lifespan, all answering for one server.

    Bound methods, not partials: Starlette serves a route's endpoint as a request handler only
    when it is a function or a method (anything else it takes for an ASGI app).
    """

    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def model_endpoint(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        server = self.server
        try:
            name, version, verb = _target(request)
            server.check_target(name, version)
        except RequestError as err:
            return _error(str(err), err.status)
        methods = {None: "GET", "predict": "POST", "classify": "POST"}
        if verb not in methods:
            return _error(f"unknown method ':{verb}'; this server answers :predict and :classify", 404)
        if request.method != methods[verb]:
            return _error(f"{request.method} not allowed here; use {methods[verb]}", 405, {"Allow": methods[verb]})
        if verb is None:
            return JSONResponse(status_body(server.version))
        handler = server.predict if verb == "predict" else server.classify
        return await self._answer(lambda: self._body_then(request, handler))

    async def metadata(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        server = self.server
        try:
            name, version, verb = _target(request)
            if verb is not None:
                raise RequestError(f"no such path: {request.url.path}", 404)
            server.check_target(name, version)
        except RequestError as err:
            return _error(str(err), err.status)
        return JSONResponse(metadata_body(server.name, server.version, server.signature_defs))

    async def http_error(self, request: Request, exc: HTTPException) -> Response:
        return _error(f"{exc.detail}: {request.method} {request.url.path}", exc.status_code, exc.headers)

    async def failure(self, request: Request, exc: Exception) -> Response:
        log.error("request %s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(f"internal error: {type(exc).__name__}: {exc}", 500)

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        await self.server.batcher.start()
        try:
            yield
        finally:
            await self.server.batcher.stop()
            self.server.workers.shutdown(wait=False)

    async def _answer(self, work: Callable[[], Any]) -> Response:
        from starlette.requests import ClientDisconnect
        from starlette.responses import JSONResponse, Response

        server = self.server
        if server.in_flight >= server.limits.max_queue:
            return _error(f"server busy: {server.in_flight} requests in progress (--max-queue); retry later", 503,
                          {"Retry-After": "1"})
        server.in_flight += 1
        try:
            return JSONResponse(await work())
        except RequestError as err:
            return _error(str(err), err.status)
        except ServerBusy as err:
            return _error(f"server busy: {err}", 503, {"Retry-After": "1"})
        except ClientDisconnect:
            return Response(status_code=400)  # nobody reads it
        finally:
            server.in_flight -= 1

    async def _body_then(self, request: Request, handler: Callable[[bytes], Any]) -> Any:
        limits = self.server.limits
        try:
            body = await asyncio.wait_for(_read_body(request, limits.max_body_bytes), limits.read_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(f"the body took longer than {limits.read_timeout_s:g} s to arrive "
                               "(--read-timeout)", 408) from None
        return await handler(body)


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8501, name: str | None = None,
          limits: ServerLimits = ServerLimits(), verbose: bool = False) -> None:
    """Load the model and answer on ``host:port`` until interrupted (uvicorn)."""
    import uvicorn

    server = ModelServer(model_dir, name, limits)
    app = create_app(server)
    print(f"vacnn serve: {server.name} version {server.version} from {server.version_dir} at "
          f"http://{host}:{port}/v1/models/{server.name}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info" if verbose else "warning", access_log=verbose)

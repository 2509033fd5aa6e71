"""``vacnn export``, ``vacnn predict`` and ``vacnn serve``."""

from __future__ import annotations

import argparse
import json
import math
import sys

from vacnn_tf.cli.errors import CommandFailed
from vacnn_tf.serving.rest import SEND_MODES
from vacnn_tf.serving.server import ServerLimits


def register(sub: argparse._SubParsersAction) -> None:
    _register_export(sub)
    _register_predict(sub)
    _register_serve(sub)


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a fine-tuned fold as a TF Serving SavedModel",
        description="Write one fold of a fine-tuning run (by default the one with the best validation "
        "accuracy, never chosen on test accuracy) as OUT/NAME/VERSION: a SavedModel with the "
        "serving_default signature and, in its assets, the class names, the feature and BOVW "
        "settings, the fold's visual words and a model card (MODEL_CARD.md) with the training data, "
        "protocol, metrics and limits.",
    )
    p.add_argument("--run", required=True, help="run directory written by `vacnn finetune`")
    p.add_argument("--fold", type=int, default=None, help="fold to export (default: best validation accuracy)")
    p.add_argument("--out", required=True, help="model base folder; writes OUT/NAME/VERSION")
    p.add_argument("--name", default="vacnn", help="model name (TF Serving --model_name)")
    p.add_argument("--version", type=int, default=None, help="version number (default: next free)")
    p.set_defaults(func=_export, uses_tensorflow=True)


def _register_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="label audio files with an exported SavedModel, here or through a server",
        description="Compute each file's log-mel image and BOVW histogram exactly as in training, from "
        "the SavedModel's own assets, and print its label and class probabilities, locally or through "
        "a REST endpoint (--url) of TF Serving or `vacnn serve`. --send waveform sends the samples to the "
        "model's waveform signature instead, which computes the image in the graph; --send audio sends "
        "the file itself to `vacnn serve`'s :classify (no --model needed). A file that cannot be read, "
        "or that the server refuses, gets an error line and the exit status is 1, after every other "
        "file has been labelled.",
    )
    p.add_argument("--model", default=None,
                   help="SavedModel version directory (OUT/NAME/VERSION); needed except with --send audio")
    p.add_argument("files", nargs="+", help="audio files (wav, flac, ogg)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--url", default=None, help="REST base URL of TF Serving or `vacnn serve`, e.g. http://localhost:8501")
    p.add_argument("--name", default="vacnn", help="model name on the server (with --url)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (with --url)")
    p.add_argument("--send", choices=SEND_MODES, default="features",
                   help="with --url: features (default), waveform (the waveform signature) or audio (vacnn serve's :classify)")
    p.set_defaults(func=_predict, uses_tensorflow=True)


def _register_serve(sub: argparse._SubParsersAction) -> None:
    limits = ServerLimits()  # the flags' defaults are the server's
    p = sub.add_parser(
        "serve", help="answer TF Serving's REST API, and audio files, for an exported model",
        description="Serve one exported model over HTTP: TF Serving's REST API on its paths "
        "(GET /v1/models/NAME and /metadata, POST /v1/models/NAME:predict in the row and the columnar "
        "format) and POST /v1/models/NAME:classify with a wav, flac or ogg body, answered with the label, "
        "the class probabilities and the duration. Concurrent calls are batched; a bad request gets a "
        "4xx with a JSON error naming the reason and the server goes on.",
    )
    p.add_argument("--model", required=True, help="OUT/NAME/VERSION, or OUT/NAME to serve its highest version")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501, TF Serving's REST port)")
    p.add_argument("--name", default=None, help="model name in URLs (default: the model folder's name)")
    p.add_argument("--max-body-mb", type=float, default=limits.max_body_bytes / 2**20,
                   help=f"largest request body in MiB (default {limits.max_body_bytes / 2**20:g}); larger: 413")
    p.add_argument("--max-seconds", type=float, default=limits.max_seconds,
                   help=f"longest audio :classify accepts, and the waveform signature through :predict "
                        f"(default {limits.max_seconds:g} s); longer: 400 for a file, 413 for samples")
    p.add_argument("--max-rows", type=int, default=limits.max_rows,
                   help=f"most rows in one :predict request (default {limits.max_rows})")
    p.add_argument("--max-batch", type=int, default=limits.max_batch,
                   help=f"most rows in one batched model call (default {limits.max_batch}; 1: no batching)")
    p.add_argument("--batch-timeout-ms", type=float, default=limits.batch_timeout_ms,
                   help=f"longest a call waits for others to join its batch (default {limits.batch_timeout_ms:g} ms)")
    p.add_argument("--max-queue", type=int, default=limits.max_queue,
                   help=f"most requests in the server at once; more get 503 (default {limits.max_queue})")
    p.add_argument("--workers", type=int, default=limits.workers,
                   help="threads for audio decoding, features and JSON (default 0: one per core)")
    p.add_argument("--read-timeout", type=float, default=limits.read_timeout_s,
                   help=f"longest a client may take to send its body (default {limits.read_timeout_s:g} s); "
                        "slower: 408")
    p.set_defaults(func=_serve, uses_tensorflow=True)


def _export(args: argparse.Namespace) -> int:
    from vacnn_tf.serving.export import export_savedmodel

    path = export_savedmodel(args.run, args.out, fold=args.fold, model_name=args.name, version=args.version)
    print(f"SavedModel written to {path}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from vacnn_tf.serving.classifier import ServingClient, predict_local, predict_remote

    if args.send != "features" and not args.url:
        raise ValueError(f"--send {args.send} sends to a server: give its --url")
    if args.model is None and args.send != "audio":
        raise ValueError("--model is needed (the SavedModel's assets say how to compute the inputs), "
                         "except with --url and --send audio")
    if args.url:
        client = ServingClient(args.url, args.name, timeout=args.timeout)
        results = predict_remote(args.model, args.files, client, send=args.send)
    else:
        results = predict_local(args.model, args.files)
    failed = 0
    for r in results:
        if r.error:
            failed += 1
            if args.json:
                print(json.dumps({"path": r.path, "error": r.error}))
            else:
                print(f"{r.path}\tERROR\t{r.error}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"path": r.path, "label": r.label, "probabilities": r.probabilities}))
        else:
            probs = " ".join(f"{k}={v:.3f}" for k, v in (r.probabilities or {}).items())
            print(f"{r.path}\t{r.label}\t{probs}")
    if failed:
        raise CommandFailed(f"{failed} of {len(results)} file(s) could not be predicted")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from vacnn_tf.serving.server import serve

    if not math.isfinite(args.max_body_mb) or args.max_body_mb <= 0:
        raise ValueError(f"--max-body-mb must be a positive finite number. Received: {args.max_body_mb!r}")
    limits = ServerLimits(
        max_body_bytes=int(args.max_body_mb * 2**20), max_seconds=args.max_seconds, max_rows=args.max_rows,
        max_batch=args.max_batch, batch_timeout_ms=args.batch_timeout_ms, max_queue=args.max_queue,
        workers=args.workers, read_timeout_s=args.read_timeout,
    )
    serve(args.model, host=args.host, port=args.port, name=args.name, limits=limits, verbose=args.verbose)
    return 0

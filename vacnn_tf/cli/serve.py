"""``vacnn export`` and ``vacnn predict``."""

from __future__ import annotations

import argparse
import json
import sys

from vacnn_tf.cli.errors import CommandFailed


def register(sub: argparse._SubParsersAction) -> None:
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

    p = sub.add_parser(
        "predict", help="label wav files with an exported SavedModel",
        description="Compute each file's log-mel image and BOVW histogram exactly as in training, from "
        "the SavedModel's own assets, and print its label and class probabilities, locally or through "
        "a TF Serving REST endpoint (--url). A file that cannot be read gets an error line and the exit "
        "status is 1, after every other file has been labelled.",
    )
    p.add_argument("--model", required=True, help="SavedModel version directory (OUT/NAME/VERSION)")
    p.add_argument("files", nargs="+", help="wav files")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--url", default=None, help="TF Serving REST base URL, e.g. http://localhost:8501")
    p.add_argument("--name", default="vacnn", help="model name on the server (with --url)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (with --url)")
    p.set_defaults(func=_predict, uses_tensorflow=True)


def _export(args: argparse.Namespace) -> int:
    from vacnn_tf.export import export_savedmodel

    path = export_savedmodel(args.run, args.out, fold=args.fold, model_name=args.name, version=args.version)
    print(f"SavedModel written to {path}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from vacnn_tf.serving import ServingClient, predict_local, predict_remote

    if args.url:
        client = ServingClient(args.url, args.name, timeout=args.timeout)
        results = predict_remote(args.model, args.files, client)
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

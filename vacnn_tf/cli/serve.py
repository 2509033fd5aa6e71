"""``vacnn export`` and ``vacnn predict``."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a fine-tuned fold as a TF Serving SavedModel")
    p.add_argument("--run", required=True, help="run directory written by `vacnn finetune`")
    p.add_argument("--fold", type=int, default=None, help="fold to export (default: best validation accuracy)")
    p.add_argument("--out", required=True, help="model base folder; writes OUT/NAME/VERSION")
    p.add_argument("--name", default="vacnn", help="model name (TF Serving --model_name)")
    p.add_argument("--version", type=int, default=None, help="version number (default: next free)")
    p.set_defaults(func=_export)

    p = sub.add_parser("predict", help="label wav files with an exported SavedModel")
    p.add_argument("--model", required=True, help="SavedModel version directory (OUT/NAME/VERSION)")
    p.add_argument("files", nargs="+", help="wav files")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--url", default=None, help="TF Serving REST base URL, e.g. http://localhost:8501")
    p.add_argument("--name", default="vacnn", help="model name on the server (with --url)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (with --url)")
    p.set_defaults(func=_predict)


def _export(args: argparse.Namespace) -> int:
    from vacnn_tf.export import ExportError, export_savedmodel

    try:
        path = export_savedmodel(args.run, args.out, fold=args.fold, model_name=args.name, version=args.version)
    except ExportError as err:
        print(f"vacnn export: {err}", file=sys.stderr)
        return 2
    print(f"SavedModel written to {path}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from vacnn_tf.serving import ServingClient, ServingError, predict_local, predict_remote

    try:
        if args.url:
            client = ServingClient(args.url, args.name, timeout=args.timeout)
            results = predict_remote(args.model, args.files, client)
        else:
            results = predict_local(args.model, args.files)
    except (ServingError, FileNotFoundError) as err:
        print(f"vacnn predict: {err}", file=sys.stderr)
        return 2
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
        print(f"{failed} of {len(results)} file(s) could not be predicted", file=sys.stderr)
        return 1
    return 0

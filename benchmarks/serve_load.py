"""Load test of ``vacnn serve`` on loopback: concurrent clients, real utterances and bad inputs mixed.

Usage (from the repository root)::

    .venv/bin/python benchmarks/serve_load.py --model models/vacnn/1 --data DATA/emodb/wav \
        --clients 8 --requests 240 --route predict

``--run RUN [--fold K]`` instead of ``--model`` exports the run's model into a temporary folder
first, as ``benchmarks/waveform_signature.py`` does.

For each setting of ``--batches`` (default ``32,1``: batched, then one call at a time), ``--rounds``
times in turn, it starts
``vacnn serve --max-batch B`` on a free 127.0.0.1 port, sends ``--warmup`` requests, reads the
server's resident memory, then sends ``--requests`` requests from ``--clients`` threads (bounded
in count and by ``--seconds``: it stops by itself), and reads the memory again. Every
``--bad-every``-th request is a bad input (empty, truncated, not audio, silent, too short, too
large, malformed JSON, a wrong shape, a wrong dtype, in turn); the others are real utterances:
the file's bytes to ``:classify`` (``--route classify``: the whole feature path runs in the
server), the log-mel image and BOVW histogram, computed here beforehand, to ``:predict``
(``--route predict``: the model alone), or the 16 kHz samples (and the histogram, for BOVW
models) to the ``waveform`` signature (``--route waveform``: the image is computed in the graph). Printed per setting: throughput of the good requests,
p50/p99 latency, the status codes of good and bad requests, and the memory before and after;
then the median throughput of each setting over the rounds, and, measured first in this
process, the model's milliseconds per row at batch sizes 1, 8 and 32 (what batching can win). Figures printed, never asserted; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from waveform_signature import add_model_options, model_from  # noqa: E402  (this script's folder)

MAX_BODY_MB = 4


def _wav(wave: np.ndarray, rate: int = 16000) -> bytes:
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, wave, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def bad_requests() -> list[tuple[str, str, bytes]]:
    """(kind, route, body) of each bad input the mix cycles through."""
    tone = (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    return [
        ("empty", "classify", b""),
        ("truncated", "classify", _wav(tone)[:4000]),
        ("not audio", "classify", b"<html>not audio</html>" * 50),
        ("silent", "classify", _wav(np.zeros(16000, np.float32))),
        ("too short", "classify", _wav(tone[:500])),
        ("too large", "classify", b"\0" * (MAX_BODY_MB * 2**20 + 1)),
        ("malformed JSON", "predict", b'{"instances": [{"logmel": [1, 2'),
        ("wrong shape", "predict", json.dumps({"instances": [{"logmel": [[1.0, 2.0]], "bovw": [0.0]}]}).encode()),
        ("wrong dtype", "predict", json.dumps({"inputs": {"logmel": "x", "bovw": "y"}}).encode()),
    ]


def good_requests(model_dir: Path, files: list[Path], route: str) -> list[bytes]:
    if route == "classify":
        return [f.read_bytes() for f in files]
    from vacnn_tf.serving.classifier import Preprocessor

    pre = Preprocessor.from_savedmodel(model_dir)
    bodies = []
    for f in files:
        inputs = pre.waveform_inputs(f) if route == "waveform" else pre.from_file(f)
        body = {"instances": [{k: v[0].tolist() for k, v in inputs.items()}]}
        if route == "waveform":
            body["signature_name"] = "waveform"
        bodies.append(json.dumps(body).encode())
    return bodies


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send(url: str, body: bytes, timeout: float) -> tuple[int, float]:
    start = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        err.read()
        status = err.code
    except OSError:  # refused, reset or timed out: counted apart from HTTP answers
        status = 0
    return status, time.perf_counter() - start


def run_setting(args: argparse.Namespace, max_batch: int, good: list[bytes]) -> dict:
    port = _free_port()
    cmd = [sys.executable, "-m", "vacnn_tf", "serve", "--model", str(args.model), "--port", str(port),
           "--max-batch", str(max_batch), "--max-body-mb", str(MAX_BODY_MB), "--max-queue", str(4 * args.clients)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    base = f"http://127.0.0.1:{port}/v1/models/vacnn"
    try:
        deadline = time.monotonic() + 120
        while send(base, b"", 2)[0] != 405:  # GET-only path answering POST: the server is up
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"vacnn serve did not start: {server.stderr.read()[-2000:]}")
            time.sleep(0.5)
        bad = bad_requests()
        plan = []
        for i in range(args.warmup + args.requests):
            if args.bad_every and i % args.bad_every == args.bad_every - 1:
                kind, route, body = bad[(i // args.bad_every) % len(bad)]
                plan.append((kind, f"{base}:{route}", body))
            else:
                route = "classify" if args.route == "classify" else "predict"
                plan.append(("good", f"{base}:{route}", good[i % len(good)]))
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda p: send(p[1], p[2], args.timeout), plan[: args.warmup]))
            before = rss_mib(server.pid)
            stop_at = time.monotonic() + args.seconds
            start = time.perf_counter()

            def one(item: tuple[str, str, bytes]) -> tuple[str, int, float]:
                if time.monotonic() > stop_at:
                    return item[0], -1, 0.0
                return (item[0], *send(item[1], item[2], args.timeout))

            results = list(pool.map(one, plan[args.warmup:]))
            wall = time.perf_counter() - start
        after = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    sent = [r for r in results if r[1] != -1]
    good_lat = sorted(r[2] for r in sent if r[0] == "good" and r[1] == 200)
    return {
        "max_batch": max_batch, "route": args.route, "clients": args.clients, "sent": len(sent),
        "not_sent_time_up": len(results) - len(sent), "seconds": round(wall, 2),
        "good_per_s": round(len(good_lat) / wall, 2),
        "p50_ms": round(1000 * float(np.percentile(good_lat, 50)), 1) if good_lat else None,
        "p99_ms": round(1000 * float(np.percentile(good_lat, 99)), 1) if good_lat else None,
        "good_status": dict(Counter(r[1] for r in sent if r[0] == "good")),
        "bad_status": dict(Counter(f"{r[0]}:{r[1]}" for r in sent if r[0] != "good")),
        "status_5xx": sum(1 for r in sent if r[1] >= 500), "no_answer": sum(1 for r in sent if r[1] == 0),
        "bad_not_4xx": sum(1 for r in sent if r[0] != "good" and not 400 <= r[1] < 500),
        "rss_mib_before": round(before, 1), "rss_mib_after": round(after, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_options(parser)
    parser.add_argument("--data", type=Path, required=True, help="folder of real utterances (wav, searched recursively)")
    parser.add_argument("--files", type=int, default=32, help="distinct utterances to cycle through")
    parser.add_argument("--route", choices=("classify", "predict", "waveform"), default="predict",
                        help="classify: the file's bytes; predict: image and histogram; waveform: the samples "
                        "(and the histogram) to the waveform signature")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=240, help="requests per setting, after the warm-up")
    parser.add_argument("--warmup", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=180, help="stop sending after this long")
    parser.add_argument("--bad-every", type=int, default=5, help="every Nth request is a bad input (0: none)")
    parser.add_argument("--batches", default="32,1", help="--max-batch settings to compare")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each setting, alternating (the machine's speed drifts)")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    files = sorted(args.data.rglob("*.wav"))[: args.files]
    if not files:
        raise SystemExit(f"{args.data}: no wav files")
    with tempfile.TemporaryDirectory(prefix="vacnn-load-") as work:
        args.model = model_from(args, Path(work))
        good = good_requests(args.model, files, args.route)
        per_row = model_ms_per_row(args.model, (1, 8, 32))
        batches = [int(b) for b in args.batches.split(",")]
        rows = [run_setting(args, b, good) for _ in range(args.rounds) for b in batches]
    for row in rows:
        print(json.dumps(row))
    print("model alone, serving_default in process: " + ", ".join(f"batch {b}: {ms:.1f} ms/row" for b, ms in per_row.items()))
    for row in rows:
        print(f"max_batch {row['max_batch']:>2} ({row['route']}, {row['clients']} clients): {row['good_per_s']} good "
              f"requests/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms; 5xx {row['status_5xx']}, bad inputs "
              f"not 4xx {row['bad_not_4xx']}, no answer {row['no_answer']}; RSS {row['rss_mib_before']} -> "
              f"{row['rss_mib_after']} MiB")
    medians = {b: float(np.median([r["good_per_s"] for r in rows if r["max_batch"] == b])) for b in batches}
    print("median throughput over rounds: " + ", ".join(f"max_batch {b}: {v:.2f}/s" for b, v in medians.items()))
    if len(batches) > 1 and medians[batches[-1]]:
        print(f"ratio max_batch {batches[0]} / {batches[-1]}: {medians[batches[0]] / medians[batches[-1]]:.2f}x")


def model_ms_per_row(model_dir: Path, sizes: tuple[int, ...], calls: int = 5) -> dict[int, float]:
    """Milliseconds per row of the model alone at each batch size: what batching can win at most."""
    from vacnn_tf.serving.classifier import EmotionClassifier

    classifier = EmotionClassifier.from_savedmodel(model_dir)
    spec = classifier.signatures["serving_default"].structured_input_signature[1]
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        inputs = {k: rng.uniform(0, 1, (n, *s.shape[1:])).astype(np.float32) for k, s in spec.items()}
        classifier.run(inputs)
        start = time.perf_counter()
        for _ in range(calls):
            classifier.run(inputs)
        out[n] = 1000 * (time.perf_counter() - start) / calls / n
    return out


if __name__ == "__main__":
    main()

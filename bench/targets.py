"""The benchmark's targets: how to start each server, what to send it, how to read its answer.

A target is a server command (started on a free loopback port, pinned to the server CPUs), its
readiness path, and per model an encoder (row -> path + body, in the target's own API) and a
decoder (response body -> probability of class 1) used to check answers before timing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from rtserve.loadgen.launch import bare_command, rtserve_command

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
PEERS = HERE / "peers"

Row = dict[str, Any]
Encode = Callable[[str, Row], tuple[str, bytes]]  # (model name, row) -> (path, body)
Decode = Callable[[bytes], float]  # response body -> probability of class 1


@dataclass(frozen=True)
class Target:
    """One server configuration in the benchmark."""

    name: str
    kind: str  # "floor", "rtserve", "baseline" (FastAPI) or "peer"
    description: str
    command: Callable[[int, Path], list[str]]  # (port, work dir) -> argv
    ready_path: str
    encode: Encode
    decode: Decode | None  # None: not a model server (the bare floor), answers are not checked
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    venv: str | None = None  # bench/.venvs/NAME it needs


def _encode_json(document: Any) -> bytes:
    return msgspec.json.encode(document)


# --- rtserve ----------------------------------------------------------------------------------


def _rtserve_encode(model: str, row: Row) -> tuple[str, bytes]:
    return f"/v1/models/{model}:predict", _encode_json({"instances": [row]})


def _rtserve_decode(body: bytes) -> float:
    return float(json.loads(body)["predictions"][0]["probabilities"]["1"])


def _rtserve_command(bundles: list[Path], extra: list[str]) -> Callable[[int, Path], list[str]]:
    def command(port: int, work: Path) -> list[str]:
        return rtserve_command(bundles, port, extra)

    return command


# --- peers that take one JSON row per request -------------------------------------------------


def _row_encode(model: str, row: Row) -> tuple[str, bytes]:
    return f"/predict/{model}", _encode_json(row)


def _rows_encode(model: str, row: Row) -> tuple[str, bytes]:
    return f"/predict/{model}", _encode_json({"rows": [row]})


def _answer_decode(body: bytes) -> float:
    answer = json.loads(body)
    if isinstance(answer, list):
        answer = answer[0]
    return float(answer["probability"])


# --- MLServer (Open Inference Protocol, pandas content type) ----------------------------------


def mlserver_encoder(fields: dict[str, dict[str, list[str]]]) -> Encode:
    """Rows as MLServer's pandas codec expects them: one input per column, strings as ``str``."""

    def encode(model: str, row: Row) -> tuple[str, bytes]:
        spec = fields[model]
        inputs: list[dict[str, Any]] = [
            {"name": col, "datatype": "FP64", "shape": [1], "data": [row.get(col)]}
            for col in spec["numeric"]
        ]
        inputs += [
            {
                "name": col,
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"content_type": "str"},
                "data": [row.get(col)],
            }
            for col in spec["categorical"]
        ]
        document = {
            "parameters": {"content_type": "pd"},
            "inputs": inputs,
            "outputs": [{"name": "predict_proba"}],
        }
        return f"/v2/models/{model}/infer", _encode_json(document)

    return encode


def _mlserver_decode(body: bytes) -> float:
    output = json.loads(body)["outputs"][0]
    return float(output["data"][1])  # [1, 2] probabilities, row-major


def mlserver_command(
    variant: str, models_dir: Path, names: list[str], workers: int
) -> Callable[[int, Path], list[str]]:
    """Write an MLServer model repository for the variant and return its start command.

    Default: MLServer's defaults (one inference worker, no batching). Tuned: adaptive batching
    (``max_batch_size``, ``max_batch_time``) on every model, ``parallel_workers`` = server CPUs,
    and ``debug`` off (no per-request access log).
    """

    def command(port: int, work: Path) -> list[str]:
        from rtserve.loadgen.launch import free_port

        repo = work / f"mlserver-{variant}"
        repo.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
        }
        if variant == "tuned":
            settings.update(parallel_workers=workers, debug=False)
        (repo / "settings.json").write_text(json.dumps(settings, indent=2))
        for name in names:
            folder = repo / name
            folder.mkdir(exist_ok=True)
            model_settings: dict[str, Any] = {
                "name": name,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": str(models_dir / f"{name}.joblib"), "version": "1"},
            }
            if variant == "tuned":
                model_settings.update(max_batch_size=32, max_batch_time=0.005)
            (folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        return [str(VENVS / "mlserver" / "bin" / "mlserver"), "start", str(repo)]

    return command


# --- the list ---------------------------------------------------------------------------------

#: Targets that run only when ``--targets`` names them.
OPT_IN = frozenset({"uvicorn-hello", "rtserve-workers2", "rtserve-threads2", "rtserve-unobserved"})


def all_targets(
    *,
    bundles: list[Path],
    models_dir: Path,
    names: list[str],
    fields: dict[str, dict[str, list[str]]],
    workers: int,
    rtserve_args: list[str],
) -> list[Target]:
    """Every target, floors first. ``workers`` is the number of server CPUs (tuned variants)."""
    peer_env = {"BENCH_MODELS_DIR": str(models_dir), "BENCH_WORKERS": str(workers)}
    py = lambda venv: str(VENVS / venv / "bin" / "python")  # noqa: E731
    out = [
        Target(
            "bare",
            "floor",
            "bare asyncio HTTP server answering a constant (rtserve.loadgen.bareserver)",
            lambda port, work: bare_command(port),
            "/",
            _rtserve_encode,
            None,
        ),
        Target(
            "uvicorn-hello",
            "floor",
            "a constant from a trivial ASGI app on uvicorn with rtserve's server options",
            lambda port, work: [
                sys.executable,
                "-m",
                "uvicorn",
                "hello_asgi:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--no-server-header",
                "--lifespan",
                "off",
                "--log-level",
                "warning",
            ],
            "/",
            _rtserve_encode,
            None,
            cwd=PEERS,
        ),
        Target(
            "rtserve",
            "rtserve",
            "rtserve serve BUNDLES"
            + (" " + " ".join(rtserve_args) if rtserve_args else "")
            + " (records API)",
            _rtserve_command(bundles, rtserve_args),
            "/v2/health/ready",
            _rtserve_encode,
            _rtserve_decode,
        ),
        # opt-in (OPT_IN): both cores for one server, as processes or as runtime threads
        Target(
            "rtserve-workers2",
            "rtserve",
            "rtserve serve BUNDLES --workers 2 (two processes, one batch each at a time)",
            _rtserve_command(bundles, [*rtserve_args, "--workers", "2"]),
            "/v2/health/ready",
            _rtserve_encode,
            _rtserve_decode,
        ),
        Target(
            "rtserve-threads2",
            "rtserve",
            "rtserve serve BUNDLES, RTSERVE_BATCHING__RUNTIME_THREADS=2 "
            "(one process, two batches at a time)",
            _rtserve_command(bundles, rtserve_args),
            "/v2/health/ready",
            _rtserve_encode,
            _rtserve_decode,
            env={"RTSERVE_BATCHING__RUNTIME_THREADS": "2"},
        ),
        # opt-in: the request path alone, so a run shows what observing costs beside it
        Target(
            "rtserve-unobserved",
            "rtserve",
            "rtserve serve BUNDLES with every observer off (no metrics, drift, decision log or "
            "access log): what observing costs, never a goal's figure",
            _rtserve_command(bundles, rtserve_args),
            "/v2/health/ready",
            _rtserve_encode,
            _rtserve_decode,
            env={
                "RTSERVE_METRICS__ENABLED": "false",
                "RTSERVE_DRIFT__ENABLED": "false",
                "RTSERVE_DECISION_LOG__ENABLED": "false",
                "RTSERVE_LOGGING__ACCESS_LOG": "false",
            },
        ),
        Target(
            "fastapi",
            "baseline",
            "FastAPI + pydantic + pandas on uvicorn, 1 worker (the notebook-in-FastAPI baseline)",
            lambda port, work: [
                py("fastapi"),
                "-m",
                "uvicorn",
                "fastapi_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            "/health",
            _row_encode,
            _answer_decode,
            env=peer_env,
            cwd=PEERS,
            venv="fastapi",
        ),
    ]
    out.append(
        Target(
            "mosec",
            "peer",
            f"mosec 0.9 (Rust HTTP front, Python workers), dynamic batching 32 / 5 ms, "
            f"{workers} worker(s) per model, one OpenMP thread each",
            lambda port, work: [
                py("mosec"),
                "mosec_app.py",
                "--address",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            "/",
            _row_encode,
            _answer_decode,
            env=peer_env,
            cwd=PEERS,
            venv="mosec",
        )
    )
    for variant in ("default", "tuned"):
        suffix = "" if variant == "default" else "-tuned"
        env = {**peer_env, "BENCH_VARIANT": variant}
        out += [
            Target(
                f"mlserver{suffix}",
                "peer",
                "MLServer + mlserver-sklearn, "
                + (
                    "defaults"
                    if variant == "default"
                    else f"adaptive batching 32/5 ms, {workers} parallel workers, debug off"
                ),
                mlserver_command(variant, models_dir, names, workers),
                "/v2/health/ready",
                mlserver_encoder(fields),
                _mlserver_decode,
                venv="mlserver",
            ),
            Target(
                f"bentoml{suffix}",
                "peer",
                "BentoML, "
                + (
                    "1 worker, no batching"
                    if variant == "default"
                    else f"adaptive batching (batchable, 32 / 1000 ms), {workers} workers"
                ),
                lambda port, work: [
                    str(VENVS / "bentoml" / "bin" / "bentoml"),
                    "serve",
                    "bentoml_service:Bench",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                "/readyz",
                _rows_encode,
                _answer_decode,
                env={
                    **env,
                    "BENTOML_DO_NOT_TRACK": "true",
                    "BENTOML_HOME": str(HERE / ".work" / "bentoml-home"),
                },
                cwd=PEERS,
                venv="bentoml",
            ),
            Target(
                f"litserve{suffix}",
                "peer",
                "LitServe, "
                + (
                    "defaults (1 worker, no batching)"
                    if variant == "default"
                    else f"batching 32 / 5 ms, {workers} workers per device, fast_queue"
                ),
                lambda port, work: [py("litserve"), "litserve_app.py", str(port)],
                "/health",
                _row_encode,
                _answer_decode,
                env=env,
                cwd=PEERS,
                venv="litserve",
            ),
        ]
    return out

"""LitServe serving the benchmark's models, in its default or its documented tuned configuration.

Default: ``LitServer(api, accelerator="cpu")`` (one worker, no batching). Tuned (BENCH_VARIANT=
tuned): dynamic batching on each LitAPI (``max_batch_size``, ``batch_timeout``), one worker per
server CPU (``workers_per_device``) and ZeroMQ queues (``fast_queue=True``), as LitServe's docs
recommend for throughput.
Run: BENCH_MODELS_DIR=... python litserve_app.py PORT
"""

import sys
from typing import Any

import litserve as ls
from common import NAMES, VARIANT, WORKERS, answers, frame, load

TUNED = VARIANT == "tuned"
MAX_BATCH_SIZE = 32
BATCH_TIMEOUT_S = 0.005


class TabularAPI(ls.LitAPI):
    """One model: rows in, ``{"label", "probability"}`` out."""

    def __init__(self, name: str) -> None:
        kwargs: dict[str, Any] = {"api_path": f"/predict/{name}"}
        if TUNED:
            kwargs.update(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S)
        super().__init__(**kwargs)
        self.name = name

    def setup(self, device: str) -> None:
        self.model = load(self.name)

    def decode_request(self, request: dict[str, Any]) -> dict[str, Any]:
        return request

    def batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return inputs

    def predict(self, x: Any) -> Any:
        if TUNED:  # a batch: list of rows -> list of answers
            return answers(self.model, frame(self.name, x))
        return answers(self.model, frame(self.name, [x]))[0]

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


if __name__ == "__main__":
    port = int(sys.argv[1])
    apis = [TabularAPI(name) for name in NAMES]
    if TUNED:
        server = ls.LitServer(apis, accelerator="cpu", workers_per_device=WORKERS, fast_queue=True)
    else:
        server = ls.LitServer(apis, accelerator="cpu")
    server.run(host="127.0.0.1", port=port, generate_client_file=False)

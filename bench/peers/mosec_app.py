"""mosec serving the benchmark's models: a Rust HTTP front end, Python workers, dynamic batching.

mosec (https://github.com/mosecorg/mosec) parses HTTP, queues and batches requests in Rust and
hands each batch to a Python worker process over a Unix socket: per request, Python only
deserializes the body and serializes the answer. One route per model, ``POST /predict/NAME``
with one JSON row, answering ``{"label", "probability"}`` like the LitServe and FastAPI peers;
one worker process per model per server CPU (one OpenMP thread each), dynamic batching of up
to 32 requests waiting at most 5 ms for company (the setting issue 15 measured). Each worker
turns its batch into a DataFrame with the training dtypes and calls the pipeline's own
``predict_proba`` (``common.py``).
Run: BENCH_MODELS_DIR=... python mosec_app.py --address 127.0.0.1 --port PORT
"""

from __future__ import annotations

import os
from typing import Any

from common import NAMES, WORKERS, answers, frame, load
from mosec import Server, Worker

MAX_BATCH_SIZE = 32
MAX_WAIT_MS = 5
#: One OpenMP thread per worker process: there is one worker per CPU (per model) already, and
#: scikit-learn's gradient boosting otherwise starts one OpenMP thread per CPU in every worker,
#: which spin against each other (card c=64 measured 490 req/s that way, 4,250 with this).
WORKER_ENV = {"OMP_NUM_THREADS": "1"}


class _Tabular(Worker):
    """One model: a batch of rows in, one ``{"label", "probability"}`` per row out."""

    model_name = ""

    def __init__(self) -> None:
        super().__init__()
        self.model = load(self.model_name)

    def forward(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return answers(self.model, frame(self.model_name, data))


# mosec starts workers with "spawn": each worker class must be importable by name from here.
class Card(_Tabular):
    model_name = "card"


class DenseLr(_Tabular):
    model_name = "dense_lr"


class DenseGb(_Tabular):
    model_name = "dense_gb"


#: The models this run trained (``--models``), each with its worker class above.
WORKER_CLASSES: dict[str, type[Worker]] = {
    c.model_name: c for c in (Card, DenseLr, DenseGb) if c.model_name in NAMES
}
assert sorted(WORKER_CLASSES) == sorted(NAMES), "a model without a worker class above"


if __name__ == "__main__":
    os.environ.setdefault("MOSEC_LOG_LEVEL", "warning")
    server = Server()
    for name, worker in WORKER_CLASSES.items():
        server.append_worker(
            worker,
            num=WORKERS,
            max_batch_size=MAX_BATCH_SIZE,
            max_wait_time=MAX_WAIT_MS,
            route=f"/predict/{name}",
            env=[WORKER_ENV] * WORKERS,
        )
    server.run()

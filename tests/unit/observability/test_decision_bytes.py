"""The decision log's JSON lines, byte for byte: key order, float and time formatting, hashes.

The expected lines were written by the decision log before its write path was optimised; any
change to how a record is built or encoded must leave every byte of them as it is.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from rtserve.bundle.schema import FieldSpec, FieldType, OutputSpec, Schema
from rtserve.events import BatchInfo, PredictionEvent
from rtserve.observability.decisions import DecisionLogObserver, JsonlSink, record
from rtserve.observability.ids import UniqueIds
from rtserve.observability.redaction import Redactor
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Task

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#: Floats whose shortest form is easy to get wrong: -0.0, subnormal, huge, NaN (written null).
AWKWARD = [0.1, -0.0, 5e-324, 1e22, float("nan"), 123456789.125, -2.5e-7, 1 / 3]

MIXED = Schema(
    inputs=[
        FieldSpec(name="amount", type=FieldType.FLOAT),
        FieldSpec(name="Count", type=FieldType.INT),
        FieldSpec(name="flag", type=FieldType.BOOL),
        FieldSpec(name="home_country", type=FieldType.STRING, pii=True),
        FieldSpec(name='naïve "q"', type=FieldType.STRING),
    ],
    outputs=OutputSpec(task=Task.CLASSIFICATION, classes=["no", "yes"]),
)
#: Field names of float-only models (versions 3 and 4): keys a JSON encoder must escape or sort
#: with care.
DENSE_FIELDS = {"3": ("f10", 'f"2', "é\\1"), "4": ("f10", "f2", "é\u2028<1>")}
DENSE = {
    version: Schema(
        inputs=[FieldSpec(name=name, type=FieldType.FLOAT) for name in names],
        outputs=OutputSpec(task=Task.CLASSIFICATION, classes=[0, 1]),
    )
    for version, names in DENSE_FIELDS.items()
}
REGRESSION = Schema(
    inputs=[FieldSpec(name="x", type=FieldType.FLOAT)],
    outputs=OutputSpec(task=Task.REGRESSION),
)
SCHEMAS = {"1": MIXED, "2": REGRESSION, **DENSE}


def event(version: str, rows: int, columns: dict[str, np.ndarray], output: ModelOutput, *,
          seconds: float, traceparent: str | None = None, variant: str = "",
          fallback: bool = False) -> PredictionEvent:  # fmt: skip
    return PredictionEvent(
        f"req-{version}-{seconds}", T0 + seconds, "m", version, f"sha256:{version}",
        "v2" if fallback else "records", columns, output, rows, 0.004 + seconds,
        BatchInfo(0.001, 0.002, rows, 1), fallback=fallback, variant=variant,
        traceparent=traceparent,
    )  # fmt: skip


def dense(rows: int, start: int, seconds: float, version: str = "3") -> PredictionEvent:
    values = [AWKWARD[(start + i) % len(AWKWARD)] for i in range(3 * rows)]
    columns = {
        name: np.array(values[k * rows : (k + 1) * rows], dtype=np.float64)
        for k, name in enumerate(DENSE_FIELDS[version])
    }
    p1 = np.linspace(0.125, 0.875, rows)
    output = ModelOutput(
        label=(p1 > 0.5).astype(np.int64), probabilities=np.column_stack([1 - p1, p1])
    )
    return event(version, rows, columns, output, seconds=seconds, traceparent=TRACE)


def batches() -> list[list[PredictionEvent]]:
    """Events of three model versions, interleaved, of one and several rows; then batches whose
    events all hold as many rows."""
    mixed = {
        "amount": np.array([12.5, float("nan")]),
        "Count": np.array([3, -1], dtype=np.int64),
        "flag": np.array([True, False]),
        "home_country": np.array(["FR", None], dtype=object),
        'naïve "q"': np.array(['a "b"\n', "ü€"], dtype=object),
    }
    mixed_out = ModelOutput(
        label=np.array(["yes", "no"], dtype=object),
        probabilities=np.array([[0.25, 0.75], [0.9, 0.1]]),
    )
    one = {k: v[:1].copy() for k, v in mixed.items()}
    interleaved = [
        event("1", 2, mixed, mixed_out, seconds=0.1234567, traceparent=TRACE, variant="canary"),
        dense(1, 0, 1.0),
        event(
            "2",
            2,
            {"x": np.array([1.5, 2.0])},
            ModelOutput(value=np.array([0.5, -1e-9])),
            seconds=2.0000005,
            fallback=True,
        ),
        dense(3, 1, 3.25),
        event("1", 1, one, ModelOutput(label=np.array(["no"], dtype=object)), seconds=4.5),
        dense(1, 4, 5.000001),
    ]
    return [
        interleaved,
        [dense(1, k, 6.0 + k, "4") for k in range(3)],
        [dense(2, 5, 9.0, "4"), dense(2, 6, 10.0, "4")],
    ]


@pytest.fixture
def fixed_server_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Server ids 0, 1, 2... in 32 hex digits: this process's ids with a prefix of zeros."""
    ids = UniqueIds()
    ids()  # draws the prefix for this process, which is replaced next
    monkeypatch.setattr(ids, "_prefix", "0" * 16)
    monkeypatch.setattr(ids, "_counter", itertools.count())
    monkeypatch.setattr(record, "new_server_id", ids)


def written(tmp_path, *, include_inputs: bool) -> bytes:
    observer = DecisionLogObserver(
        JsonlSink(tmp_path),
        lambda model, version: SCHEMAS[version],
        Redactor(b"k"),
        include_inputs=include_inputs,
    )
    observer.sink.open()
    for each in batches():
        observer._write(each)
    observer.sink.close()
    [segment] = tmp_path.glob("decisions-*.jsonl")
    return segment.read_bytes()


@pytest.mark.usefixtures("fixed_server_ids")
def test_decision_lines_without_inputs_are_unchanged_to_the_byte(tmp_path):
    assert written(tmp_path, include_inputs=False).splitlines() == list(WITHOUT_INPUTS)


@pytest.mark.usefixtures("fixed_server_ids")
def test_decision_lines_with_redacted_inputs_are_unchanged_to_the_byte(tmp_path):
    assert written(tmp_path, include_inputs=True).splitlines() == list(WITH_INPUTS)


# fmt: off
WITHOUT_INPUTS: tuple[bytes, ...] = (
    b'{"request_id":"req-1-0.1234567","row":0,"time":"2024-05-01T12:00:00.123457Z","model":"m","version":"1","digest":"sha256:1","protocol":"records","input_hash":"sha256:3768f7f3c80c9cb0dffad7c0c73a70366d134713ccc3a0c43de535483b06196b","output":{"label":"yes"},"latency_seconds":0.1274567,"fallback":false,"variant":"canary","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000000"}',
    b'{"request_id":"req-1-0.1234567","row":1,"time":"2024-05-01T12:00:00.123457Z","model":"m","version":"1","digest":"sha256:1","protocol":"records","input_hash":"sha256:b49a4ef0a9842506de7a45e27e70aa5964ce2dd75004014958e194227f3939ac","output":{"label":"no"},"latency_seconds":0.1274567,"fallback":false,"variant":"canary","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000000"}',
    b'{"request_id":"req-1-4.5","row":0,"time":"2024-05-01T12:00:04.500000Z","model":"m","version":"1","digest":"sha256:1","protocol":"records","input_hash":"sha256:3768f7f3c80c9cb0dffad7c0c73a70366d134713ccc3a0c43de535483b06196b","output":{"label":"no"},"latency_seconds":4.504,"fallback":false,"variant":"","trace_id":null,"inputs":null,"server_id":"00000000000000000000000000000001"}',
    b'{"request_id":"req-3-1.0","row":0,"time":"2024-05-01T12:00:01Z","model":"m","version":"3","digest":"sha256:3","protocol":"records","input_hash":"sha256:2fa5070bbf70f5a388b8468efd45f863c6b2fa8ab0657340c6b2c00c80b2f814","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":1.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000002"}',
    b'{"request_id":"req-3-3.25","row":0,"time":"2024-05-01T12:00:03.250000Z","model":"m","version":"3","digest":"sha256:3","protocol":"records","input_hash":"sha256:0c95c2fdaa420c9c16a65e56baa8042547e2cfb82789eadaf013ef111e1827ef","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":3.254,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000003"}',
    b'{"request_id":"req-3-3.25","row":1,"time":"2024-05-01T12:00:03.250000Z","model":"m","version":"3","digest":"sha256:3","protocol":"records","input_hash":"sha256:09434f47466761c903237559e748641a795ecbfbcb4981bba200fc857bf93981","output":{"label":0,"probabilities":{"0":0.5,"1":0.5}},"latency_seconds":3.254,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000003"}',
    b'{"request_id":"req-3-3.25","row":2,"time":"2024-05-01T12:00:03.250000Z","model":"m","version":"3","digest":"sha256:3","protocol":"records","input_hash":"sha256:7ba3cd91744f94324ea8f945796b39bd554a0c84d1f2f1865480e263caba2aeb","output":{"label":1,"probabilities":{"0":0.125,"1":0.875}},"latency_seconds":3.254,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000003"}',
    b'{"request_id":"req-3-5.000001","row":0,"time":"2024-05-01T12:00:05.000001Z","model":"m","version":"3","digest":"sha256:3","protocol":"records","input_hash":"sha256:0ec9fd16eee5aeb69a6fc6859666f519e9dcb552cff0209ab445fa991b5221c1","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":5.004001,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000004"}',
    b'{"request_id":"req-2-2.0000005","row":0,"time":"2024-05-01T12:00:02Z","model":"m","version":"2","digest":"sha256:2","protocol":"v2","input_hash":"sha256:461b06088af6528a5584517dd01a204856b291c4eead2bf678c9a6cc0e615623","output":{"value":0.5},"latency_seconds":2.0040005,"fallback":true,"variant":"","trace_id":null,"inputs":null,"server_id":"00000000000000000000000000000005"}',
    b'{"request_id":"req-2-2.0000005","row":1,"time":"2024-05-01T12:00:02Z","model":"m","version":"2","digest":"sha256:2","protocol":"v2","input_hash":"sha256:76d233b08d308797246138419ba6dca463d9ed6662c317bd4bc001111c2cdae9","output":{"value":-1e-9},"latency_seconds":2.0040005,"fallback":true,"variant":"","trace_id":null,"inputs":null,"server_id":"00000000000000000000000000000005"}',
    b'{"request_id":"req-4-6.0","row":0,"time":"2024-05-01T12:00:06Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:51c72fbc675cfb305b52d2106c853c403b7f082f2c0cacb49789f466e8640de1","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":6.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000006"}',
    b'{"request_id":"req-4-7.0","row":0,"time":"2024-05-01T12:00:07Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:113250e58cdd9fec59a3ea9319628736e3f869f6b654dbed4804497fed772feb","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":7.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000007"}',
    b'{"request_id":"req-4-8.0","row":0,"time":"2024-05-01T12:00:08Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:456a9f99403692e36167659bc8aada6ecf22be7a121a2b7670c0d1673cdb0b5a","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":8.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000008"}',
    b'{"request_id":"req-4-9.0","row":0,"time":"2024-05-01T12:00:09Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:b20248f8118f69ba14454f1a04b2749dda0cb097d579143d14d8f791a28a7df6","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":9.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000009"}',
    b'{"request_id":"req-4-9.0","row":1,"time":"2024-05-01T12:00:09Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:756a4fc5d7e01299216f2b3ce048e8c97a85ad181d964d1de75bb8d7b3f8d139","output":{"label":1,"probabilities":{"0":0.125,"1":0.875}},"latency_seconds":9.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"00000000000000000000000000000009"}',
    b'{"request_id":"req-4-10.0","row":0,"time":"2024-05-01T12:00:10Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:756a4fc5d7e01299216f2b3ce048e8c97a85ad181d964d1de75bb8d7b3f8d139","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":10.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"0000000000000000000000000000000a"}',
    b'{"request_id":"req-4-10.0","row":1,"time":"2024-05-01T12:00:10Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:fba1d191001fce603da70a7839ebdfebd5f890504c06aa0e5b17ba8e93bd0585","output":{"label":1,"probabilities":{"0":0.125,"1":0.875}},"latency_seconds":10.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":null,"server_id":"0000000000000000000000000000000a"}',
)

WITH_INPUTS: tuple[bytes, ...] = (
    b'{"request_id":"req-1-0.1234567","row":0,"time":"2024-05-01T12:00:00.123457Z","model":"m","version":"1","digest":"sha256:1","protocol":"records","input_hash":"sha256:3768f7f3c80c9cb0dffad7c0c73a70366d134713ccc3a0c43de535483b06196b","output":{"label":"yes"},"latency_seconds":0.1274567,"fallback":false,"variant":"canary","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"Count":3,"amount":12.5,"flag":true,"home_country":"hmac:2f71eeecb7dd8fcd3e07c57be89c39db","na\xc3\xafve \\"q\\"":"a \\"b\\"\\n"},"server_id":"00000000000000000000000000000000"}',
    b'{"request_id":"req-1-0.1234567","row":1,"time":"2024-05-01T12:00:00.123457Z","model":"m","version":"1","digest":"sha256:1","protocol":"records","input_hash":"sha256:b49a4ef0a9842506de7a45e27e70aa5964ce2dd75004014958e194227f3939ac","output":{"label":"no"},"latency_seconds":0.1274567,"fallback":false,"variant":"canary","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"Count":-1,"amount":null,"flag":false,"home_country":null,"na\xc3\xafve \\"q\\"":"\xc3\xbc\xe2\x82\xac"},"server_id":"00000000000000000000000000000000"}',
    b'{"request_id":"req-1-4.5","row":0,"time":"2024-05-01T12:00:04.500000Z","model":"m","version":"1","digest":"sha256:1","protocol":"records","input_hash":"sha256:3768f7f3c80c9cb0dffad7c0c73a70366d134713ccc3a0c43de535483b06196b","output":{"label":"no"},"latency_seconds":4.504,"fallback":false,"variant":"","trace_id":null,"inputs":{"Count":3,"amount":12.5,"flag":true,"home_country":"hmac:2f71eeecb7dd8fcd3e07c57be89c39db","na\xc3\xafve \\"q\\"":"a \\"b\\"\\n"},"server_id":"00000000000000000000000000000001"}',
    b'{"request_id":"req-3-1.0","row":0,"time":"2024-05-01T12:00:01Z","model":"m","version":"3","digest":"sha256:3","protocol":"records","input_hash":"sha256:2fa5070bbf70f5a388b8468efd45f863c6b2fa8ab0657340c6b2c00c80b2f814","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":1.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f\\"2":-0.0,"f10":0.1,"\xc3\xa9\\\\1":5e-324},"server_id":"00000000000000000000000000000002"}',
    b'{"request_id":"req-3-3.25","row":0,"time":"2024-05-01T12:00:03.250000Z","model":"m","version":"3","digest":"sha256:3","protocol":"records","input_hash":"sha256:0c95c2fdaa420c9c16a65e56baa8042547e2cfb82789eadaf013ef111e1827ef","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":3.254,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f\\"2":null,"f10":-0.0,"\xc3\xa9\\\\1":0.3333333333333333},"server_id":"00000000000000000000000000000003"}',
    b'{"request_id":"req-3-3.25","row":1,"time":"2024-05-01T12:00:03.250000Z","model":"m","version":"3","digest":"sha256:3","protocol":"records","input_hash":"sha256:09434f47466761c903237559e748641a795ecbfbcb4981bba200fc857bf93981","output":{"label":0,"probabilities":{"0":0.5,"1":0.5}},"latency_seconds":3.254,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f\\"2":123456789.125,"f10":5e-324,"\xc3\xa9\\\\1":0.1},"server_id":"00000000000000000000000000000003"}',
    b'{"request_id":"req-3-3.25","row":2,"time":"2024-05-01T12:00:03.250000Z","model":"m","version":"3","digest":"sha256:3","protocol":"records","input_hash":"sha256:7ba3cd91744f94324ea8f945796b39bd554a0c84d1f2f1865480e263caba2aeb","output":{"label":1,"probabilities":{"0":0.125,"1":0.875}},"latency_seconds":3.254,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f\\"2":-2.5e-7,"f10":1e22,"\xc3\xa9\\\\1":-0.0},"server_id":"00000000000000000000000000000003"}',
    b'{"request_id":"req-3-5.000001","row":0,"time":"2024-05-01T12:00:05.000001Z","model":"m","version":"3","digest":"sha256:3","protocol":"records","input_hash":"sha256:0ec9fd16eee5aeb69a6fc6859666f519e9dcb552cff0209ab445fa991b5221c1","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":5.004001,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f\\"2":123456789.125,"f10":null,"\xc3\xa9\\\\1":-2.5e-7},"server_id":"00000000000000000000000000000004"}',
    b'{"request_id":"req-2-2.0000005","row":0,"time":"2024-05-01T12:00:02Z","model":"m","version":"2","digest":"sha256:2","protocol":"v2","input_hash":"sha256:461b06088af6528a5584517dd01a204856b291c4eead2bf678c9a6cc0e615623","output":{"value":0.5},"latency_seconds":2.0040005,"fallback":true,"variant":"","trace_id":null,"inputs":{"x":1.5},"server_id":"00000000000000000000000000000005"}',
    b'{"request_id":"req-2-2.0000005","row":1,"time":"2024-05-01T12:00:02Z","model":"m","version":"2","digest":"sha256:2","protocol":"v2","input_hash":"sha256:76d233b08d308797246138419ba6dca463d9ed6662c317bd4bc001111c2cdae9","output":{"value":-1e-9},"latency_seconds":2.0040005,"fallback":true,"variant":"","trace_id":null,"inputs":{"x":2.0},"server_id":"00000000000000000000000000000005"}',
    b'{"request_id":"req-4-6.0","row":0,"time":"2024-05-01T12:00:06Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:51c72fbc675cfb305b52d2106c853c403b7f082f2c0cacb49789f466e8640de1","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":6.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f10":0.1,"f2":-0.0,"\xc3\xa9\xe2\x80\xa8<1>":5e-324},"server_id":"00000000000000000000000000000006"}',
    b'{"request_id":"req-4-7.0","row":0,"time":"2024-05-01T12:00:07Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:113250e58cdd9fec59a3ea9319628736e3f869f6b654dbed4804497fed772feb","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":7.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f10":-0.0,"f2":5e-324,"\xc3\xa9\xe2\x80\xa8<1>":1e22},"server_id":"00000000000000000000000000000007"}',
    b'{"request_id":"req-4-8.0","row":0,"time":"2024-05-01T12:00:08Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:456a9f99403692e36167659bc8aada6ecf22be7a121a2b7670c0d1673cdb0b5a","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":8.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f10":5e-324,"f2":1e22,"\xc3\xa9\xe2\x80\xa8<1>":null},"server_id":"00000000000000000000000000000008"}',
    b'{"request_id":"req-4-9.0","row":0,"time":"2024-05-01T12:00:09Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:b20248f8118f69ba14454f1a04b2749dda0cb097d579143d14d8f791a28a7df6","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":9.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f10":123456789.125,"f2":0.3333333333333333,"\xc3\xa9\xe2\x80\xa8<1>":-0.0},"server_id":"00000000000000000000000000000009"}',
    b'{"request_id":"req-4-9.0","row":1,"time":"2024-05-01T12:00:09Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:756a4fc5d7e01299216f2b3ce048e8c97a85ad181d964d1de75bb8d7b3f8d139","output":{"label":1,"probabilities":{"0":0.125,"1":0.875}},"latency_seconds":9.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f10":-2.5e-7,"f2":0.1,"\xc3\xa9\xe2\x80\xa8<1>":5e-324},"server_id":"00000000000000000000000000000009"}',
    b'{"request_id":"req-4-10.0","row":0,"time":"2024-05-01T12:00:10Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:756a4fc5d7e01299216f2b3ce048e8c97a85ad181d964d1de75bb8d7b3f8d139","output":{"label":0,"probabilities":{"0":0.875,"1":0.125}},"latency_seconds":10.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f10":-2.5e-7,"f2":0.1,"\xc3\xa9\xe2\x80\xa8<1>":5e-324},"server_id":"0000000000000000000000000000000a"}',
    b'{"request_id":"req-4-10.0","row":1,"time":"2024-05-01T12:00:10Z","model":"m","version":"4","digest":"sha256:4","protocol":"records","input_hash":"sha256:fba1d191001fce603da70a7839ebdfebd5f890504c06aa0e5b17ba8e93bd0585","output":{"label":1,"probabilities":{"0":0.125,"1":0.875}},"latency_seconds":10.004,"fallback":false,"variant":"","trace_id":"0af7651916cd43dd8448eb211c80319c","inputs":{"f10":0.3333333333333333,"f2":-0.0,"\xc3\xa9\xe2\x80\xa8<1>":1e22},"server_id":"0000000000000000000000000000000a"}',
)
# fmt: on

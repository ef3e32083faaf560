"""Metrics: JSONL records survive crashes and resumes, TensorBoard gets the scalars, progress
lines appear, throughput is measured, curves are plotted."""

import io
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from jalign.errors import JalignError
from jalign.metrics import (
    TENSORBOARD_DIR,
    MetricsLogger,
    Throughput,
    curves_figure,
    plot_curves,
    read_metrics,
    to_host_scalars,
)


def _log_steps(run_dir, steps, resume_step=None, **kwargs):
    kwargs.setdefault("progress", False)
    with MetricsLogger(run_dir, resume_step=resume_step, tensorboard=False, **kwargs) as log:
        for step in steps:
            log.log(step, {"loss": jnp.float32(10.0 - step)})


def _read_events(run_dir) -> list[event_pb2.Event]:
    """Parse TFRecord framing: u64 length, u32 crc, payload, u32 crc."""
    (path,) = (run_dir / TENSORBOARD_DIR).iterdir()
    data = path.read_bytes()
    events, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        events.append(event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length]))
        offset += 12 + length + 4
    return events


def test_records_are_host_scalars_written_and_flushed_at_each_log(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False, progress=False)
    record = log.log(
        3,
        {
            "loss": jnp.float32(1.5),
            "tokens": jnp.int32(96),
            "nonfinite": jnp.bool_(False),
            "eval": {"acc": jnp.bfloat16(0.75)},
            "lr": 1e-4,
        },
    )
    # Read while the logger is still open: the line is already on disk.
    (on_disk,) = read_metrics(tmp_path / "metrics.jsonl")
    log.close()
    assert on_disk == record
    assert record["step"] == 3 and isinstance(record["time"], float)
    assert {k: record[k] for k in ("loss", "tokens", "nonfinite", "eval/acc", "lr")} == {
        "loss": 1.5,
        "tokens": 96,
        "nonfinite": False,
        "eval/acc": 0.75,
        "lr": 1e-4,
    }
    assert type(record["tokens"]) is int and type(record["nonfinite"]) is bool


def test_to_host_scalars_fetches_once_and_rejects_arrays(monkeypatch):
    calls = []
    real_device_get = jax.device_get
    monkeypatch.setattr(jax, "device_get", lambda x: calls.append(x) or real_device_get(x))
    assert to_host_scalars({"a": jnp.ones(()), "b": {"c": jnp.zeros((1,))}}) == {
        "a": 1.0,
        "b/c": 0.0,
    }
    assert len(calls) == 1
    with pytest.raises(ValueError, match=r"metric 'v' has shape \(3,\)"):
        to_host_scalars({"v": jnp.ones(3)})


def test_resume_truncates_records_after_the_resumed_step(tmp_path):
    _log_steps(tmp_path, [1, 2, 3, 4])
    path = tmp_path / "metrics.jsonl"
    with path.open("a") as f:
        f.write('{"step": 5, "lo')  # crash in the middle of a write
    _log_steps(tmp_path, [3, 4], resume_step=2)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]
    assert path.read_text().count("\n") == 4
    _log_steps(tmp_path, [1], resume_step=None)  # fresh start forgets earlier records
    assert [r["step"] for r in read_metrics(path)] == [1]


def test_a_malformed_line_before_the_end_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(JalignError, match=r"metrics.jsonl:2: not a JSON record"):
        read_metrics(path)


def test_tensorboard_events_contain_the_scalars(tmp_path):
    with MetricsLogger(tmp_path, progress=False) as log:
        for step in (1, 2):
            log.log(step, {"loss": jnp.float32(step / 4), "eval": {"acc": 0.5}})
    scalars = sorted(
        (event.step, value.tag, value.simple_value)
        for event in _read_events(tmp_path)
        for value in event.summary.value
    )
    assert scalars == [
        (1, "eval/acc", 0.5),
        (1, "loss", 0.25),
        (2, "eval/acc", 0.5),
        (2, "loss", 0.5),
    ]


def test_only_process_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    with MetricsLogger(tmp_path / "run") as log:
        record = log.log(1, {"loss": jnp.float32(2.0)})
    assert record["loss"] == 2.0
    assert not (tmp_path / "run").exists()


def test_progress_prints_compact_lines_when_not_a_terminal(tmp_path):
    stream = io.StringIO()
    with MetricsLogger(
        tmp_path, tensorboard=False, total_steps=10, print_every=5, stream=stream
    ) as log:
        for step in range(1, 11):
            log.log(step, {"loss": 1.0 / step, "tokens_per_sec": 1234.0, "steps_per_sec": 2.5})
    assert stream.getvalue().splitlines() == [
        "step 1/10 | loss 1.0000 | 1.23e+03 tok/s | 2.50 steps/s",
        "step 5/10 | loss 0.2000 | 1.23e+03 tok/s | 2.50 steps/s",
        "step 10/10 | loss 0.1000 | 1.23e+03 tok/s | 2.50 steps/s",
    ]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("ci", [None, "true"])
def test_progress_bar_on_a_terminal_unless_ci(tmp_path, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    stream = _Terminal()
    _log_steps(tmp_path, [1, 2], stream=stream, progress=True, total_steps=4, print_every=2)
    output = stream.getvalue()
    assert ("\r" in output) == (ci is None)  # tqdm redraws in place
    assert "loss 8.0000" in output


def test_throughput_over_a_window():
    now = [0.0]
    meter = Throughput(window=2, clock=lambda: now[0])
    assert meter.rates() == {}
    for step, (t, tokens) in enumerate([(0.0, 100), (1.0, 100), (2.0, 300), (2.5, 100)], start=1):
        now[0] = t
        meter.update(step, tokens)
    # window of 2 steps: from step 2 (t=1) to step 4 (t=2.5): 2 steps, 400 tokens, 1.5 s
    assert meter.rates() == pytest.approx({"steps_per_sec": 2 / 1.5, "tokens_per_sec": 400 / 1.5})


def test_curves_overlay_runs_per_metric(tmp_path):
    _log_steps(tmp_path / "run_a", [1, 2, 3])
    records_b = [{"step": 1, "loss": 5.0, "acc": 0.1}, {"step": 3, "loss": 4.0, "acc": 0.2}]
    figure = curves_figure([tmp_path / "run_a" / "metrics.jsonl", records_b], ["loss"])
    (axes,) = figure.axes
    lines = {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axes.lines
    }
    assert lines == {"run_a": ([1, 2, 3], [9.0, 8.0, 7.0]), "run 1": ([1, 3], [5.0, 4.0])}

    out = plot_curves({"b": records_b}, ["loss", "acc"], tmp_path / "plots" / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(JalignError, match="no run has metric 'kl'; available: acc, loss, step"):
        plot_curves(records_b, ["kl"], tmp_path / "x.png")


def test_reserved_names_are_refused(tmp_path):
    with (
        MetricsLogger(tmp_path, tensorboard=False, progress=False) as log,
        pytest.raises(ValueError, match="reserved"),
    ):
        log.log(1, {"step": np.int32(1)})
    assert (tmp_path / "metrics.jsonl").read_text() == ""

"""The Prometheus text format (0.0.4), rendered fast enough for thousands of cell series.

prometheus-client's ``generate_latest`` re-validates and re-escapes every label *name* of
every sample (its UTF-8 name support): with 500 cells (~7,000 samples) that alone took
most of a second on this 2-core machine. Here the names, a few dozen distinct strings, are
escaped once and remembered, and the values that dominate (0 and 1 of the one-hot
gauges) are formatted once. The output is the same format, family by family, including
prometheus-client's munging of OpenMetrics types (counters get ``_total``, ``_created``
samples move to a gauge family of their own), so any collector can be rendered.

The endpoint always answers in this format: Prometheus accepts it, and nothing kukeon
exposes needs OpenMetrics (no exemplars).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from prometheus_client import utils
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

# Go's float formatting, as Prometheus parses it (untyped in prometheus-client).
_go_float = cast(Callable[[float], str], utils.floatToGoString)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_OPENMETRICS_SUFFIXES = ("_created", "_gsum", "_gcount")
_TYPE_MUNGING = {
    "info": "gauge",
    "stateset": "gauge",
    "gaugehistogram": "histogram",
    "unknown": "untyped",
}
_COMMON_VALUES = {value: _go_float(value) for value in (0.0, 1.0)}


@functools.lru_cache(maxsize=4096)
def _metric_name(name: str) -> str:
    return str(openmetrics.escape_metric_name(name, openmetrics.UNDERSCORES))


@functools.lru_cache(maxsize=4096)
def _label_name(name: str) -> str:
    return str(openmetrics.escape_label_name(name, openmetrics.UNDERSCORES))


LABEL_PAIRS_KEPT = 4096
"""Rendered label pairs remembered. The pairs that repeat (realm, space, node, state,
container names, buckets) are far fewer; a cell's own name is one more pair per cell,
so under create/delete churn a larger cache only filled with deleted cells' names
(1 << 16 of them: ~14 MiB at ~230 bytes a pair, reached after as many cells were scraped)."""


@functools.lru_cache(maxsize=LABEL_PAIRS_KEPT)
def _label_pair(name: str, value: str) -> str:
    # Pairs repeat across samples (every state of a cell, every bucket of a histogram).
    escaped = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return f'{_label_name(name)}="{escaped}"'


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _number(value: float) -> str:
    known = _COMMON_VALUES.get(value)
    return known if known is not None else _go_float(value)


def _sample_line(sample: Sample) -> str:
    if sample.labels:
        labels = ",".join([_label_pair(key, value) for key, value in sample.labels.items()])
        line = f"{_metric_name(sample.name)}{{{labels}}} {_number(sample.value)}"
    else:
        line = f"{_metric_name(sample.name)} {_number(sample.value)}"
    if sample.timestamp is not None:
        line += f" {int(float(sample.timestamp) * 1000):d}"
    return line + "\n"


def render_samples(samples: Iterable[Sample]) -> str:
    """The exposition lines of ``samples`` (plain samples: no ``_created``-style suffixes)."""
    return "".join([_sample_line(sample) for sample in samples])


class _Prerendered:
    """A family whose samples arrive in chunks with their lines already rendered.

    The hierarchy collector keeps each document's chunk until the document changes, so a
    scrape re-renders only what changed. ``render_text`` uses the lines while they still
    match the samples one for one (someone calling ``add_metric`` falls back to rendering).
    """

    samples: list[Sample]

    def _init_chunks(self) -> None:
        self.rendered: list[str] = []
        self.rendered_count = 0

    def add_chunk(self, samples: Sequence[Sample], text: str) -> None:
        self.samples.extend(samples)
        self.rendered.append(text)
        self.rendered_count += len(samples)


class PrerenderedGaugeFamily(GaugeMetricFamily, _Prerendered):
    def __init__(self, name: str, documentation: str, *, labels: Sequence[str]) -> None:
        super().__init__(name, documentation, labels=labels)
        self._init_chunks()


class PrerenderedCounterFamily(CounterMetricFamily, _Prerendered):
    def __init__(self, name: str, documentation: str, *, labels: Sequence[str]) -> None:
        super().__init__(name, documentation, labels=labels)
        self._init_chunks()


def _prerendered_lines(metric: Metric) -> list[str] | None:
    if isinstance(metric, _Prerendered) and metric.rendered_count == len(metric.samples):
        return metric.rendered
    return None


def render_text(registry: Collector) -> bytes:
    """Every metric of ``registry`` in the Prometheus text format, UTF-8 encoded."""
    output: list[str] = []
    append = output.append
    for metric in registry.collect():
        name = metric.name
        kind = metric.type
        exposed = name
        if kind == "counter":
            exposed = name + "_total"
        elif kind == "info":
            exposed = name + "_info"
        kind = _TYPE_MUNGING.get(kind, kind)
        help_text = _help(metric.documentation)
        append(f"# HELP {_metric_name(exposed)} {help_text}\n")
        append(f"# TYPE {_metric_name(exposed)} {kind}\n")
        prerendered = _prerendered_lines(metric)
        if prerendered is not None:
            output.extend(prerendered)
            continue
        moved: dict[str, list[str]] = {}
        for sample in metric.samples:
            line = _sample_line(sample)
            suffix = sample.name[len(name) :] if sample.name.startswith(name) else ""
            if suffix in _OPENMETRICS_SUFFIXES:
                moved.setdefault(suffix, []).append(line)
            else:
                append(line)
        for suffix, lines in sorted(moved.items()):
            append(f"# HELP {_metric_name(name + suffix)} {help_text}\n")
            append(f"# TYPE {_metric_name(name + suffix)} gauge\n")
            output.extend(lines)
    return "".join(output).encode()

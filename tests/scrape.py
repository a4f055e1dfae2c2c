"""Read a Prometheus scrape with prometheus_client's own parser."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

#: (sample name, labels) -> value
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

DOCS = Path(__file__).resolve().parent.parent / "docs" / "observability.md"


def parse(text: str) -> Samples:
    """Every sample of a scrape."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> str:
    """The text of ``http://127.0.0.1:PORT/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
        return text


def names(text: str) -> set[str]:
    """Every family and sample name of a scrape (``x`` and ``x_total``, ``x_count``...)."""
    found = set()
    for family in text_string_to_metric_families(text):
        found.add(family.name)
        if family.type == "counter":  # the parser names a counter's family without _total
            found.add(family.name + "_total")
        found.update(sample.name for sample in family.samples)
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 if the scrape does not hold it."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def documented_metrics() -> set[str]:
    """Every metric name docs/observability.md mentions (ours, and the standard process ones)."""
    return set(re.findall(r"\b(?:aioudf|process|python)_[a-z_]+[a-z]", DOCS.read_text()))

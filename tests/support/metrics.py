"""Reading ``/metrics`` in tests as a scraper does: parsed with ``prometheus_client.parser``, never by text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition ``text``: ``(name, labels) -> value``."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels}`` (all its labels given), ``None`` when it is absent."""
    return samples(text).get((name, frozenset(labels.items())))


def types(text: str) -> dict[str, str]:
    """Each metric family's declared type (``counter``, ``gauge``, ``histogram`` ...), by family name."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def counted(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of ``name`` that are not zero, by their labels (sorted): what was counted."""
    return {
        tuple(sorted(labels)): sample
        for (sample_name, labels), sample in samples(text).items()
        if sample_name == name and sample != 0
    }

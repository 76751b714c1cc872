"""Metric names in PromQL expressions, and the names a ``/metrics`` page exports.

Enough PromQL for the queries in deploy/observability: string literals, label
matchers, ranges, grouping clauses and function calls are taken out, and what
is left that looks like an identifier (and is not a keyword or a number) is a
metric name.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+", re.IGNORECASE)
_IDENT = re.compile(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "offset"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan", "atan2"}

# The extra samples each metric type exposes (prometheus_client's text format).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects."""
    text = _STRINGS.sub('""', expr)
    while True:  # nested braces do not occur, but matchers hold no brackets either
        stripped = _RANGES.sub("", _MATCHERS.sub("", text))
        if stripped == text:
            break
        text = stripped
    text = _OFFSET.sub("", _GROUPING.sub("", text))
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def exported_names(metrics_text: str) -> set[str]:
    """Every series name a scrape of ``metrics_text`` can return, including the
    suffixed forms of each declared family (a labelled counter that has not
    counted yet still declares its name)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics_text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names

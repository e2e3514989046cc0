"""The docstring examples of the measurement and report modules run, and hold."""

import doctest
import importlib

import pytest

MODULES = ["edgepress.measurement.latency", "edgepress.measurement.stats",
           "edgepress.measurement.size", "edgepress.measurement.comparison",
           "edgepress.measurement.graph", "edgepress.measurement.params",
           "edgepress.measurement.macs", "edgepress.report.effects", "edgepress.report.table",
           "edgepress.report.pareto", "edgepress.report"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0

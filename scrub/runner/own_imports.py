"""A pytest plugin ``scrub check`` adds: a claims file can import helpers from its own folder.

``scrub check`` imports claims files in pytest's importlib mode (hypothesis folders need no
``__init__.py`` and never shadow each other), which puts no folder on ``sys.path``. This plugin
makes each test module's folder importable while pytest imports it, as the hypothesis loader
does for hypothesis files (:func:`scrub.scrubbing.loader.own_folder_importable`). It is loaded
only by ``scrub check``, so other pytest sessions import as they always did.
"""

from __future__ import annotations

import pytest

from scrub.scrubbing.loader import own_folder_importable


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    if not isinstance(collector, pytest.Module):
        return (yield)
    with own_folder_importable(collector.path.parent, keep=collector.path.stem):
        return (yield)

"""Archive.push and Archive.pull pass their keyword options on to push_folder and pull_snapshot unchanged."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from modelarc.archive.pull import pull_snapshot
from modelarc.archive.push import push_folder
from modelarc.archive.repository import PullOptions, PushOptions


@pytest.mark.parametrize(("options", "function"), [(PushOptions, push_folder), (PullOptions, pull_snapshot)])
def test_archive_options_name_exactly_the_keywords_of_the_function_they_are_passed_to(
    options: type, function: Callable[..., Any]
) -> None:
    params = inspect.signature(function).parameters.values()
    keywords = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(options.__annotations__) == keywords

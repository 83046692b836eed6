from pathlib import Path

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


FIXTURE_RESULTS = Path(__file__).parent / "fixtures" / "results"


@pytest.fixture(scope="session")
def fixture_results():
    """The committed result store the report tests render (see tests/fixtures/make_fixtures.py)."""
    return FIXTURE_RESULTS


@pytest.fixture(scope="session")
def fixture_df():
    from amal import store

    df, problems = store.load(FIXTURE_RESULTS)
    assert problems == []
    return df


@pytest.fixture(scope="session")
def context(fixture_df):
    """The report's context built from the fixture store."""
    from amal.report.context import build_context

    return build_context(fixture_df, "tests/fixtures/results")

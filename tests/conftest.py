import shutil
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


@pytest.fixture(scope="session")
def nasty_tag():
    """A tag hostile to both HTML and LaTeX (and a C1 control character, NEL)."""
    return r"<script>console.error('injected')</script> 50% of $5 & #1 {a_b} ~x^2 \end{document}" + "\x85"


@pytest.fixture(scope="session")
def nasty_store(tmp_path_factory, fixture_results, nasty_tag):
    """The fixture store plus one run tagged `nasty_tag`."""
    import pandas as pd

    from amal import store

    results = tmp_path_factory.mktemp("store") / "results"
    shutil.copytree(fixture_results, results)
    bench = pd.read_parquet(results / "20261127T130000Z-bench-7c8d9e.parquet")
    store.save(bench.assign(run_id="20261127T140000Z-bench-999999", tag=nasty_tag), results)
    return results

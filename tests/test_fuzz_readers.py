"""Property tests of the readers of user files (tests/fuzzing/readers.py): whatever a NIR, netx,
manifest, profile, config or npz file holds, reading it returns or raises a one-line UserError.

A few dozen examples per reader here, to keep the suite fast; tests/fuzzing/campaign.py runs
thousands (docs/reliability.md has its numbers).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from fuzzing.readers import properties, seed_files

EXAMPLES = 40


@pytest.fixture(scope="module")
def readers(tmp_path_factory):
    return properties(seed_files(tmp_path_factory.mktemp("seeds")))


@pytest.mark.parametrize("reader", ["nir", "netx", "manifest", "profile", "config", "npz"])
def test_reader_returns_or_raises_user_error(readers, reader):
    strategy, prop = readers[reader]
    settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))(given(strategy)(prop))()

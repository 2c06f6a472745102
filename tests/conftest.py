"""Shared test fixtures: where ../shared is, and a sane thread count."""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('FRN_SHARED', REPO.parent / 'shared')).resolve()


def shared_path(*parts):
    """Path inside the shared folder, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'{path} not found: set FRN_SHARED to the shared data folder (default ../shared)')
    return path


@pytest.fixture(scope='session', autouse=True)
def _threads():
    import utils
    utils.set_threads(min(2, utils.default_threads()))

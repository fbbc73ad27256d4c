"""make test runs this folder in one pytest-xdist worker (--dist loadgroup): its background runs start in each
worker that runs one of its tests, so a broken grouping runs them all twice on two cores, silently."""

import pytest


def test_under_loadgroup_this_folder_is_one_group(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not a pytest-xdist worker under --dist loadgroup")
    # pytest-xdist 3.8 writes the group into the test's id, which pytest 9.2 ignores (pyproject keeps pytest < 9.2)
    assert request.node.nodeid.endswith("@reliability"), request.node.nodeid

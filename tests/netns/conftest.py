"""Namespace tests: root and a kernel with MPTCP; each test must leave nothing behind."""

import os

import pytest

from mbtest.host import netns


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/netns/" in str(item.fspath):
            item.add_marker(pytest.mark.netns)


@pytest.fixture(autouse=True)
def real_kernel_and_no_leftovers():
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("namespace tests need root")
        pytest.skip("namespace tests need root")
    before = set(netns.listed())
    yield
    left = set(netns.listed()) - before
    for name in left:
        netns.remove(name)
    assert not left, f"the test left namespaces behind: {sorted(left)}"

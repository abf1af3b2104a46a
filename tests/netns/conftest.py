"""Namespace tests: root and a kernel with MPTCP; each test must leave nothing behind, and
must remove nothing it did not create (a user's testbed survives the test suite)."""

import os
import time

import pytest

from mbtest.host import netns, owners


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/netns/" in str(item.fspath):
            item.add_marker(pytest.mark.netns)


def _descends_from_us(pid: int) -> bool:
    me = os.getpid()
    for _ in range(64):
        if pid == me:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def ours(names: set[str], since: float) -> set[str]:
    """The namespaces among these that this test created: not those a live process outside
    the test suite owns (another run started meanwhile), nor a user's topo up."""
    theirs = set()
    for owner in owners.records():
        if not owner.alive or _descends_from_us(owner.pid):
            continue
        if owner.persistent and owner.created >= since:
            continue  # a topo up the test itself ran
        theirs |= set(owner.namespaces.values())
    return names - theirs


@pytest.fixture(autouse=True)
def real_kernel_and_no_leftovers():
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("namespace tests need root")
        pytest.skip("namespace tests need root")
    before, since = set(netns.listed()), time.time()
    yield
    left = ours(set(netns.listed()) - before, since)
    for name in left:
        netns.remove(name)
    assert not left, f"the test left namespaces behind: {sorted(left)}"

"""Kernels for guests: which Debian package a version means, the MPTCP check, and the
guest's initramfs (a newc archive the kernel unpacks)."""

import stat

import pytest

from mbtest.host import kernels

PACKAGES = [
    "linux-image-6.1.0-47-cloud-amd64", "linux-image-6.1.0-50-cloud-amd64",
    "linux-image-6.12.95+deb12-cloud-amd64", "linux-image-6.12.117+deb13-cloud-amd64",
    "linux-image-6.16.3+deb13-cloud-amd64", "linux-image-cloud-amd64",  # (a metapackage)
    "linux-image-6.1.0-50-amd64",  # (not a cloud kernel)
]  # fmt: skip


@pytest.mark.parametrize(
    "wanted,package",
    [
        ("6.1", "linux-image-6.1.0-50-cloud-amd64"),  # the newest 6.1, never a 6.12
        ("6.1.0-47", "linux-image-6.1.0-47-cloud-amd64"),
        ("6.12", "linux-image-6.12.117+deb13-cloud-amd64"),
        ("6.12.95", "linux-image-6.12.95+deb12-cloud-amd64"),
        ("6.16.3+deb13", "linux-image-6.16.3+deb13-cloud-amd64"),
        ("linux-image-6.1.0-47-cloud-amd64", "linux-image-6.1.0-47-cloud-amd64"),
    ],
)
def test_a_version_means_the_newest_cloud_kernel_of_it(wanted, package):
    assert kernels.choose(wanted, PACKAGES) == package


def test_a_version_debian_does_not_have_is_one_sentence():
    with pytest.raises(kernels.KernelError, match=r"no Debian cloud kernel matches '6.5'.*6\.1, "):
        kernels.choose("6.5", PACKAGES)
    with pytest.raises(kernels.KernelError, match=r"bullseye's 5\.10 builds have MPTCP"):
        kernels.choose("5.10", PACKAGES)


def test_mptcp_must_be_built_in():
    assert kernels.has_mptcp("CONFIG_INET=y\nCONFIG_MPTCP=y\nCONFIG_MPTCP_IPV6=y\n")
    assert not kernels.has_mptcp("CONFIG_INET=y\n# CONFIG_MPTCP is not set\n")


def read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """(a reader written from the format's description, to check the writer)"""
    out, at = {}, 0
    while True:
        assert data[at : at + 6] == b"070701"
        fields = [int(data[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        mode, size, name_size = fields[1], fields[6], fields[11]
        name_at = at + 110
        name = data[name_at : name_at + name_size - 1].decode()
        body = name_at + name_size + (-(110 + name_size) % 4)
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data[body : body + size])
        at = body + size + (-size % 4)


def test_the_initramfs_holds_busybox_the_modules_and_an_init_that_loads_them_in_order():
    modules = {"virtiofs": b"v" * 5, "virtio": b"x" * 7, "fuse": b"f"}
    archive = read_newc(kernels.initramfs(b"BUSYBOX", modules))
    assert archive["bin/busybox"] == (stat.S_IFREG | 0o755, b"BUSYBOX")
    assert archive["modules/virtio.ko"][1] == b"x" * 7
    assert stat.S_ISDIR(archive["host"][0])
    mode, init = archive["init"]
    assert mode & 0o111 and init.startswith(b"#!/bin/busybox sh")
    assert b"for m in virtio fuse virtiofs; do" in init  # (only those given, in load order)
    assert b"chroot /host /bin/sh /run/mbtest-guest/command.sh" in init


def test_topo_ups_guests_are_endpoints_on_one_kernel():
    from mbtest.errors import MbtestError
    from mbtest.testbed import topology
    from mbtest.testbed.builder import Testbed

    topo = topology.load("single-path")
    bed = Testbed(topo, guests={"server": "6.1"})
    assert bed.vm_nodes == {"server"} and bed._guest_kernel() == "6.1"
    assert Testbed(topo, kernel="6.12").vm_nodes == {"client", "server"}
    with pytest.raises(MbtestError, match=r"share one VM, so one kernel, not \['6.1', '6.12'\]"):
        Testbed(topo, guests={"server": "6.1", "client": "6.12"})._guest_kernel()
    with pytest.raises(MbtestError, match="only endpoints can run in a guest, not r1"):
        Testbed(topo, guests={"r1": "6.1"})._guest_kernel()


def test_an_address_a_shell_would_read_is_refused_in_a_topology():
    from mbtest.testbed import topology

    with pytest.raises(topology.TopologyError, match="is not an address with a prefix length"):
        topology.parse({"nodes": [{"name": "c", "role": "client"}, {"name": "s", "role": "server"}],
                        "links": [{"a": {"node": "c", "ifname": "eth0",
                                         "addresses": ["fd00::1%x||reboot||/64"]},
                                   "b": {"node": "s", "ifname": "eth0"}}]})  # fmt: skip

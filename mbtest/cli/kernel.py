"""mbtest kernel: Debian kernels for guest endpoints, cached; a command run on one."""

from __future__ import annotations

import sys

import click

from mbtest import jsondoc


@click.group()
def kernel() -> None:
    """Kernels for endpoints in lightweight VMs (Debian cloud kernels, QEMU microvm)."""


@kernel.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per kernel.")
def kernel_ls(as_json: bool) -> None:
    """The cached kernels, with their sizes."""
    from mbtest.host import kernels

    found = kernels.cached()
    for k in found:
        if as_json:
            doc = {"release": k.release, "package": k.package, "bytes": k.size,
                   "folder": str(k.folder)}  # fmt: skip
            click.echo(jsondoc.dumps(doc))
        else:
            click.echo(f"{k.release:32} {k.size / 1e6:6.1f} MB  {k.package}")
    if not found and not as_json:
        click.echo(f"no kernel cached in {kernels.cache_dir()}; try: mbtest kernel fetch 6.1")


@kernel.command("fetch")
@click.argument("version")
def kernel_fetch(version: str) -> None:
    """Fetch VERSION (6.1, 6.12, 6.16.3, or a package name) into the cache: the newest
    Debian cloud kernel of it from bookworm, trixie and their backports, checked for MPTCP,
    with its initramfs."""
    from mbtest.host import kernels

    k = kernels.fetch(version, say=lambda text: click.echo(text, err=True))
    click.echo(f"{k.release}: {k.folder} ({k.size / 1e6:.1f} MB, {k.package})")


@kernel.command("rm")
@click.argument("version")
def kernel_rm(version: str) -> None:
    """Remove a cached kernel."""
    from mbtest.host import kernels

    k = kernels.remove(version)
    click.echo(f"removed {k.release}")


@kernel.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("version")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@click.option("--timeout", default=180.0, show_default=True, type=click.FloatRange(10, 3600),
              help="Seconds for the guest to boot and run the command.")  # fmt: skip
def kernel_run(version: str, command: tuple[str, ...], timeout: float) -> None:
    """Boot a cached kernel in a VM and run COMMAND there, in this machine's root
    (read-only): its output and exit status are the command's.

    \b
    Example:
      sudo mbtest kernel fetch 6.1
      sudo mbtest kernel run 6.1 -- cat /proc/sys/net/mptcp/enabled"""
    from mbtest.host import kernels, vm

    result = vm.run(kernels.find(version), list(command), timeout=timeout)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    click.echo(f"kernel {version}: exit {result.exit_code} in {result.seconds:.1f} s", err=True)
    sys.exit(result.exit_code)


COMMANDS = (kernel,)

"""mbtest serve: a cooperating MPTCP server that tells probes what reached it."""

from __future__ import annotations

import click

from mbtest.errors import MbtestError


@click.command(
    "serve",
    epilog="""\b
Examples:
  sudo MBTEST_SERVE_SECRET=... mbtest serve --port 8080
  sudo mbtest serve --port 8080 --secret-file /etc/mbtest.secret --control-port 8765
  sudo mbtest serve --port 8080 --secret-file s --from server   (in a topo up testbed)
then, from the probing host:
  sudo mbtest probe HOST -p 8080 --server HOST:8765 --secret-file /etc/mbtest.secret

It runs until Ctrl-C or SIGTERM.""",
)
@click.option("-p", "--port", default=8080, show_default=True, type=click.IntRange(1, 65535),
              help="The MPTCP data port that probes aim at.")  # fmt: skip
@click.option("--control-port", default=8765, show_default=True, type=click.IntRange(1, 65535),
              help="The authenticated control channel (plain TCP).")  # fmt: skip
@click.option("--secret-file", default=None, metavar="FILE",
              help="The shared secret (else $MBTEST_SERVE_SECRET; never an argument).")  # fmt: skip
@click.option("--from", "from_node", default=None, metavar="NODE",
              help="Run inside this node of a testbed brought up with topo up.")  # fmt: skip
@click.option("--testbed", "run_id", default=None, help="Which testbed (default: the only one).")
def serve_command(port, control_port, secret_file, from_node, run_id) -> None:
    """Accept MPTCP connections on PORT, record every segment it receives and sends, and give
    each probe, over an authenticated channel, the records it asked for by nonce."""
    from mbtest.endpoints import control, serve
    from mbtest.host import netns

    if port == control_port:
        raise MbtestError("the data port and the control port must differ")
    secret = control.read_secret(secret_file)
    netns.require_root()
    if from_node:
        from mbtest.testbed import recorded

        netns.enter(recorded.node_namespace(from_node, run_id))

    def ready() -> None:
        click.echo(
            f"serving MPTCP on port {port}, control on port {control_port} (IPv4 and IPv6)",
            err=True,
        )

    try:
        serve.serve(port, control_port, secret, ready)
    except OSError as e:
        raise MbtestError(f"cannot serve: {e.strerror or e}") from None


COMMANDS = (serve_command,)

"""mbtest probe: crafted MPTCP segments toward a target with every TTL at once."""

from __future__ import annotations

import os
import sys

import click

from mbtest import jsondoc
from mbtest.cli.options import complete_probe, finish, no_fail_option
from mbtest.errors import Interrupted, MbtestError, Terminated


@click.command(
    "probe",
    epilog="""\b
Examples:
  sudo mbtest probe example.net                  the path probes, port 80
  sudo mbtest probe -6 -p 443 example.net --probe mp_capable --probe dss
  sudo mbtest probe 10.1.4.2 -m 12 -t 1 --json   tracebox's -m and -t; a JSON line per probe
  sudo mbtest probe 10.1.4.2 --from client       from a node of a testbed brought up by topo up
  sudo mbtest probe example.net -o r.json --html r.html
  sudo mbtest probe --suite conformance example.net  does the far end follow RFC 8684?
  sudo mbtest probe --targets hosts.txt -w 8 --pps 200 -o campaign.jsonl   many targets
  sudo mbtest probe --targets hosts.txt -o campaign.jsonl --resume         go on after a stop
  sudo mbtest probe --targets hosts.txt -o campaign.jsonl --pcap pcaps/    a pcap per target

Exit status: 0 no change on the path, 1 changes found (or the path kept a probe's setup
from completing, or a conformance probe's verdict is deviates or no-answer), 2 usage error,
3 a probe or the tool failed, 130/143 interrupted.""",
)
@click.argument("target", required=False)
@click.option("-p", "--port", default=80, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--probe",
    "probes",
    multiple=True,
    metavar="NAME|FILE",
    shell_complete=complete_probe,
    help="A probe shipped with mbtest or a probe file (default: the path probes).",
)
@click.option(
    "--suite",
    type=click.Choice(["path", "conformance"]),
    default=None,
    help="Every probe of a suite: path (the default run) or conformance (what the target "
    "does in RFC 8684's situations: fallback, MP_FAIL, resets).",
)
@click.option("-m", "--max-ttl", default=30, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "-t",
    "--timeout",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.05, 30),
    help="Longest wait for answers after a round of probes (per try with --serial).",
)
@click.option(
    "--tries",
    default=3,
    show_default=True,
    type=click.IntRange(1, 10),
    help="Rounds for silent hops (tries per TTL with --serial).",
)
@click.option("-4", "ipv4", is_flag=True, help="Probe over IPv4.")
@click.option("-6", "ipv6", is_flag=True, help="Probe over IPv6.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON line per probe as it ends (an mbtest.probe/2 document each).",
)
@click.option("-n", "numeric", is_flag=True, help="No reverse DNS names for routers.")
@click.option("--serial", is_flag=True, help="One TTL at a time, as traceroute does (slower).")
@click.option("-o", "--out", "out_file", default=None, help="Also write the JSON result here.")
@click.option("--html", "html_file", default=None, help="Also write an HTML report here.")
@click.option(
    "--from",
    "from_node",
    default=None,
    metavar="NODE",
    help="Run inside this node of a testbed brought up with topo up.",
)
@click.option("--testbed", "run_id", default=None, help="Which testbed (default: the only one).")
@click.option(
    "--server",
    "server",
    default=None,
    metavar="HOST:PORT",
    help="The control channel of an mbtest serve on the target: what reached it, and what it "
    "sent back, is diffed with what was sent and received.",
)
@click.option(
    "--secret-file",
    default=None,
    metavar="FILE",
    help="The secret shared with mbtest serve (else $MBTEST_SERVE_SECRET).",
)
@click.option(
    "--targets",
    "targets_file",
    default=None,
    metavar="FILE|-",
    help="A campaign: one target a line (host, host,port, [v6]:port or JSON with host and "
    "port); a compact JSON line per target as each ends.",
)
@click.option("-w", "--workers", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Targets in flight at once (with --targets).")  # fmt: skip
@click.option("--pps", default=100.0, show_default=True, type=click.FloatRange(1, 100000),
              help="Packets a second for the whole campaign, all workers together.")  # fmt: skip
@click.option("--resume", is_flag=True,
              help="With --targets and -o: skip the targets already written there.")  # fmt: skip
@click.option("--pcap", "pcap_dir", default=None, metavar="DIR",
              help="Write every packet sent and every answer to DIR/TARGET_PORT.pcap, a file "
              "per target.")  # fmt: skip
@click.option("--list", "list_probes", is_flag=True, help="List the probes and exit.")
@no_fail_option
def probe_command(
    target,
    port,
    probes,
    suite,
    max_ttl,
    timeout,
    tries,
    ipv4,
    ipv6,
    as_json,
    numeric,
    serial,
    out_file,
    html_file,
    from_node,
    run_id,
    server,
    secret_file,
    targets_file,
    workers,
    pps,
    resume,
    pcap_dir,
    list_probes,
    no_fail,
) -> None:
    """Send MPTCP probes toward TARGET with every TTL at once; say which field changed where."""
    from mbtest.probe import loader
    from mbtest.probe.campaign import pcap_path
    from mbtest.probe.run import ProbeOptions, run, write_outputs

    if list_probes:
        for name in loader.available():
            spec = loader.load(name)
            if as_json:
                doc = {"name": name, "suite": spec.suite, "summary": spec.summary}
                click.echo(jsondoc.dumps(doc))
            else:
                click.echo(f"{name:24} {spec.suite:11} {spec.summary}")
        return
    if targets_file and target:
        raise MbtestError("give either TARGET or --targets, not both")
    if targets_file and html_file:
        raise MbtestError("--html does not go with --targets: write -o FILE, then mbtest report")
    if resume and not (targets_file and out_file):
        raise MbtestError("--resume needs --targets and -o (the results written so far)")
    if not target and not targets_file:
        raise MbtestError("probe needs a TARGET host name or address (or --targets, or --list)")
    if ipv4 and ipv6:
        raise MbtestError("choose one of -4 and -6, not both")
    server_address, secret = None, None
    if server:
        from mbtest.endpoints.control import read_secret

        host, _, port_text = server.rpartition(":")
        digits = port_text.isascii() and port_text.isdigit()
        if not host or not digits or not 0 < int(port_text) < 65536:
            raise MbtestError(f"--server {server}: give HOST:PORT (IPv6: [ADDRESS]:PORT)")
        server_address = (host.strip("[]"), int(port_text))
        secret = read_secret(secret_file)
    if from_node:
        from mbtest.host import netns
        from mbtest.testbed import recorded

        namespace = recorded.node_namespace(from_node, run_id)
        netns.require_root()
        netns.enter(namespace)  # this process, and everything it starts, runs in the node
    options = ProbeOptions(
        port=port,
        probes=tuple(probes) + (loader.suite(suite) if suite else ()) or loader.DEFAULT,
        max_ttl=max_ttl,
        timeout=timeout,
        tries=tries,
        version=4 if ipv4 else 6 if ipv6 else None,
        resolve_names=not numeric,
        serial=serial,
        server=server_address,
        secret=secret,
    )
    from mbtest.host import paths

    for value, option in ((out_file, "-o"), (html_file, "--html")):
        if value:
            paths.output_file(value, option)
    if pcap_dir:
        paths.output_dir(pcap_dir, "--pcap")
        try:
            os.makedirs(pcap_dir, exist_ok=True)
        except OSError as e:
            raise paths.OutputError(f"--pcap {pcap_dir} cannot be created: {e.strerror}") from None

    if targets_file:
        from mbtest.cli.campaign import run_campaign

        command = " ".join(["mbtest", *sys.argv[1:]])
        status = run_campaign(
            targets_file, options, workers, pps, out_file, resume, command, pcap_dir
        )
        sys.exit(finish(status, no_fail))

    def stream(one: dict) -> None:
        click.echo(jsondoc.dumps(one))

    try:
        doc = run(
            target,
            options,
            command=" ".join(["mbtest", *sys.argv[1:]]),
            on_result=stream if as_json else None,
            pcap=pcap_path(pcap_dir, target, port) if pcap_dir else None,
        )
    except (Interrupted, Terminated) as e:
        if getattr(e, "document", None) is not None and (out_file or html_file):
            write_outputs(e.document, out_file, html_file)  # what was measured is kept
        raise
    unwritten = None
    try:
        write_outputs(doc, out_file, html_file)
    except paths.OutputError as e:  # the results are printed below all the same
        unwritten = e
    if unwritten is not None and not as_json:
        click.echo(jsondoc.dumps(doc, indent=2))
    elif not as_json:
        from mbtest.cli.ui import print_probes

        print_probes(doc)
        if html_file:
            click.echo(f"report: {html_file}")
    if unwritten is not None:
        raise unwritten
    from mbtest.probe.result import probe_status

    sys.exit(finish(probe_status(doc), no_fail))


COMMANDS = (probe_command,)

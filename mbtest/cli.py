"""Command line: parsing and printing only; the work is done by the modules it calls."""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
import time

import click

from mbtest import __version__
from mbtest.errors import MbtestError


class Terminated(MbtestError):
    """SIGTERM: raised in the main thread so that every owner tears down what it made."""

    exit_code = 143


class Interrupted(MbtestError):
    """Ctrl-C, raised as our own error so that click prints nothing of its own."""

    exit_code = 130


_MAIN_PID = os.getpid()


def _on_signal(signum, frame) -> None:
    if os.getpid() != _MAIN_PID:  # a forked helper (pyroute2 makes some): just go
        os._exit(128 + signum)
    if signum == signal.SIGINT:
        raise Interrupted("interrupted; everything this run created was removed")
    raise Terminated("terminated by SIGTERM; everything this run created was removed")


def new_report_dir(base: str = "reports") -> str:
    """reports/<timestamp>/, with reports/latest pointing at it."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(base, stamp)
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(base, f"{stamp}-{n}")
    os.makedirs(path)
    latest = os.path.join(base, "latest")
    if os.path.islink(latest) or not os.path.exists(latest):
        tmp = latest + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.basename(path), tmp)
        os.replace(tmp, latest)
    return path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mbtest")
def cli() -> None:
    """Find out what middleboxes do to Multipath TCP."""


@cli.command()
@click.argument("capture", type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per packet.")
@click.option(
    "--all", "all_packets", is_flag=True, help="Also list TCP packets without MPTCP options."
)
def decode(capture: str, as_json: bool, all_packets: bool) -> None:
    """Print every packet's MPTCP options from a pcap or pcapng CAPTURE."""
    from mbtest.observe.decode import decode_capture

    records = decode_capture(capture, only_mptcp=not all_packets)
    if as_json:
        out = sys.stdout
        for record in records:
            out.write(json.dumps(record.to_json()) + "\n")
        return
    from mbtest.ui import print_decoded

    print_decoded(records, title=capture)


@cli.command()
@click.option("-6", "ipv6", is_flag=True, help="Run the exchange over IPv6.")
@click.option("--checksum/--no-checksum", default=True, show_default=True, help="DSS checksums.")
@click.option(
    "--size",
    default=200_000,
    show_default=True,
    type=click.IntRange(1, 1 << 30),
    help="Bytes sent client to server (half as many back).",
)
@click.option("-o", "--out", "out_dir", default=None, help="Directory for the results.")
def selfcheck(ipv6: bool, checksum: bool, size: int, out_dir: str | None) -> None:
    """Check this machine and the codec: a real two-path MPTCP exchange, captured, decoded,
    compared field by field and its crypto recomputed."""
    from mbtest.selfcheck import run_selfcheck
    from mbtest.ui import print_selfcheck

    out_dir = out_dir or new_report_dir()
    document = run_selfcheck(out_dir, ip_version=6 if ipv6 else 4, checksums=checksum, size=size)
    print_selfcheck(document, out_dir)
    if not document["ok"]:
        sys.exit(1)


@cli.command()
def cleanup() -> None:
    """Remove namespaces and processes that a killed run left behind."""
    from mbtest.cleanup import cleanup as do_cleanup

    removed = do_cleanup()
    for line in removed:
        click.echo(f"removed {line}")
    if not removed:
        click.echo("nothing to remove")


def _params(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        out[key] = value
    return out


@cli.group()
def topo() -> None:
    """Build testbeds by hand: list, bring up, tear down, run traffic."""


def _middleboxes(values: tuple[str, ...]) -> dict[str, str]:
    from mbtest.middlebox import catalog

    out = {}
    for item in values:
        slot, sep, spec = item.partition("=")
        if not sep or not slot or not spec:
            raise click.BadParameter(
                f"{item!r} is not SLOT=NAME[:key=value,...]", param_hint="--middlebox"
            )
        catalog.build(spec)  # a bad behaviour or parameter is reported before anything is built
        out[slot] = spec
    return out


@cli.group()
def middlebox() -> None:
    """The middlebox catalog."""


@middlebox.command("ls")
def middlebox_ls() -> None:
    """List every middlebox behaviour."""
    from mbtest.middlebox.catalog import CATALOG

    for name, cls in sorted(CATALOG.items()):
        click.echo(f"{name:18} {cls.ENGINE:8} {cls.MODELS}")


@middlebox.command("show")
@click.argument("name")
def middlebox_show(name: str) -> None:
    """What behaviour NAME models, its parameters, what it does, what RFC 8684 expects."""
    from mbtest.middlebox import catalog
    from mbtest.middlebox.base import Behaviour

    cls = catalog.get(name)
    fast = " with its native fast path" if cls.native_args is not Behaviour.native_args else ""
    click.echo(f"{cls.NAME} ({cls.ENGINE}{fast})")
    click.echo(f"  models:   {cls.MODELS}")
    click.echo(f"  does:     {cls.DOES}")
    click.echo(f"  expected: {cls.EXPECTED} (RFC 8684 {cls.RFC})")
    click.echo("  parameters:" if cls.PARAMS else "  parameters: none")
    for p in cls.PARAMS:
        default = "+".join(p.default) if isinstance(p.default, tuple) else p.default
        click.echo(f"    {p.name}={default!s:<14} {p.help}; {p.describe()}")
    click.echo(
        f"  syntax:   {cls.NAME}"
        + (":" + ",".join(f"{p.name}=..." for p in cls.PARAMS) if cls.PARAMS else "")
    )


@topo.command("ls")
def topo_ls() -> None:
    """List the topologies and the testbeds that are up."""
    from mbtest.testbed import builder, topology

    for name in topology.available():
        t = topology.load(name)
        click.echo(f"{name:20} {t.description}")
    up = builder.running()
    click.echo(f"\n{len(up)} testbed(s) up" + (":" if up else ""))
    for state in up:
        click.echo(
            f"  {state['run_id']}  {state['topology']}  IPv{state['ip_version']}  "
            f"nodes: {', '.join(state['namespaces'])}"
        )


def _load_topology(name: str, params: tuple[str, ...]):
    from mbtest.testbed import topology

    return topology.load(name, _params(params))


@topo.command("up")
@click.argument("name")
@click.option("-6", "ipv6", is_flag=True, help="Install the IPv6 MPTCP endpoints.")
@click.option("--checksum/--no-checksum", default=None, help="DSS checksums (default: kernel's).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Topology parameter.")
@click.option("--middlebox", "middleboxes", multiple=True, metavar="SLOT=NAME[:k=v,...]",
              help="Start this middlebox in a slot; it runs until topo down.")  # fmt: skip
def topo_up(name: str, ipv6: bool, checksum: bool | None, params: tuple[str, ...],
            middleboxes: tuple[str, ...]) -> None:  # fmt: skip
    """Build topology NAME (or a .toml path) and leave it up."""
    from mbtest.testbed.builder import Testbed

    bed = Testbed(
        _load_topology(name, params),
        ip_version=6 if ipv6 else 4,
        checksums=checksum,
        persistent=True,
        middleboxes=_middleboxes(middleboxes),
    )
    with bed:
        pass
    click.echo(f"testbed {bed.run_id} ({bed.topology.name}) is up; enter a node with:")
    for node, ns in bed.namespaces.items():
        addresses = ", ".join(bed.topology.addresses(node))
        click.echo(
            f"  ip netns exec {ns} bash    # {node} ({bed.topology.nodes[node].role}): {addresses}"
        )
    for slot, process in bed.processes.items():
        click.echo(f"middlebox {process.behaviour.spec} in {slot}, logging to {process.log_path}")
    click.echo(f"tear it down with: mbtest topo down {bed.run_id}")


@topo.command("down")
@click.argument("run_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Tear down every testbed that is up.")
def topo_down(run_id: str | None, everything: bool) -> None:
    """Tear down testbed RUN_ID (the only one up, if not given)."""
    from mbtest.testbed import builder

    up = [s["run_id"] for s in builder.running()]
    if everything:
        targets = up
    elif run_id:
        targets = [run_id]
    elif len(up) == 1:
        targets = up
    else:
        raise MbtestError(f"{len(up)} testbeds are up: name one (mbtest topo ls) or use --all")
    for target in targets:
        removed = builder.tear_down_recorded(target)
        click.echo(f"testbed {target}: removed {len(removed)} namespaces")


@topo.command("run")
@click.argument("name")
@click.option("-6", "ipv6", is_flag=True, help="Run over IPv6.")
@click.option("--checksum/--no-checksum", default=False, show_default=True, help="DSS checksums.")
@click.option(
    "--bytes",
    "size",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(0, 1 << 40),
    help="Bytes per direction.",
)
@click.option(
    "--direction", type=click.Choice(["c2s", "s2c", "both"]), default="both", show_default=True
)
@click.option("--stall-timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 600))
@click.option("--deadline", default=60.0, show_default=True, type=click.FloatRange(1, 3600))
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Topology parameter.")
@click.option(
    "--middlebox",
    "middleboxes",
    multiple=True,
    metavar="SLOT=NAME:k=v,...",
    help="Put a middlebox behaviour in a slot (see mbtest middlebox ls).",
)
@click.option("-o", "--out", "out_dir", default=None, help="Directory for the results.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's JSON document.")
def topo_run(name, ipv6, checksum, size, direction, stall_timeout, deadline, params, middleboxes,
             out_dir, as_json):  # fmt: skip
    """Build NAME, run traffic between its MPTCP client and server, gather the evidence."""
    from mbtest.testbed.builder import Testbed
    from mbtest.testbed.run import RunConfig, run_traffic
    from mbtest.ui import print_run

    topology = _load_topology(name, params)
    config = RunConfig(
        ip_version=6 if ipv6 else 4,
        checksums=checksum,
        c2s_bytes=size if direction in ("c2s", "both") else 0,
        s2c_bytes=size if direction in ("s2c", "both") else 0,
        stall_timeout=stall_timeout,
        deadline=deadline,
    )
    placed = _middleboxes(middleboxes)
    out_dir = out_dir or new_report_dir()
    with Testbed(topology, ip_version=config.ip_version, checksums=checksum, middleboxes=placed,
                 log_dir=out_dir) as bed:  # fmt: skip
        doc = run_traffic(bed, config, out_dir)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        print_run(doc, out_dir)


@cli.command("run")
@click.argument("scenario_file", required=False)
@click.option("--topology", default="single-path", show_default=True)
@click.option("--middlebox", "middleboxes", multiple=True, metavar="SLOT=NAME:k=v,...")
@click.option("--expect", default="mptcp-unaffected", show_default=True, help="Expectation name.")
@click.option("--checksum/--no-checksum", default=False, show_default=True)
@click.option("-6", "ipv6", is_flag=True)
@click.option("-o", "--out", "out_dir", default=None)
@click.option("--quiet", is_flag=True, help="Only write the result (used by the matrix).")
def run_command(scenario_file, topology, middleboxes, expect, checksum, ipv6, out_dir, quiet):
    """Run one scenario (a TOML/JSON file, or the options) and print its verdict with evidence."""
    from mbtest.scenario import spec
    from mbtest.scenario.run import run_scenario
    from mbtest.ui import print_cell

    if scenario_file:
        scenario = spec.load(scenario_file)
    else:
        name = (
            "-".join([topology, *(m.split("=", 1)[-1].split(":")[0] for m in middleboxes)])
            or topology
        )
        placed = _middleboxes(middleboxes)
        scenario = spec.Scenario(name=name, topology=topology, middleboxes=placed, expect=expect,
                                 checksums=checksum, ip_version=6 if ipv6 else 4)  # fmt: skip
    out_dir = out_dir or new_report_dir()
    result = run_scenario(scenario, out_dir)
    if not quiet:
        print_cell(result, out_dir)
    sys.exit({"as-expected": 0, "deviates": 1, "inconclusive": 1}.get(result["verdict"], 2))


@cli.command("matrix")
@click.option("--topology", "topologies", multiple=True, help="Only cells on these topologies.")
@click.option(
    "--middlebox",
    "behaviours",
    multiple=True,
    help="Only cells of these behaviours ('none': baselines).",
)
@click.option(
    "--checksum", type=click.Choice(["on", "off", "both"]), default="both", show_default=True
)
@click.option("-j", "--jobs", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option("-o", "--out", "out_dir", default=None)
def matrix_command(topologies, behaviours, checksum, jobs, out_dir):
    """Run the grid of scenarios in parallel; write results.jsonl under reports/."""
    from mbtest import matrix
    from mbtest.middlebox.catalog import CATALOG
    from mbtest.testbed.builder import check_mptcp
    from mbtest.ui import matrix_progress, print_matrix

    for name in behaviours:
        if name != "none" and name not in CATALOG:
            raise MbtestError(f"unknown middlebox behaviour {name!r} (see mbtest middlebox ls)")
    check_mptcp()
    cells = matrix.select(matrix.default_grid(), topologies, behaviours, checksum)
    if not cells:
        raise MbtestError("no cell of the matrix matches these filters")
    out_dir = out_dir or new_report_dir()
    started = time.time()
    finished: list[dict] = []
    with matrix_progress(len(cells)) as on_done:
        try:
            matrix.run_cells(cells, out_dir, jobs, lambda r: (finished.append(r), on_done(r)))
        finally:  # on Ctrl-C too: what finished is kept
            results = sorted(finished, key=lambda r: r["dir"])
            write_results(out_dir, results, started, jobs)
    from mbtest.report.render import render

    with open(os.path.join(out_dir, "matrix.json")) as f:
        meta = json.load(f)
    meta["started_text"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    report = render([out_dir], os.path.join(out_dir, "report.html"), meta)
    print_matrix(results, out_dir)
    click.echo(f"report: {report}")
    sys.exit(matrix.exit_status(results))


def write_results(out_dir: str, results: list, started: float, jobs: int) -> None:
    with open(os.path.join(out_dir, "results.jsonl"), "w") as f:
        for result in results:
            f.write(json.dumps(result) + "\n")
    from mbtest import matrix

    meta = {"schema": matrix.SCHEMA, "started": started, "seconds": round(time.time() - started, 2),
            "jobs": jobs, "cells": len(results), "verdicts": matrix.summary(results),
            "command": " ".join(sys.argv), "kernel": os.uname().release}  # fmt: skip
    with open(os.path.join(out_dir, "matrix.json"), "w") as f:
        json.dump(meta, f, indent=2)


@cli.command("report")
@click.argument("results", nargs=-1, required=True)
@click.option(
    "-o", "--out", "out_file", default=None, help="HTML file (default: beside the first results)."
)
def report_command(results: tuple[str, ...], out_file: str | None) -> None:
    """Render matrix results (results.jsonl files or their directories) into one HTML file."""
    from mbtest.report.render import render

    first = (
        results[0] if os.path.isdir(results[0]) else os.path.dirname(os.path.abspath(results[0]))
    )
    meta_path = os.path.join(first, "matrix.json")
    meta = {}
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        meta["started_text"] = time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(meta.get("started", 0))
        )
    path = render(list(results), out_file or os.path.join(first, "report.html"), meta)
    click.echo(f"report: {path}")


@cli.command("probe")
@click.argument("target", required=False)
@click.option("-p", "--port", default=80, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--probe", "probes", multiple=True, metavar="NAME|FILE",
    help="A probe from probes/ or a probe file (default: all of probes/).",
)  # fmt: skip
@click.option("--max-ttl", default=30, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--timeout", default=2.0, show_default=True, type=click.FloatRange(0.05, 30),
    help="Longest wait for answers after a round of probes (per try with --serial).",
)  # fmt: skip
@click.option("--tries", default=3, show_default=True, type=click.IntRange(1, 10),
              help="Rounds for silent hops (tries per TTL with --serial).")  # fmt: skip
@click.option("-4", "ipv4", is_flag=True, help="Probe over IPv4.")
@click.option("-6", "ipv6", is_flag=True, help="Probe over IPv6.")
@click.option("--json", "as_json", is_flag=True, help="Print the schema-versioned JSON result.")
@click.option("-n", "numeric", is_flag=True, help="No reverse DNS names for routers.")
@click.option("--serial", is_flag=True, help="One TTL at a time, as traceroute does (slower).")
@click.option("-o", "--out", "out_file", default=None, help="Also write the JSON result here.")
@click.option("--html", "html_file", default=None, help="Also write an HTML report here.")
@click.option("--from", "from_node", default=None, metavar="NODE",
              help="Run inside this node of a testbed brought up with topo up.")  # fmt: skip
@click.option("--testbed", "run_id", default=None, help="Which testbed (default: the only one).")
@click.option("--list", "list_probes", is_flag=True, help="List the probes and exit.")
def probe_command(target, port, probes, max_ttl, timeout, tries, ipv4, ipv6, as_json, numeric,
                  serial, out_file, html_file, from_node, run_id, list_probes):  # fmt: skip
    """Send MPTCP probes toward TARGET with every TTL at once; say which field changed where."""
    from mbtest.probe import loader
    from mbtest.probe.run import ProbeOptions, run

    if list_probes:
        for name in loader.available():
            click.echo(f"{name:15} {loader.load(name).summary}")
        return
    if not target:
        raise MbtestError("probe needs a TARGET host name or address (or --list)")
    if ipv4 and ipv6:
        raise MbtestError("choose one of -4 and -6, not both")
    if from_node:
        _enter_testbed_node(from_node, run_id)
    options = ProbeOptions(
        port=port, probes=tuple(probes) or loader.DEFAULT, max_ttl=max_ttl, timeout=timeout,
        tries=tries, version=4 if ipv4 else 6 if ipv6 else None, resolve_names=not numeric,
        serial=serial,
    )  # fmt: skip
    doc = run(target, options, command=" ".join(["mbtest", *sys.argv[1:]]))
    if out_file:
        with open(out_file, "w") as f:
            json.dump(doc, f, indent=2)
    if html_file:
        from mbtest.report.render import render

        data_file = out_file or os.path.splitext(html_file)[0] + ".json"
        if not out_file:
            with open(data_file, "w") as f:
                json.dump(doc, f, indent=2)
        render([data_file], html_file, {"command": doc["command"]})
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        from mbtest.ui import print_probes

        print_probes(doc)
        if html_file:
            click.echo(f"report: {html_file}")
    failed = [p for p in doc["probes"] if p.get("error") and not p.get("setup_failed")]
    sys.exit(2 if failed else 0)


def _enter_testbed_node(node: str, run_id: str | None) -> None:
    """Move this process into a testbed node's namespace (everything it starts follows)."""
    from mbtest.testbed import builder, netns

    beds = [b for b in builder.running() if run_id in (None, b["run_id"])]
    if not beds:
        raise MbtestError("no testbed is up" + (f" with run id {run_id}" if run_id else "")
                          + " (start one with mbtest topo up)")  # fmt: skip
    if len(beds) > 1:
        ids = ", ".join(b["run_id"] for b in beds)
        raise MbtestError(f"several testbeds are up ({ids}): choose one with --testbed")
    namespaces = beds[0].get("namespaces", {})
    if node not in namespaces:
        raise MbtestError(f"testbed {beds[0]['run_id']} has no node {node!r} "
                          f"(nodes: {', '.join(namespaces)})")  # fmt: skip
    netns.require_root()
    netns.enter(namespaces[node])


def main() -> None:
    """Entry point: every MbtestError is one line on stderr and a non-zero exit."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        cli.main(standalone_mode=False)
    except MbtestError as e:
        click.echo(f"mbtest: {e}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("mbtest: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()

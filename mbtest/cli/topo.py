"""mbtest topo: list, bring up, tear down testbeds, and run traffic across one."""

from __future__ import annotations

import os
import sys

import click

from mbtest import jsondoc
from mbtest.cli.options import (
    complete_placement,
    complete_topology,
    key_values,
    middleboxes,
    say_if_no_fast_path,
)
from mbtest.errors import MbtestError


@click.group()
def topo() -> None:
    """Build testbeds by hand: list, bring up, tear down, run traffic."""


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@topo.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per topology and testbed.")
def topo_ls(as_json: bool) -> None:
    """List the topologies and the testbeds that are up (owner, age, middleboxes)."""
    from mbtest.testbed import recorded, topology

    if as_json:
        for name in topology.available():
            t = topology.load(name)
            slots = [n.name for n in t.slots]
            line = {"topology": name, "description": t.description, "slots": slots}
            click.echo(jsondoc.dumps(line))
        for bed in recorded.up():
            owner = bed.owner
            line = {
                "testbed": bed.run_id,
                "topology": bed.topology,
                "ip_version": owner.about.get("ip_version"),
                "owner": {"pid": owner.pid, "topo_up": owner.persistent},
                "age_seconds": round(owner.age, 1),
                "middleboxes": bed.middleboxes,
                "namespaces": bed.namespaces,
            }
            click.echo(jsondoc.dumps(line))
        return
    for name in topology.available():
        t = topology.load(name)
        click.echo(f"{name:20} {t.description}")
    up = recorded.up()
    click.echo(f"\n{len(up)} testbed(s) up" + (":" if up else ""))
    for bed in up:
        owner = bed.owner
        who = "topo up (until topo down)" if owner.persistent else f"pid {owner.pid}"
        boxes = ", ".join(f"{slot}={spec}" for slot, spec in bed.middleboxes.items()) or "none"
        click.echo(
            f"  {bed.run_id}  {bed.topology}  IPv{owner.about.get('ip_version', '?')}  "
            f"owner: {who}  age: {_age(owner.age)}  middleboxes: {boxes}  "
            f"nodes: {', '.join(bed.namespaces)}"
        )


@topo.command("up")
@click.argument("name", shell_complete=complete_topology)
@click.option("-6", "ipv6", is_flag=True, help="Install the IPv6 MPTCP endpoints.")
@click.option("--checksum/--no-checksum", default=None, help="DSS checksums (default: kernel's).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Topology parameter.")
@click.option(
    "--middlebox",
    "placed",
    multiple=True,
    shell_complete=complete_placement,
    metavar="SLOT=NAME[:k=v,...]",
    help="Start this middlebox in a slot; it runs until topo down.",
)
@click.option(
    "--listen",
    "listen_port",
    type=click.IntRange(1, 65535),
    default=None,
    metavar="PORT",
    help="Start an MPTCP server on the server node (IPv4 and IPv6) that accepts and reads: "
    "a target for probes and hand-made traffic.",
)
@click.option(
    "--kernel",
    "kernel",
    default="host",
    show_default=True,
    metavar="VERSION",
    help="Run the server in a VM on this cached kernel (mbtest kernel fetch VERSION); a "
    'topology file can name a kernel per endpoint node (kernel = "6.1").',
)
@click.option("--json", "as_json", is_flag=True, help="Print the testbed as one JSON line.")
def topo_up(
    name: str,
    ipv6: bool,
    checksum: bool | None,
    params: tuple[str, ...],
    placed: tuple[str, ...],
    listen_port: int | None,
    kernel: str,
    as_json: bool,
) -> None:
    """Build topology NAME (or a .toml path) and leave it up.

    \b
    Examples:
      sudo mbtest topo up single-path
      sudo mbtest topo up long-path --param slot_at=6 --middlebox slot=nat --json
      sudo mbtest probe 10.1.4.2 --from client
      sudo mbtest topo up single-path --listen 8080
      sudo mbtest probe 10.1.4.2 -p 8080 --from client --suite conformance
      sudo mbtest topo down
      sudo mbtest topo up single-path --listen 8080 --kernel 6.1   (the server on Linux 6.1)"""
    from mbtest.testbed import topology
    from mbtest.testbed.builder import Testbed

    specs = middleboxes(placed)
    say_if_no_fast_path(list(specs.values()))
    loaded = topology.load(name, key_values(params))
    guests = {n.name: n.kernel for n in loaded.nodes.values() if n.kernel}  # (the file's)
    if kernel != "host":
        guests[loaded.server.name] = kernel  # (one sentence if the topology has none)
    server_in_vm = any(loaded.nodes[n].role == "server" for n in guests)
    bed = Testbed(
        loaded,
        ip_version=6 if ipv6 else 4,
        checksums=checksum,
        middleboxes=specs,
        guests=guests,
        listen_port=listen_port if server_in_vm else None,
    )
    with bed:  # torn down if anything stops it before it is handed over
        lines = [f"testbed {bed.run_id} ({bed.topology.name}) is up; enter a node with:"]
        for node, ns in bed.namespaces.items():
            addresses = ", ".join(bed.topology.addresses(node))
            role = bed.topology.nodes[node].role
            lines.append(f"  ip netns exec {ns} bash    # {node} ({role}): {addresses}")
        for slot, process in bed.processes.items():
            lines.append(f"middlebox {process.spec.text} in {slot}, logging to {process.log_path}")
        listening = None
        if bed.vm is not None:
            lines.append(
                f"{', '.join(sorted(bed.vm_nodes))} run Linux {bed.vm.release} in a VM "
                f"(console: {bed.vm.state / 'console.log'})"
            )
        if listen_port is not None and server_in_vm:
            server = loaded.server.name
            listening = {"node": server, "port": listen_port, "kernel": guests[server]}
            lines.append(f"an MPTCP server listens in the VM on port {listen_port} (IPv4, IPv6)")
        elif listen_port is not None:
            from mbtest.endpoints import listener

            server = bed.topology.server.name
            listener.start(bed.ns(server), listen_port)
            listening = {"node": server, "port": listen_port}
            lines.append(f"an MPTCP server listens on {server} port {listen_port} (IPv4, IPv6)")
        generated = None
        if bed.truth_path is not None:
            folder = os.path.dirname(bed.truth_path)
            generated = {
                "ground_truth": bed.truth_path,
                "targets": {v: os.path.join(folder, f"targets-v{v}.txt") for v in ("4", "6")},
                "logs": folder,
            }
            lines.append(f"ground truth: {bed.truth_path} (middlebox logs beside it)")
            lines.append(
                f"targets: {generated['targets']['4']} and {generated['targets']['6']}; "
                f"probe them with: mbtest probe --targets FILE --from client -o results.jsonl"
            )
        lines.append(f"tear it down with: mbtest topo down {bed.run_id}")
        described = {
            "testbed": bed.run_id,
            "topology": bed.topology.name,
            "ip_version": 6 if ipv6 else 4,
            "nodes": {
                node: {
                    "namespace": ns,
                    "role": bed.topology.nodes[node].role,
                    "addresses": bed.topology.addresses(node),
                    "enter": f"ip netns exec {ns} bash",
                }
                for node, ns in bed.namespaces.items()
            },
            "middleboxes": {
                slot: {"behaviour": p.spec.text, "log": p.log_path}
                for slot, p in bed.processes.items()
            },
            "listening": listening,
            "generated": generated,
            "down": f"mbtest topo down {bed.run_id}",
        }
        bed.hand_over()  # from here on it is the user's, until topo down
    click.echo(jsondoc.dumps(described) if as_json else "\n".join(lines))


@topo.command("judge")
@click.argument("results", type=click.Path(dir_okay=False))
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="The judgement as one JSON line.")
def topo_judge(results: str, run_id: str | None, as_json: bool) -> None:
    """Judge a campaign's RESULTS against the ground truth of generated testbed RUN_ID (the
    only one up, if not given): recall, precision, what was said not observable, hops unlike
    the truth. Exit 1 when anything falls short.

    \b
    Example:
      sudo mbtest topo up internet --param targets=200
      sudo mbtest probe --targets /run/mbtest/RUN/targets-v4.txt --from client -o c.jsonl
      sudo mbtest topo judge c.jsonl"""
    import json

    from mbtest.middlebox.log import logs_in
    from mbtest.probe.groundtruth import judge
    from mbtest.testbed import recorded

    bed = recorded.find(run_id)
    folders = [f for f in bed.owner.folders if os.path.exists(os.path.join(f, "ground-truth.json"))]
    if not folders:
        raise MbtestError(f"testbed {bed.run_id} ({bed.topology}) has no ground truth: "
                          "only generated topologies (internet) have one")  # fmt: skip
    folder = folders[0]
    try:
        with open(os.path.join(folder, "ground-truth.json")) as f:
            truth = json.load(f)
    except (OSError, ValueError) as e:
        raise MbtestError(f"the ground truth of testbed {bed.run_id} cannot be read: {e}") from None
    logs = logs_in(folder)
    docs = _json_lines(results)
    verdict = judge(truth, [d for d in docs if d is not None], logs)
    verdict.unreadable += [f"a line of {results} is not a JSON object"] * docs.count(None)
    if as_json:
        click.echo(jsondoc.dumps(verdict.as_dict()))
    else:
        click.echo(verdict.summary())
        for label in ("missed", "false_positives", "unsaid", "hop_errors", "unreadable",
                      "missing", "unknown", "probe_errors", "outcome_errors"):  # fmt: skip
            for line in getattr(verdict, label):
                click.echo(f"  {label.replace('_', ' ')}: {line}")
    sys.exit(1 if verdict.shortfalls else 0)


def _json_lines(path: str) -> list:
    """The JSON objects of a file, one per line; None in the place of a line that is not
    one (for the judgement to count)."""
    import json

    out: list = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except (ValueError, RecursionError):
                    doc = None
                out.append(doc if isinstance(doc, dict) else None)
    except OSError as e:
        raise MbtestError(f"cannot read {path}: {e.strerror}") from None
    return out


@topo.command("down")
@click.argument("run_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Tear down every testbed topo up made.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per testbed torn down.")
def topo_down(run_id: str | None, everything: bool, as_json: bool) -> None:
    """Tear down testbed RUN_ID (the only one up, if not given)."""
    from mbtest.testbed import recorded

    if everything:
        targets = [b.run_id for b in recorded.up() if b.owner.persistent]
    else:
        targets = [recorded.find(run_id).run_id]
    for target in targets:
        removed = recorded.tear_down(target)
        if as_json:
            click.echo(jsondoc.dumps({"testbed": target, "removed_namespaces": removed}))
        else:
            click.echo(f"testbed {target}: removed {len(removed)} namespaces")


@topo.command("run")
@click.argument("name", shell_complete=complete_topology)
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
    "placed",
    multiple=True,
    shell_complete=complete_placement,
    metavar="SLOT=NAME:k=v,...",
    help="Put a middlebox behaviour in a slot (see mbtest middlebox ls).",
)
@click.option(
    "-o", "--out", "out_dir", default=None, help="Results folder (default: ./reports/<time>/)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the run's document as one JSON line.")
def topo_run(
    name,
    ipv6,
    checksum,
    size,
    direction,
    stall_timeout,
    deadline,
    params,
    placed,
    out_dir,
    as_json,
) -> None:
    """Build NAME, run traffic between its MPTCP client and server, gather the evidence."""
    from mbtest.cli.ui import print_run, say_where
    from mbtest.experiment.output import results_dir
    from mbtest.experiment.run import RunConfig, run_on_topology
    from mbtest.testbed import topology
    from mbtest.testbed.builder import check_mptcp

    topo_ = topology.load(name, key_values(params))
    config = RunConfig(
        ip_version=6 if ipv6 else 4,
        checksums=checksum,
        c2s_bytes=size if direction in ("c2s", "both") else 0,
        s2c_bytes=size if direction in ("s2c", "both") else 0,
        stall_timeout=stall_timeout,
        deadline=deadline,
    )
    placed_specs = middleboxes(placed)
    say_if_no_fast_path(list(placed_specs.values()))
    check_mptcp()  # (before a results folder is made or named)
    with results_dir(out_dir) as out_dir:
        if not as_json:
            say_where(out_dir, stderr=False)
        doc = run_on_topology(topo_, config, placed_specs, out_dir)
    if as_json:
        click.echo(jsondoc.dumps(doc))
    else:
        print_run(doc, out_dir)


COMMANDS = (topo,)

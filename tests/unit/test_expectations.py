"""The expectation table and the grid are data: every name they use must exist, checked
before anything runs (a mistyped fact would otherwise read as 'inconclusive' at run time)."""

import ast
from pathlib import Path

from mbtest.experiment import grid
from mbtest.middlebox.catalog import CATALOG
from mbtest.verdict import expect, facts

FACTS_SOURCE = Path(facts.__file__)


def produced_facts() -> set[str]:
    """Fact names the producers in facts.py can add: first arguments of ``.add(...)`` and the
    names listed in COUNTED (added in a loop)."""
    tree = ast.parse(FACTS_SOURCE.read_text())
    constants = {
        node.targets[0].id: node.value.args[0].value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", "") == "_fact"
    }
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add"
        ):
            first = node.args[0]
            if isinstance(first, ast.Name) and first.id in constants:
                names.add(constants[first.id])
            elif isinstance(first, ast.IfExp):
                names |= {constants[n.id] for n in (first.body, first.orelse)}
    names |= {name for name, _ in facts.COUNTED}
    return names


def test_every_declared_fact_can_be_produced():
    assert set(facts.FACTS) <= produced_facts()


def test_every_expectation_uses_produced_facts_and_known_operators():
    produced = produced_facts()
    for expectation in expect.EXPECTATIONS.values():
        for name, op, _ in expectation.checks:
            assert name in facts.FACTS and name in produced, (expectation.name, name)
            assert op in expect.OPERATORS, (expectation.name, op)


def test_every_cell_names_an_expectation_and_a_topology_slot():
    from mbtest.testbed import topology

    for scenario in grid.default_grid():
        assert scenario.expect in expect.EXPECTATIONS, scenario.name
        topo = topology.load(scenario.topology)
        for slot in scenario.middleboxes:
            assert slot in {n.name for n in topo.slots}, (scenario.name, slot)


def test_the_grid_has_every_behaviour_and_unique_names():
    cells = grid.default_grid()
    names = [c.name for c in cells]
    assert len(names) == len(set(names))
    in_traffic = {name for name, cls in CATALOG.items() if cls.TOUCHES_TRAFFIC}
    assert {n for c in cells for n in c.behaviours} == in_traffic | {"none"}
    assert in_traffic != set(CATALOG)  # (the ICMP quote trimmer of emulated routers)
    v4 = [c for c in cells if c.ip_version == 4]
    v6 = {c.name for c in cells if c.ip_version == 6}
    assert len(v4) == 45
    # every cell has its IPv6 twin but where IPv6 has no such thing (an IPv4 ID, PORT)
    assert {c.name for c in v4 if f"{c.name}-ipv6" not in v6} == {
        "ipid-rewrite",
        "ftp-alg-csum",
        "ftp-alg-nocsum",
    }


def test_no_expectation_waits_for_a_timer_longer_than_its_cell_holds():
    """An event on a timer (ADD_ADDR retransmission) must be able to happen in the cell."""
    for cell in grid.default_grid():
        timer = expect.EXPECTATIONS[cell.expect].timer
        if timer is None:
            continue
        seconds = float(cell.sysctls.get(timer.node, {}).get(timer.sysctl, timer.default))
        assert cell.hold > seconds, (
            f"{cell.name}: {timer.what} takes {seconds} s, held {cell.hold} s"
        )
        assert cell.hold < cell.deadline


def test_the_timer_check_can_fail():
    cell = next(c for c in grid.default_grid() if c.name == "add-addr-echo-dropped")
    timer = expect.EXPECTATIONS[cell.expect].timer
    assert timer is not None and timer.default > cell.hold  # without its sysctl: impossible

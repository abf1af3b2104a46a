"""Rules added and removed in batches are given to iptables-restore exactly: one table
section per table, arguments with spaces quoted, and one by one when a batch cannot be."""

import subprocess

from mbtest.host import netfilter


class Recorder:
    def __init__(self, fail_restore=False):
        self.calls, self.fail_restore = [], fail_restore

    def __call__(self, argv, **kwargs):
        self.calls.append((argv, kwargs.get("input")))
        code = 1 if self.fail_restore and argv[0].endswith("-restore") else 0
        return subprocess.CompletedProcess(argv, code, "", "iptables-restore: line 2 failed")


def test_a_batch_is_one_restore_per_tool_with_a_section_per_table(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(netfilter.subprocess, "run", recorder)
    owner = netfilter.RuleOwner()
    owner.add_many(
        "iptables",
        [
            ["-I", "OUTPUT", "-p", "tcp", "--dport", "80", "-j", "DROP"],
            ["-t", "nat", "-A", "POSTROUTING", "-m", "comment", "--comment", "a b", "-j", "ACCEPT"],
        ],
    )
    ((argv, text),) = recorder.calls
    assert argv == ["iptables-restore", "-w", "--noflush"]
    assert text == (
        "*filter\n-I OUTPUT -p tcp --dport 80 -j DROP\nCOMMIT\n"
        '*nat\n-A POSTROUTING -m comment --comment "a b" -j ACCEPT\nCOMMIT\n'
    )
    owner.remove_all()
    argv, text = recorder.calls[1]
    assert text == (
        '*nat\n-D POSTROUTING -m comment --comment "a b" -j ACCEPT\nCOMMIT\n'
        "*filter\n-D OUTPUT -p tcp --dport 80 -j DROP\nCOMMIT\n"
    )
    assert owner.installed == []


def test_a_removal_batch_that_fails_is_done_rule_by_rule(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(netfilter.subprocess, "run", recorder)
    owner = netfilter.RuleOwner()
    owner.add_many("ip6tables", [["-I", "OUTPUT", "-j", "DROP"], ["-I", "INPUT", "-j", "DROP"]])
    recorder.fail_restore = True  # e.g. someone removed one of them already
    owner.remove_all()
    singles = [argv for argv, _ in recorder.calls[2:]]
    assert singles == [
        ["ip6tables", "-w", "-D", "INPUT", "-j", "DROP"],
        ["ip6tables", "-w", "-D", "OUTPUT", "-j", "DROP"],
    ]


def test_an_argument_with_a_quote_is_added_alone(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(netfilter.subprocess, "run", recorder)
    owner = netfilter.RuleOwner()
    owner.add_many("iptables", [["-I", "OUTPUT", "-m", "comment", "--comment", 'say "hi"']])
    ((argv, text),) = recorder.calls
    assert argv[:2] == ["iptables", "-w"] and text is None
    assert owner.installed == [
        ("iptables", ["-I", "OUTPUT", "-m", "comment", "--comment", 'say "hi"'])
    ]

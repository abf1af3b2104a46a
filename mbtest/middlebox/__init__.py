"""Middleboxes: configurable processes in a testbed's slots that do to packets what
firewalls, NATs, normalisers, ALGs and proxies do, and log every change they make."""

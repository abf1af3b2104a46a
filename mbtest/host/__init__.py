"""Plumbing of the machine: network namespaces, links, firewall rules, processes and signals,
who owns what, and removing what dead owners left."""

"""Network-namespace testbeds: namespaces, links, addresses, routes, cleanup."""

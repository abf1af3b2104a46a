"""Real kernel MPTCP endpoints: path-manager configuration, sockets, traffic."""

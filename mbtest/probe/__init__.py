"""Hop-by-hop probing: crafted segments sent with every TTL at once, ICMP quotes diffed."""

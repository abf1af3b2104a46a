"""Pure packet views and edits at the byte level: IP/TCP headers, options, checksums, names,
ICMP quotes, and pcap/pcapng reading."""

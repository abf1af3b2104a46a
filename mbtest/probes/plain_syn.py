"""SYN with the usual options only (MSS, SACK, timestamps, window scale): the baseline."""

NAME = "plain_syn"


def build(session):
    # What a path does to these options it does to every TCP connection, MPTCP or not:
    # comparing with the MPTCP probes tells MPTCP-specific treatment apart.
    return session.syn()

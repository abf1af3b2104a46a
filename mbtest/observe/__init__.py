"""Evidence from runs: captures decoded into MPTCP option records and timelines."""

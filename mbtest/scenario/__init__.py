"""Scenarios: a topology, middleboxes in slots, endpoint configuration and traffic; their run,
the observed facts, the RFC's expectation and the verdict."""

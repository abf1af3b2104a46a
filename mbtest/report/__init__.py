"""Self-contained HTML interference reports."""

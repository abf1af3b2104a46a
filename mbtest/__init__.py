"""mbtest: find out what middleboxes do to Multipath TCP."""

__version__ = "0.1.0"

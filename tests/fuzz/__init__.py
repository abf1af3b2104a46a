"""Fuzzing what reads bytes from outside: packets through every userspace behaviour, the
kernel observer and the probe's reply and quote handling; capture files through the reader
and the decoder. Any exception other than the project's own is a finding."""

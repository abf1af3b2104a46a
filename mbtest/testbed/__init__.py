"""Network-namespace testbeds: topology files, the builder, and the testbeds recorded as up."""

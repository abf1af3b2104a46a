"""The behaviours, one module per family; every Behaviour subclass with a NAME defined in a
module here is in the catalog (``mbtest.middlebox.catalog``)."""

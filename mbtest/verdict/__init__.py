"""What RFC 8684 expects and what was observed: facts named once, expectations as data,
the verdict that compares them."""

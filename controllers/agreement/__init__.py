"""Master agreement: version parsing, label selectors and the agreement rule. Pure: no I/O, no clock."""

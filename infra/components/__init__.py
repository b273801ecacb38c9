"""One ComponentResource per AWS concern."""

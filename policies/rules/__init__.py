"""Rule families. Each module appends its rules, in id order, to its own RULES list."""

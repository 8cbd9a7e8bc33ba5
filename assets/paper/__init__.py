"""The signal log and the paper books (issue 16)."""

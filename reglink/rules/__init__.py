"""The two alert rules of CONTRACT.md section 2, as pure functions and small state objects."""

"""Answers and rendering: bad answers refused, what every render holds, its locks, its message."""

"""The matrix's gates: the covering array of answer sets, each render's gates, its API fuzzed."""

"""Benchmarks and quality studies (run as scripts; shipped in the wheel as ``clipapro._scripts``)."""

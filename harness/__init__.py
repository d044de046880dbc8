"""Benchmark harness for sequential recommendation: one data protocol, one evaluator, one trainer."""

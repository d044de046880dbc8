"""Shared operations, cheaper than their textbook forms and equal in function.

The lowest layer of the code: ``dreamrec/`` and ``baselines/`` import from here, nothing here
imports from them. :mod:`kernels.ops` holds the dropout, the attention at one query position
and the helpers both sides use.
"""

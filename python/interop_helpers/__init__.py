"""Python-side helpers that the Interop .NET host loads into its embedded interpreter.

The package is importable on its own (the pytest suite under python/tests runs it without .NET).
"""

__version__ = "0.1.0"

"""Example Python code that the .NET tests and docs call through a PythonSession."""

"""Python-side helpers that the Interop .NET host loads into its embedded interpreter.

The package is importable on its own (the pytest suite under python/tests runs it without .NET).
"""

try:
    # Written by the .NET build from the library's version (the one version, Directory.Build.props); the host checks
    # at start-up that it matches the assembly, so a helper folder from another build is refused with the fix.
    from ._version import version as __version__
except ImportError:  # the source tree, as pytest uses it
    __version__ = "0+source"

namespace Interop.Errors;

/// <summary>The base of every exception this library throws on purpose.</summary>
public class InteropException : Exception
{
    /// <summary>Creates the exception with a message that names the problem and the fix.</summary>
    public InteropException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public InteropException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>No CPython interpreter was found where the runtime looked.</summary>
public sealed class PythonNotFoundException : InteropException
{
    /// <summary>Creates the exception; <paramref name="searched"/> lists each place that was tried.</summary>
    public PythonNotFoundException(IReadOnlyList<string> searched)
        : base("No Python interpreter was found. Looked at: " + string.Join("; ", searched) + ". " +
               "Fix: install CPython 3.10 or later (Debian/Ubuntu: apt-get install python3 libpython3-dev), " +
               "or point the runtime at one with PythonOptions.PythonExecutable, the INTEROP_PYTHON variable, " +
               "PYTHONNET_PYDLL (a libpython path) or an activated virtual environment.")
    {
        Searched = searched;
    }

    /// <summary>Each location that was tried, with what was found there.</summary>
    public IReadOnlyList<string> Searched { get; }
}

/// <summary>The interpreter exists but has no shared libpython to embed (a static build).</summary>
public sealed class PythonSharedLibraryNotFoundException : InteropException
{
    /// <summary>Creates the exception for <paramref name="executable"/> (Python <paramref name="version"/>).</summary>
    public PythonSharedLibraryNotFoundException(string executable, string version, string looked)
        : base($"Python {version} at '{executable}' has no shared libpython (looked for {looked}). Embedding needs " +
               $"libpython{version}.so. Fix: on Debian/Ubuntu apt-get install libpython{version}; with pyenv rebuild " +
               "with PYTHON_CONFIGURE_OPTS=--enable-shared; or choose another interpreter (PythonOptions.PythonExecutable / INTEROP_PYTHON).")
    {
        Executable = executable;
    }

    /// <summary>The interpreter that was probed.</summary>
    public string Executable { get; }
}

/// <summary>The interpreter's version is outside the range this library supports.</summary>
public sealed class PythonVersionNotSupportedException : InteropException
{
    /// <summary>Creates the exception for <paramref name="version"/>.</summary>
    public PythonVersionNotSupportedException(Version version, string where, Version minimum, Version maximum)
        : base($"Python {version.ToString(2)} at '{where}' is not supported: Interop embeds CPython " +
               $"{minimum.ToString(2)} to {maximum.ToString(2)}. Fix: install a supported CPython and point the runtime at it " +
               "(PythonOptions.PythonExecutable or INTEROP_PYTHON).")
    {
        Version = version;
    }

    /// <summary>The version that was found.</summary>
    public Version Version { get; }
}

/// <summary>A Python package the operation needs (numpy, torch) is not importable by the embedded interpreter.</summary>
public sealed class PythonPackageMissingException : InteropException
{
    /// <summary>Creates the exception for <paramref name="package"/> missing from <paramref name="executable"/>.</summary>
    public PythonPackageMissingException(string package, string? executable)
        : base($"The Python package '{package}' is not installed for {executable ?? "the embedded Python"}. Fix: " +
               $"apt-get install --no-install-recommends python3-{package}   (Debian/Ubuntu system Python), or " +
               $"{executable ?? "python3"} -m pip install {PipName(package)}   (a virtual environment or your own Python).")
    {
        Package = package;
    }

    /// <summary>The import name of the missing package.</summary>
    public string Package { get; }

    private static string PipName(string package) => package switch
    {
        "numpy" => "\"numpy>=1.24\"",
        "torch" => "\"torch>=1.13\"",
        _ => package,
    };
}

/// <summary>Python raised an exception; carries its type name, message and traceback.</summary>
public sealed class PythonErrorException : InteropException
{
    /// <summary>Creates the exception from the parts of a Python exception.</summary>
    public PythonErrorException(string pythonType, string pythonMessage, string traceback, Exception? inner = null)
        : this(pythonType, pythonMessage, traceback, inner, null)
    {
    }

    /// <summary>Creates the exception with a <paramref name="hint"/> from the .NET side (e.g. which .NET type made an argument's dtype).</summary>
    public PythonErrorException(string pythonType, string pythonMessage, string traceback, Exception? inner, string? hint)
        : base($"{pythonType}: {pythonMessage}" + (hint is null ? "" : Environment.NewLine + "Hint: " + hint), inner)
    {
        PythonType = pythonType;
        PythonMessage = pythonMessage;
        PythonTraceback = traceback;
        Hint = hint;
    }

    /// <summary>What the .NET side adds to the Python error (null when nothing): e.g. that a dtype came from a C# <c>double</c>.</summary>
    public string? Hint { get; }

    /// <summary>The exception's qualified Python type name, e.g. <c>ValueError</c> or <c>numpy.linalg.LinAlgError</c>.</summary>
    public string PythonType { get; }

    /// <summary><c>str(exception)</c>.</summary>
    public string PythonMessage { get; }

    /// <summary>The formatted Python traceback (<c>traceback.format_exception</c>), most recent call last.</summary>
    public string PythonTraceback { get; }

    /// <inheritdoc/>
    public override string ToString() => base.ToString() + Environment.NewLine + "Python traceback:" + Environment.NewLine + PythonTraceback;
}

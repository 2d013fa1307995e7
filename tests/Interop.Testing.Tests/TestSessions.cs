using Interop.Embedding;
using Interop.Isolated;
using Interop.Sessions;

namespace Interop.Testing.Tests;

/// <summary>Isolated sessions on the interpreter under test (INTEROP_PYTHON), and the tests' Python files.</summary>
internal static class TestSessions
{
    public static PythonSession Isolated() => PythonSession.Isolated(new WorkerOptions
    {
        Python = new PythonOptions { PythonExecutable = Environment.GetEnvironmentVariable("INTEROP_PYTHON") },
    });

    public static string File(string name) => Path.Combine(AppContext.BaseDirectory, name);
}

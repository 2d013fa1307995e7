using Interop.Sessions;

namespace Interop.Tests;

/// <summary>
/// A Python file written from a test's source text into a fresh temporary folder and loaded into a session
/// (<see cref="PythonSession.LoadFile"/>). Dispose releases the module and deletes the folder; the session is the test's.
/// </summary>
internal sealed class ScratchModule : IDisposable
{
    private ScratchModule(string folder, PythonRef module)
    {
        Folder = folder;
        Module = module;
    }

    /// <summary>The temporary folder that holds the file (tests may write more files there).</summary>
    public string Folder { get; }

    /// <summary>The loaded module.</summary>
    public PythonRef Module { get; }

    public static ScratchModule Load(PythonSession session, string fileName, string source)
    {
        var directory = Directory.CreateTempSubdirectory("interop-" + Path.GetFileNameWithoutExtension(fileName) + "-").FullName;
        try
        {
            var path = Path.Combine(directory, fileName);
            File.WriteAllText(path, source);
            return new ScratchModule(directory, session.LoadFile(path));
        }
        catch
        {
            Directory.Delete(directory, recursive: true);
            throw;
        }
    }

    public void Dispose()
    {
        Module.Dispose();
        Directory.Delete(Folder, recursive: true);
    }
}

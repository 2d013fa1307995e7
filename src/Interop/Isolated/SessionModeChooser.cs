// Design notes: SessionMode.Auto. Two libtorch builds in one process crash (docs/environments.md), so the
// question is whether this process has, or will have, a libtorch other than Python torch's own: TorchSharp loaded
// (its assembly, or its registration with LibTorchGuard before its first native call).
// Nothing here loads anything: Python's torch version comes from discovery (importlib.metadata in a child
// process), TorchSharp's libtorch version from its LibTorchGuard registration.
using Interop.Embedding;
using Interop.Torch;

namespace Interop.Isolated;

/// <summary>Decides what <see cref="SessionMode.Auto"/> means in this process.</summary>
public static class SessionModeChooser
{
    /// <summary>The mode <paramref name="mode"/> resolves to here: Auto becomes InProcess or Isolated; the others stay.</summary>
    public static SessionMode Resolve(SessionMode mode, PythonOptions? python = null)
    {
        if (mode != SessionMode.Auto)
            return mode;
        var foreign = LibTorchGuard.ForeignLoaderInfo;
        var present = foreign is not null || TorchSharpPresent();
        if (!present)
            return SessionMode.InProcess;
        return Choose(present, foreign?.SharedDirectory is not null, TryFindTorchVersion(python), foreign?.LibTorchVersion);
    }

    /// <summary>
    /// The rule, as a pure function. In-process when TorchSharp is absent, or when it runs on Python torch's own libtorch
    /// (the shared setup of docs/environments.md, which needs the same release); isolated otherwise, including when the
    /// versions are unknown.
    /// </summary>
    /// <param name="torchSharpPresent">TorchSharp is loaded in this process.</param>
    /// <param name="sharedSetup">TorchSharp was pointed at Python torch's <c>torch/lib</c> folder.</param>
    /// <param name="pythonTorchVersion">Python's torch version (read without importing it); null when not installed.</param>
    /// <param name="torchSharpLibTorchVersion">The libtorch release TorchSharp loads; null when unknown.</param>
    public static SessionMode Choose(bool torchSharpPresent, bool sharedSetup, string? pythonTorchVersion, string? torchSharpLibTorchVersion)
    {
        if (!torchSharpPresent)
            return SessionMode.InProcess;
        return sharedSetup && LibTorchGuard.SameRelease(pythonTorchVersion, torchSharpLibTorchVersion) ? SessionMode.InProcess : SessionMode.Isolated;
    }

    // Loaded, not merely deployed: a deployed TorchSharp.dll that this process never loads is no conflict (the CLI and
    // the tests carry it without loading it). An application that loads TorchSharp after creating sessions should ask
    // for SessionMode.Isolated explicitly.
    private static bool TorchSharpPresent() =>
        AppDomain.CurrentDomain.GetAssemblies().Any(a => a.GetName().Name == "TorchSharp");

    private static string? TryFindTorchVersion(PythonOptions? python)
    {
        try
        {
            return PythonRuntime.IsRunning ? PythonRuntime.Installation.TorchVersion : PythonDiscovery.Find(python).TorchVersion;
        }
        catch (Errors.InteropException)
        {
            return null;
        }
    }
}

namespace Interop.Errors;

/// <summary>
/// Two different libtorch builds would end up in one process (Python's <c>torch</c> and TorchSharp's), which crashes
/// inside libtorch's static initialisers. Thrown <b>before</b> the second one is loaded. The message names both
/// versions and the two ways out: a PyTorch whose version equals TorchSharp's libtorch (the shared setup), or the
/// PyTorch side in a separate process.
/// </summary>
public sealed class LibTorchConflictException : InteropException
{
    /// <summary>Creates the exception; <paramref name="problem"/> says what was refused and what is loaded.</summary>
    /// <param name="problem">E.g. <c>Cannot import Python torch 2.6.0: TorchSharp 0.107.0 (libtorch 2.10.0) is loaded in this process</c>.</param>
    /// <param name="pythonTorchVersion">Python torch's version (importlib.metadata), when known.</param>
    /// <param name="torchSharpLibTorchVersion">The libtorch version TorchSharp ships, when known.</param>
    public LibTorchConflictException(string problem, string? pythonTorchVersion, string? torchSharpLibTorchVersion)
        : base($"{problem} (Python torch {pythonTorchVersion ?? "(version unknown)"}, TorchSharp's libtorch {torchSharpLibTorchVersion ?? "(version unknown)"}); " +
               "two different libtorch builds in one process crash. Ways out: (1) install the PyTorch release that equals TorchSharp's libtorch " +
               $"(pip install \"torch=={torchSharpLibTorchVersion ?? "<TorchSharp's libtorch version>"}\") and load TorchSharp against it " +
               "(the shared setup: TorchSharpSupport.UseSharedLibTorch() before any TorchSharp use; see docs/torchsharp.md), or " +
               "(2) run the PyTorch side in a separate process (the isolated worker process mode) and keep TorchSharp in this one.")
    {
        PythonTorchVersion = pythonTorchVersion;
        TorchSharpLibTorchVersion = torchSharpLibTorchVersion;
    }

    /// <summary>Python torch's version, when known.</summary>
    public string? PythonTorchVersion { get; }

    /// <summary>TorchSharp's libtorch version, when known.</summary>
    public string? TorchSharpLibTorchVersion { get; }
}

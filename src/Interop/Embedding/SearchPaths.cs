namespace Interop.Embedding;

/// <summary>Checks <see cref="PythonOptions.AdditionalPaths"/>, the one search-path option of both session kinds.</summary>
internal static class SearchPaths
{
    /// <summary>The full paths of <paramref name="paths"/>, each checked to exist (a folder, or a .zip/.whl archive Python can import from).</summary>
    /// <exception cref="DirectoryNotFoundException">A path does not exist: a typo there would otherwise surface later as a ModuleNotFoundError.</exception>
    internal static IReadOnlyList<string> Check(IReadOnlyList<string> paths, string option)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var full = new List<string>(paths.Count);
        foreach (var path in paths)
        {
            if (string.IsNullOrWhiteSpace(path))
                throw new ArgumentException($"{option} contains an empty path. Fix: remove it.", nameof(paths));
            var resolved = Path.GetFullPath(path);
            if (!Directory.Exists(resolved) && !File.Exists(resolved))
                throw new DirectoryNotFoundException($"{option} names '{resolved}', which does not exist. Fix: create it, correct the path, or remove it (relative paths are taken from the working directory, {Environment.CurrentDirectory}).");
            full.Add(resolved);
        }
        return full;
    }
}

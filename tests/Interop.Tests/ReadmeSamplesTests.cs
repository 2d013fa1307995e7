using System.Text.RegularExpressions;

namespace Interop.Tests;

/// <summary>README.md's C# snippets and samples/*/Program.cs (between <c>// &lt;readme&gt;</c> markers) are the same text; samples without markers are standalone programs.</summary>
[TestFixture]
public partial class ReadmeSamplesTests
{
    private static string Normalize(string s) => s.Replace("\r\n", "\n", StringComparison.Ordinal).Trim('\n');

    internal static IReadOnlyList<string> ReadmeSnippets() =>
        CSharpBlock().Matches(File.ReadAllText(Path.Combine(TestPython.RepositoryRoot, "README.md")))
            .Select(m => Normalize(m.Groups[1].Value)).ToArray();

    internal static Dictionary<string, string> SampleRegions() =>
        Directory.GetDirectories(Path.Combine(TestPython.RepositoryRoot, "samples"))
            // A sample with a // <readme> region is a README snippet; one without (Scripting) is a standalone program.
            .Where(d => File.Exists(Path.Combine(d, "Program.cs")) && Region().IsMatch(File.ReadAllText(Path.Combine(d, "Program.cs"))))
            .ToDictionary(d => Path.GetFileName(d)!, d => Normalize(Region().Match(File.ReadAllText(Path.Combine(d, "Program.cs"))).Groups[1].Value));

    [Test]
    public void Every_csharp_snippet_in_the_README_is_a_compiled_sample_and_every_sample_is_in_the_README()
    {
        var snippets = ReadmeSnippets();
        var samples = SampleRegions();
        Assert.That(snippets, Is.Not.Empty);
        Assert.Multiple(() =>
        {
            foreach (var snippet in snippets)
                Assert.That(samples.Values, Has.Member(snippet), "a README snippet that no sample contains (copy it into samples/*/Program.cs between the markers):\n" + snippet);
            foreach (var (name, region) in samples)
                Assert.That(snippets, Has.Member(region), $"samples/{name}/Program.cs's README region is not in README.md (copy it there)");
        });
    }

    [Test]
    public void Snippets_start_with_their_usings_and_load_files_from_beside_the_app()
    {
        foreach (var snippet in ReadmeSnippets())
        {
            Assert.That(snippet, Does.StartWith("using "), "a pasted snippet must compile: usings first");
            Assert.That(snippet, Does.Not.Contain("LoadFile(\"python/"), "a path relative to the repository only works from its root");
        }
    }

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    [GeneratedRegex(@"// <readme>\n(.*?)// </readme>", RegexOptions.Singleline)]
    private static partial Regex Region();
}

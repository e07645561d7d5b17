using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace Elect.Tests;

/// <summary>
/// The README's "Library" example is compiled (not run) with Roslyn against the assemblies this test runs
/// with, so that it cannot drift from the public API. The code block is read from the README at test
/// time (copied beside the tests by the project file) and compiled verbatim as top-level statements.
/// </summary>
public class ReadmeExampleTests
{
    [Fact]
    public void LibraryExampleCompilesAgainstThePublicApi()
    {
        var readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        var section = Regex.Match(readme, @"^## Library\s*$(.*?)(?=^## )", RegexOptions.Multiline | RegexOptions.Singleline);
        Assert.True(section.Success, "README.md has no '## Library' section");
        var block = Regex.Match(section.Groups[1].Value, @"^```csharp\s*\n(.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline);
        Assert.True(block.Success, "the README's Library section has no ```csharp block");
        var code = block.Groups[1].Value;

        // everything the test host can load: the framework, Elect.Core, TorchSharp, ...
        var assemblies = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Append(typeof(Editor).Assembly.Location).Append(typeof(TorchSharp.torch).Assembly.Location)
            .Where(File.Exists).Distinct(StringComparer.Ordinal);
        var compilation = CSharpCompilation.Create("ReadmeExample",
            [CSharpSyntaxTree.ParseText(code, new CSharpParseOptions(LanguageVersion.Latest), "README.md")],
            assemblies.Select(a => MetadataReference.CreateFromFile(a)),
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
        using var pe = new MemoryStream();
        var emitted = compilation.Emit(pe);
        var problems = emitted.Diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning).Select(d => d.ToString()).ToArray();
        Assert.True(emitted.Success && problems.Length == 0, "the README's Library example does not compile:\n" + string.Join("\n", problems) + "\n\n" + code);
    }
}

using System.Diagnostics;
using System.Text.RegularExpressions;
using Elect.Pipelines.Demo;
using Xunit;

namespace Elect.Tests;

/// <summary>
/// The built-in demo family: the README's first Set-up command, run as written in a folder with no
/// <c>../shared</c>, and a demo folder served by <see cref="MockHub"/>, downloaded and edited with.
/// </summary>
[Collection("hub")]
public sealed class DemoTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "elect-demo-test-" + Guid.NewGuid().ToString("N"));

    public DemoTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("HF_ENDPOINT", null);
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }


    /// <summary>Splits a shell command line (double quotes only, as the README uses).</summary>
    private static string[] ShellWords(string line) =>
        Regex.Matches(line, "\"([^\"]*)\"|(\\S+)").Select(m => m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value).ToArray();

    /// <summary>The README's Set-up commands (the indented lines of that section).</summary>
    private static string[] SetupCommands()
    {
        var readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        var section = Regex.Match(readme, @"## Set-up\n(.*?)\n## ", RegexOptions.Singleline);
        Assert.True(section.Success, "README.md has no '## Set-up' section");
        return section.Groups[1].Value.Split('\n').Where(l => l.StartsWith("    ", StringComparison.Ordinal)).Select(l => l.Trim()).ToArray();
    }

    [Fact]
    public async Task The_READMEs_first_command_edits_with_the_demo_model_in_a_fresh_clone()
    {
        var commands = SetupCommands();
        Assert.Equal(2, commands.Length);
        Assert.Equal("dotnet test Elect.sln", commands[1]);
        var words = ShellWords(commands[0]);
        const string prefix = "dotnet run --project src/Elect.Cli -c Release --";
        Assert.StartsWith(prefix, commands[0]);
        var args = words.Skip(ShellWords(prefix).Length).ToArray();
        Assert.DoesNotContain(args, a => a.Contains("shared", StringComparison.Ordinal));

        // a fresh clone: the committed sample image, nothing beside the folder
        var clone = Path.Combine(_dir, "clone");
        Directory.CreateDirectory(Path.Combine(clone, "images"));
        File.Copy(Path.Combine(Repo.Root, "images", "sample.png"), Path.Combine(clone, "images", "sample.png"));
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = clone, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "elect.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["ELECT_FIXTURES"] = Path.Combine(_dir, "no-fixtures");
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(limit.Token);
        var err = await stderr;
        var @out = await stdout;
        Assert.True(process.ExitCode == 0, err);
        Assert.Contains("demo model: random weights, the edit means nothing", err);
        foreach (var f in new[] { "sample_input.png", "sample_output_1.png", "sample_output-mask.png" })
            Assert.True(File.Exists(Path.Combine(clone, "outputs", f)), $"{f} missing; stdout: {@out}");
    }

    [Fact]
    public void The_demo_folder_is_the_same_bytes_every_time()
    {
        DemoModel.WriteFolder(Path.Combine(_dir, "a"));
        DemoModel.WriteFolder(Path.Combine(_dir, "b"));
        var files = Directory.EnumerateFiles(Path.Combine(_dir, "a"), "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(Path.Combine(_dir, "a"), f)).Order().ToArray();
        Assert.Equal(12, files.Length);
        foreach (var f in files)
            Assert.True(File.ReadAllBytes(Path.Combine(_dir, "a", f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(_dir, "b", f))), f);
        var image = Path.Combine(_dir, "x.png");
        Elect.Imaging.SampleImage.Create(64, 64).SavePng(image);
        var (code, _, stderr) = CliHarness.Run("run-single", "--input", image, "--instruction", "x", "--model", "demo", "--model-path", _dir, "--output-dir", Path.Combine(_dir, "o"));
        Assert.NotEqual(0, code);
        Assert.Contains("takes no checkpoint path", stderr);
    }

    /// <summary>
    /// Acceptance: a diffusers folder (the demo's) served in the Hub's layout through HF_ENDPOINT is reproduced byte
    /// for byte by <c>elect download org/name --local-dir D</c>, and <c>elect run-single --model-path D</c> runs on it.
    /// </summary>
    [Fact]
    public void A_folder_downloaded_from_the_mock_hub_runs()
    {
        var source = Path.Combine(_dir, "source");
        DemoModel.WriteFolder(source);
        using var hub = new MockHub();
        hub.AddFolder("org/name", source);
        hub.CutOnce["unet/diffusion_pytorch_model.safetensors"] = 1_000_000;   // resumed within the run
        Environment.SetEnvironmentVariable("HF_ENDPOINT", hub.Endpoint);
        var d = Path.Combine(_dir, "D");
        var (code, _, stderr) = CliHarness.Run("download", "org/name", "--local-dir", d);
        Assert.True(code == 0, stderr);
        Assert.Contains(hub.Log, l => l.Contains("bytes=1000000-", StringComparison.Ordinal));
        foreach (var f in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
            Assert.True(File.ReadAllBytes(f).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(d, Path.GetRelativePath(source, f)))), f);
        Assert.Equal(Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories).Count(), Directory.EnumerateFiles(d, "*", SearchOption.AllDirectories).Count());

        var image = Path.Combine(_dir, "in.png");
        Elect.Imaging.SampleImage.Create(64, 64).SavePng(image);
        var output = Path.Combine(_dir, "out");
        (code, _, stderr) = CliHarness.Run("run-single", "--input", image, "--instruction", "turn it red", "--model", "instructpix2pix", "--model-path", d,
            "--resolution", "64", "--inference-steps", "4", "--select-one-seed", "--candidate-seeds", "1", "2", "--stopping-step", "2",
            "--last-step-for-mask-extraction", "1", "--device", "cpu", "--output-dir", output);
        Assert.True(code == 0, stderr);
        Assert.True(File.Exists(Path.Combine(output, "in_output_1.png")) || Directory.EnumerateFiles(output, "*output*.png").Any(), string.Join(", ", Directory.EnumerateFiles(output)));
    }
}

using Elect.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// The reference fixtures (tiny diffusers pipelines + golden outputs). Found through the
/// ELECT_FIXTURES environment variable, else <c>../shared/fixtures</c> beside the repository.
/// Tests that need them call <see cref="Require"/>, which SKIPS (never passes) when they are absent.
/// </summary>
public static class Fixtures
{
    private static readonly Lazy<string?> RootLazy = new(FindRoot);
    private static readonly Lazy<Dictionary<string, Tensor>> GoldenLazy = new(() =>
    {
        TorchRuntime.Initialize();
        // shared for the whole run: never owned by a dispose scope that happens to be open at first use
        var golden = SafeTensors.Load(Path.Combine(Require(), "golden.safetensors"));
        foreach (var t in golden.Values) t.DetachFromDisposeScope();
        return golden;
    });

    public static string? Root => RootLazy.Value;

    private static string? FindRoot()
    {
        var env = Environment.GetEnvironmentVariable("ELECT_FIXTURES");
        if (!string.IsNullOrWhiteSpace(env))
            return File.Exists(Path.Combine(env, "golden.safetensors")) ? Path.GetFullPath(env) : null;
        var candidate = Path.GetFullPath(Path.Combine(Repo.Root, "..", "shared", "fixtures"));
        return File.Exists(Path.Combine(candidate, "golden.safetensors")) ? candidate : null;
    }

    /// <summary>The fixtures folder; skips the calling test when it is not there.</summary>
    public static string Require()
    {
        Skip.If(Root is null, "reference fixtures not found: set ELECT_FIXTURES or place them at ../shared/fixtures beside the repository");
        TorchRuntime.Initialize();
        return Root!;
    }

    public static string Model(string name) => Path.Combine(Require(), "models", name);

    public static string Ip2pTiny => Model("ip2p-tiny");
    public static string UltraEditTiny => Model("ultraedit-tiny");

    /// <summary>A golden tensor (CPU, stored dtype). Do not dispose: it is shared.</summary>
    public static Tensor Golden(string key)
    {
        Require();
        return GoldenLazy.Value.TryGetValue(key, out var t) ? t : throw new KeyNotFoundException($"golden.safetensors has no key '{key}'");
    }

    public static bool HasGolden(string key) { Require(); return GoldenLazy.Value.ContainsKey(key); }
}

public static class TensorAssert
{
    /// <summary>Asserts same shape and max |expected - actual| ≤ atol (compared in float64 on the CPU).</summary>
    public static void Close(Tensor expected, Tensor actual, double atol, string what = "tensor")
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(",", actual.shape)}] differs from expected [{string.Join(",", expected.shape)}]");
        using var e = expected.detach().cpu().to(ScalarType.Float64);
        using var a = actual.detach().cpu().to(ScalarType.Float64);
        using var diff = (e - a).abs();
        double max = diff.numel() == 0 ? 0 : diff.max().item<double>();
        Assert.False(double.IsNaN(max), $"{what}: NaN in result");
        Assert.True(max <= atol, $"{what}: max |diff| = {max:G6} > {atol:G3}");
    }

    /// <summary>Asserts exactly equal integer tensors.</summary>
    public static void Equal(Tensor expected, Tensor actual, string what = "tensor")
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(",", actual.shape)}] differs from expected [{string.Join(",", expected.shape)}]");
        using var e = expected.cpu().to(ScalarType.Int64);
        using var a = actual.cpu().to(ScalarType.Int64);
        Assert.True((e == a).all().item<bool>(), $"{what}: expected [{string.Join(",", e.data<long>())}] got [{string.Join(",", a.data<long>())}]");
    }
}

/// <summary>
/// A temporary copy of a diffusers component folder (its config.json and one weights file) whose
/// tensors pass through <c>edit</c> on the way: the way loader tests build a broken or legacy checkpoint.
/// </summary>
public sealed class ComponentCopy : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("elect-component-").FullName;

    public ComponentCopy(string sourceDir, string weightsFile, Func<Dictionary<string, Tensor>, IReadOnlyDictionary<string, Tensor>> edit)
    {
        File.Copy(System.IO.Path.Combine(sourceDir, "config.json"), System.IO.Path.Combine(Path, "config.json"));
        var tensors = SafeTensors.Load(System.IO.Path.Combine(sourceDir, weightsFile));
        try
        {
            SafeTensors.Save(System.IO.Path.Combine(Path, weightsFile), edit(tensors));
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

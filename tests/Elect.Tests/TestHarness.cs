using Elect.Cli;
using Elect.Imaging;
using Elect.Pipelines;
using Elect.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>The elect command line run in process: exit code, stdout and stderr.</summary>
internal static class CliHarness
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = ElectCli.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}

/// <summary>
/// A test seam over a real editing model: everything delegates to <paramref name="inner"/>; tests override the
/// model call or the decode to inject failures (out of memory, NaN) without touching the engine.
/// </summary>
internal abstract class DelegatingModel(EditingModel inner, ScalarType? declaredDType = null)
    : EditingModel(inner.Device, declaredDType ?? inner.DType)
{
    protected EditingModel Inner => inner;
    public override string Name => inner.Name;
    public override int LatentChannels => inner.LatentChannels;
    public override int DownsampleFactor => inner.DownsampleFactor;
    public override float DefaultTextGuidance => inner.DefaultTextGuidance;
    public override IDenoisingScheduler CreateScheduler(int steps) => inner.CreateScheduler(steps);
    public override EditCondition Prepare(RgbImage image, string instruction, RgbImage? mask = null) => inner.Prepare(image, instruction, mask);
    public override Tensor Forward(EditCondition condition, Tensor modelInput, Tensor timestep) => inner.Forward(condition, modelInput, timestep);
    public override Tensor DecodeLatents(Tensor latents) => inner.DecodeLatents(latents);
    protected override void Dispose(bool disposing) { }   // the inner model belongs to the test
}

/// <summary>Leak checks by TorchSharp's live-tensor count (device-independent).</summary>
internal static class LeakCheck
{
    /// <summary>
    /// Runs <paramref name="once"/>(0) as a warm-up (caches, lazily built conditioning), then
    /// <paramref name="repeats"/> more times, and asserts the live-tensor count did not change across those.
    /// </summary>
    public static void NoTensorsLeftAlive(Action<int> once, int repeats)
    {
        once(0);
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int k = 1; k <= repeats; k++) once(k);
        long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Xunit.Assert.True(after == before, $"{after - before} tensors left alive by {repeats} edits");
    }
}

/// <summary>The repository the tests run from (the folder holding Elect.sln above the test binaries).</summary>
internal static class Repo
{
    private static readonly Lazy<string> RootLazy = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Elect.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"repository root (Elect.sln) not found above the test binaries ({AppContext.BaseDirectory})");
    });

    public static string Root => RootLazy.Value;

    /// <summary>The committed test data folder, tests/Elect.Tests/Data, or a path below it.</summary>
    public static string Data(params string[] parts) => Path.Combine([Root, "tests", "Elect.Tests", "Data", .. parts]);
}

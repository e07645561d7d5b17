using Elect.Modeling;
using Elect.Schedulers;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

public class EulerAncestralSchedulerTests
{
    private static EulerAncestralDiscreteScheduler FromFixture() =>
        EulerAncestralDiscreteScheduler.FromConfig(ModelConfig.Load(Path.Combine(Fixtures.Ip2pTiny, "scheduler", "scheduler_config.json")));

    [SkippableTheory]
    [InlineData(20)]
    [InlineData(100)]
    public void TablesMatchDiffusers(int steps)
    {
        var s = FromFixture();
        s.SetTimesteps(steps);
        TensorAssert.Close(Fixtures.Golden($"ip2p.scheduler.timesteps_{steps}"), torch.tensor(s.Timesteps.ToArray()), 1e-6, "timesteps");
        TensorAssert.Close(Fixtures.Golden($"ip2p.scheduler.sigmas_{steps}"), torch.tensor(s.Sigmas.ToArray()), 1e-6, "sigmas");
        Assert.Equal(Fixtures.Golden($"ip2p.scheduler.init_noise_sigma_{steps}").item<double>(), s.InitNoiseSigma, 5);
    }

    [SkippableFact]
    public void SingleStepMatchesDiffusersWithCpuGeneratorNoise()
    {
        var s = FromFixture();
        s.SetTimesteps(20);
        var sample = Fixtures.Golden("ip2p.scheduler.step.sample");
        var modelOutput = Fixtures.Golden("ip2p.scheduler.step.model_output");
        using var gen = new Generator(77);
        using var noise = torch.randn(modelOutput.shape, generator: gen);
        using var pred = s.PredictOriginal(modelOutput, 0, sample);
        using var prev = s.Step(modelOutput, 0, sample, noise);
        TensorAssert.Close(Fixtures.Golden("ip2p.scheduler.step.pred_original_sample"), pred, 1e-5, "pred_original_sample");
        TensorAssert.Close(Fixtures.Golden("ip2p.scheduler.step.prev_sample"), prev, 1e-5, "prev_sample");
    }

    [Fact]
    public void SpacingsFollowDiffusers()
    {
        TorchRuntime.Initialize();
        var lead = new EulerAncestralDiscreteScheduler(1000, 0.00085, 0.012, "scaled_linear", timestepSpacing: "leading", stepsOffset: 1);
        lead.SetTimesteps(10);
        Assert.Equal(new float[] { 901, 801, 701, 601, 501, 401, 301, 201, 101, 1 }, lead.Timesteps);
        var trail = new EulerAncestralDiscreteScheduler(1000, 0.00085, 0.012, "scaled_linear", timestepSpacing: "trailing");
        trail.SetTimesteps(4);
        Assert.Equal(new float[] { 999, 749, 499, 249 }, trail.Timesteps);
        Assert.Equal(0f, trail.Sigma(4));
        Assert.True(lead.InitNoiseSigma > lead.Sigma(0));
    }

    [Fact]
    public void RejectsOutOfRangeSteps()
    {
        TorchRuntime.Initialize();
        var s = new EulerAncestralDiscreteScheduler();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => s.SetTimesteps(0));
        Assert.Contains("inference steps", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.SetTimesteps(1001));
    }
}

using Elect.Imaging;
using Elect.Pipelines;
using Elect.Schedulers;
using Elect.Selection;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>The engine's reaction to device out-of-memory: halve the chunk, retry, same results.</summary>
public class EngineMemoryTests
{
    /// <summary>The real tiny model, failing like CUDA does when a call holds more than <c>limit</c> candidates.</summary>
    private sealed class MemoryLimitedModel(EditingModel inner, int limit) : DelegatingModel(inner)
    {
        public int LargestCall { get; private set; }
        public int LargestDecode { get; private set; }
        public int Refusals { get; private set; }

        public override Tensor Forward(EditCondition condition, Tensor modelInput, Tensor timestep)
        {
            int candidates = (int)modelInput.shape[0] / 3;
            if (candidates > limit)
            {
                Refusals++;
                throw new InvalidOperationException($"CUDA out of memory. Tried to allocate {candidates} candidates");
            }
            LargestCall = Math.Max(LargestCall, candidates);
            return Inner.Forward(condition, modelInput, timestep);
        }

        public override Tensor DecodeLatents(Tensor latents)
        {
            if (latents.shape[0] > limit)
            {
                Refusals++;
                throw new InvalidOperationException("CUDA out of memory (decode)");
            }
            LargestDecode = Math.Max(LargestDecode, (int)latents.shape[0]);
            return Inner.DecodeLatents(latents);
        }
    }

    [SkippableFact]
    public void OutOfMemoryHalvesTheBatchAndKeepsResults()
    {
        using var editor = Ip2pPipelineTests.LoadTiny();
        var input = Ip2pPipelineTests.Input("ip2p-input.png", 128);
        long[] seeds = [11, 22, 33, 44, 55];
        var options = new EditOptions { InferenceSteps = 20 };
        var selection = new SelectionOptions { StoppingStep = 8, LastMaskStep = 4, KeepAllSeeds = true };

        var limited = new MemoryLimitedModel(editor.Model, limit: 2);
        using var condition = limited.Prepare(input, "Replace the cat with a bear");
        using var result = new ElectEngine(limited).RunElect(condition, seeds, options, selection);

        Assert.True(limited.Refusals > 0);
        Assert.Equal(2, limited.LargestCall);
        Assert.True(limited.LargestDecode <= 2);
        Assert.Equal(33, result.BestSeed);
        var bis = Fixtures.Golden("ip2p.elect.bis").data<double>().ToArray();
        for (int k = 0; k < seeds.Length; k++) Assert.True(Math.Abs(bis[k] - result.Bis![k]) <= 1e-4, $"BIS of seed {seeds[k]}");
        foreach (var s in seeds) Ip2pPipelineTests.AssertImageClose(Fixtures.Golden($"ip2p.elect.output-{s}"), result.Images[s], $"output-{s}");
    }

    [SkippableFact]
    public void OutOfMemoryWithASingleCandidateSurfaces()
    {
        using var editor = Ip2pPipelineTests.LoadTiny();
        var input = Ip2pPipelineTests.Input("ip2p-input.png", 128);
        var broken = new MemoryLimitedModel(editor.Model, limit: 0);
        using var condition = broken.Prepare(input, "x");
        // a single candidate cannot be split further: the out-of-memory error surfaces
        var e = Assert.Throws<InvalidOperationException>(() => new ElectEngine(broken).RunPlain(condition, [1], new EditOptions { InferenceSteps = 2 }));
        Assert.Contains("out of memory", e.Message);
    }
}

using System.Text.Json;
using Elect.Imaging;
using Elect.Selection;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>End-to-end parity of the InstructPix2Pix family with the reference goldens (CPU, float32).</summary>
public class Ip2pPipelineTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private readonly Xunit.Abstractions.ITestOutputHelper _out = output;

    private const string Prompt = "Replace the cat with a bear";

    internal static Editor LoadTiny() => Editor.Load(Fixtures.Ip2pTiny, "instructpix2pix", CPU, ScalarType.Float32);

    internal static RgbImage Input(string file, int resolution) =>
        ImageOps.ImageResize(RgbImage.Load(Path.Combine(Fixtures.Require(), "models", file)), resolution);

    /// <summary>8-bit images equal within one level.</summary>
    internal static void AssertImageClose(Tensor expectedU8, Tensor actual, string what)
    {
        using var a = actual.dtype == ScalarType.Byte ? actual.to(ScalarType.Int32) : RgbImage.FromTensor(actual).ToByteTensor().to(ScalarType.Int32);
        TensorAssert.Close(expectedU8.to(ScalarType.Int32), a, 1.0, what);
    }

    [SkippableFact]
    public void VanillaSeedsMatchReferenceBatchedAndAlone()
    {
        using var editor = LoadTiny();
        var input = Input("ip2p-input.png", 128);
        Assert.Equal((128, 128), (input.Width, input.Height));
        var options = new EditOptions { InferenceSteps = 20 };
        using var both = editor.Edit(input, Prompt, [11, 22], options);
        foreach (var seed in new long[] { 11, 22 })
        {
            var golden = Fixtures.Golden($"ip2p.vanilla.seed{seed}");
            TensorAssert.Close(golden, both.Images[seed], 2e-3, $"seed {seed} (batched)");
        }
        using var alone = editor.Edit(input, Prompt, [22], options);
        TensorAssert.Close(Fixtures.Golden("ip2p.vanilla.seed22"), alone.Images[22], 2e-3, "seed 22 (alone)");
        Assert.Null(both.BestSeed);
        Assert.Equal(40, both.ModelEvaluations);
    }

    [SkippableFact]
    public void ElectMatchesReferenceAndWinnerEqualsPlainRun()
    {
        using var editor = LoadTiny();
        var input = Input("ip2p-input.png", 128);
        long[] seeds = [11, 22, 33, 44, 55];
        var options = new EditOptions { InferenceSteps = 20 };
        var selection = new SelectionOptions { StoppingStep = 8, FirstMaskStep = 0, LastMaskStep = 4, KeepAllSeeds = true };
        using var result = editor.Edit(input, Prompt, seeds, options, selection);

        Assert.Equal(Fixtures.Golden("ip2p.elect.best_seed").data<long>()[0], result.BestSeed);
        var bis = Fixtures.Golden("ip2p.elect.bis").data<double>().ToArray();
        for (int k = 0; k < seeds.Length; k++) Assert.True(Math.Abs(bis[k] - result.Bis![k]) <= 1e-4, $"BIS of seed {seeds[k]}: {result.Bis![k]} vs {bis[k]}");
        TensorAssert.Close(Fixtures.Golden("ip2p.elect.relevance_map"), result.RelevanceMap!, 1e-4, "relevance map");
        foreach (var s in seeds) AssertImageClose(Fixtures.Golden($"ip2p.elect.output-{s}"), result.Images[s], $"output-{s}");
        using var mask = RelevanceMask.ToImage(result.RelevanceMap!, input.Width, input.Height).ToByteTensor();
        AssertImageClose(Fixtures.Golden("ip2p.elect.output-mask"), mask, "mask");
        // all seeds kept: N*T evaluations; the NFE arithmetic of a real selection is checked below
        Assert.Equal(5 * 20, result.ModelEvaluations);

        // the winner's image is the plain pipeline's for that seed, alone or in a batch of five
        using var plainAlone = editor.Edit(input, Prompt, [33], options);
        using var plainBatch = editor.Edit(input, Prompt, seeds, options);
        TensorAssert.Close(plainAlone.Images[33], result.Images[33], 1e-4, "winner vs plain alone");
        TensorAssert.Close(plainAlone.Images[33], plainBatch.Images[33], 1e-4, "alone vs batch of 5");
        AssertImageClose(Fixtures.Golden("ip2p.elect.output-best_seed-33"), plainAlone.Images[33], "plain seed 33 vs ELECT winner golden");
    }

    /// <summary>The settings of the <c>ip2p.elect2</c> goldens: seeds 101/202/303 on the 192x128 mushroom, T=10, t_stop=4, winner only.</summary>
    private static readonly long[] Elect2Seeds = [101, 202, 303];

    private static EditResult RunElect2(Editor editor, out RgbImage input)
    {
        input = Input("ip2p-input2.png", 192);
        var selection = new SelectionOptions { StoppingStep = 4, FirstMaskStep = 0, LastMaskStep = 3, KeepAllSeeds = false };
        return editor.Edit(input, "change the red mushroom into a blue one", Elect2Seeds, new EditOptions { InferenceSteps = 10 }, selection);
    }

    [SkippableFact]
    public void ElectKeepingOnlyTheWinnerOnNonSquareImage()
    {
        using var editor = LoadTiny();
        using var result = RunElect2(editor, out var input);
        Assert.Equal((192, 128), (input.Width, input.Height));
        long[] seeds = Elect2Seeds;
        Assert.Equal(202, result.BestSeed);
        var bis = Fixtures.Golden("ip2p.elect2.bis").data<double>().ToArray();
        for (int k = 0; k < seeds.Length; k++) Assert.True(Math.Abs(bis[k] - result.Bis![k]) <= 1e-4, $"BIS of seed {seeds[k]}");
        Assert.Equal([202L], result.Images.Keys);
        AssertImageClose(Fixtures.Golden("ip2p.elect2.output-202"), result.Images[202], "output-202");
        TensorAssert.Close(Fixtures.Golden("ip2p.elect2.relevance_map"), result.RelevanceMap!, 1e-4, "relevance map");
        using var mask = RelevanceMask.ToImage(result.RelevanceMap!, input.Width, input.Height).ToByteTensor();
        AssertImageClose(Fixtures.Golden("ip2p.elect2.output-mask"), mask, "mask");
        // N*t_stop + (T - t_stop)
        Assert.Equal(3 * 4 + (10 - 4), result.ModelEvaluations);
        Assert.Equal(30, result.BestOfNEvaluations);
    }

    /// <summary>
    /// The GPU fast path's precisions, run on the CPU: UNet and VAE in half precision (latents,
    /// guidance, scheduler, relevance map and BIS in float32) against the float32 reference goldens.
    /// Measured (max abs): fp16 BIS 2.2e-4, map 0.012, winner image 0.021; bf16 2.0e-3, 0.10, 0.092 (tolerances 2-5x).
    /// </summary>
    [SkippableTheory]
    [InlineData(ScalarType.Float16, 1e-3, 0.03, 0.04)]
    [InlineData(ScalarType.BFloat16, 1e-2, 0.3, 0.25)]
    public void ElectInHalfPrecisionStaysCloseToTheReference(ScalarType dtype, double bisTol, double mapTol, double imageTol)
    {
        using var editor = Editor.Load(Fixtures.Ip2pTiny, "instructpix2pix", CPU, dtype);
        using var result = RunElect2(editor, out _);
        var bis = Fixtures.Golden("ip2p.elect2.bis").data<double>().ToArray();
        double bisDiff = Elect2Seeds.Select((_, k) => Math.Abs(bis[k] - result.Bis![k])).Max();
        using var mapDiffT = (Fixtures.Golden("ip2p.elect2.relevance_map").to(ScalarType.Float32) - result.RelevanceMap!).abs().max();
        using var imageDiffT = (Fixtures.Golden("ip2p.elect2.output-202").to(ScalarType.Float32) / 255 - result.Images[202]).abs().max();
        float mapDiff = mapDiffT.item<float>(), imageDiff = imageDiffT.item<float>();
        _out.WriteLine($"{dtype}: BIS max |diff| {bisDiff:G3}, relevance map {mapDiff:G3}, winner image {imageDiff:G3}");
        Assert.Equal(202, result.BestSeed);
        Assert.True(bisDiff <= bisTol, $"BIS differs by {bisDiff}");
        Assert.True(mapDiff <= mapTol, $"relevance map differs by {mapDiff}");
        Assert.True(imageDiff <= imageTol, $"winner image differs by {imageDiff}");
    }

    [SkippableFact]
    public void MicroBatchingDoesNotChangeAnyCandidate()
    {
        using var editor = LoadTiny();
        var input = Input("ip2p-input.png", 128);
        long[] seeds = [11, 22, 33, 44, 55];
        var selection = new SelectionOptions { StoppingStep = 8, LastMaskStep = 4, KeepAllSeeds = true };
        using var whole = editor.Edit(input, Prompt, seeds, new EditOptions { InferenceSteps = 20 }, selection);
        using var chunked = editor.Edit(input, Prompt, seeds, new EditOptions { InferenceSteps = 20, MaxBatch = 2, MaxDecodeBatch = 3 }, selection);
        Assert.Equal(whole.BestSeed, chunked.BestSeed);
        for (int k = 0; k < seeds.Length; k++)
        {
            Assert.True(Math.Abs(whole.Bis![k] - chunked.Bis![k]) <= 1e-5, $"BIS of seed {seeds[k]}");
            TensorAssert.Close(whole.Images[seeds[k]], chunked.Images[seeds[k]], 1e-4, $"seed {seeds[k]}");
        }
        TensorAssert.Close(whole.RelevanceMap!, chunked.RelevanceMap!, 1e-5, "relevance map");
    }

    [SkippableFact]
    public void LibraryRejectsBadArguments()
    {
        using var editor = LoadTiny();
        var input = Input("ip2p-input.png", 128);
        Assert.Contains("instruction is empty", Assert.Throws<ArgumentException>(() => editor.Edit(input, "  ", [1], new EditOptions { InferenceSteps = 2 })).Message);
        Assert.Contains("no candidate seeds", Assert.Throws<ArgumentException>(() => editor.Edit(input, "x", [], new EditOptions { InferenceSteps = 2 })).Message);
        Assert.Contains("SelectionOptions.StoppingStep", Assert.Throws<ArgumentOutOfRangeException>(() =>
            editor.Edit(input, "x", [1, 2], new EditOptions { InferenceSteps = 5 }, new SelectionOptions { StoppingStep = 6, LastMaskStep = 2 })).Message);
        Assert.Contains("EditOptions.InferenceSteps", Assert.Throws<ArgumentOutOfRangeException>(() => editor.Edit(input, "x", [1], new EditOptions { InferenceSteps = 0 })).Message);
    }
}

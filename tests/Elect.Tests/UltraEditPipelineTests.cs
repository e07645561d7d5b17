using Elect.Imaging;
using Elect.Pipelines.UltraEdit;
using Elect.Selection;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>End-to-end parity of UltraEdit (SD3 rectified flow) with the reference goldens (CPU, float32).</summary>
public class UltraEditPipelineTests
{
    private const string Prompt = "Replace the cat with a bear";

    private static Editor LoadTiny() => Editor.Load(Fixtures.UltraEditTiny, "ultraedit", CPU, ScalarType.Float32);

    private static RgbImage Input() => ImageOps.ImageResize(RgbImage.Load(Path.Combine(Fixtures.Require(), "models", "ultraedit-input.png")), 128);

    [SkippableFact]
    public void PromptEmbeddingsMatchThePipeline()
    {
        using var editor = LoadTiny();
        var model = (UltraEditModel)editor.Model;
        var (embeds, pooled) = model.EncodePrompts([Prompt, ""]);
        using (embeds)
        using (pooled)
        {
            TensorAssert.Close(Fixtures.Golden("ultraedit.prompt_embeds"), embeds[0..1], 1e-4, "prompt_embeds");
            TensorAssert.Close(Fixtures.Golden("ultraedit.negative_prompt_embeds"), embeds[1..2], 1e-4, "negative_prompt_embeds");
            TensorAssert.Close(Fixtures.Golden("ultraedit.pooled_prompt_embeds"), pooled[0..1], 1e-4, "pooled_prompt_embeds");
            TensorAssert.Close(Fixtures.Golden("ultraedit.negative_pooled_prompt_embeds"), pooled[1..2], 1e-4, "negative_pooled_prompt_embeds");
        }
        Assert.Equal(7.0f, model.DefaultTextGuidance);
    }

    [SkippableFact]
    public void VanillaSeedMatchesReference()
    {
        using var editor = LoadTiny();
        using var result = editor.Edit(Input(), Prompt, [11], new EditOptions { InferenceSteps = 20 });
        TensorAssert.Close(Fixtures.Golden("ultraedit.vanilla.seed11"), result.Images[11], 2e-3, "ultraedit seed 11");
    }

    [SkippableFact]
    public void ElectMatchesReferenceAndWinnerEqualsPlainRun()
    {
        using var editor = LoadTiny();
        var input = Input();
        long[] seeds = [11, 22, 33, 44];
        var options = new EditOptions { InferenceSteps = 20 };
        using var result = editor.Edit(input, Prompt, seeds, options,
            new SelectionOptions { StoppingStep = 8, FirstMaskStep = 0, LastMaskStep = 4, KeepAllSeeds = true });
        Assert.Equal(Fixtures.Golden("ultraedit.elect.best_seed").data<long>()[0], result.BestSeed);
        var bis = Fixtures.Golden("ultraedit.elect.bis").data<double>().ToArray();
        for (int k = 0; k < seeds.Length; k++) Assert.True(Math.Abs(bis[k] - result.Bis![k]) <= 1e-4, $"BIS of seed {seeds[k]}: {result.Bis![k]} vs {bis[k]}");
        TensorAssert.Close(Fixtures.Golden("ultraedit.elect.relevance_map"), result.RelevanceMap!, 1e-4, "relevance map");
        foreach (var s in seeds) Ip2pPipelineTests.AssertImageClose(Fixtures.Golden($"ultraedit.elect.output-{s}"), result.Images[s], $"output-{s}");
        using var mask = RelevanceMask.ToImage(result.RelevanceMap!, input.Width, input.Height).ToByteTensor();
        Ip2pPipelineTests.AssertImageClose(Fixtures.Golden("ultraedit.elect.output-mask"), mask, "mask");

        using var alone = editor.Edit(input, Prompt, [44], options);
        TensorAssert.Close(alone.Images[44], result.Images[44], 1e-4, "winner vs plain alone");
        Ip2pPipelineTests.AssertImageClose(Fixtures.Golden("ultraedit.elect.output-best_seed-44"), alone.Images[44], "plain 44 vs winner golden");
    }

    [SkippableFact]
    public void MaskImageIsRefusedByATransformerWithoutMaskChannels()
    {
        using var editor = LoadTiny();
        var input = Input();
        var e = Assert.Throws<NotSupportedException>(() => editor.Edit(input, Prompt, [1], new EditOptions { InferenceSteps = 2 }, null, RgbImage.Solid(128, 128, 255, 255, 255)));
        Assert.Contains("no mask channels", e.Message);
    }
}

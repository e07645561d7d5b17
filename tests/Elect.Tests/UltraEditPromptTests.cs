using Elect.Imaging;
using Elect.Modeling;
using Elect.Pipelines.UltraEdit;
using Elect.Selection;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// UltraEdit prompt embeddings for instructions containing characters that tokenizer_2 declares special
/// ("!" is its pad token) and literal special tokens, against the ELECT repository's SD3 ensemble pipeline's
/// encode_prompt (Data/ultraedit-prompts.safetensors, scripts/goldens/make_ultraedit_prompt_goldens.py).
/// </summary>
public class UltraEditPromptTests
{
    // the generator's PROMPTS, same order
    private static readonly string[] Prompts =
    [
        "make the sky look stormy?! add lightning",
        "Add fireworks!!! and a banner that says \"HAPPY NEW YEAR!\"",
        "turn the cat into a tiger <|endoftext|> </s> <extra_id_0>",
        "Replace the cat with a bear",
    ];

    private static readonly Lazy<Dictionary<string, Tensor>> Golden = new(() =>
    {
        TorchRuntime.Initialize();
        var g = SafeTensors.Load(Path.Combine(AppContext.BaseDirectory, "Data", "ultraedit-prompts.safetensors"));
        foreach (var t in g.Values) t.DetachFromDisposeScope();
        return g;
    });

    public static IEnumerable<object[]> Indices() => Enumerable.Range(0, Prompts.Length).Select(i => new object[] { i });

    [SkippableTheory]
    [MemberData(nameof(Indices))]
    public void EmbeddingsMatchTheReferenceEncodePrompt(int index)
    {
        Fixtures.Require();
        using var editor = Editor.Load(Fixtures.UltraEditTiny, "ultraedit", CPU, ScalarType.Float32);
        var model = (UltraEditModel)editor.Model;
        var g = Golden.Value;
        var prompt = Prompts[index];
        string key = $"prompt_{index}";

        // token ids first, so that a tokenizer bug is reported as such
        Assert.Equal(g[$"{key}.ids_1"].data<long>().ToArray(), model.Tokenizer!.Encode(prompt));
        Assert.Equal(g[$"{key}.ids_2"].data<long>().ToArray(), model.Tokenizer2!.Encode(prompt));
        Assert.Equal(g[$"{key}.ids_3"].data<long>().ToArray(), model.Tokenizer3!.Encode(prompt, UltraEditModel.PromptLength));

        var (embeds, pooled) = model.EncodePrompts([prompt, ""]);
        using (embeds)
        using (pooled)
        {
            TensorAssert.Close(g[$"{key}.prompt_embeds"], embeds[0..1], 1e-4, $"{key} prompt_embeds");
            TensorAssert.Close(g[$"{key}.negative_prompt_embeds"], embeds[1..2], 1e-4, $"{key} negative_prompt_embeds");
            TensorAssert.Close(g[$"{key}.pooled_prompt_embeds"], pooled[0..1], 1e-4, $"{key} pooled_prompt_embeds");
            TensorAssert.Close(g[$"{key}.negative_pooled_prompt_embeds"], pooled[1..2], 1e-4, $"{key} negative_pooled_prompt_embeds");
        }
    }

    /// <summary>The generator reproduces the fixture's own golden for the plain prompt (same reference, same call).</summary>
    [SkippableFact]
    public void GeneratorAgreesWithTheFixtureGolden()
    {
        Fixtures.Require();
        var g = Golden.Value;
        int i = Array.IndexOf(Prompts, "Replace the cat with a bear");
        foreach (var k in new[] { "prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds" })
            TensorAssert.Close(Fixtures.Golden($"ultraedit.{k}"), g[$"prompt_{i}.{k}"], 1e-5, k);
    }

    /// <summary>
    /// A tiny ELECT run with the "?!" instruction against the ELECT repository's SD3 ensemble pipeline
    /// (Data/ultraedit-elect-stormy.safetensors, scripts/goldens/make_ultraedit_elect_prompt_golden.py, with the
    /// fixtures' deliberate fixes: CPU noise per seed, relevance mask resized to the image's own size).
    /// </summary>
    [SkippableFact]
    public void ElectRunWithBangInTheInstructionMatchesTheReference()
    {
        Fixtures.Require();
        var g = SafeTensors.Load(Path.Combine(AppContext.BaseDirectory, "Data", "ultraedit-elect-stormy.safetensors"));
        try
        {
            using var editor = Editor.Load(Fixtures.UltraEditTiny, "ultraedit", CPU, ScalarType.Float32);
            var input = ImageOps.ImageResize(RgbImage.Load(Path.Combine(Fixtures.Require(), "models", "ultraedit-input.png")), 128);
            var seeds = g["seeds"].data<long>().ToArray();
            Assert.Equal(new long[] { 11, 22, 33, 44 }, seeds);
            using var result = editor.Edit(input, Prompts[0], seeds, new EditOptions { InferenceSteps = 20 },
                new SelectionOptions { StoppingStep = 8, FirstMaskStep = 0, LastMaskStep = 4, KeepAllSeeds = true });
            long best = g["best_seed"].data<long>()[0];
            Assert.Equal(best, result.BestSeed);
            var bis = g["bis"].data<double>().ToArray();
            for (int k = 0; k < seeds.Length; k++)
                Assert.True(Math.Abs(bis[k] - result.Bis![k]) <= 1e-4, $"BIS of seed {seeds[k]}: {result.Bis![k]} vs {bis[k]}");
            TensorAssert.Close(g["relevance_map"], result.RelevanceMap!, 1e-4, "relevance map");
            foreach (var s in seeds) Ip2pPipelineTests.AssertImageClose(g[$"output-{s}"], result.Images[s], $"output-{s}");
            Ip2pPipelineTests.AssertImageClose(g[$"output-best_seed-{best}"], result.Images[best], "best seed");
            using var mask = RelevanceMask.ToImage(result.RelevanceMap!, input.Width, input.Height).ToByteTensor();
            Ip2pPipelineTests.AssertImageClose(g["output-mask"], mask, "mask");
        }
        finally
        {
            foreach (var t in g.Values) t.Dispose();
        }
    }
}

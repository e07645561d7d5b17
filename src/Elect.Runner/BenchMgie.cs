using Elect.Imaging;
using Elect.Modeling;
using Elect.Models.Language;
using Elect.Models.Vision;
using Elect.Pipelines.Mgie;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Runner;

/// <summary>
/// The bench's stand-in for MGIE's multimodal LLM with random weights (no tokenizer exists for them): the real
/// architecture and the real amount of work - CLIPImageProcessor, CLIP ViT-L/14's hidden state -2, LLaVA's projector,
/// the LLaMA decoder over a prompt of LLaVA-7B-v1's shape (a vicuna_v1_1 text of <see cref="TextTokens"/> tokens around
/// &lt;im_start&gt; + 256 image rows + &lt;im_end&gt;), greedy generation of up to 96 new tokens with no repeated 3-grams
/// (random weights rarely stop early), and MGIE's [IMG] state selection. The expressive instruction is a placeholder.
/// </summary>
internal sealed class RandomMgieInstructor : IMultimodalInstructor
{
    /// <summary>Text tokens of MGIE's prompt around the image (the vicuna_v1_1 template and a short instruction).</summary>
    public const int TextTokens = 64;

    private readonly LlamaForCausalLM _llm;
    private readonly ClipVisionModel _vision;
    private readonly long _img0, _patch, _start, _end;

    /// <summary>
    /// LLaVA-7B-v1 with MGIE's vocabulary (32000 words + &lt;im_patch&gt;, &lt;im_start&gt;, &lt;im_end&gt; + [IMG0..7]) and
    /// <paramref name="layers"/> of its 32 decoder layers; CLIP ViT-L/14's vision tower. Seeded random weights
    /// (<see cref="SeededInit"/>). <paramref name="tiny"/>: 64 wide, 2 layers, a 56-pixel 2-layer tower (smoke runs).
    /// </summary>
    public static RandomMgieInstructor Build(Device device, ScalarType dtype, int? layers, bool tiny)
    {
        var llama = tiny
            ? new LlamaConfig(64, 128, 4, 4, layers ?? 2, 1011, 1e-6, 10000.0, 2048, 1, [2], 0, "openai/clip-vit-large-patch14", 32, -2, true, true)
            : new LlamaConfig(4096, 11008, 32, 32, layers ?? 32, 32011, 1e-6, 10000.0, 2048, 1, [2], 0, "openai/clip-vit-large-patch14", 1024, -2, true, true);
        var vision = tiny
            ? new ClipVisionConfig(32, 64, 4, 2, 3, 56, 14, "quick_gelu", 1e-5, 32)
            : new ClipVisionConfig(1024, 4096, 16, 24, 3, 224, 14, "quick_gelu", 1e-5, 768);
        LlamaForCausalLM? llm = null;
        try
        {
            llm = new LlamaForCausalLM(llama, device, dtype);
            SeededInit.Fill(llm, 5);
            ModuleSetup.ForInference(llm, dtype, device);
            var tower = ModuleSetup.ForInference(new ClipVisionModel(vision, device, dtype), dtype, device);
            SeededInit.Fill(tower, 6);
            return new RandomMgieInstructor(llm, tower);
        }
        catch
        {
            llm?.Dispose();
            throw;
        }
    }

    public RandomMgieInstructor(LlamaForCausalLM llm, ClipVisionModel vision)
    {
        _llm = llm;
        _vision = vision;
        // LLaVA-7B-v1's ids: 32000 words, <im_patch>, <im_start>, <im_end>, then MGIE's [IMG0..7]
        _patch = llm.Config.VocabSize - 11;
        _start = _patch + 1;
        _end = _patch + 2;
        _img0 = _patch + 3;
    }

    public int HiddenSize => _llm.Config.HiddenSize;

    public InstructorOutput Instruct(RgbImage image, string instruction)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        int side = _vision.Config.ImageSize;
        var pixels = new ClipImageProcessor(side, side, side, ClipImageProcessor.OpenAiClipMean, ClipImageProcessor.OpenAiClipStd).Preprocess(image);
        var hidden = _vision.HiddenState(pixels.to(_llm.DType).to(_llm.Device), _llm.Config.MmVisionSelectLayer)[.., 1..];
        var features = _llm.Project(hidden);
        int patches = (int)features.shape[1];
        using var g = new Generator(7);
        var text = randint(3, _patch, [TextTokens], generator: g).data<long>().ToArray();
        var ids = new List<long> { 1 };
        ids.AddRange(text[..(TextTokens / 2)]);
        ids.Add(_start);
        ids.AddRange(Enumerable.Repeat(_patch, patches));
        ids.Add(_end);
        ids.AddRange(text[(TextTokens / 2)..]);
        var embeds = LlavaInstructor.SpliceEmbeddings(_llm, ids, features, _patch, _start, _end);
        using var result = GreedyGeneration.Generate(_llm, ids, embeds, new GreedyOptions(96, 3, _llm.Config.EosTokenIds));
        int rows = (int)result.LastHiddenStates.shape[0];
        int p = LlavaInstructor.SelectImageTokenStart(result.Sequence, rows, _img0);
        var states = result.LastHiddenStates[p..(p + 8)].to(ScalarType.Float32).contiguous();
        int generated = result.Sequence.Length - result.PromptLength;
        return new InstructorOutput(states.MoveToOuterDisposeScope(), $"(random weights: {generated} tokens generated)", result.Sequence, result.PromptLength);
    }

    public void Dispose()
    {
        _llm.Dispose();
        _vision.Dispose();
    }
}

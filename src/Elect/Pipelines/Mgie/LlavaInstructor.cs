using System.Text;
using System.Text.Json;
using Elect.Imaging;
using Elect.Modeling;
using Elect.Models.Language;
using Elect.Models.Vision;
using Elect.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Pipelines.Mgie;

/// <summary>
/// MGIE's multimodal LLM as ELECT's <c>mgie_module.py</c> runs it (<c>MGIE_module.__init__</c> + <c>generate_prompt</c>):
/// LLaVA-7B-v1 (LLaMA + <c>model.mm_projector</c>) with MGIE's token tables from mllm.pt, the CLIP vision tower, the
/// vicuna_v1_1 prompt <c>"what will this image be like if '%s'" + "\n" + &lt;im_start&gt; + &lt;im_patch&gt;*N + &lt;im_end&gt;</c>,
/// greedy generation (96 new tokens, no repeated 3-grams) and MGIE's selection of the eight [IMG] hidden states.
/// </summary>
/// <remarks>
/// Steps, as the reference: the tokenizer of the LLaVA folder (<see cref="LlamaTokenizer"/>), <c>add_tokens([IMG0..7],
/// special)</c>, <c>resize_token_embeddings(len(tokenizer))</c> and mllm.pt's <c>model.embed_tokens.weight</c> /
/// <c>lm_head.weight</c> over both tables (refused when missing or not <c>[len(tokenizer), hidden]</c>), then
/// <c>&lt;im_patch&gt;</c> (and <c>&lt;im_start&gt;</c>/<c>&lt;im_end&gt;</c> when <c>mm_use_im_start_end</c>) added again
/// (already in the folder's added_tokens.json). Per edit: <see cref="ClipImageProcessor"/> of the vision tower folder, the
/// tower's <c>hidden_states[mm_vision_select_layer]</c> without the CLS row, <c>mm_projector</c>, spliced over the
/// <c>&lt;im_patch&gt;</c> embeddings after each <c>&lt;im_start&gt;</c> (with the reference's checks: as many starts as
/// ends, an end right after the patches), <see cref="GreedyGeneration"/>, then
/// <c>p = min(index([IMG0]) - 1 if [IMG0] was generated else len(hid) - 9, len(hid) - 9)</c> and <c>hid[p:p+8]</c>. The
/// reference hard-codes 32003 for [IMG0] (its id in the published tokenizer: 32000 LLaMA pieces + 3 image tokens); this
/// port uses the tokenizer's own [IMG0] id, the same number for the published folders.
/// Deviation: <see cref="RemoveAlter"/> returns "." where the reference's <c>s[-1]</c> raises IndexError (an empty answer).
/// </remarks>
public sealed class LlavaInstructor : IMultimodalInstructor
{
    public const string ImagePatchToken = "<im_patch>", ImageStartToken = "<im_start>", ImageEndToken = "<im_end>";
    public static readonly string[] ImgTokens = Enumerable.Range(0, 8).Select(i => $"[IMG{i}]").ToArray();

    /// <summary>LLaVA's conv_vicuna_v1_1 system message.</summary>
    public const string VicunaSystem = "A chat between a curious user and an artificial intelligence assistant. "
                                       + "The assistant gives helpful, detailed, and polite answers to the user's questions.";

    private readonly LlamaForCausalLM _llm;
    private readonly ClipVisionModel _vision;
    private bool _disposed;

    public LlamaTokenizer Tokenizer { get; }
    public ClipImageProcessor ImageProcessor { get; }
    public LlamaConfig Config => _llm.Config;
    public int HiddenSize => _llm.Config.HiddenSize;
    /// <summary>The id of [IMG0] (32003 for the published tokenizer).</summary>
    public long Img0Id { get; }
    public long ImagePatchId { get; }
    public long? ImageStartId { get; }
    public long? ImageEndId { get; }
    /// <summary><c>(image_size / patch_size)^2</c> of the vision tower (256 for clip-vit-large-patch14).</summary>
    public int ImageTokenLength { get; }
    /// <summary>The generation settings: 96 new tokens, no_repeat_ngram_size 3, eos from generation_config.json / config.json.</summary>
    public GreedyOptions Generation { get; }
    public Device Device => _llm.Device;
    public ScalarType DType => _llm.DType;

    private LlavaInstructor(LlamaForCausalLM llm, ClipVisionModel vision, LlamaTokenizer tokenizer, ClipImageProcessor processor, GreedyOptions generation)
    {
        _llm = llm;
        _vision = vision;
        Tokenizer = tokenizer;
        ImageProcessor = processor;
        Generation = generation;
        Img0Id = tokenizer.TokenId(ImgTokens[0])!.Value;
        ImagePatchId = tokenizer.TokenId(ImagePatchToken)!.Value;
        if (llm.Config.MmUseImStartEnd)
        {
            ImageStartId = tokenizer.TokenId(ImageStartToken);
            ImageEndId = tokenizer.TokenId(ImageEndToken);
        }
        int side = vision.Config.ImageSize / vision.Config.PatchSize;
        ImageTokenLength = side * side;
    }

    /// <summary>
    /// Loads MGIE's LLM: <paramref name="llavaDir"/> (_ckpt/LLaVA-7B-v1: config.json, tokenizer, sharded weights),
    /// <paramref name="visionTowerDir"/> (openai/clip-vit-large-patch14 as published: CLIPModel config + weights +
    /// preprocessor_config.json) and mllm.pt's tensors (only <c>model.embed_tokens.weight</c> and <c>lm_head.weight</c> are
    /// read; the caller keeps ownership).
    /// </summary>
    public static LlavaInstructor Load(string llavaDir, string visionTowerDir, IReadOnlyDictionary<string, Tensor> mllmTensors, Device device, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(mllmTensors);
        TorchRuntime.Initialize(device);
        var configPath = Path.Combine(llavaDir, "config.json");
        var config = LlamaConfig.Load(configPath);
        if (config.MmVisionTower is null || config.MmHiddenSize is null)
            throw new InvalidDataException($"{configPath}: not a LLaVA config (no mm_vision_tower / mm_hidden_size)");
        var tokenizer = LlamaTokenizer.FromFolder(llavaDir);
        tokenizer.AddTokens(ImgTokens, specialTokens: true);
        const string embedKey = "model.embed_tokens.weight", headKey = "lm_head.weight";
        foreach (var key in new[] { embedKey, headKey })
        {
            if (!mllmTensors.TryGetValue(key, out var t))
                throw new InvalidDataException($"mllm.pt: missing '{key}' (MGIE's checkpoint holds the token tables of its [IMG] tokens)");
            if (t.dim() != 2 || t.shape[0] != tokenizer.Count || t.shape[1] != config.HiddenSize)
                throw new InvalidDataException($"mllm.pt: '{key}' is [{string.Join(", ", t.shape)}]; the tokenizer of {llavaDir} with MGIE's [IMG0..7] has {tokenizer.Count} ids and the LLM is {config.HiddenSize} wide, so it must be [{tokenizer.Count}, {config.HiddenSize}]");
        }
        tokenizer.AddTokens([ImagePatchToken], specialTokens: true);
        if (config.MmUseImStartEnd) tokenizer.AddTokens([ImageStartToken, ImageEndToken], specialTokens: true);
        if (tokenizer.Count != mllmTensors[embedKey].shape[0])
            throw new InvalidDataException($"{llavaDir}: {ImagePatchToken}/{ImageStartToken}/{ImageEndToken} are not in the folder's added_tokens.json, so their ids ({tokenizer.Count - 1}) fall outside the {mllmTensors[embedKey].shape[0]}-row embedding");
        var processor = ClipImageProcessor.FromPretrained(visionTowerDir);
        var generation = new GreedyOptions(96, 3, EosTokenIds(llavaDir, config));

        LlamaForCausalLM? llm = null;
        ClipVisionModel? vision = null;
        try
        {
            llm = LlamaForCausalLM.FromPretrained(llavaDir, device, dtype);
            if (!llm.HasProjector) throw new InvalidDataException($"{configPath}: no mm_projector");
            llm.ReplaceVocabulary(mllmTensors[embedKey], mllmTensors[headKey]);
            vision = ClipVisionModel.FromPretrained(visionTowerDir, dtype, device);
            if (vision.Config.HiddenSize != config.MmHiddenSize)
                throw new InvalidDataException($"{visionTowerDir}: the vision tower is {vision.Config.HiddenSize} wide; {configPath} has mm_hidden_size {config.MmHiddenSize}");
            int count = vision.Config.NumHiddenLayers + 1, select = config.MmVisionSelectLayer;
            int index = select < 0 ? count + select : select;
            if (index < 0 || index >= count)
                throw new InvalidDataException($"{configPath}: mm_vision_select_layer {select} is outside the vision tower's {count} hidden states");
            if (processor.CropHeight != vision.Config.ImageSize || processor.CropWidth != vision.Config.ImageSize)
                throw new InvalidDataException($"{visionTowerDir}: preprocessor_config.json crops {processor.CropWidth}x{processor.CropHeight}; the vision tower takes {vision.Config.ImageSize}x{vision.Config.ImageSize}");
            return new LlavaInstructor(llm, vision, tokenizer, processor, generation);
        }
        catch
        {
            llm?.Dispose();
            vision?.Dispose();
            throw;
        }
    }

    /// <summary>eos ids of generation_config.json (as <c>from_pretrained</c> loads it), else of config.json.</summary>
    private static long[] EosTokenIds(string dir, LlamaConfig config)
    {
        var path = Path.Combine(dir, "generation_config.json");
        if (!File.Exists(path)) return config.EosTokenIds;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (!doc.RootElement.TryGetProperty("eos_token_id", out var e) || e.ValueKind == JsonValueKind.Null) return config.EosTokenIds;
            return e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().Select(x => x.GetInt64()).ToArray() : [e.GetInt64()];
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: invalid eos_token_id ({ex.Message})", ex);
        }
    }

    /// <summary>The whole prompt: conv_vicuna_v1_1 with the user message and an open assistant turn.</summary>
    public static string BuildPrompt(string instruction, int imageTokenLength, bool useImStartEnd = true)
    {
        ArgumentNullException.ThrowIfNull(instruction);
        var txt = new StringBuilder().Append("what will this image be like if '").Append(instruction).Append("'\n");
        if (useImStartEnd) txt.Append(ImageStartToken);
        for (int i = 0; i < imageTokenLength; i++) txt.Append(ImagePatchToken);
        if (useImStartEnd) txt.Append(ImageEndToken);
        // SeparatorStyle.TWO: system + sep, then role + ": " + message + sep, then the open role + ":"
        return VicunaSystem + " " + "USER: " + txt + " " + "ASSISTANT:";
    }

    /// <summary>The preprocessed image [1, 3, S, S] float32 on the CPU.</summary>
    public Tensor PixelValues(RgbImage image) => ImageProcessor.Preprocess(image);

    /// <summary>The vision tower's <c>hidden_states[mm_vision_select_layer][:, 1:]</c> [1, P, mm_hidden] (model dtype).</summary>
    public Tensor VisionFeatures(Tensor pixelValues)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var h = _vision.HiddenState(pixelValues.to(DType).to(Device), _llm.Config.MmVisionSelectLayer);
        return h[.., 1..].MoveToOuterDisposeScope();
    }

    /// <summary><c>mm_projector(features)</c> [1, P, hidden].</summary>
    public Tensor ImageFeatures(Tensor visionFeatures)
    {
        using var _ = torch.no_grad();
        return _llm.Project(visionFeatures);
    }

    /// <summary>
    /// LlavaLlamaModel.forward's splice: the token embeddings of <paramref name="ids"/> with the image features put in place
    /// of the <c>&lt;im_patch&gt;</c> rows after each <c>&lt;im_start&gt;</c> ([1, L, hidden]).
    /// </summary>
    public Tensor SpliceEmbeddings(IReadOnlyList<long> ids, Tensor imageFeatures) =>
        SpliceEmbeddings(_llm, ids, imageFeatures, ImagePatchId, ImageStartId, ImageEndId);

    /// <summary>The splice of <see cref="SpliceEmbeddings(IReadOnlyList{long}, Tensor)"/> for any LLaVA model and image-token ids.</summary>
    public static Tensor SpliceEmbeddings(LlamaForCausalLM llm, IReadOnlyList<long> ids, Tensor imageFeatures, long patchId, long? startId, long? endId)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var idTensor = torch.tensor(ids.ToArray(), [1, ids.Count], ScalarType.Int64);
        var embeds = llm.Embed(idTensor)[0];
        if (!ids.Contains(patchId)) return embeds.unsqueeze(0).MoveToOuterDisposeScope();   // not multimodal
        if (!llm.Config.MmUseImStartEnd || startId is not { } start || endId is not { } end)
            throw new NotSupportedException("LLaVA without mm_use_im_start_end (patch tokens only) is not supported; MGIE uses <im_start>/<im_end>");
        if (ids.Count(i => i == start) != ids.Count(i => i == end))
            throw new InvalidDataException("The number of image start tokens and image end tokens should be the same.");
        var starts = Enumerable.Range(0, ids.Count).Where(i => ids[i] == start).ToList();
        if (starts.Count != 1)
            throw new InvalidDataException($"the prompt holds {starts.Count} images (<im_start> tokens); MGIE passes exactly one");
        var features = imageFeatures[0].to(embeds.dtype).to(embeds.device);
        int pos = starts[0], patches = (int)features.shape[0];
        if (pos + patches + 1 >= ids.Count || ids[pos + patches + 1] != end)
            throw new InvalidDataException("The image end token should follow the image start token.");
        var spliced = torch.cat([embeds[..(pos + 1)], features, embeds[(pos + patches + 1)..]], 0);
        return spliced.unsqueeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>MGIE's <c>p</c>: <c>min(index([IMG0]) - 1 if [IMG0] in sequence else rows - 9, rows - 9)</c>.</summary>
    public static int SelectImageTokenStart(IReadOnlyList<long> sequence, int hiddenRows, long img0Id)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        int fallback = hiddenRows - 9;
        int at = -1;
        for (int i = 0; i < sequence.Count; i++) if (sequence[i] == img0Id) { at = i; break; }
        int p = Math.Min(at >= 0 ? at - 1 : fallback, fallback);
        if (p < 0)
            throw new InvalidOperationException($"MGIE's [IMG] selection needs at least 8 hidden states before the last one (p = {p}, {hiddenRows} rows)");
        return p;
    }

    public InstructorOutput Instruct(RgbImage image, string instruction)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(instruction);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var pixels = PixelValues(image);
        var features = ImageFeatures(VisionFeatures(pixels));
        var prompt = BuildPrompt(instruction, ImageTokenLength, _llm.Config.MmUseImStartEnd);
        var ids = Tokenizer.Encode(prompt);
        var embeds = SpliceEmbeddings(ids, features);
        using var result = GreedyGeneration.Generate(_llm, ids, embeds, Generation);
        int rows = (int)result.LastHiddenStates.shape[0];
        int p = SelectImageTokenStart(result.Sequence, rows, Img0Id);
        var states = result.LastHiddenStates[p..(p + 8)].to(ScalarType.Float32).contiguous();
        var text = RemoveAlter(Tokenizer.Decode(result.Sequence));
        return new InstructorOutput(states.MoveToOuterDisposeScope(), text, result.Sequence, result.PromptLength);
    }

    /// <summary>
    /// mgie_module.py's <c>remove_alter</c> ("hack expressive instruction"): the text after "ASSISTANT:", up to "&lt;/s&gt;",
    /// before "alternative" (any case), before "[IMG0]", its first two '.'-separated sentences (each stripped), ending with
    /// '.'. Python's <c>str.strip</c> whitespace and <c>str.lower</c> indexing are reproduced. Deviation: an empty result
    /// gives "." where the reference raises IndexError (<c>s[-1]</c> of an empty string).
    /// </summary>
    public static string RemoveAlter(string s)
    {
        ArgumentNullException.ThrowIfNull(s);
        int i = s.IndexOf("ASSISTANT:", StringComparison.Ordinal);
        if (i >= 0) s = PyStrip(s[(i + 10)..]);
        i = s.IndexOf("</s>", StringComparison.Ordinal);
        if (i >= 0) s = PyStrip(s[..i]);
        var (lower, mapBack) = PyLower(s);
        i = lower.IndexOf("alternative", StringComparison.Ordinal);
        if (i >= 0) s = mapBack(i);
        i = s.IndexOf("[IMG0]", StringComparison.Ordinal);
        if (i >= 0) s = s[..i];
        s = string.Join(".", s.Split('.').Take(2).Select(PyStrip));
        if (s.Length == 0 || s[^1] != '.') s += ".";
        return PyStrip(s);
    }

    /// <summary>Python's <c>str.isspace</c> set (category Zs or bidirectional WS / B / S).</summary>
    private static bool IsPySpace(char c) => c is '\t' or '\n' or '\v' or '\f' or '\r' or '\x1c' or '\x1d' or '\x1e' or '\x1f' or ' '
        or '\x85' or '\xa0' or '\u1680' or (>= '\u2000' and <= '\u200a') or '\u2028' or '\u2029' or '\u202f' or '\u205f' or '\u3000';

    private static string PyStrip(string s)
    {
        int a = 0, b = s.Length;
        while (a < b && IsPySpace(s[a])) a++;
        while (b > a && IsPySpace(s[b - 1])) b--;
        return s[a..b];
    }

    /// <summary>
    /// <c>s.lower()</c> and, for a UTF-16 index into it, the reference's <c>s[:k]</c> with k the code-point index of that
    /// position in the lowered string (U+0130 lowers to two code points, which shifts the cut as in Python).
    /// </summary>
    private static (string Lower, Func<int, string> MapBack) PyLower(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length;)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                sb.Append(s, i, 2);   // ASCII matching is all this lowering is used for; keep supplementary code points
                i += 2;
                continue;
            }
            sb.Append(s[i] == '\u0130' ? "i\u0307" : char.ToLowerInvariant(s[i]).ToString());
            i++;
        }
        var lower = sb.ToString();
        string MapBack(int utf16Index)
        {
            int k = 0;   // code points of lower before the index
            for (int j = 0; j < utf16Index; j++) if (!char.IsLowSurrogate(lower[j]) || j == 0 || !char.IsHighSurrogate(lower[j - 1])) k++;
            int pos = 0;
            for (int n = 0; n < k && pos < s.Length; n++)
                pos += char.IsHighSurrogate(s[pos]) && pos + 1 < s.Length && char.IsLowSurrogate(s[pos + 1]) ? 2 : 1;
            return s[..pos];
        }
        return (lower, MapBack);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _llm.Dispose();
        _vision.Dispose();
    }
}

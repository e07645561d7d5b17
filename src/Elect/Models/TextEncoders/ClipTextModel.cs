using Elect.Modeling;
using Elect.Models.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.TextEncoders;

/// <summary>
/// Outputs of <see cref="ClipTextModel"/> (transformers' <c>CLIPTextModel</c> /
/// <c>CLIPTextModelWithProjection</c>). Owns its tensors.
/// </summary>
/// <param name="LastHiddenState">[B, L, hidden]: the last encoder layer's output after the final layer norm.</param>
/// <param name="PenultimateHiddenState">[B, L, hidden]: transformers' <c>hidden_states[-2]</c>, the input of the
/// last encoder layer (no final layer norm).</param>
/// <param name="PooledOutput">[B, hidden]: the final-layer-normed state at each sequence's end-of-text token.</param>
/// <param name="TextEmbeds">[B, projection_dim]: <c>text_projection(PooledOutput)</c>, only for
/// <c>CLIPTextModelWithProjection</c> checkpoints.</param>
public sealed record ClipTextOutput(Tensor LastHiddenState, Tensor PenultimateHiddenState, Tensor PooledOutput, Tensor? TextEmbeds)
    : IDisposable
{
    public void Dispose()
    {
        LastHiddenState.Dispose();
        PenultimateHiddenState.Dispose();
        PooledOutput.Dispose();
        TextEmbeds?.Dispose();
    }
}

/// <summary>The <c>config.json</c> fields of a CLIP text encoder.</summary>
public sealed record ClipTextConfig(
    int VocabSize, int HiddenSize, int IntermediateSize, int NumAttentionHeads, int NumHiddenLayers,
    int MaxPositionEmbeddings, string HiddenAct, double LayerNormEps, int ProjectionDim, long EosTokenId,
    bool WithProjection)
{
    /// <summary>The CLIP BPE end-of-text id (the highest id of the original vocabulary).</summary>
    public const long ClipEndOfTextId = 49407;

    public static ClipTextConfig From(ModelConfig c)
    {
        var arch = c.Has("architectures") ? c.Strings("architectures") : [];
        bool withProjection;
        if (arch.Contains("CLIPTextModelWithProjection")) withProjection = true;
        else if (arch.Length == 0 || arch.Contains("CLIPTextModel")) withProjection = false;
        else throw new InvalidDataException($"{c.Source}: architectures [{string.Join(", ", arch)}] is not CLIPTextModel or CLIPTextModelWithProjection");
        var cfg = new ClipTextConfig(
            // absent keys take transformers' CLIPTextConfig defaults (the ViT-B/32 text tower), as a minimal saved config relies on
            VocabSize: c.Int("vocab_size", 49408),
            HiddenSize: c.Int("hidden_size", 512),
            IntermediateSize: c.Int("intermediate_size", 2048),
            NumAttentionHeads: c.Int("num_attention_heads", 8),
            NumHiddenLayers: c.Int("num_hidden_layers", 12),
            MaxPositionEmbeddings: c.Int("max_position_embeddings", 77),
            HiddenAct: c.String("hidden_act", "quick_gelu"),
            LayerNormEps: c.Double("layer_norm_eps", 1e-5),
            ProjectionDim: c.Int("projection_dim", 512),
            EosTokenId: c.Has("eos_token_id") ? c.Long("eos_token_id") : 2,
            WithProjection: withProjection);
        if (cfg.HiddenSize <= 0 || cfg.NumAttentionHeads <= 0 || cfg.HiddenSize % cfg.NumAttentionHeads != 0)
            throw new InvalidDataException($"{c.Source}: hidden_size {cfg.HiddenSize} is not a positive multiple of num_attention_heads {cfg.NumAttentionHeads}");
        if (cfg.NumHiddenLayers < 1)
            throw new InvalidDataException($"{c.Source}: num_hidden_layers must be at least 1");
        Activations.Check(cfg.HiddenAct, c.Source, "hidden_act");
        c.RejectUnsupported(onlyValues: new Dictionary<string, object?[]> { ["model_type"] = ["clip_text_model"] });
        return cfg;
    }
}

internal sealed class ClipTextEmbeddings : nn.Module<Tensor, Tensor>
{
    private readonly Embedding token_embedding;
    private readonly Embedding position_embedding;
    private readonly int _maxPositions;

    public ClipTextEmbeddings(ClipTextConfig cfg, Device device, ScalarType dtype) : base(nameof(ClipTextEmbeddings))
    {
        token_embedding = nn.Embedding(cfg.VocabSize, cfg.HiddenSize, device: device, dtype: dtype);
        position_embedding = nn.Embedding(cfg.MaxPositionEmbeddings, cfg.HiddenSize, device: device, dtype: dtype);
        _maxPositions = cfg.MaxPositionEmbeddings;
        RegisterComponents();
    }

    public override Tensor forward(Tensor inputIds)
    {
        long len = inputIds.shape[^1];
        if (len > _maxPositions)
            throw new ArgumentException($"CLIP text encoder: sequence length {len} exceeds max_position_embeddings {_maxPositions}");
        using var scope = torch.NewDisposeScope();
        var positions = torch.arange(len, dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0);
        var h = token_embedding.forward(inputIds) + position_embedding.forward(positions);
        return h.MoveToOuterDisposeScope();
    }
}

internal sealed class ClipTextTransformer : nn.Module
{
    private readonly ClipTextEmbeddings embeddings;
    private readonly ClipEncoder encoder;
    private readonly LayerNorm final_layer_norm;

    public ClipTextTransformer(ClipTextConfig cfg, Device device, ScalarType dtype) : base(nameof(ClipTextTransformer))
    {
        embeddings = new ClipTextEmbeddings(cfg, device, dtype);
        encoder = new ClipEncoder(new ClipEncoderShape(cfg.HiddenSize, cfg.NumAttentionHeads, cfg.IntermediateSize, cfg.HiddenAct,
            cfg.LayerNormEps, cfg.NumHiddenLayers, Causal: true), device, dtype);
        final_layer_norm = nn.LayerNorm(cfg.HiddenSize, cfg.LayerNormEps, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>(last hidden state after final layer norm, hidden_states[-2]).</summary>
    public (Tensor Last, Tensor Penultimate) Run(Tensor inputIds)
    {
        using var scope = torch.NewDisposeScope();
        var h = embeddings.forward(inputIds);
        var layers = encoder.Layers;
        Tensor penultimate = h;
        for (int i = 0; i < layers.Count; i++)
        {
            if (i == layers.Count - 1) penultimate = h;
            h = layers[i].forward(h);
        }
        var last = final_layer_norm.forward(h);
        return (last.MoveToOuterDisposeScope(), penultimate.MoveToOuterDisposeScope());
    }
}

/// <summary>
/// transformers' <c>CLIPTextModel</c> and <c>CLIPTextModelWithProjection</c> (chosen by the config's
/// <c>architectures</c>): token + learned position embeddings, pre-norm causal transformer, final
/// layer norm, and for the projection variant a bias-free <c>text_projection</c>.
/// </summary>
public sealed class ClipTextModel : nn.Module<Tensor, ClipTextOutput>
{
    private readonly ClipTextTransformer text_model;
    private readonly Linear? text_projection;

    public ClipTextConfig Config { get; }

    public ClipTextModel(ClipTextConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(ClipTextModel))
    {
        device ??= torch.CPU;
        Config = config;
        text_model = new ClipTextTransformer(config, device, dtype);
        if (config.WithProjection)
            text_projection = nn.Linear(config.HiddenSize, config.ProjectionDim, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>
    /// Builds the encoder described by <paramref name="dir"/>/config.json and loads its safetensors
    /// weights (strict: every tensor must be present and match). Both the transformers layout
    /// (<c>text_model.*</c>) and prefix-less checkpoints are accepted; a saved
    /// <c>text_model.embeddings.position_ids</c> buffer is ignored.
    /// </summary>
    public static ClipTextModel FromPretrained(string dir, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        device ??= torch.CPU;
        TorchRuntime.Initialize(device);
        var cfg = ClipTextConfig.From(ModelConfig.Load(Path.Combine(dir, "config.json")));
        return ModuleSetup.LoadPretrained(new ClipTextModel(cfg, device, dtype), dir, dtype, device,
            ignoreUnexpected: k => k.EndsWith("embeddings.position_ids", StringComparison.Ordinal),
            rename: k => k.StartsWith("text_model.", StringComparison.Ordinal) || k.StartsWith("text_projection.", StringComparison.Ordinal)
                ? k : "text_model." + k, builtInPlace: true);
    }

    /// <summary>Runs the encoder on int64 token ids [B, L] (L ≤ max_position_embeddings).</summary>
    public override ClipTextOutput forward(Tensor inputIds)
    {
        if (inputIds.dim() != 2)
            throw new ArgumentException($"CLIP text encoder: input_ids must be [batch, length], got [{string.Join(", ", inputIds.shape)}]");
        using var scope = torch.NewDisposeScope();
        var dev = ((nn.Module)text_model).parameters().First().device;
        var ids = inputIds.to(ScalarType.Int64).to(dev);
        var (last, penultimate) = text_model.Run(ids);
        var eos = EosPositions(ids, Config.EosTokenId);
        var pooled = last[torch.arange(last.shape[0], dtype: ScalarType.Int64, device: dev), eos];
        var embeds = text_projection?.forward(pooled);
        var result = new ClipTextOutput(last.MoveToOuterDisposeScope(), penultimate.MoveToOuterDisposeScope(),
                                        pooled.MoveToOuterDisposeScope(), embeds?.MoveToOuterDisposeScope());
        return result;
    }

    /// <summary>
    /// The pooled position per sequence, as transformers picks it: when every sequence's highest id
    /// is CLIP's end-of-text id 49407 (all configs with the legacy <c>eos_token_id: 2</c> and real CLIP
    /// tokenisations), the argmax of the ids (the first end-of-text token); otherwise the first
    /// position holding <c>eos_token_id</c>.
    /// </summary>
    public static Tensor EosPositions(Tensor inputIds, long eosTokenId)
    {
        using var scope = torch.NewDisposeScope();
        var legacy = (inputIds.max(-1).values == ClipTextConfig.ClipEndOfTextId).all().item<bool>();
        var pos = legacy
            ? inputIds.to(ScalarType.Int32).argmax(-1)
            : (inputIds == eosTokenId).to(ScalarType.Int32).argmax(-1);
        return pos.MoveToOuterDisposeScope();
    }
}

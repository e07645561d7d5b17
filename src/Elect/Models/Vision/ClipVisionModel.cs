using System.Text.Json;
using Elect.Modeling;
using Elect.Models.Blocks;
using Elect.Models.TextEncoders;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Vision;

/// <summary>The <c>vision_config</c> of a CLIP checkpoint (or a <c>CLIPVisionModelWithProjection</c>'s config.json).</summary>
public sealed record ClipVisionConfig(int HiddenSize, int IntermediateSize, int NumAttentionHeads, int NumHiddenLayers,
    int NumChannels, int ImageSize, int PatchSize, string HiddenAct, double LayerNormEps, int ProjectionDim)
{
    public static ClipVisionConfig From(ModelConfig c)
    {
        var cfg = new ClipVisionConfig(
            // absent keys take transformers' CLIPVisionConfig defaults (ViT-B/32), as a minimal saved config relies on
            HiddenSize: c.Int("hidden_size", 768),
            IntermediateSize: c.Int("intermediate_size", 3072),
            NumAttentionHeads: c.Int("num_attention_heads", 12),
            NumHiddenLayers: c.Int("num_hidden_layers", 12),
            NumChannels: c.Int("num_channels", 3),
            ImageSize: c.Int("image_size", 224),
            PatchSize: c.Int("patch_size", 32),
            HiddenAct: c.String("hidden_act", "quick_gelu"),
            LayerNormEps: c.Double("layer_norm_eps", 1e-5),
            ProjectionDim: c.Int("projection_dim", 512));
        if (cfg.HiddenSize <= 0 || cfg.NumAttentionHeads <= 0 || cfg.HiddenSize % cfg.NumAttentionHeads != 0)
            throw new InvalidDataException($"{c.Source}: hidden_size {cfg.HiddenSize} is not a positive multiple of num_attention_heads {cfg.NumAttentionHeads}");
        if (cfg.PatchSize <= 0 || cfg.ImageSize % cfg.PatchSize != 0)
            throw new InvalidDataException($"{c.Source}: image_size {cfg.ImageSize} is not a multiple of patch_size {cfg.PatchSize}");
        if (cfg.NumHiddenLayers < 1) throw new InvalidDataException($"{c.Source}: num_hidden_layers must be at least 1");
        Activations.Check(cfg.HiddenAct, c.Source, "hidden_act");
        c.RejectUnsupported(informational: ["attention_dropout", "dropout", "initializer_range", "initializer_factor"],
                            onlyValues: new Dictionary<string, object?[]> { ["model_type"] = ["clip_vision_model"] });
        return cfg;
    }

    /// <summary>
    /// Reads <paramref name="configPath"/>: a CLIPModel config (openai/clip-vit-large-patch14: its <c>vision_config</c>
    /// and top-level <c>projection_dim</c>) or a vision-model config.
    /// </summary>
    public static ClipVisionConfig Load(string configPath)
    {
        var full = ModelConfig.Load(configPath);
        if (full.Raw("vision_config") is not { } vision) return From(full);
        int projection = full.Int("projection_dim", 512);
        var sub = From(new ModelConfig(vision, configPath + ":vision_config"));
        return sub with { ProjectionDim = projection };
    }
}

internal sealed class ClipVisionEmbeddings : nn.Module<Tensor, Tensor>
{
    private readonly Parameter class_embedding;
    private readonly Conv2d patch_embedding;
    private readonly Embedding position_embedding;
    private readonly int _positions;

    public ClipVisionEmbeddings(ClipVisionConfig cfg, Device device, ScalarType dtype) : base(nameof(ClipVisionEmbeddings))
    {
        class_embedding = nn.Parameter(torch.zeros(cfg.HiddenSize, device: device, dtype: dtype));
        patch_embedding = nn.Conv2d(cfg.NumChannels, cfg.HiddenSize, cfg.PatchSize, stride: cfg.PatchSize, bias: false, device: device, dtype: dtype);
        _positions = (cfg.ImageSize / cfg.PatchSize) * (cfg.ImageSize / cfg.PatchSize) + 1;
        position_embedding = nn.Embedding(_positions, cfg.HiddenSize, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels)
    {
        using var scope = torch.NewDisposeScope();
        long b = pixels.shape[0];
        var patches = patch_embedding.forward(pixels).flatten(2).transpose(1, 2);
        if (patches.shape[1] + 1 != _positions)
            throw new ArgumentException($"CLIP vision: {pixels.shape[3]}x{pixels.shape[2]} pixels give {patches.shape[1]} patches; the model's position embedding has {_positions - 1}");
        var cls = class_embedding.expand(b, 1, -1);
        var h = torch.cat([cls, patches], 1);
        var pos = torch.arange(_positions, dtype: ScalarType.Int64, device: pixels.device).unsqueeze(0);
        return (h + position_embedding.forward(pos)).MoveToOuterDisposeScope();
    }
}

internal sealed class ClipVisionTransformer : nn.Module
{
    private readonly ClipVisionEmbeddings embeddings;
    private readonly LayerNorm pre_layrnorm;   // transformers' spelling
    private readonly ClipEncoder encoder;
    private readonly LayerNorm post_layernorm;

    public ClipVisionTransformer(ClipVisionConfig cfg, Device device, ScalarType dtype) : base(nameof(ClipVisionTransformer))
    {
        embeddings = new ClipVisionEmbeddings(cfg, device, dtype);
        pre_layrnorm = nn.LayerNorm(cfg.HiddenSize, cfg.LayerNormEps, device: device, dtype: dtype);
        encoder = new ClipEncoder(new ClipEncoderShape(cfg.HiddenSize, cfg.NumAttentionHeads, cfg.IntermediateSize, cfg.HiddenAct,
            cfg.LayerNormEps, cfg.NumHiddenLayers, Causal: false), device, dtype);
        post_layernorm = nn.LayerNorm(cfg.HiddenSize, cfg.LayerNormEps, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>(last hidden state [B, 1+P, D] without a final norm, hidden_states[-2], pooled = post_layernorm(CLS)).</summary>
    public (Tensor Last, Tensor Penultimate, Tensor Pooled) Run(Tensor pixels)
    {
        using var scope = torch.NewDisposeScope();
        var h = pre_layrnorm.forward(embeddings.forward(pixels));
        var layers = encoder.Layers;
        Tensor penultimate = h;
        for (int i = 0; i < layers.Count; i++)
        {
            if (i == layers.Count - 1) penultimate = h;
            h = layers[i].forward(h);
        }
        var pooled = post_layernorm.forward(h[.., 0]);
        return (h.MoveToOuterDisposeScope(), penultimate.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }

    /// <summary>transformers' <c>hidden_states[index]</c> for 0 &lt;= index &lt;= layers (0: the embeddings after
    /// pre_layrnorm); runs only the layers needed.</summary>
    public Tensor HiddenState(Tensor pixels, int index)
    {
        using var scope = torch.NewDisposeScope();
        var h = pre_layrnorm.forward(embeddings.forward(pixels));
        var layers = encoder.Layers;
        for (int i = 0; i < index; i++) h = layers[i].forward(h);
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>Outputs of <see cref="ClipVisionModel"/>; owns its tensors.</summary>
/// <param name="LastHiddenState">[B, 1+P, hidden] (transformers' <c>last_hidden_state</c>: no final norm).</param>
/// <param name="PenultimateHiddenState">[B, 1+P, hidden]: <c>hidden_states[-2]</c> (what LLaVA-style models, MGIE among them, read).</param>
/// <param name="PooledOutput">[B, hidden]: <c>post_layernorm</c> of the class token.</param>
/// <param name="ImageEmbeds">[B, projection_dim]: <c>visual_projection(PooledOutput)</c> (<c>get_image_features</c>).</param>
public sealed record ClipVisionOutput(Tensor LastHiddenState, Tensor PenultimateHiddenState, Tensor PooledOutput, Tensor ImageEmbeds) : IDisposable
{
    public void Dispose()
    {
        LastHiddenState.Dispose();
        PenultimateHiddenState.Dispose();
        PooledOutput.Dispose();
        ImageEmbeds.Dispose();
    }
}

/// <summary>
/// transformers' <c>CLIPVisionModelWithProjection</c> (the vision tower of <c>CLIPModel</c>): bias-free patch
/// convolution, class token, learned positions, <c>pre_layrnorm</c>, pre-norm transformer, <c>post_layernorm</c> on
/// the class token, bias-free <c>visual_projection</c>. Loads from a CLIPModel folder (openai/clip-vit-large-patch14:
/// the text tower and <c>logit_scale</c> are skipped) or a vision-only one.
/// </summary>
public sealed class ClipVisionModel : nn.Module<Tensor, ClipVisionOutput>
{
    private readonly ClipVisionTransformer vision_model;
    private readonly Linear visual_projection;

    public ClipVisionConfig Config { get; }

    public ClipVisionModel(ClipVisionConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(ClipVisionModel))
    {
        device ??= torch.CPU;
        Config = config;
        vision_model = new ClipVisionTransformer(config, device, dtype);
        visual_projection = nn.Linear(config.HiddenSize, config.ProjectionDim, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    public static ClipVisionModel FromPretrained(string dir, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        device ??= torch.CPU;
        TorchRuntime.Initialize(device);
        var cfg = ClipVisionConfig.Load(Path.Combine(dir, "config.json"));
        return ModuleSetup.LoadPretrained(new ClipVisionModel(cfg, device, dtype), dir, dtype, device, ignoreUnexpected: IsUnusedKey);
    }

    /// <summary>The keys of a CLIPModel folder the vision tower does not load: the text side, <c>logit_scale</c>, saved position ids.</summary>
    public static bool IsUnusedKey(string key) =>
        key.StartsWith("text_model.", StringComparison.Ordinal) || key.StartsWith("text_projection.", StringComparison.Ordinal)
        || key == "logit_scale" || key.EndsWith("embeddings.position_ids", StringComparison.Ordinal);

    /// <summary>Runs the tower on normalised pixels [B, C, image_size, image_size].</summary>
    public override ClipVisionOutput forward(Tensor pixels)
    {
        if (pixels.dim() != 4 || pixels.shape[1] != Config.NumChannels)
            throw new ArgumentException($"CLIP vision: pixel_values must be [batch, {Config.NumChannels}, H, W], got [{string.Join(", ", pixels.shape)}]");
        using var scope = torch.NewDisposeScope();
        var p = ((nn.Module)vision_model).parameters().First();
        var (last, pen, pooled) = vision_model.Run(pixels.to(p.dtype).to(p.device));
        var embeds = visual_projection.forward(pooled);
        return new ClipVisionOutput(last.MoveToOuterDisposeScope(), pen.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope(), embeds.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// <c>vision_model(pixels, output_hidden_states=True).hidden_states[layer]</c> [B, 1+P, hidden], counted as transformers
    /// counts them: <c>num_hidden_layers + 1</c> entries, index 0 the embeddings after <c>pre_layrnorm</c>, negative indices
    /// from the end (LLaVA's <c>mm_vision_select_layer</c> -2 = the penultimate layer's output).
    /// </summary>
    public Tensor HiddenState(Tensor pixels, int layer)
    {
        if (pixels.dim() != 4 || pixels.shape[1] != Config.NumChannels)
            throw new ArgumentException($"CLIP vision: pixel_values must be [batch, {Config.NumChannels}, H, W], got [{string.Join(", ", pixels.shape)}]");
        int count = Config.NumHiddenLayers + 1;
        int index = layer < 0 ? count + layer : layer;
        if (index < 0 || index >= count)
            throw new ArgumentOutOfRangeException(nameof(layer), $"CLIP vision: hidden_states[{layer}] does not exist ({count} hidden states: the embeddings and {Config.NumHiddenLayers} layers)");
        using var scope = torch.NewDisposeScope();
        var p = ((nn.Module)vision_model).parameters().First();
        return vision_model.HiddenState(pixels.to(p.dtype).to(p.device), index).MoveToOuterDisposeScope();
    }
}

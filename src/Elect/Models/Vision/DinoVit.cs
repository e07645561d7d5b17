using Elect.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Vision;

/// <summary>The config.json of a transformers ViTModel (facebook/dino-vitb8).</summary>
public sealed record VitConfig(int HiddenSize, int IntermediateSize, int NumAttentionHeads, int NumHiddenLayers,
    int NumChannels, int ImageSize, int PatchSize, double LayerNormEps, bool QkvBias)
{
    public static VitConfig Load(string path)
    {
        var c = ModelConfig.Load(path);
        var cfg = new VitConfig(c.Int("hidden_size"), c.Int("intermediate_size"), c.Int("num_attention_heads"), c.Int("num_hidden_layers"),
            c.Int("num_channels", 3), c.Int("image_size", 224), c.Int("patch_size", 16), c.Double("layer_norm_eps", 1e-12), c.Bool("qkv_bias", true));
        if (cfg.HiddenSize <= 0 || cfg.NumAttentionHeads <= 0 || cfg.HiddenSize % cfg.NumAttentionHeads != 0)
            throw new InvalidDataException($"{path}: hidden_size {cfg.HiddenSize} is not a positive multiple of num_attention_heads {cfg.NumAttentionHeads}");
        if (c.String("hidden_act", "gelu") != "gelu") throw new NotSupportedException($"{path}: hidden_act '{c.String("hidden_act")}' is not supported (only gelu)");
        c.RejectUnsupported(informational: ["attention_probs_dropout_prob", "hidden_dropout_prob", "initializer_range", "encoder_stride", "pooler_act", "pooler_output_size", "add_pooling_layer"],
                            onlyValues: new Dictionary<string, object?[]> { ["model_type"] = ["vit"] });
        return cfg;
    }
}

internal sealed class VitSelfAttention : nn.Module
{
    public readonly Linear query, key, value;

    public VitSelfAttention(VitConfig c) : base(nameof(VitSelfAttention))
    {
        query = nn.Linear(c.HiddenSize, c.HiddenSize, hasBias: c.QkvBias);
        key = nn.Linear(c.HiddenSize, c.HiddenSize, hasBias: c.QkvBias);
        value = nn.Linear(c.HiddenSize, c.HiddenSize, hasBias: c.QkvBias);
        RegisterComponents();
    }
}

internal sealed class VitSelfOutput : nn.Module
{
    public readonly Linear dense;

    public VitSelfOutput(VitConfig c) : base(nameof(VitSelfOutput))
    {
        dense = nn.Linear(c.HiddenSize, c.HiddenSize);
        RegisterComponents();
    }
}

internal sealed class VitAttention : nn.Module
{
    public readonly VitSelfAttention attention;
    public readonly VitSelfOutput output;

    public VitAttention(VitConfig c) : base(nameof(VitAttention))
    {
        attention = new VitSelfAttention(c);
        output = new VitSelfOutput(c);
        RegisterComponents();
    }
}

internal sealed class VitDense : nn.Module
{
    public readonly Linear dense;

    public VitDense(long i, long o) : base(nameof(VitDense))
    {
        dense = nn.Linear(i, o);
        RegisterComponents();
    }
}

internal sealed class VitLayer : nn.Module
{
    public readonly LayerNorm layernorm_before, layernorm_after;
    public readonly VitAttention attention;
    public readonly VitDense intermediate, output;
    private readonly int _heads;

    public VitLayer(VitConfig c) : base(nameof(VitLayer))
    {
        layernorm_before = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        attention = new VitAttention(c);
        layernorm_after = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        intermediate = new VitDense(c.HiddenSize, c.IntermediateSize);
        output = new VitDense(c.IntermediateSize, c.HiddenSize);
        _heads = c.NumAttentionHeads;
        RegisterComponents();
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], l = x.shape[1], d = x.shape[2];
        var h = layernorm_before.forward(x);
        Tensor Heads(Linear p) => p.forward(h).view(b, l, _heads, d / _heads).transpose(1, 2);
        var a = nn.functional.scaled_dot_product_attention(Heads(attention.attention.query), Heads(attention.attention.key), Heads(attention.attention.value));
        x = x + attention.output.dense.forward(a.transpose(1, 2).reshape(b, l, d));
        x = x + output.dense.forward(nn.functional.gelu(intermediate.dense.forward(layernorm_after.forward(x))));
        return x.MoveToOuterDisposeScope();
    }
}

internal sealed class VitPatchEmbeddings : nn.Module
{
    public readonly Conv2d projection;

    public VitPatchEmbeddings(VitConfig c) : base(nameof(VitPatchEmbeddings))
    {
        projection = nn.Conv2d(c.NumChannels, c.HiddenSize, c.PatchSize, stride: c.PatchSize);
        RegisterComponents();
    }
}

internal sealed class VitEmbeddings : nn.Module
{
    public readonly Parameter cls_token, position_embeddings;
    public readonly VitPatchEmbeddings patch_embeddings;

    public VitEmbeddings(VitConfig c) : base(nameof(VitEmbeddings))
    {
        long n = (c.ImageSize / c.PatchSize) * (c.ImageSize / c.PatchSize);
        cls_token = nn.Parameter(torch.zeros(1, 1, c.HiddenSize));
        position_embeddings = nn.Parameter(torch.zeros(1, n + 1, c.HiddenSize));
        patch_embeddings = new VitPatchEmbeddings(c);
        RegisterComponents();
    }
}

internal sealed class VitEncoder : nn.Module
{
    public readonly ModuleList<VitLayer> layer = new();

    public VitEncoder(VitConfig c) : base(nameof(VitEncoder))
    {
        for (int i = 0; i < c.NumHiddenLayers; i++) layer.Add(new VitLayer(c));
        RegisterComponents();
    }
}

/// <summary>
/// A transformers ViTModel (the facebook/dino-vitb8 / dino-vits16 layout; the sizes come from config.json): the
/// attention keys of one layer, what PIE-Bench's structure distance reads (DINO's <c>blocks[l].attn.qkv</c> output, key
/// third, which is transformers' <c>key</c> projection of the layer-normed input), and the class token after the final
/// norm, what torch.hub's DINO <c>model(x)</c> returns (MagicBrush's DINO metric). Weights: <c>model.safetensors</c> /
/// <c>pytorch_model.bin</c> with or without the <c>vit.</c> prefix; the pooler is not used.
/// </summary>
public sealed class DinoVit : nn.Module
{
    private readonly VitEmbeddings embeddings;
    private readonly VitEncoder encoder;
    private readonly LayerNorm layernorm;

    public VitConfig Config { get; }

    public DinoVit(VitConfig config) : base(nameof(DinoVit))
    {
        Config = config;
        embeddings = new VitEmbeddings(config);
        encoder = new VitEncoder(config);
        layernorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    /// <summary>
    /// Loads a ViTModel folder; <paramref name="layerNormEps"/> replaces the config's <c>layer_norm_eps</c> (the Hub's
    /// DINO conversions say transformers' default 1e-12 where DINO's own models use 1e-6).
    /// </summary>
    public static DinoVit FromPretrained(string dir, double? layerNormEps = null)
    {
        TorchRuntime.Initialize();
        var cfg = VitConfig.Load(Path.Combine(dir, "config.json"));
        if (layerNormEps is { } eps) cfg = cfg with { LayerNormEps = eps };
        return ModuleSetup.LoadPretrained(new DinoVit(cfg), dir, ScalarType.Float32, torch.CPU,
            ignoreUnexpected: k => k.Contains("pooler.", StringComparison.Ordinal) || k.Contains("mask_token", StringComparison.Ordinal),
            rename: k => k.StartsWith("vit.", StringComparison.Ordinal) ? k[4..] : k);
    }

    /// <summary>
    /// The class token after the final norm, [B, hidden], for pixels [B,C,S,S] (S = image_size): DINO's
    /// <c>VisionTransformer.forward</c> (<c>norm(blocks(prepare_tokens(x)))[:, 0]</c>; at S its position interpolation is
    /// the identity), i.e. transformers' <c>last_hidden_state[:, 0]</c>.
    /// </summary>
    public Tensor ClsOutput(Tensor pixels)
    {
        if (pixels.dim() != 4 || pixels.shape[1] != Config.NumChannels || pixels.shape[2] != Config.ImageSize || pixels.shape[3] != Config.ImageSize)
            throw new ArgumentException($"DINO ViT: pixels must be [B,{Config.NumChannels},{Config.ImageSize},{Config.ImageSize}], got [{string.Join(",", pixels.shape)}]");
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        long b = pixels.shape[0];
        var p = embeddings.patch_embeddings.projection.forward(pixels).flatten(2).transpose(1, 2);
        var h = torch.cat([embeddings.cls_token.expand(b, -1, -1), p], 1) + embeddings.position_embeddings;
        for (int i = 0; i < Config.NumHiddenLayers; i++) h = encoder.layer[i].Forward(h);
        return layernorm.forward(h[.., 0]).MoveToOuterDisposeScope();
    }

    /// <summary>The keys [heads, tokens, head_dim] of layer <paramref name="layer"/> for one image [1,C,S,S] (S = image_size).</summary>
    public Tensor Keys(Tensor pixels, int layer)
    {
        if (layer < 0 || layer >= Config.NumHiddenLayers) throw new ArgumentOutOfRangeException(nameof(layer), $"layer {layer} is outside 0..{Config.NumHiddenLayers - 1}");
        if (pixels.dim() != 4 || pixels.shape[0] != 1 || pixels.shape[2] != Config.ImageSize || pixels.shape[3] != Config.ImageSize)
            throw new ArgumentException($"DINO ViT: pixels must be [1,{Config.NumChannels},{Config.ImageSize},{Config.ImageSize}], got [{string.Join(",", pixels.shape)}]");
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var p = embeddings.patch_embeddings.projection.forward(pixels).flatten(2).transpose(1, 2);
        var h = torch.cat([embeddings.cls_token.expand(1, -1, -1), p], 1) + embeddings.position_embeddings;
        for (int i = 0; i < layer; i++) h = encoder.layer[i].Forward(h);
        var l = encoder.layer[layer];
        var k = l.attention.attention.key.forward(l.layernorm_before.forward(h));
        long t = k.shape[1], heads = Config.NumAttentionHeads;
        return k.reshape(t, heads, Config.HiddenSize / heads).permute(1, 0, 2).MoveToOuterDisposeScope();
    }
}

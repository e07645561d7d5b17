using Elect.Modeling;
using Elect.Models.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.TextEncoders;

/// <summary>The <c>config.json</c> fields of a T5 encoder.</summary>
public sealed record T5Config(
    int VocabSize, int DModel, int DKv, int DFf, int NumHeads, int NumLayers,
    int RelativeAttentionNumBuckets, int RelativeAttentionMaxDistance, bool GatedAct, string DenseActFn,
    double LayerNormEpsilon)
{
    public static T5Config From(ModelConfig c)
    {
        // transformers' T5Config: feed_forward_proj "{gated-}ACT"; "gated-gelu" means gelu_new.
        var proj = c.String("feed_forward_proj", "relu");
        var parts = proj.Split('-');
        bool gated = parts.Length == 2 && parts[0] == "gated";
        if (parts.Length > 2 || (parts.Length == 2 && !gated))
            throw new InvalidDataException($"{c.Source}: feed_forward_proj '{proj}' is not 'ACT' or 'gated-ACT'");
        var act = parts[^1];
        if (proj == "gated-gelu") act = "gelu_new";
        if (c.Has("dense_act_fn")) act = c.String("dense_act_fn");
        if (c.Has("is_gated_act")) gated = c.Bool("is_gated_act", gated);
        Activations.Check(act, c.Source, "dense_act_fn");
        var cfg = new T5Config(
            VocabSize: c.Int("vocab_size"),
            DModel: c.Int("d_model"),
            DKv: c.Int("d_kv"),
            DFf: c.Int("d_ff"),
            NumHeads: c.Int("num_heads"),
            NumLayers: c.Int("num_layers"),
            RelativeAttentionNumBuckets: c.Int("relative_attention_num_buckets", 32),
            RelativeAttentionMaxDistance: c.Int("relative_attention_max_distance", 128),
            GatedAct: gated,
            DenseActFn: act,
            LayerNormEpsilon: c.Double("layer_norm_epsilon", 1e-6));
        if (cfg.NumLayers < 1 || cfg.NumHeads < 1 || cfg.DKv < 1)
            throw new InvalidDataException($"{c.Source}: num_layers, num_heads and d_kv must be positive");
        // decoder settings of a full T5 config do not touch the encoder (transformers' T5EncoderModel
        // forces is_decoder off); n_positions is a legacy informational field
        c.RejectUnsupported(["eos_token_id", "num_decoder_layers", "scale_decoder_outputs", "n_positions"],
            new Dictionary<string, object?[]> { ["model_type"] = ["t5"] });
        return cfg;
    }
}

internal sealed class T5Attention : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear q, k, v, o;
    private readonly Embedding? relative_attention_bias;
    private readonly int _heads, _dkv, _numBuckets, _maxDistance;

    public T5Attention(T5Config cfg, bool hasRelativeAttentionBias, Device device, ScalarType dtype) : base(nameof(T5Attention))
    {
        _heads = cfg.NumHeads;
        _dkv = cfg.DKv;
        _numBuckets = cfg.RelativeAttentionNumBuckets;
        _maxDistance = cfg.RelativeAttentionMaxDistance;
        int inner = _heads * _dkv;
        q = nn.Linear(cfg.DModel, inner, hasBias: false, device: device, dtype: dtype);
        k = nn.Linear(cfg.DModel, inner, hasBias: false, device: device, dtype: dtype);
        v = nn.Linear(cfg.DModel, inner, hasBias: false, device: device, dtype: dtype);
        o = nn.Linear(inner, cfg.DModel, hasBias: false, device: device, dtype: dtype);
        if (hasRelativeAttentionBias)
            relative_attention_bias = nn.Embedding(_numBuckets, _heads, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>The position bias [1, heads, L, L] (only the first layer has the table).</summary>
    public Tensor PositionBias(long length, Device device)
    {
        if (relative_attention_bias is null) throw new InvalidOperationException("this T5 attention layer has no relative_attention_bias");
        using var scope = torch.NewDisposeScope();
        var ctx = torch.arange(length, dtype: ScalarType.Int64, device: device).unsqueeze(1);
        var mem = torch.arange(length, dtype: ScalarType.Int64, device: device).unsqueeze(0);
        var buckets = T5EncoderModel.RelativePositionBucket(mem - ctx, _numBuckets, _maxDistance);
        var values = relative_attention_bias.forward(buckets);        // [L, L, H]
        return values.permute(2, 0, 1).unsqueeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>Self-attention of [B, L, d_model] with an additive bias [1 or B, H, L, L]; no 1/√d scaling (T5).</summary>
    public override Tensor forward(Tensor x, Tensor bias)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], l = x.shape[1];
        Tensor Heads(Linear proj) => proj.forward(x).view(b, l, _heads, _dkv).transpose(1, 2);
        var qh = Heads(q);
        var kh = Heads(k);
        var vh = Heads(v);
        var scores = torch.matmul(qh, kh.transpose(-1, -2)).to(ScalarType.Float32) + bias.to(ScalarType.Float32);
        var weights = torch.softmax(scores, -1).to(vh.dtype);
        var ctx = torch.matmul(weights, vh).transpose(1, 2).reshape(b, l, _heads * _dkv);
        return o.forward(ctx).MoveToOuterDisposeScope();
    }

    public bool HasRelativeAttentionBias => relative_attention_bias is not null;
}

internal sealed class T5LayerSelfAttention : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly T5Attention SelfAttention;
    private readonly RmsNorm layer_norm;

    public T5LayerSelfAttention(T5Config cfg, bool hasBias, Device device, ScalarType dtype) : base(nameof(T5LayerSelfAttention))
    {
        SelfAttention = new T5Attention(cfg, hasBias, device, dtype);
        layer_norm = new RmsNorm(cfg.DModel, cfg.LayerNormEpsilon, device, dtype);
        RegisterComponents();
    }

    public T5Attention Attention => SelfAttention;

    /// <summary>The attention branch's output (the caller adds the residual).</summary>
    public override Tensor forward(Tensor x, Tensor bias)
    {
        using var n = layer_norm.forward(x);
        return SelfAttention.forward(n, bias);
    }
}

/// <summary>
/// T5's feed-forward (<c>T5DenseActDense</c> / <c>T5DenseGatedActDense</c>). As transformers does
/// for float16 (<c>_keep_in_fp32_modules = ["wo"]</c>), <c>wo</c> is kept in float32 and its input
/// cast to it, since T5's FF activations overflow float16.
/// </summary>
internal sealed class T5DenseActDense : nn.Module<Tensor, Tensor>
{
    private readonly Linear? wi, wi_0, wi_1;
    private readonly Linear wo;
    private readonly string _act;

    public T5DenseActDense(T5Config cfg, Device device, ScalarType dtype) : base(nameof(T5DenseActDense))
    {
        _act = cfg.DenseActFn;
        if (cfg.GatedAct)
        {
            wi_0 = nn.Linear(cfg.DModel, cfg.DFf, hasBias: false, device: device, dtype: dtype);
            wi_1 = nn.Linear(cfg.DModel, cfg.DFf, hasBias: false, device: device, dtype: dtype);
        }
        else
        {
            wi = nn.Linear(cfg.DModel, cfg.DFf, hasBias: false, device: device, dtype: dtype);
        }
        var woDtype = dtype == ScalarType.Float16 ? ScalarType.Float32 : dtype;
        wo = nn.Linear(cfg.DFf, cfg.DModel, hasBias: false, device: device, dtype: woDtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        Tensor h = wi is not null
            ? Activations.Apply(_act, wi.forward(x))
            : Activations.Apply(_act, wi_0!.forward(x)) * wi_1!.forward(x);
        var output = wo.forward(h.to(wo.weight!.dtype));
        return output.MoveToOuterDisposeScope();
    }
}

internal sealed class T5LayerFF : nn.Module<Tensor, Tensor>
{
    private readonly T5DenseActDense DenseReluDense;
    private readonly RmsNorm layer_norm;

    public T5LayerFF(T5Config cfg, Device device, ScalarType dtype) : base(nameof(T5LayerFF))
    {
        DenseReluDense = new T5DenseActDense(cfg, device, dtype);
        layer_norm = new RmsNorm(cfg.DModel, cfg.LayerNormEpsilon, device, dtype);
        RegisterComponents();
    }

    /// <summary>The feed-forward branch's output (the caller adds the residual).</summary>
    public override Tensor forward(Tensor x)
    {
        using var n = layer_norm.forward(x);
        return DenseReluDense.forward(n);
    }
}

internal sealed class T5Block : nn.Module<Tensor, Tensor, Tensor>
{
    // transformers' T5Block.layer: [T5LayerSelfAttention, T5LayerFF].
    private readonly ModuleList<nn.Module> layer;

    public T5Block(T5Config cfg, bool hasBias, Device device, ScalarType dtype) : base(nameof(T5Block))
    {
        layer = new ModuleList<nn.Module>(new T5LayerSelfAttention(cfg, hasBias, device, dtype), new T5LayerFF(cfg, device, dtype));
        RegisterComponents();
    }

    private T5LayerSelfAttention SelfAttentionLayer => (T5LayerSelfAttention)layer[0];
    private T5LayerFF FeedForwardLayer => (T5LayerFF)layer[1];

    public T5Attention Attention => SelfAttentionLayer.Attention;

    /// <summary>
    /// One block on the residual stream <paramref name="x"/>, which the encoder keeps in at least
    /// float32: branch outputs of a float16 model are clamped to the float16 range (as transformers
    /// clamps) and added in float32, so the stream itself cannot overflow.
    /// </summary>
    public override Tensor forward(Tensor x, Tensor bias)
    {
        using var scope = torch.NewDisposeScope();
        var h = x + ClampHalf(SelfAttentionLayer.forward(x, bias)).to(x.dtype);
        h = h + ClampHalf(FeedForwardLayer.forward(h)).to(x.dtype);
        return h.MoveToOuterDisposeScope();
    }

    private static Tensor ClampHalf(Tensor t)
    {
        if (t.dtype != ScalarType.Float16) return t;
        const double max = 65504.0 - 1000.0;
        return t.clamp(-max, max);
    }
}

internal sealed class T5Stack : nn.Module
{
    private readonly ModuleList<T5Block> block;
    private readonly RmsNorm final_layer_norm;

    public T5Stack(T5Config cfg, Device device, ScalarType dtype) : base(nameof(T5Stack))
    {
        block = new ModuleList<T5Block>();
        for (int i = 0; i < cfg.NumLayers; i++) block.Add(new T5Block(cfg, i == 0, device, dtype));
        final_layer_norm = new RmsNorm(cfg.DModel, cfg.LayerNormEpsilon, device, dtype);
        RegisterComponents();
    }

    public Tensor Run(Tensor embeds, Tensor? attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        var outDtype = embeds.dtype;
        // Residual stream in float32 at least (float16 T5 overflows otherwise).
        var h = embeds.dtype is ScalarType.Float16 or ScalarType.BFloat16 ? embeds.to(ScalarType.Float32) : embeds;
        long len = h.shape[1];
        var bias = block[0].Attention.PositionBias(len, h.device);
        if (attentionMask is not null)
        {
            // [B, L] with 1 = attend, 0 = padding → additive [B, 1, 1, L].
            var keep = attentionMask.to(ScalarType.Float32).to(h.device).unsqueeze(1).unsqueeze(1);
            bias = bias.to(ScalarType.Float32) + (1.0 - keep) * (double)float.MinValue;
        }
        foreach (var b in block) h = b.forward(h, bias);
        return final_layer_norm.forward(h).to(outDtype).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// transformers' <c>T5EncoderModel</c> (encoder stack only): token embeddings (<c>shared</c>), T5
/// blocks with a relative position bias computed by the first block and shared by all, final RMS norm.
/// Returns <c>last_hidden_state</c> [B, L, d_model] in the model's dtype.
/// </summary>
public sealed class T5EncoderModel : nn.Module<Tensor, Tensor>
{
    private readonly Embedding shared;
    private readonly T5Stack encoder;

    public T5Config Config { get; }

    public T5EncoderModel(T5Config config, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(T5EncoderModel))
    {
        device ??= torch.CPU;
        Config = config;
        shared = nn.Embedding(config.VocabSize, config.DModel, device: device, dtype: dtype);
        encoder = new T5Stack(config, device, dtype);
        RegisterComponents();
    }

    /// <summary>
    /// Builds the encoder described by <paramref name="dir"/>/config.json and loads its safetensors
    /// weights strictly. The token table may be stored as <c>shared.weight</c>,
    /// <c>encoder.embed_tokens.weight</c> or both (tied); decoder / LM-head tensors of a full T5
    /// checkpoint are ignored, as transformers' T5EncoderModel ignores them.
    /// </summary>
    public static T5EncoderModel FromPretrained(string dir, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        device ??= torch.CPU;
        TorchRuntime.Initialize(device);
        var cfg = T5Config.From(ModelConfig.Load(Path.Combine(dir, "config.json")));
        var names = WeightLoader.TensorNames(WeightLoader.FindWeightFiles(dir));
        bool hasShared = names.Contains("shared.weight");
        return ModuleSetup.LoadPretrained(new T5EncoderModel(cfg, device, dtype), dir, dtype, device,
            ignoreUnexpected: k => k.StartsWith("decoder.", StringComparison.Ordinal) || k.StartsWith("lm_head.", StringComparison.Ordinal),
            rename: k => k == "encoder.embed_tokens.weight" ? (hasShared ? null : "shared.weight") : k, builtInPlace: true);
    }

    /// <summary>
    /// transformers' <c>T5Attention._relative_position_bucket</c>, bidirectional: half the buckets per
    /// direction, exact buckets for small distances, log-spaced up to <c>max_distance</c>.
    /// </summary>
    public static Tensor RelativePositionBucket(Tensor relativePosition, int numBuckets, int maxDistance)
    {
        using var scope = torch.NewDisposeScope();
        int half = numBuckets / 2;
        var buckets = (relativePosition > 0).to(ScalarType.Int64) * half;
        var rel = relativePosition.abs();
        int maxExact = half / 2;
        var isSmall = rel < maxExact;
        var large = (rel.to(ScalarType.Float32) / maxExact).log() / Math.Log((double)maxDistance / maxExact) * (half - maxExact);
        var ifLarge = large.to(ScalarType.Int64) + maxExact;
        ifLarge = torch.minimum(ifLarge, torch.full_like(ifLarge, half - 1));
        var result = buckets + torch.where(isSmall, rel, ifLarge);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>last_hidden_state of int64 ids [B, L]; no attention mask (as SD3 / UltraEdit call it).</summary>
    public override Tensor forward(Tensor inputIds) => Forward(inputIds, null);

    /// <summary>last_hidden_state of int64 ids [B, L], optionally masking padding (<paramref name="attentionMask"/> [B, L], 1 = token).</summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask)
    {
        if (inputIds.dim() != 2)
            throw new ArgumentException($"T5 encoder: input_ids must be [batch, length], got [{string.Join(", ", inputIds.shape)}]");
        using var scope = torch.NewDisposeScope();
        var ids = inputIds.to(ScalarType.Int64).to(shared.weight!.device);
        var embeds = shared.forward(ids);
        return encoder.Run(embeds, attentionMask).MoveToOuterDisposeScope();
    }
}

using Elect.Models.Blocks;
using Elect.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Language;

/// <summary>
/// A LLaMA config.json (transformers <c>LlamaConfig</c>), with LLaVA's multimodal keys (<c>model_type</c> "llava" as
/// LLaVA-7B-v1 / MGIE write it). What the port does not compute is refused: <c>rope_scaling</c>, <c>attention_bias</c>,
/// <c>mlp_bias</c>, an activation other than SiLU, <c>pretraining_tp</c> other than 1, tied embeddings, a <c>head_dim</c>
/// other than hidden/heads, <c>use_mm_proj</c> false.
/// </summary>
public sealed record LlamaConfig(int HiddenSize, int IntermediateSize, int NumAttentionHeads, int NumKeyValueHeads,
    int NumHiddenLayers, int VocabSize, double RmsNormEps, double RopeTheta, int MaxPositionEmbeddings,
    long BosTokenId, long[] EosTokenIds, long? PadTokenId,
    string? MmVisionTower, int? MmHiddenSize, int MmVisionSelectLayer, bool MmUseImStartEnd, bool UseMmProj)
{
    public int HeadDim => HiddenSize / NumAttentionHeads;

    public static LlamaConfig Load(string configPath) => From(ModelConfig.Load(configPath));

    public static LlamaConfig From(ModelConfig c)
    {
        int hidden = c.Int("hidden_size"), heads = c.Int("num_attention_heads");
        var cfg = new LlamaConfig(
            HiddenSize: hidden,
            IntermediateSize: c.Int("intermediate_size"),
            NumAttentionHeads: heads,
            NumKeyValueHeads: c.Int("num_key_value_heads", heads),
            NumHiddenLayers: c.Int("num_hidden_layers"),
            VocabSize: c.Int("vocab_size"),
            RmsNormEps: c.Double("rms_norm_eps", 1e-6),
            RopeTheta: c.Double("rope_theta", 10000.0),
            MaxPositionEmbeddings: c.Int("max_position_embeddings", 2048),
            BosTokenId: c.Has("bos_token_id") ? c.Long("bos_token_id") : 1,
            EosTokenIds: TokenIds(c, "eos_token_id") ?? [2],
            PadTokenId: c.Has("pad_token_id") ? c.Long("pad_token_id") : null,
            MmVisionTower: c.Has("mm_vision_tower") ? c.String("mm_vision_tower") : null,
            MmHiddenSize: c.Has("mm_hidden_size") ? c.Int("mm_hidden_size") : null,
            MmVisionSelectLayer: c.Int("mm_vision_select_layer", -1),
            MmUseImStartEnd: c.Bool("mm_use_im_start_end", false),
            UseMmProj: c.Bool("use_mm_proj", false));
        if (hidden <= 0 || heads <= 0 || hidden % heads != 0)
            throw new InvalidDataException($"{c.Source}: hidden_size {hidden} is not a positive multiple of num_attention_heads {heads}");
        if (cfg.NumKeyValueHeads <= 0 || heads % cfg.NumKeyValueHeads != 0)
            throw new InvalidDataException($"{c.Source}: num_attention_heads {heads} is not a multiple of num_key_value_heads {cfg.NumKeyValueHeads}");
        if (cfg.HeadDim % 2 != 0) throw new InvalidDataException($"{c.Source}: the head size {cfg.HeadDim} must be even (rotary embedding)");
        if (cfg.NumHiddenLayers < 1 || cfg.VocabSize < 1 || cfg.IntermediateSize < 1)
            throw new InvalidDataException($"{c.Source}: num_hidden_layers, vocab_size and intermediate_size must be positive");
        if (c.Has("head_dim") && c.Int("head_dim") != cfg.HeadDim)
            throw new NotSupportedException($"{c.Source}: 'head_dim' = {c.Int("head_dim")} is not supported (only hidden_size / num_attention_heads = {cfg.HeadDim})");
        if (cfg.MmVisionTower is not null && (!cfg.UseMmProj || cfg.MmHiddenSize is null))
            throw new NotSupportedException($"{c.Source}: a multimodal config (mm_vision_tower) needs use_mm_proj true and mm_hidden_size (LLaVA's linear projector)");
        c.RejectUnsupported(
            informational: ["max_sequence_length", "freeze_mm_mlp_adapter", "tune_mm_mlp_adapter", "sep_image_conv_front",
                            "eos_token_id", "model_type"],
            onlyValues: new Dictionary<string, object?[]>
            {
                ["model_type"] = ["llama", "llava"],
                ["hidden_act"] = ["silu"],
                ["rope_scaling"] = [null],
                ["attention_bias"] = [false],
                ["mlp_bias"] = [false],
                ["pretraining_tp"] = [1],
                ["tie_word_embeddings"] = [false],
                ["use_mm_proj"] = [true],
                ["mm_projector_type"] = ["linear"],
            });
        return cfg;
    }

    private static long[]? TokenIds(ModelConfig c, string key)
    {
        if (c.Raw(key) is not { } e) return null;
        return e.ValueKind == System.Text.Json.JsonValueKind.Array ? e.EnumerateArray().Select(x => x.GetInt64()).ToArray() : [e.GetInt64()];
    }
}

/// <summary>Per-layer key / value tensors of the positions seen so far ([B, kv_heads, T, head_dim]).</summary>
public sealed class LlamaKvCache : IDisposable
{
    internal readonly List<(Tensor K, Tensor V)?> Layers;

    public LlamaKvCache(int layers) => Layers = Enumerable.Repeat<(Tensor, Tensor)?>(null, layers).ToList();

    /// <summary>How many positions the cache holds.</summary>
    public int Length => Layers[0] is { } l ? (int)l.K.shape[2] : 0;

    internal (Tensor K, Tensor V) Update(int layer, Tensor k, Tensor v)
    {
        if (Layers[layer] is { } old)
        {
            var nk = torch.cat([old.K, k], 2);
            var nv = torch.cat([old.V, v], 2);
            old.K.Dispose();
            old.V.Dispose();
            k = nk;
            v = nv;
        }
        else
        {
            k = k.alias();
            v = v.alias();
        }
        k.DetachFromDisposeScope();
        v.DetachFromDisposeScope();
        Layers[layer] = (k, v);
        return (k, v);
    }

    public void Dispose()
    {
        foreach (var l in Layers)
            if (l is { } kv) { kv.K.Dispose(); kv.V.Dispose(); }
        Layers.Clear();
    }
}

internal sealed class LlamaAttention : nn.Module
{
    private readonly Linear q_proj, k_proj, v_proj, o_proj;
    private readonly int _heads, _kvHeads, _headDim;

    public LlamaAttention(LlamaConfig cfg, Device device, ScalarType dtype) : base(nameof(LlamaAttention))
    {
        _heads = cfg.NumAttentionHeads;
        _kvHeads = cfg.NumKeyValueHeads;
        _headDim = cfg.HeadDim;
        q_proj = nn.Linear(cfg.HiddenSize, _heads * _headDim, hasBias: false, device: device, dtype: dtype);
        k_proj = nn.Linear(cfg.HiddenSize, _kvHeads * _headDim, hasBias: false, device: device, dtype: dtype);
        v_proj = nn.Linear(cfg.HiddenSize, _kvHeads * _headDim, hasBias: false, device: device, dtype: dtype);
        o_proj = nn.Linear(_heads * _headDim, cfg.HiddenSize, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    private static Tensor RotateHalf(Tensor x)
    {
        int half = (int)(x.shape[^1] / 2);
        return torch.cat([-x[.., .., .., half..], x[.., .., .., ..half]], -1);
    }

    public Tensor Forward(Tensor h, Tensor cos, Tensor sin, LlamaKvCache? cache, int layer, int past)
    {
        using var scope = torch.NewDisposeScope();
        long b = h.shape[0], l = h.shape[1];
        var q = q_proj.forward(h).view(b, l, _heads, _headDim).transpose(1, 2);
        var k = k_proj.forward(h).view(b, l, _kvHeads, _headDim).transpose(1, 2);
        var v = v_proj.forward(h).view(b, l, _kvHeads, _headDim).transpose(1, 2);
        var c = cos.unsqueeze(1);
        var s = sin.unsqueeze(1);
        q = q * c + RotateHalf(q) * s;
        k = k * c + RotateHalf(k) * s;
        if (cache is not null) (k, v) = cache.Update(layer, k, v);
        if (_kvHeads != _heads)
        {
            int rep = _heads / _kvHeads;
            k = k.unsqueeze(2).expand(b, _kvHeads, rep, k.shape[2], _headDim).reshape(b, _heads, k.shape[2], _headDim);
            v = v.unsqueeze(2).expand(b, _kvHeads, rep, v.shape[2], _headDim).reshape(b, _heads, v.shape[2], _headDim);
        }
        Tensor o;
        if (past == 0) o = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: l > 1);
        else if (l == 1) o = nn.functional.scaled_dot_product_attention(q, k, v);
        else
        {
            // query i (absolute position past + i) sees keys 0..past + i
            var mask = torch.ones(l, past + l, dtype: ScalarType.Bool, device: h.device).tril(past);
            o = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        }
        o = o.transpose(1, 2).reshape(b, l, _heads * _headDim);
        return o_proj.forward(o).MoveToOuterDisposeScope();
    }
}

internal sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear gate_proj, up_proj, down_proj;

    public LlamaMlp(LlamaConfig cfg, Device device, ScalarType dtype) : base(nameof(LlamaMlp))
    {
        gate_proj = nn.Linear(cfg.HiddenSize, cfg.IntermediateSize, hasBias: false, device: device, dtype: dtype);
        up_proj = nn.Linear(cfg.HiddenSize, cfg.IntermediateSize, hasBias: false, device: device, dtype: dtype);
        down_proj = nn.Linear(cfg.IntermediateSize, cfg.HiddenSize, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return down_proj.forward(nn.functional.silu(gate_proj.forward(x)) * up_proj.forward(x)).MoveToOuterDisposeScope();
    }
}

internal sealed class LlamaDecoderLayer : nn.Module
{
    private readonly LlamaAttention self_attn;
    private readonly LlamaMlp mlp;
    private readonly RmsNorm input_layernorm, post_attention_layernorm;

    public LlamaDecoderLayer(LlamaConfig cfg, Device device, ScalarType dtype) : base(nameof(LlamaDecoderLayer))
    {
        self_attn = new LlamaAttention(cfg, device, dtype);
        mlp = new LlamaMlp(cfg, device, dtype);
        input_layernorm = new RmsNorm(cfg.HiddenSize, cfg.RmsNormEps, device, dtype, castToInputDType: true);
        post_attention_layernorm = new RmsNorm(cfg.HiddenSize, cfg.RmsNormEps, device, dtype, castToInputDType: true);
        RegisterComponents();
    }

    public Tensor Forward(Tensor h, Tensor cos, Tensor sin, LlamaKvCache? cache, int layer, int past)
    {
        using var scope = torch.NewDisposeScope();
        h = h + self_attn.Forward(input_layernorm.forward(h), cos, sin, cache, layer, past);
        h = h + mlp.forward(post_attention_layernorm.forward(h));
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>transformers' <c>LlamaModel</c> (+ LLaVA's <c>mm_projector</c> Linear, which lives under <c>model.</c> in its checkpoints).</summary>
internal sealed class LlamaModel : nn.Module
{
    internal readonly Embedding embed_tokens;
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private readonly RmsNorm norm;
    internal readonly Linear? mm_projector;

    public LlamaModel(LlamaConfig cfg, Device device, ScalarType dtype) : base(nameof(LlamaModel))
    {
        embed_tokens = nn.Embedding(cfg.VocabSize, cfg.HiddenSize, device: device, dtype: dtype);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, cfg.NumHiddenLayers).Select(_ => new LlamaDecoderLayer(cfg, device, dtype)).ToArray());
        norm = new RmsNorm(cfg.HiddenSize, cfg.RmsNormEps, device, dtype, castToInputDType: true);
        if (cfg.UseMmProj && cfg.MmHiddenSize is { } mm)
            mm_projector = nn.Linear(mm, cfg.HiddenSize, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    public int LayerCount => layers.Count;

    /// <summary>Hidden states after the final norm; <paramref name="layerStates"/> collects transformers' hidden_states
    /// (the input embeddings, each layer's output but the last, then the normed output).</summary>
    public Tensor Forward(Tensor embeds, Tensor cos, Tensor sin, LlamaKvCache? cache, List<Tensor>? layerStates)
    {
        using var scope = torch.NewDisposeScope();
        var h = embeds;
        int past = cache?.Length ?? 0;
        for (int i = 0; i < layers.Count; i++)
        {
            layerStates?.Add(h.alias().MoveToOuterDisposeScope());
            h = layers[i].Forward(h, cos, sin, cache, i, past);
        }
        var normed = norm.forward(h);
        layerStates?.Add(normed.alias().MoveToOuterDisposeScope());
        return normed.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// transformers 5.12's <c>LlamaForCausalLM</c> (what LLaVA's <c>LlavaLlamaForCausalLM</c> runs after the image splice):
/// token embedding, decoder layers (pre-norm RMSNorm in float32 cast back, rotary positions from float32
/// <c>inv_freq</c> / cos / sin cast to the model dtype, causal scaled-dot-product attention with grouped key/value heads,
/// SwiGLU MLP), final RMSNorm, bias-free <c>lm_head</c>; KV cache for generation. Weights: the folder as published
/// (sharded <c>pytorch_model-0000k-of-0000n.bin</c> + <c>pytorch_model.bin.index.json</c>, or safetensors shards +
/// index; the rotary <c>inv_freq</c> buffers of 2023 checkpoints are ignored); fp16 on CUDA, float32 on the CPU.
/// </summary>
public sealed class LlamaForCausalLM : nn.Module
{
    private readonly LlamaModel model;
    private readonly Linear lm_head;
    private readonly Tensor _invFreq;   // float32 [head_dim / 2]

    public LlamaConfig Config { get; }
    public Device Device { get; }
    public ScalarType DType { get; }
    /// <summary>Rows of the embedding / lm_head (the config's vocab_size until <see cref="ReplaceVocabulary"/>).</summary>
    public int VocabSize => (int)model.embed_tokens.weight!.shape[0];
    public bool HasProjector => model.mm_projector is not null;

    public LlamaForCausalLM(LlamaConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(LlamaForCausalLM))
    {
        device ??= torch.CPU;
        Config = config;
        Device = device;
        DType = dtype;
        model = new LlamaModel(config, device, dtype);
        lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
        // inv_freq = 1 / base^(arange(0, dim, 2) / dim), float32, as LlamaRotaryEmbedding computes it (a non-persistent buffer)
        using var ar = torch.arange(0, config.HeadDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32);
        _invFreq = (1.0f / torch.pow(torch.tensor((float)config.RopeTheta), ar / config.HeadDim)).to(device).DetachFromDisposeScope();
    }

    /// <summary>Builds from a folder's config.json and loads its weights (strict; see the class summary).</summary>
    public static LlamaForCausalLM FromPretrained(string dir, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        device ??= torch.CPU;
        TorchRuntime.Initialize(device);
        var cfg = LlamaConfig.Load(Path.Combine(dir, "config.json"));
        return ModuleSetup.LoadPretrained(new LlamaForCausalLM(cfg, device, dtype), dir, dtype, device,
            ignoreUnexpected: k => k.EndsWith(".self_attn.rotary_emb.inv_freq", StringComparison.Ordinal));
    }

    /// <summary>
    /// <c>resize_token_embeddings(n)</c> followed by loading full <c>[n, hidden]</c> tables over both (MGIE's mllm.pt):
    /// replaces the embedding and lm_head weights (converted to the model's dtype and device).
    /// </summary>
    public void ReplaceVocabulary(Tensor embedTokens, Tensor lmHead)
    {
        long h = Config.HiddenSize;
        if (embedTokens.dim() != 2 || embedTokens.shape[1] != h || lmHead.dim() != 2 || lmHead.shape[1] != h || embedTokens.shape[0] != lmHead.shape[0])
            throw new InvalidDataException($"embed_tokens [{string.Join(", ", embedTokens.shape)}] and lm_head [{string.Join(", ", lmHead.shape)}] must both be [vocab, {h}]");
        using var _ = torch.no_grad();
        // one copy each, converted on the way (never an alias of the caller's tensors, which it disposes); the tables
        // replaced are freed now rather than by the finalizer (2 x 262 MB for LLaVA-7B in fp16)
        var (oldEmbed, oldHead) = (model.embed_tokens.weight, lm_head.weight);
        model.embed_tokens.weight = new Parameter(embedTokens.to(DType, Device, copy: true), requires_grad: false);
        lm_head.weight = new Parameter(lmHead.to(DType, Device, copy: true), requires_grad: false);
        oldEmbed?.Dispose();
        oldHead?.Dispose();
    }

    /// <summary><c>embed_tokens(ids)</c> for int64 ids [B, L] (any device): [B, L, hidden] in the model dtype.</summary>
    public Tensor Embed(Tensor ids)
    {
        using var scope = torch.NewDisposeScope();
        return model.embed_tokens.forward(ids.to(Device)).MoveToOuterDisposeScope();
    }

    /// <summary>LLaVA's <c>model.mm_projector</c> on vision features [.., mm_hidden] (cast to the model dtype).</summary>
    public Tensor Project(Tensor features)
    {
        if (model.mm_projector is null) throw new InvalidOperationException("this LLaMA config has no mm_projector (use_mm_proj)");
        using var scope = torch.NewDisposeScope();
        return model.mm_projector.forward(features.to(DType).to(Device)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One pass over input embeddings [B, L, hidden] at positions <c>cache.Length ..</c> (0 without a cache): the final
    /// (normed) hidden states [B, L, hidden] and the logits [B, L, vocab] (only the last position when
    /// <paramref name="lastLogitsOnly"/>, as generate computes them). <paramref name="hiddenStates"/> collects
    /// transformers' <c>output_hidden_states</c> tuple.
    /// </summary>
    public (Tensor Hidden, Tensor Logits) Forward(Tensor inputsEmbeds, LlamaKvCache? cache = null, bool lastLogitsOnly = false,
                                                 List<Tensor>? hiddenStates = null)
    {
        if (inputsEmbeds.dim() != 3 || inputsEmbeds.shape[2] != Config.HiddenSize)
            throw new ArgumentException($"LLaMA: inputs_embeds must be [batch, length, {Config.HiddenSize}], got [{string.Join(", ", inputsEmbeds.shape)}]");
        if (cache is not null && cache.Layers.Count != model.LayerCount)
            throw new ArgumentException($"LLaMA: the cache has {cache.Layers.Count} layers, the model {model.LayerCount}");
        using var scope = torch.NewDisposeScope();
        long l = inputsEmbeds.shape[1];
        int past = cache?.Length ?? 0;
        // LlamaRotaryEmbedding: freqs = inv_freq x positions in float32, emb = cat(freqs, freqs), cos/sin cast to the dtype
        var pos = torch.arange(past, past + l, dtype: ScalarType.Int64, device: Device).to(ScalarType.Float32);
        var freqs = pos.unsqueeze(1) * _invFreq.unsqueeze(0);
        var emb = torch.cat([freqs, freqs], -1).unsqueeze(0);
        var cos = emb.cos().to(DType);
        var sin = emb.sin().to(DType);
        int collected = hiddenStates?.Count ?? 0;
        var hidden = model.Forward(inputsEmbeds.to(DType).to(Device), cos, sin, cache, hiddenStates);
        if (hiddenStates is not null)
            for (int i = collected; i < hiddenStates.Count; i++) hiddenStates[i].MoveToOuterDisposeScope();
        var logits = lm_head.forward(lastLogitsOnly ? hidden[.., (int)(l - 1)..] : hidden);
        return (hidden.MoveToOuterDisposeScope(), logits.MoveToOuterDisposeScope());
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _invFreq.Dispose();
        base.Dispose(disposing);
    }
}

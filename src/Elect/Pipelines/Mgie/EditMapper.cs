using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Pipelines.Mgie;

/// <summary>The sizes of MGIE's edit head, read from its weights (the head count is MGIE's constant, 4).</summary>
/// <param name="LlmHidden">The LLM's hidden size (4096 for LLaVA-7B): <c>llm2hid</c>'s input.</param>
/// <param name="Width">The mapper's d_model (512).</param>
/// <param name="Queries">Learned query tokens (77: the UNet's prompt length).</param>
/// <param name="FeedForward">dim_feedforward (2048).</param>
/// <param name="EncoderLayers">4.</param>
/// <param name="DecoderLayers">4.</param>
/// <param name="Output">hid2feat's output: the UNet's cross-attention width (768).</param>
/// <param name="Heads">nhead: not inferable from the weights; MGIE uses 4.</param>
public sealed record EditMapperConfig(int LlmHidden, int Width, int Queries, int FeedForward, int EncoderLayers, int DecoderLayers,
                                      int Output, int Heads = EditMapperConfig.MgieHeads)
{
    /// <summary>MGIE's <c>nn.Transformer(..., nhead=4, ...)</c>.</summary>
    public const int MgieHeads = 4;

    /// <summary>MGIE's published edit head (mgie_llava.py's EditMapper).</summary>
    public static EditMapperConfig Mgie7B { get; } = new(4096, 512, 77, 2048, 4, 4, 768);

    /// <summary>
    /// The sizes from a state dict holding <c>{prefix}llm2hid.weight</c>, <c>{prefix}query</c>, <c>{prefix}hid2feat.weight</c>,
    /// <c>{prefix}mapper.encoder.layers.N.linear1.weight</c> and <c>{prefix}mapper.decoder.layers.N...</c>; a missing
    /// key throws naming it and <paramref name="source"/>.
    /// </summary>
    public static EditMapperConfig FromWeights(IReadOnlyDictionary<string, Tensor> weights, string prefix, string source)
    {
        Tensor Get(string key) => weights.TryGetValue(prefix + key, out var t) ? t
            : throw new InvalidDataException($"{source}: missing tensor '{prefix}{key}' (MGIE's edit head)");
        var llm2hid = Get("llm2hid.weight");
        var query = Get("query");
        var hid2feat = Get("hid2feat.weight");
        var ff = Get("mapper.encoder.layers.0.linear1.weight");
        if (llm2hid.dim() != 2 || query.dim() != 3 || query.shape[0] != 1 || query.shape[2] != llm2hid.shape[0] || hid2feat.dim() != 2 || hid2feat.shape[1] != llm2hid.shape[0])
            throw new InvalidDataException($"{source}: the edit head's shapes do not fit together (llm2hid [{string.Join(", ", llm2hid.shape)}], query [{string.Join(", ", query.shape)}], hid2feat [{string.Join(", ", hid2feat.shape)}])");
        int Layers(string stack)
        {
            int n = 0;
            while (weights.ContainsKey($"{prefix}mapper.{stack}.layers.{n}.linear1.weight")) n++;
            if (n == 0) throw new InvalidDataException($"{source}: missing tensor '{prefix}mapper.{stack}.layers.0.linear1.weight' (MGIE's edit head)");
            return n;
        }
        int width = (int)llm2hid.shape[0];
        if (width % MgieHeads != 0)
            throw new InvalidDataException($"{source}: the edit head's width {width} is not divisible by MGIE's {MgieHeads} heads");
        return new EditMapperConfig((int)llm2hid.shape[1], width, (int)query.shape[1], (int)ff.shape[0], Layers("encoder"), Layers("decoder"), (int)hid2feat.shape[0]);
    }
}

/// <summary>
/// MGIE's <c>EditMapper</c> (<c>edit_head</c> of mgie_llava.py): <c>hid2feat(mapper(llm2hid(llm + emb), query))</c>, with
/// <c>mapper</c> torch's <c>nn.Transformer(batch_first=True, norm_first=True, dropout=0, activation=relu)</c>: pre-norm
/// encoder and decoder layers, the final LayerNorms nn.Transformer adds after each stack, eps 1e-5, no masks. Maps the
/// eight [IMG] hidden states [B, 8, 4096] to the UNet's prompt embeddings [B, 77, 768]. Field names are the
/// checkpoint's (<c>edit_head.</c> stripped).
/// </summary>
public sealed class EditMapper : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear llm2hid;
    private readonly Parameter query;
    private readonly TorchTransformer mapper;
    private readonly Linear hid2feat;

    public EditMapper(EditMapperConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(EditMapper))
    {
        Config = config;
        llm2hid = nn.Linear(config.LlmHidden, config.Width, device: device, dtype: dtype);
        query = nn.Parameter(torch.zeros(1, config.Queries, config.Width, device: device, dtype: dtype));
        mapper = new TorchTransformer(config, device, dtype);
        hid2feat = nn.Linear(config.Width, config.Output, device: device, dtype: dtype);
        RegisterComponents();
    }

    public EditMapperConfig Config { get; }

    /// <summary>MGIE's prefix of the edit head's tensors in <c>mllm.pt</c>.</summary>
    public const string Prefix = "edit_head.";

    /// <summary>
    /// The edit head from the <c>edit_head.*</c> tensors of <paramref name="weights"/> (MGIE's <c>mllm.pt</c>), strictly: a
    /// missing, surplus or wrongly shaped <c>edit_head.*</c> tensor throws naming it and <paramref name="source"/>.
    /// </summary>
    public static EditMapper FromWeights(IReadOnlyDictionary<string, Tensor> weights, string source, Device device, ScalarType dtype)
    {
        var config = EditMapperConfig.FromWeights(weights, Prefix, source);
        var head = new EditMapper(config, device, dtype);
        try
        {
            head.eval();
            var target = head.state_dict();
            using var _ = torch.no_grad();
            foreach (var (name, t) in weights)
            {
                if (!name.StartsWith(Prefix, StringComparison.Ordinal)) continue;
                var key = name[Prefix.Length..];
                if (!target.TryGetValue(key, out var dest))
                    throw new InvalidDataException($"{source}: unexpected tensor '{name}' (MGIE's edit head has no such weight)");
                if (!dest.shape.SequenceEqual(t.shape))
                    throw new InvalidDataException($"{source}: tensor '{name}' has shape [{string.Join(", ", t.shape)}], the edit head expects [{string.Join(", ", dest.shape)}]");
                dest.copy_(t);
            }
            var missing = target.Keys.Where(k => !weights.ContainsKey(Prefix + k)).ToList();
            if (missing.Count > 0)
                throw new InvalidDataException($"{source}: missing tensor '{Prefix}{missing[0]}'{(missing.Count > 1 ? $" and {missing.Count - 1} more" : "")} (MGIE's edit head)");
            foreach (var p in head.parameters()) p.requires_grad = false;
            return head;
        }
        catch
        {
            head.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <paramref name="llm"/> [B, 8, H] (the [IMG] states) plus <paramref name="emb"/> ([1, 8, H] or [8, H], MGIE's learned
    /// <c>emb</c>) → [B, Queries, Output], in the head's dtype.
    /// </summary>
    public override Tensor forward(Tensor llm, Tensor emb)
    {
        using var scope = torch.NewDisposeScope();
        if (llm.dim() == 2) llm = llm.unsqueeze(0);
        if (emb.dim() == 2) emb = emb.unsqueeze(0);
        if (llm.dim() != 3 || llm.shape[2] != Config.LlmHidden)
            throw new ArgumentException($"the edit head takes [B, tokens, {Config.LlmHidden}] LLM states, got [{string.Join(", ", llm.shape)}]", nameof(llm));
        if (emb.dim() != 3 || emb.shape[0] != 1 || emb.shape[1] != llm.shape[1] || emb.shape[2] != Config.LlmHidden)
            throw new ArgumentException($"the edit head's emb must be [1, {llm.shape[1]}, {Config.LlmHidden}] or [{llm.shape[1]}, {Config.LlmHidden}], got [{string.Join(", ", emb.shape)}]", nameof(emb));
        var dtype = llm2hid.weight!.dtype;
        var hid = llm2hid.forward(llm.to(dtype) + emb.to(dtype));
        var q = query.expand(llm.shape[0], -1, -1);
        var feat = hid2feat.forward(mapper.forward(hid, q));
        return feat.MoveToOuterDisposeScope();
    }
}

/// <summary>torch's <c>nn.Transformer</c> as MGIE builds it (batch-first, pre-norm, relu, no dropout, no masks): fields <c>encoder</c>, <c>decoder</c>.</summary>
internal sealed class TorchTransformer : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly TorchEncoder encoder;
    private readonly TorchDecoder decoder;

    public TorchTransformer(EditMapperConfig c, Device? device, ScalarType dtype) : base(nameof(TorchTransformer))
    {
        encoder = new TorchEncoder(c, device, dtype);
        decoder = new TorchDecoder(c, device, dtype);
        RegisterComponents();
    }

    /// <summary><c>decoder(tgt, encoder(src))</c>.</summary>
    public override Tensor forward(Tensor src, Tensor tgt)
    {
        using var memory = encoder.forward(src);
        return decoder.forward(tgt, memory);
    }
}

/// <summary><c>nn.TransformerEncoder</c>: <c>layers.N</c>, then the final <c>norm</c>.</summary>
internal sealed class TorchEncoder : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<TorchEncoderLayer> layers;
    private readonly LayerNorm norm;

    public TorchEncoder(EditMapperConfig c, Device? device, ScalarType dtype) : base(nameof(TorchEncoder))
    {
        layers = nn.ModuleList(Enumerable.Range(0, c.EncoderLayers).Select(_ => new TorchEncoderLayer(c, device, dtype)).ToArray());
        norm = nn.LayerNorm(c.Width, TorchTransformerParts.Eps, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        foreach (var layer in layers) x = layer.forward(x);
        return norm.forward(x).MoveToOuterDisposeScope();
    }
}

/// <summary><c>nn.TransformerDecoder</c>: <c>layers.N</c>, then the final <c>norm</c>.</summary>
internal sealed class TorchDecoder : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly ModuleList<TorchDecoderLayer> layers;
    private readonly LayerNorm norm;

    public TorchDecoder(EditMapperConfig c, Device? device, ScalarType dtype) : base(nameof(TorchDecoder))
    {
        layers = nn.ModuleList(Enumerable.Range(0, c.DecoderLayers).Select(_ => new TorchDecoderLayer(c, device, dtype)).ToArray());
        norm = nn.LayerNorm(c.Width, TorchTransformerParts.Eps, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor memory)
    {
        using var scope = torch.NewDisposeScope();
        foreach (var layer in layers) x = layer.forward(x, memory);
        return norm.forward(x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// <c>nn.TransformerEncoderLayer(norm_first=True)</c>: <c>x += self_attn(norm1(x)); x += linear2(relu(linear1(norm2(x))))</c>.
/// </summary>
internal sealed class TorchEncoderLayer : nn.Module<Tensor, Tensor>
{
    private readonly TorchMultiheadAttention self_attn;
    private readonly Linear linear1, linear2;
    private readonly LayerNorm norm1, norm2;

    public TorchEncoderLayer(EditMapperConfig c, Device? device, ScalarType dtype) : base(nameof(TorchEncoderLayer))
    {
        self_attn = new TorchMultiheadAttention(c.Width, c.Heads, device, dtype);
        linear1 = nn.Linear(c.Width, c.FeedForward, device: device, dtype: dtype);
        linear2 = nn.Linear(c.FeedForward, c.Width, device: device, dtype: dtype);
        norm1 = nn.LayerNorm(c.Width, TorchTransformerParts.Eps, device: device, dtype: dtype);
        norm2 = nn.LayerNorm(c.Width, TorchTransformerParts.Eps, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var h = norm1.forward(x);
        x = x + self_attn.forward(h, h);
        x = x + TorchTransformerParts.FeedForward(linear1, linear2, norm2.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// <c>nn.TransformerDecoderLayer(norm_first=True)</c>: <c>x += self_attn(norm1(x)); x += multihead_attn(norm2(x), memory);
/// x += linear2(relu(linear1(norm3(x))))</c>.
/// </summary>
internal sealed class TorchDecoderLayer : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly TorchMultiheadAttention self_attn, multihead_attn;
    private readonly Linear linear1, linear2;
    private readonly LayerNorm norm1, norm2, norm3;

    public TorchDecoderLayer(EditMapperConfig c, Device? device, ScalarType dtype) : base(nameof(TorchDecoderLayer))
    {
        self_attn = new TorchMultiheadAttention(c.Width, c.Heads, device, dtype);
        multihead_attn = new TorchMultiheadAttention(c.Width, c.Heads, device, dtype);
        linear1 = nn.Linear(c.Width, c.FeedForward, device: device, dtype: dtype);
        linear2 = nn.Linear(c.FeedForward, c.Width, device: device, dtype: dtype);
        norm1 = nn.LayerNorm(c.Width, TorchTransformerParts.Eps, device: device, dtype: dtype);
        norm2 = nn.LayerNorm(c.Width, TorchTransformerParts.Eps, device: device, dtype: dtype);
        norm3 = nn.LayerNorm(c.Width, TorchTransformerParts.Eps, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor memory)
    {
        using var scope = torch.NewDisposeScope();
        var h = norm1.forward(x);
        x = x + self_attn.forward(h, h);
        x = x + multihead_attn.forward(norm2.forward(x), memory);
        x = x + TorchTransformerParts.FeedForward(linear1, linear2, norm3.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

internal static class TorchTransformerParts
{
    /// <summary>nn.TransformerEncoderLayer / DecoderLayer's default layer_norm_eps.</summary>
    public const double Eps = 1e-5;

    public static Tensor FeedForward(Linear linear1, Linear linear2, Tensor x)
    {
        using var h = linear1.forward(x);
        using var a = nn.functional.relu(h);
        return linear2.forward(a);
    }
}

/// <summary>
/// torch's <c>nn.MultiheadAttention</c> (batch-first, packed <c>in_proj_weight</c> [3D, D] / <c>in_proj_bias</c>, <c>out_proj</c>,
/// no masks, no dropout): the query from <c>query</c>, keys and values from <c>context</c>.
/// </summary>
internal sealed class TorchMultiheadAttention : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Parameter in_proj_weight;
    private readonly Parameter in_proj_bias;
    private readonly Linear out_proj;
    private readonly int _heads;
    private readonly int _dim;

    public TorchMultiheadAttention(int dim, int heads, Device? device, ScalarType dtype) : base(nameof(TorchMultiheadAttention))
    {
        _dim = dim;
        _heads = heads;
        in_proj_weight = nn.Parameter(torch.zeros(3 * dim, dim, device: device, dtype: dtype));
        in_proj_bias = nn.Parameter(torch.zeros(3 * dim, device: device, dtype: dtype));
        out_proj = nn.Linear(dim, dim, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor query, Tensor context)
    {
        using var scope = torch.NewDisposeScope();
        var w = in_proj_weight.chunk(3, 0);
        var b = in_proj_bias.chunk(3, 0);
        long batch = query.shape[0], lq = query.shape[1], lk = context.shape[1];
        int headDim = _dim / _heads;
        Tensor Heads(Tensor x, int k, long len) => nn.functional.linear(x, w[k], b[k]).view(batch, len, _heads, headDim).transpose(1, 2);
        var o = nn.functional.scaled_dot_product_attention(Heads(query, 0, lq), Heads(context, 1, lk), Heads(context, 2, lk));
        o = o.transpose(1, 2).reshape(batch, lq, _dim);
        return out_proj.forward(o).MoveToOuterDisposeScope();
    }
}

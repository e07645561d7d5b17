using Elect.Models.Blocks;
using Elect.Models.Unets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Transformers;

// Building blocks of diffusers' SD3Transformer2DModel. Field names are diffusers' module names
// (snake_case), so RegisterComponents() yields diffusers' state_dict keys.

/// <summary>diffusers <c>GELU(dim_in, dim_out, approximate="tanh")</c>: a projection followed by tanh-GELU.</summary>
public sealed class SD3GeluProjection : nn.Module<Tensor, Tensor>
{
    private readonly Linear proj;

    public SD3GeluProjection(long dimIn, long dimOut, Device? device, ScalarType? dtype) : base(nameof(SD3GeluProjection))
    {
        proj = nn.Linear(dimIn, dimOut, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = proj.forward(x);
        return nn.functional.gelu(h, GELU.Approximate.tanh);
    }
}

/// <summary>diffusers <c>FeedForward(dim, dim_out=dim, activation_fn="gelu-approximate")</c>: net.0 (GELU proj), net.1 (dropout), net.2 (linear).</summary>
public sealed class SD3FeedForward : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<nn.Module<Tensor, Tensor>> net;

    public SD3FeedForward(long dim, Device? device, ScalarType? dtype, int mult = 4) : base(nameof(SD3FeedForward))
    {
        long inner = dim * mult;
        net = nn.ModuleList<nn.Module<Tensor, Tensor>>(
            new SD3GeluProjection(dim, inner, device, dtype),
            nn.Identity(), // dropout(p=0), no parameters
            nn.Linear(inner, dim, hasBias: true, device: device, dtype: dtype));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = net[0].forward(x);
        return net[2].forward(h);
    }
}

/// <summary>
/// diffusers <c>AdaLayerNormZero(dim)</c> (6 modulation chunks) or, with <c>chunks: 9</c>,
/// <c>SD35AdaLayerNormZeroX</c>: LayerNorm without affine (eps 1e-6) modulated by linear(silu(emb)).
/// Returns the modulation chunks; <see cref="Modulate"/> applies one shift/scale pair.
/// </summary>
public sealed class SD3AdaLayerNormZero : nn.Module<Tensor, Tensor[]>
{
    private readonly Linear linear;
    private readonly long _dim;

    public SD3AdaLayerNormZero(long dim, int chunks, Device? device, ScalarType? dtype) : base(nameof(SD3AdaLayerNormZero))
    {
        _dim = dim;
        linear = nn.Linear(dim, chunks * dim, hasBias: true, device: device, dtype: dtype);
        Chunks = chunks;
        RegisterComponents();
    }

    public int Chunks { get; }

    /// <summary>The modulation vectors, each [B, dim] (order as in diffusers: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp[, shift_msa2, scale_msa2, gate_msa2]).</summary>
    public override Tensor[] forward(Tensor emb)
    {
        using var act = nn.functional.silu(emb);
        using var proj = linear.forward(act);
        return proj.chunk(Chunks, dim: 1);
    }

    /// <summary>LayerNorm(x) without affine, eps 1e-6.</summary>
    public Tensor Norm(Tensor x) => nn.functional.layer_norm(x, [_dim], null, null, 1e-6);

    /// <summary>x * (1 + scale[:, None]) + shift[:, None].</summary>
    public static Tensor Modulate(Tensor normed, Tensor shift, Tensor scale)
    {
        using var s = scale.unsqueeze(1) + 1;
        using var scaled = normed * s;
        using var sh = shift.unsqueeze(1);
        return scaled + sh;
    }
}

/// <summary>
/// diffusers <c>AdaLayerNormContinuous(dim, dim, elementwise_affine=False, eps=1e-6)</c>:
/// LayerNorm(x) * (1 + scale) + shift with (scale, shift) = linear(silu(cond)) (scale first).
/// </summary>
public sealed class SD3AdaLayerNormContinuous : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear linear;
    private readonly long _dim;

    public SD3AdaLayerNormContinuous(long dim, long conditioningDim, Device? device, ScalarType? dtype) : base(nameof(SD3AdaLayerNormContinuous))
    {
        _dim = dim;
        linear = nn.Linear(conditioningDim, dim * 2, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor conditioning)
    {
        using var scope = torch.NewDisposeScope();
        var emb = linear.forward(nn.functional.silu(conditioning).to(x.dtype));
        var parts = emb.chunk(2, dim: 1);
        var (scale, shift) = (parts[0], parts[1]);
        var normed = nn.functional.layer_norm(x, [_dim], null, null, 1e-6);
        var result = normed * (scale + 1).unsqueeze(1) + shift.unsqueeze(1);
        return result.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// diffusers <c>Attention</c> with <c>JointAttnProcessor2_0</c>. With <c>joint</c> it also has the context
/// projections (add_q/k/v_proj and, unless context_pre_only, to_add_out) and attends over the
/// concatenated [image tokens, context tokens]; without, it is plain self-attention (SD3.5's attn2).
/// </summary>
public sealed class SD3JointAttention : nn.Module
{
    private readonly Linear to_q, to_k, to_v;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> to_out;
    private readonly Linear? add_q_proj, add_k_proj, add_v_proj, to_add_out;
    private readonly RmsNorm? norm_q, norm_k, norm_added_q, norm_added_k;
    private readonly long _heads, _headDim;

    public SD3JointAttention(long dim, long heads, long headDim, bool joint, bool contextPreOnly, bool rmsQkNorm,
                             Device? device, ScalarType? dtype) : base(nameof(SD3JointAttention))
    {
        _heads = heads;
        _headDim = headDim;
        long inner = heads * headDim;
        to_q = nn.Linear(dim, inner, hasBias: true, device: device, dtype: dtype);
        to_k = nn.Linear(dim, inner, hasBias: true, device: device, dtype: dtype);
        to_v = nn.Linear(dim, inner, hasBias: true, device: device, dtype: dtype);
        to_out = nn.ModuleList<nn.Module<Tensor, Tensor>>(nn.Linear(inner, dim, hasBias: true, device: device, dtype: dtype), nn.Identity());
        if (rmsQkNorm)
        {
            norm_q = new RmsNorm(headDim, 1e-6, device, dtype);
            norm_k = new RmsNorm(headDim, 1e-6, device, dtype);
        }
        if (joint)
        {
            add_q_proj = nn.Linear(dim, inner, hasBias: true, device: device, dtype: dtype);
            add_k_proj = nn.Linear(dim, inner, hasBias: true, device: device, dtype: dtype);
            add_v_proj = nn.Linear(dim, inner, hasBias: true, device: device, dtype: dtype);
            if (!contextPreOnly)
                to_add_out = nn.Linear(inner, dim, hasBias: true, device: device, dtype: dtype);
            if (rmsQkNorm)
            {
                norm_added_q = new RmsNorm(headDim, 1e-6, device, dtype);
                norm_added_k = new RmsNorm(headDim, 1e-6, device, dtype);
            }
        }
        RegisterComponents();
    }

    private Tensor Heads(Linear proj, Tensor x, RmsNorm? norm)
    {
        var t = proj.forward(x).view(x.shape[0], -1, _heads, _headDim).transpose(1, 2);
        return norm is null ? t : norm.forward(t);
    }

    /// <summary>
    /// Attention of <paramref name="hidden"/> [B, N, dim] (joined with <paramref name="context"/> [B, M, dim]
    /// when given). Returns the image output and the context output (null without context; not
    /// projected by to_add_out when context_pre_only).
    /// </summary>
    public (Tensor Hidden, Tensor? Context) Forward(Tensor hidden, Tensor? context)
    {
        using var scope = torch.NewDisposeScope();
        long b = hidden.shape[0], n = hidden.shape[1];
        var q = Heads(to_q, hidden, norm_q);
        var k = Heads(to_k, hidden, norm_k);
        var v = Heads(to_v, hidden, null);
        if (context is not null)
        {
            if (add_q_proj is null || add_k_proj is null || add_v_proj is null)
                throw new InvalidOperationException("this attention layer has no context projections");
            q = torch.cat([q, Heads(add_q_proj, context, norm_added_q)], dim: 2);
            k = torch.cat([k, Heads(add_k_proj, context, norm_added_k)], dim: 2);
            v = torch.cat([v, Heads(add_v_proj, context, null)], dim: 2);
        }
        var attn = nn.functional.scaled_dot_product_attention(q, k, v);
        attn = attn.transpose(1, 2).reshape(b, -1, _heads * _headDim).to(q.dtype);
        Tensor? ctxOut = null;
        var img = attn;
        if (context is not null)
        {
            img = attn.narrow(1, 0, n);
            ctxOut = attn.narrow(1, n, attn.shape[1] - n);
            if (to_add_out is not null) ctxOut = to_add_out.forward(ctxOut);
        }
        var imgOut = to_out[0].forward(img);
        return (imgOut.MoveToOuterDisposeScope(), ctxOut?.MoveToOuterDisposeScope());
    }
}

/// <summary>diffusers <c>JointTransformerBlock</c> (MMDiT block), optionally with SD3.5 dual attention.</summary>
public sealed class SD3JointTransformerBlock : nn.Module
{
    private readonly SD3AdaLayerNormZero norm1;
    // diffusers' norm1_context: AdaLayerNormContinuous for the context_pre_only block, else AdaLayerNormZero.
    private readonly nn.Module norm1_context;
    private readonly SD3JointAttention attn;
    private readonly SD3JointAttention? attn2;
    private readonly SD3FeedForward ff;
    private readonly SD3FeedForward? ff_context;
    private readonly long _dim;

    public SD3JointTransformerBlock(long dim, long heads, long headDim, bool contextPreOnly, bool rmsQkNorm, bool dualAttention,
                                    Device? device, ScalarType? dtype) : base(nameof(SD3JointTransformerBlock))
    {
        _dim = dim;
        ContextPreOnly = contextPreOnly;
        norm1 = new SD3AdaLayerNormZero(dim, dualAttention ? 9 : 6, device, dtype);
        norm1_context = contextPreOnly
            ? new SD3AdaLayerNormContinuous(dim, dim, device, dtype)
            : new SD3AdaLayerNormZero(dim, 6, device, dtype);
        attn = new SD3JointAttention(dim, heads, headDim, joint: true, contextPreOnly, rmsQkNorm, device, dtype);
        if (dualAttention)
            attn2 = new SD3JointAttention(dim, heads, headDim, joint: false, contextPreOnly: false, rmsQkNorm, device, dtype);
        ff = new SD3FeedForward(dim, device, dtype);
        if (!contextPreOnly) ff_context = new SD3FeedForward(dim, device, dtype);
        RegisterComponents();
    }

    public bool ContextPreOnly { get; }

    private Tensor Norm(Tensor x) => nn.functional.layer_norm(x, [_dim], null, null, 1e-6);

    /// <summary>One block: returns (context, hidden); context is null for the context_pre_only block.</summary>
    public (Tensor? Context, Tensor Hidden) Forward(Tensor hidden, Tensor context, Tensor temb)
    {
        using var scope = torch.NewDisposeScope();
        var m = norm1.forward(temb);
        var (shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp) = (m[0], m[1], m[2], m[3], m[4], m[5]);
        var normedHidden = norm1.Norm(hidden);
        var normHidden = SD3AdaLayerNormZero.Modulate(normedHidden, shiftMsa, scaleMsa);
        Tensor? normHidden2 = null;
        if (attn2 is not null) normHidden2 = SD3AdaLayerNormZero.Modulate(normedHidden, m[6], m[7]);

        Tensor normContext;
        Tensor[]? cm = null;
        if (norm1_context is SD3AdaLayerNormContinuous cont)
            normContext = cont.forward(context, temb);
        else
        {
            var zero = (SD3AdaLayerNormZero)norm1_context;
            cm = zero.forward(temb);
            normContext = SD3AdaLayerNormZero.Modulate(zero.Norm(context), cm[0], cm[1]);
        }

        var (attnOut, ctxAttnOut) = attn.Forward(normHidden, normContext);
        hidden = hidden + gateMsa.unsqueeze(1) * attnOut;

        if (attn2 is not null)
        {
            var (attnOut2, _) = attn2.Forward(normHidden2!, null);
            hidden = hidden + m[8].unsqueeze(1) * attnOut2;
        }

        var ffIn = SD3AdaLayerNormZero.Modulate(Norm(hidden), shiftMlp, scaleMlp);
        hidden = hidden + gateMlp.unsqueeze(1) * ff.forward(ffIn);

        Tensor? newContext = null;
        if (cm is not null)
        {
            newContext = context + cm[2].unsqueeze(1) * ctxAttnOut!;
            var ctxFfIn = SD3AdaLayerNormZero.Modulate(Norm(newContext), cm[3], cm[4]);
            newContext = newContext + cm[5].unsqueeze(1) * ff_context!.forward(ctxFfIn);
        }
        return (newContext?.MoveToOuterDisposeScope(), hidden.MoveToOuterDisposeScope());
    }
}

/// <summary>
/// diffusers <c>PatchEmbed</c> as SD3 configures it: a patch_size-strided conv and a 2-D sin-cos
/// positional embedding, cropped from a pos_embed_max_size² grid (centred) to the latent's patch grid.
/// </summary>
public sealed class SD3PatchEmbed : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d proj;
    private Tensor pos_embed;
    private readonly int _patch, _baseSize;
    private readonly int? _maxSize;
    private readonly long _embedDim;

    /// <param name="persistentPosEmbed">Whether pos_embed is in the state_dict (diffusers: when pos_embed_max_size is set).</param>
    public SD3PatchEmbed(int sampleSize, int patchSize, int inChannels, int embedDim, int? posEmbedMaxSize, bool persistentPosEmbed,
                         Device? device, ScalarType? dtype) : base(nameof(SD3PatchEmbed))
    {
        _patch = patchSize;
        _maxSize = posEmbedMaxSize;
        _embedDim = embedDim;
        _baseSize = sampleSize / patchSize;
        proj = nn.Conv2d(inChannels, embedDim, (patchSize, patchSize), stride: (patchSize, patchSize), bias: true, device: device, dtype: dtype);
        int grid = posEmbedMaxSize ?? (int)Math.Sqrt((double)(sampleSize / patchSize) * (sampleSize / patchSize));
        using (var pe = SinCos2D(embedDim, grid, grid, _baseSize))
            pos_embed = pe.unsqueeze(0).to(dtype ?? ScalarType.Float32, device ?? torch.CPU).DetachFromDisposeScope();
        register_buffer(nameof(pos_embed), pos_embed, persistentPosEmbed);
        RegisterComponents();
    }

    /// <summary>
    /// diffusers <c>get_2d_sincos_pos_embed(embed_dim, (gridH, gridW), base_size, interpolation_scale=1)</c>
    /// as float32 [gridH*gridW, embedDim] on the CPU: positions in float32, frequencies and sin/cos in float64.
    /// The first half of the features encodes the column, the second half the row.
    /// </summary>
    public static Tensor SinCos2D(int embedDim, int gridH, int gridW, int baseSize)
    {
        if (embedDim % 4 != 0) throw new ArgumentException($"positional embedding width {embedDim} must be divisible by 4");
        int half = embedDim / 2, quarter = embedDim / 4;
        var omega = new double[quarter];
        for (int i = 0; i < quarter; i++) omega[i] = 1.0 / Math.Pow(10000, i / (half / 2.0));
        float divH = (float)((double)gridH / baseSize), divW = (float)((double)gridW / baseSize);
        var data = new float[(long)gridH * gridW * embedDim];
        for (int r = 0; r < gridH; r++)
        {
            float posH = r / divH;
            for (int c = 0; c < gridW; c++)
            {
                float posW = c / divW;
                long o = ((long)r * gridW + c) * embedDim;
                for (int i = 0; i < quarter; i++)
                {
                    double aw = posW * omega[i], ah = posH * omega[i];
                    data[o + i] = (float)Math.Sin(aw);
                    data[o + quarter + i] = (float)Math.Cos(aw);
                    data[o + half + i] = (float)Math.Sin(ah);
                    data[o + half + quarter + i] = (float)Math.Cos(ah);
                }
            }
        }
        return torch.tensor(data, [(long)gridH * gridW, embedDim]);
    }

    /// <summary>The positional embedding for a latent of <paramref name="height"/> x <paramref name="width"/> pixels: [1, h*w, D].</summary>
    public Tensor PositionalEmbedding(long height, long width)
    {
        long h = height / _patch, w = width / _patch;
        if (_maxSize is int m)
        {
            if (h > m || w > m)
                throw new ArgumentException($"latent of {height}x{width} has a {h}x{w} patch grid; the positional embedding covers at most {m}x{m} (pos_embed_max_size)");
            long top = (m - h) / 2, left = (m - w) / 2;
            using var grid = pos_embed.reshape(1, m, m, -1);
            using var crop = grid.narrow(1, top, h).narrow(2, left, w);
            return crop.reshape(1, -1, _embedDim);
        }
        long side = (long)Math.Sqrt((double)pos_embed.shape[1]);
        if (h == side && w == side) return pos_embed.alias();
        using var pe = SinCos2D((int)_embedDim, (int)h, (int)w, _baseSize);
        return pe.unsqueeze(0).to(pos_embed.dtype, pos_embed.device);
    }

    public override Tensor forward(Tensor latent)
    {
        using var scope = torch.NewDisposeScope();
        long height = latent.shape[^2], width = latent.shape[^1];
        var x = proj.forward(latent).flatten(2).transpose(1, 2);
        var pe = PositionalEmbedding(height, width);
        return (x + pe).to(x.dtype).MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers <c>PixArtAlphaTextProjection(in, hidden, act_fn="silu")</c>.</summary>
public sealed class SD3TextProjection : nn.Module<Tensor, Tensor>
{
    private readonly Linear linear_1, linear_2;

    public SD3TextProjection(long inFeatures, long hidden, Device? device, ScalarType? dtype) : base(nameof(SD3TextProjection))
    {
        linear_1 = nn.Linear(inFeatures, hidden, hasBias: true, device: device, dtype: dtype);
        linear_2 = nn.Linear(hidden, hidden, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = linear_1.forward(x);
        using var a = nn.functional.silu(h);
        return linear_2.forward(a);
    }
}

/// <summary>
/// diffusers <c>CombinedTimestepTextProjEmbeddings</c>: sinusoidal(256, flip_sin_to_cos, shift 0) of the
/// timestep (float32) → cast to the pooled projections' dtype → TimestepEmbedding, plus the pooled text projection.
/// </summary>
public sealed class SD3TimeTextEmbedding : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly TimestepEmbedding timestep_embedder;
    private readonly SD3TextProjection text_embedder;

    public SD3TimeTextEmbedding(long dim, long pooledDim, Device? device, ScalarType? dtype) : base(nameof(SD3TimeTextEmbedding))
    {
        timestep_embedder = new TimestepEmbedding(256, (int)dim);
        if (device is not null || dtype is not null)
            timestep_embedder.to(device ?? torch.CPU, dtype ?? ScalarType.Float32);
        text_embedder = new SD3TextProjection(pooledDim, dim, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor timestep, Tensor pooled)
    {
        using var scope = torch.NewDisposeScope();
        var proj = TimestepFeatures.Sinusoidal(timestep, 256, flipSinToCos: true, downscaleFreqShift: 0);
        var t = timestep_embedder.forward(proj.to(pooled.dtype));
        var p = text_embedder.forward(pooled);
        return (t + p).MoveToOuterDisposeScope();
    }
}

using Elect.Models.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Unets;

/// <summary>diffusers <c>GEGLU</c>: proj → split in (hidden, gate) → hidden * gelu(gate) (exact gelu).</summary>
public sealed class GEGLU : nn.Module<Tensor, Tensor>
{
    private readonly Linear proj;

    public GEGLU(int dimIn, int dimOut) : base(nameof(GEGLU))
    {
        proj = nn.Linear(dimIn, 2L * dimOut);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var parts = proj.forward(x).chunk(2, dim: -1);
        return (parts[0] * nn.functional.gelu(parts[1])).MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers <c>FeedForward</c> with GEGLU: <c>net.0</c> GEGLU, <c>net.1</c> dropout (identity at inference), <c>net.2</c> linear.</summary>
public sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<nn.Module<Tensor, Tensor>> net;

    public FeedForward(int dim, int mult = 4) : base(nameof(FeedForward))
    {
        int inner = dim * mult;
        net = nn.ModuleList<nn.Module<Tensor, Tensor>>(new GEGLU(dim, inner), nn.Identity(), nn.Linear(inner, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = net[0].forward(x);
        return net[2].forward(h);
    }
}

/// <summary>
/// diffusers <c>BasicTransformerBlock</c> (layer_norm, eps 1e-5): self-attention, cross-attention,
/// GEGLU feed-forward, each pre-normed with a residual.
/// </summary>
public sealed class BasicTransformerBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Attention attn1;
    private readonly LayerNorm norm2;
    private readonly Attention attn2;
    private readonly LayerNorm norm3;
    private readonly FeedForward ff;

    public BasicTransformerBlock(int dim, int heads, int dimHead, int crossAttentionDim) : base(nameof(BasicTransformerBlock))
    {
        norm1 = nn.LayerNorm(dim, 1e-5);
        attn1 = new Attention(dim, heads, dimHead, crossAttentionDim: null, bias: false, outBias: true);
        norm2 = nn.LayerNorm(dim, 1e-5);
        attn2 = new Attention(dim, heads, dimHead, crossAttentionDim: crossAttentionDim, bias: false, outBias: true);
        norm3 = nn.LayerNorm(dim, 1e-5);
        ff = new FeedForward(dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor context)
    {
        using var scope = torch.NewDisposeScope();
        var h = attn1.forward(norm1.forward(x), null) + x;
        h = attn2.forward(norm2.forward(h), context) + h;
        h = ff.forward(norm3.forward(h)) + h;
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// diffusers <c>Transformer2DModel</c> for continuous (latent image) input: GroupNorm (eps 1e-6) →
/// proj_in (1x1 conv, or linear with <c>use_linear_projection</c>) → transformer blocks over H*W
/// tokens → proj_out → + input.
/// </summary>
public sealed class Transformer2DModel : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly GroupNorm norm;
    private readonly nn.Module<Tensor, Tensor> proj_in;
    private readonly ModuleList<BasicTransformerBlock> transformer_blocks;
    private readonly nn.Module<Tensor, Tensor> proj_out;
    private readonly bool _linear;
    private readonly int _inner;

    public Transformer2DModel(int heads, int dimHead, int inChannels, int numLayers, int crossAttentionDim, int groups, bool useLinearProjection)
        : base(nameof(Transformer2DModel))
    {
        _inner = heads * dimHead;
        _linear = useLinearProjection;
        norm = nn.GroupNorm(groups, inChannels, 1e-6, affine: true);
        proj_in = useLinearProjection ? nn.Linear(inChannels, _inner) : nn.Conv2d(inChannels, _inner, 1);
        transformer_blocks = nn.ModuleList<BasicTransformerBlock>();
        for (int i = 0; i < numLayers; i++)
            transformer_blocks.Add(new BasicTransformerBlock(_inner, heads, dimHead, crossAttentionDim));
        proj_out = useLinearProjection ? nn.Linear(_inner, inChannels) : nn.Conv2d(_inner, inChannels, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor context)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], h = x.shape[2], w = x.shape[3];
        var t = norm.forward(x);
        if (_linear)
        {
            t = proj_in.forward(t.permute(0, 2, 3, 1).reshape(b, h * w, -1));
        }
        else
        {
            t = proj_in.forward(t);
            t = t.permute(0, 2, 3, 1).reshape(b, h * w, _inner);
        }
        foreach (var block in transformer_blocks) t = block.forward(t, context);
        if (_linear)
        {
            t = proj_out.forward(t).reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous();
        }
        else
        {
            t = t.reshape(b, h, w, _inner).permute(0, 3, 1, 2).contiguous();
            t = proj_out.forward(t);
        }
        return (t + x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// diffusers <c>CrossAttnDownBlock2D</c> (with attentions) / <c>DownBlock2D</c> (without):
/// (resnet [, transformer]) per layer, then an optional strided-conv downsampler. Every layer's
/// output and the downsampler's is a skip connection.
/// </summary>
public sealed class UNetDownBlock2D : nn.Module
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Transformer2DModel>? attentions;
    private readonly ModuleList<Downsample2D>? downsamplers;

    public UNetDownBlock2D(int inChannels, int outChannels, int tembChannels, int numLayers, int groups, double eps,
                           bool addDownsample, int downsamplePadding, CrossAttentionSpec? crossAttention)
        : base(crossAttention is null ? "DownBlock2D" : "CrossAttnDownBlock2D")
    {
        resnets = nn.ModuleList<ResnetBlock2D>();
        if (crossAttention is not null) attentions = nn.ModuleList<Transformer2DModel>();
        for (int i = 0; i < numLayers; i++)
        {
            resnets.Add(new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, tembChannels, groups, eps));
            attentions?.Add(crossAttention!.Build(outChannels, i, groups));
        }
        if (addDownsample) downsamplers = nn.ModuleList(new Downsample2D(outChannels, outChannels, downsamplePadding));
        RegisterComponents();
    }

    /// <summary>Runs the block; appends its skip outputs to <paramref name="skips"/> and returns the last.</summary>
    public Tensor Forward(Tensor x, Tensor activatedTemb, Tensor context, List<Tensor> skips)
    {
        var h = x;
        for (int i = 0; i < resnets.Count; i++)
        {
            var r = resnets[i].forward(h, activatedTemb);
            if (attentions is not null)
            {
                var a = attentions[i].forward(r, context);
                r.Dispose();
                r = a;
            }
            h = r;
            skips.Add(h);
        }
        if (downsamplers is not null)
        {
            h = downsamplers[0].forward(h);
            skips.Add(h);
        }
        return h;
    }
}

/// <summary>diffusers <c>UNetMidBlock2DCrossAttn</c>: resnet, then (transformer, resnet) per layer.</summary>
public sealed class UNetMidBlock2DCrossAttn : nn.Module
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Transformer2DModel> attentions;

    public UNetMidBlock2DCrossAttn(int channels, int tembChannels, int groups, double eps, double outputScaleFactor,
                                   CrossAttentionSpec crossAttention, int numLayers = 1)
        : base(nameof(UNetMidBlock2DCrossAttn))
    {
        resnets = nn.ModuleList(new ResnetBlock2D(channels, channels, tembChannels, groups, eps, outputScaleFactor));
        attentions = nn.ModuleList<Transformer2DModel>();
        for (int i = 0; i < numLayers; i++)
        {
            attentions.Add(crossAttention.Build(channels, i, groups));
            resnets.Add(new ResnetBlock2D(channels, channels, tembChannels, groups, eps, outputScaleFactor));
        }
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, Tensor activatedTemb, Tensor context)
    {
        using var scope = torch.NewDisposeScope();
        var h = resnets[0].forward(x, activatedTemb);
        for (int i = 0; i < attentions.Count; i++)
        {
            h = attentions[i].forward(h, context);
            h = resnets[i + 1].forward(h, activatedTemb);
        }
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// diffusers <c>CrossAttnUpBlock2D</c> / <c>UpBlock2D</c>: per layer, concatenate the next skip
/// connection (from the end) on channels, resnet [, transformer]; then an optional upsampler.
/// </summary>
public sealed class UNetUpBlock2D : nn.Module
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Transformer2DModel>? attentions;
    private readonly ModuleList<Upsample2D>? upsamplers;

    public UNetUpBlock2D(int inChannels, int prevOutputChannels, int outChannels, int tembChannels, int numLayers, int groups,
                         double eps, bool addUpsample, CrossAttentionSpec? crossAttention)
        : base(crossAttention is null ? "UpBlock2D" : "CrossAttnUpBlock2D")
    {
        resnets = nn.ModuleList<ResnetBlock2D>();
        if (crossAttention is not null) attentions = nn.ModuleList<Transformer2DModel>();
        for (int i = 0; i < numLayers; i++)
        {
            int skipChannels = i == numLayers - 1 ? inChannels : outChannels;
            int resnetIn = i == 0 ? prevOutputChannels : outChannels;
            resnets.Add(new ResnetBlock2D(resnetIn + skipChannels, outChannels, tembChannels, groups, eps));
            attentions?.Add(crossAttention!.Build(outChannels, i, groups));
        }
        if (addUpsample) upsamplers = nn.ModuleList(new Upsample2D(outChannels, outChannels));
        RegisterComponents();
    }

    /// <summary>How many skip connections the block consumes.</summary>
    public int NumResnets => resnets.Count;

    /// <summary>
    /// Runs the block, consuming (and disposing) the last <see cref="NumResnets"/> entries of
    /// <paramref name="skips"/>, last first. <paramref name="upsampleSize"/>: the upsampler's output
    /// size (null: x2).
    /// </summary>
    public Tensor Forward(Tensor x, List<Tensor> skips, Tensor activatedTemb, Tensor context, long[]? upsampleSize)
    {
        if (skips.Count < resnets.Count)
            throw new InvalidOperationException($"up block needs {resnets.Count} skip connections, {skips.Count} left");
        using var scope = torch.NewDisposeScope();
        var h = x;
        for (int i = 0; i < resnets.Count; i++)
        {
            var skip = skips[^1];
            skips.RemoveAt(skips.Count - 1);
            h = torch.cat([h, skip], dim: 1);
            skip.Dispose();
            h = resnets[i].forward(h, activatedTemb);
            if (attentions is not null) h = attentions[i].forward(h, context);
        }
        if (upsamplers is not null) h = upsamplers[0].forward(h, upsampleSize);
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>How a block builds its <see cref="Transformer2DModel"/>s (per-block settings of the UNet config).</summary>
public sealed record CrossAttentionSpec(int Heads, int[] LayersPerResnet, int CrossAttentionDim, bool UseLinearProjection)
{
    internal Transformer2DModel Build(int channels, int index, int groups)
    {
        if (channels % Heads != 0)
            throw new InvalidDataException($"{channels} channels do not split into {Heads} attention heads");
        int layers = LayersPerResnet.Length == 1 ? LayersPerResnet[0] : LayersPerResnet[index];
        return new Transformer2DModel(Heads, channels / Heads, channels, layers, CrossAttentionDim, groups, UseLinearProjection);
    }
}

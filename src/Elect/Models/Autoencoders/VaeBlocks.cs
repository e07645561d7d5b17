using Elect.Models.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Autoencoders;

/// <summary>diffusers <c>DownEncoderBlock2D</c>: resnets (no time embedding), then an optional downsampler.</summary>
public sealed class DownEncoderBlock2D : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Downsample2D>? downsamplers;

    public DownEncoderBlock2D(int inChannels, int outChannels, int numLayers, int groups, double eps, bool addDownsample)
        : base(nameof(DownEncoderBlock2D))
    {
        resnets = nn.ModuleList<ResnetBlock2D>();
        for (int i = 0; i < numLayers; i++)
            resnets.Add(new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, groups, eps));
        if (addDownsample) downsamplers = nn.ModuleList(new Downsample2D(outChannels, outChannels, padding: 0));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var h = input;
        foreach (var r in resnets) h = r.forward(h);
        if (downsamplers is not null) h = downsamplers[0].forward(h);
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers <c>UpDecoderBlock2D</c>: resnets (no time embedding), then an optional upsampler.</summary>
public sealed class UpDecoderBlock2D : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Upsample2D>? upsamplers;

    public UpDecoderBlock2D(int inChannels, int outChannels, int numLayers, int groups, double eps, bool addUpsample)
        : base(nameof(UpDecoderBlock2D))
    {
        resnets = nn.ModuleList<ResnetBlock2D>();
        for (int i = 0; i < numLayers; i++)
            resnets.Add(new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, groups, eps));
        if (addUpsample) upsamplers = nn.ModuleList(new Upsample2D(outChannels, outChannels));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var h = input;
        foreach (var r in resnets) h = r.forward(h);
        if (upsamplers is not null) h = upsamplers[0].forward(h);
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// diffusers <c>UNetMidBlock2D</c> as the VAE uses it: resnet, (single-head spatial self-attention
/// with group norm and residual, resnet) per layer.
/// </summary>
public sealed class UNetMidBlock2D : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<Attention>? attentions;

    public UNetMidBlock2D(int channels, int groups, double eps, bool addAttention, int numLayers = 1)
        : base(nameof(UNetMidBlock2D))
    {
        resnets = nn.ModuleList(new ResnetBlock2D(channels, channels, null, groups, eps));
        if (addAttention) attentions = nn.ModuleList<Attention>();
        for (int i = 0; i < numLayers; i++)
        {
            // attention_head_dim = channels → one head of size `channels`.
            attentions?.Add(new Attention(channels, heads: 1, dimHead: channels, bias: true, outBias: true,
                                          normNumGroups: groups, eps: eps, residualConnection: true));
            resnets.Add(new ResnetBlock2D(channels, channels, null, groups, eps));
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var h = resnets[0].forward(input);
        for (int i = 1; i < resnets.Count; i++)
        {
            if (attentions is not null) h = attentions[i - 1].forward(h);
            h = resnets[i].forward(h);
        }
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers VAE <c>Encoder</c> (double_z: outputs mean and log-variance channels).</summary>
public sealed class VaeEncoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly ModuleList<DownEncoderBlock2D> down_blocks;
    private readonly UNetMidBlock2D mid_block;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    public VaeEncoder(int inChannels, int latentChannels, int[] blockOut, int layersPerBlock, int groups, bool midAttention)
        : base("Encoder")
    {
        const double eps = 1e-6;
        conv_in = nn.Conv2d(inChannels, blockOut[0], 3, padding: 1);
        down_blocks = nn.ModuleList<DownEncoderBlock2D>();
        int output = blockOut[0];
        for (int i = 0; i < blockOut.Length; i++)
        {
            int input = output;
            output = blockOut[i];
            down_blocks.Add(new DownEncoderBlock2D(input, output, layersPerBlock, groups, eps, addDownsample: i != blockOut.Length - 1));
        }
        mid_block = new UNetMidBlock2D(blockOut[^1], groups, eps, midAttention);
        conv_norm_out = nn.GroupNorm(groups, blockOut[^1], eps, affine: true);
        conv_out = nn.Conv2d(blockOut[^1], 2 * latentChannels, 3, padding: 1);
        RegisterComponents();
    }

    /// <summary>conv_in's weight (its dtype and device are the encoder's).</summary>
    internal Tensor InputWeight => conv_in.weight!;

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var h = conv_in.forward(input);
        foreach (var b in down_blocks) h = b.forward(h);
        h = mid_block.forward(h);
        h = conv_out.forward(nn.functional.silu(conv_norm_out.forward(h)));
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers VAE <c>Decoder</c> (group norm; no spatial norm).</summary>
public sealed class VaeDecoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly UNetMidBlock2D mid_block;
    private readonly ModuleList<UpDecoderBlock2D> up_blocks;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    public VaeDecoder(int latentChannels, int outChannels, int[] blockOut, int layersPerBlock, int groups, bool midAttention)
        : base("Decoder")
    {
        const double eps = 1e-6;
        conv_in = nn.Conv2d(latentChannels, blockOut[^1], 3, padding: 1);
        mid_block = new UNetMidBlock2D(blockOut[^1], groups, eps, midAttention);
        up_blocks = nn.ModuleList<UpDecoderBlock2D>();
        var rev = blockOut.Reverse().ToArray();
        int output = rev[0];
        for (int i = 0; i < rev.Length; i++)
        {
            int prev = output;
            output = rev[i];
            up_blocks.Add(new UpDecoderBlock2D(prev, output, layersPerBlock + 1, groups, eps, addUpsample: i != rev.Length - 1));
        }
        conv_norm_out = nn.GroupNorm(groups, blockOut[0], eps, affine: true);
        conv_out = nn.Conv2d(blockOut[0], outChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var h = conv_in.forward(input);
        h = mid_block.forward(h);
        foreach (var b in up_blocks) h = b.forward(h);
        h = conv_out.forward(nn.functional.silu(conv_norm_out.forward(h)));
        return h.MoveToOuterDisposeScope();
    }
}

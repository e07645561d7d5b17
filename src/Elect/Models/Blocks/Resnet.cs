using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Blocks;

/// <summary>
/// diffusers <c>ResnetBlock2D</c> (SiLU, <c>time_embedding_norm="default"</c>): norm1 → SiLU → conv1
/// (+ time_emb_proj(temb)) → norm2 → SiLU → conv2, plus the input (through a 1x1
/// <c>conv_shortcut</c> when the channel count changes), divided by the output scale factor.
/// Shared by the VAE (no time embedding) and the UNet.
/// </summary>
public sealed class ResnetBlock2D : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly GroupNorm norm1;
    private readonly Conv2d conv1;
    private readonly Linear? time_emb_proj;
    private readonly GroupNorm norm2;
    private readonly Conv2d conv2;
    private readonly Conv2d? conv_shortcut;
    private readonly double _outputScale;

    public ResnetBlock2D(int inChannels, int outChannels, int? tembChannels, int groups, double eps, double outputScaleFactor = 1.0)
        : base(nameof(ResnetBlock2D))
    {
        norm1 = nn.GroupNorm(groups, inChannels, eps, affine: true);
        conv1 = nn.Conv2d(inChannels, outChannels, 3, padding: 1);
        if (tembChannels is int t) time_emb_proj = nn.Linear(t, outChannels);
        norm2 = nn.GroupNorm(groups, outChannels, eps, affine: true);
        conv2 = nn.Conv2d(outChannels, outChannels, 3, padding: 1);
        if (inChannels != outChannels) conv_shortcut = nn.Conv2d(inChannels, outChannels, 1);
        _outputScale = outputScaleFactor;
        RegisterComponents();
    }

    /// <summary>
    /// <paramref name="activatedTemb"/>: the time embedding AFTER the SiLU diffusers applies in every
    /// block ([B, temb_channels]); the UNet computes it once per forward. Null for blocks without one.
    /// </summary>
    public override Tensor forward(Tensor input, Tensor? activatedTemb)
    {
        using var scope = torch.NewDisposeScope();
        var h = conv1.forward(nn.functional.silu(norm1.forward(input)));
        if (time_emb_proj is not null)
        {
            if (activatedTemb is null) throw new ArgumentNullException(nameof(activatedTemb), "this resnet block needs a time embedding");
            h = h + time_emb_proj.forward(activatedTemb).unsqueeze(-1).unsqueeze(-1);
        }
        h = conv2.forward(nn.functional.silu(norm2.forward(h)));
        var shortcut = conv_shortcut is null ? input : conv_shortcut.forward(input);
        var result = shortcut + h;
        if (_outputScale != 1.0) result = result / _outputScale;
        return result.MoveToOuterDisposeScope();
    }

    public Tensor forward(Tensor input) => forward(input, null);
}

/// <summary>
/// diffusers <c>Downsample2D</c> with a convolution: 3x3 stride 2 with <c>padding</c>; padding 0
/// means an asymmetric zero pad (right and bottom by 1) first, as the VAE encoder uses it.
/// </summary>
public sealed class Downsample2D : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv;
    private readonly int _padding;

    public Downsample2D(int channels, int outChannels, int padding) : base(nameof(Downsample2D))
    {
        conv = nn.Conv2d(channels, outChannels, 3, stride: 2, padding: padding);
        _padding = padding;
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        if (_padding != 0) return conv.forward(input);
        using var padded = nn.functional.pad(input, [0, 1, 0, 1]);
        return conv.forward(padded);
    }
}

/// <summary>
/// diffusers <c>Upsample2D</c> with a convolution: nearest-neighbour x2 (or to an explicit output
/// size, used when a UNet skip connection has an odd size), then a 3x3 convolution.
/// </summary>
public sealed class Upsample2D : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d conv;

    public Upsample2D(int channels, int outChannels) : base(nameof(Upsample2D))
    {
        conv = nn.Conv2d(channels, outChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => forward(input, null);

    /// <param name="input">[B, C, H, W].</param>
    /// <param name="outputSize">[H', W'] to interpolate to (null: 2H x 2W).</param>
    public Tensor forward(Tensor input, long[]? outputSize)
    {
        using var up = outputSize is null
            ? nn.functional.interpolate(input, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest)
            : nn.functional.interpolate(input, size: outputSize, mode: InterpolationMode.Nearest);
        return conv.forward(up);
    }
}

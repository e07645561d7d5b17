using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Blocks;

/// <summary>Timestep embeddings shared by the UNet and the SD3 transformer (diffusers' embeddings.py).</summary>
public static class TimestepFeatures
{
    /// <summary>
    /// diffusers <c>get_timestep_embedding</c>: sinusoidal features of <paramref name="timesteps"/>
    /// ([B], any float dtype) computed in float32, shape [B, dim].
    /// </summary>
    public static Tensor Sinusoidal(Tensor timesteps, int dim, bool flipSinToCos, double downscaleFreqShift,
                                    double scale = 1.0, int maxPeriod = 10000)
    {
        using var scope = torch.NewDisposeScope();
        int half = dim / 2;
        var exponent = torch.arange(0, half, dtype: ScalarType.Float32, device: timesteps.device) * (-Math.Log(maxPeriod));
        exponent = exponent / (half - downscaleFreqShift);
        var freqs = torch.exp(exponent);
        var emb = timesteps.to(ScalarType.Float32).unsqueeze(1) * freqs.unsqueeze(0);
        emb = emb * scale;
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim: -1);
        if (flipSinToCos)
            emb = torch.cat([emb[.., half..], emb[.., ..half]], dim: -1);
        if (dim % 2 == 1)
            emb = nn.functional.pad(emb, [0, 1, 0, 0]);
        return emb.MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers <c>TimestepEmbedding</c>: linear_1 → SiLU → linear_2.</summary>
public sealed class TimestepEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Linear linear_1;
    private readonly Linear linear_2;

    public TimestepEmbedding(int inChannels, int timeEmbedDim, int? outDim = null) : base(nameof(TimestepEmbedding))
    {
        linear_1 = nn.Linear(inChannels, timeEmbedDim);
        linear_2 = nn.Linear(timeEmbedDim, outDim ?? timeEmbedDim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor sample)
    {
        using var h = nn.functional.silu(linear_1.forward(sample));
        return linear_2.forward(h);
    }
}

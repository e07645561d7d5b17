using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Blocks;

/// <summary>
/// RMS normalisation (no mean subtraction, no bias) as transformers' <c>T5LayerNorm</c> / <c>LlamaRMSNorm</c> and
/// diffusers' <c>RMSNorm(elementwise_affine=True)</c> compute it: the statistics in float32,
/// <c>x · rsqrt(mean(x²) + eps)</c> in float32, cast, then times <c>weight</c>. T5 and diffusers cast to the weight's
/// dtype, LLaMA to the input's (<paramref name="castToInputDType"/>); the two agree whenever weight and input share a
/// dtype.
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _eps;
    private readonly bool _castToInputDType;

    public RmsNorm(long size, double eps, Device? device = null, ScalarType? dtype = null, bool castToInputDType = false) : base(nameof(RmsNorm))
    {
        weight = new Parameter(torch.ones(size, dtype: dtype ?? ScalarType.Float32, device: device));
        _eps = eps;
        _castToInputDType = castToInputDType;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var variance = xf.pow(2).mean([-1], keepdim: true);
        var y = xf * torch.rsqrt(variance + _eps);
        return (weight * y.to(_castToInputDType ? x.dtype : weight.dtype)).MoveToOuterDisposeScope();
    }
}

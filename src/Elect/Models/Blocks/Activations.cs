using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Models.Blocks;

/// <summary>Activation functions named as in transformers' <c>ACT2FN</c>.</summary>
internal static class Activations
{
    private static readonly string[] Known = ["quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish"];

    public static void Check(string name, string source, string key)
    {
        if (!Known.Contains(name))
            throw new InvalidDataException($"{source}: {key} '{name}' is not supported (expected one of {string.Join(", ", Known)})");
    }

    public static Tensor Apply(string name, Tensor x)
    {
        switch (name)
        {
            case "quick_gelu":
                {
                    using var s = torch.sigmoid(x * 1.702);
                    return x * s;
                }
            case "gelu":
                return nn.functional.gelu(x);
            case "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast":
                return GeluTanh(x);
            case "relu":
                return nn.functional.relu(x);
            case "silu" or "swish":
                return nn.functional.silu(x);
            default:
                throw new ArgumentException($"unsupported activation '{name}'");
        }
    }

    /// <summary>transformers' <c>NewGELUActivation</c>: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))).</summary>
    public static Tensor GeluTanh(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var inner = (x + torch.pow(x, 3.0) * 0.044715) * Math.Sqrt(2.0 / Math.PI);
        var y = x * 0.5 * (torch.tanh(inner) + 1.0);
        return y.MoveToOuterDisposeScope();
    }
}

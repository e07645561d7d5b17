using System.Security.Cryptography;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Modeling;

/// <summary>
/// Deterministic weights without a weight file (the published-size parity tests, the built-in demo model and the
/// bench's random full-size builds), drawn exactly as <c>fill()</c> in <c>scripts/goldens/published_sizes.py</c>
/// draws them (keep the two identical):
/// <code>
/// g = torch.Generator().manual_seed(seed)                  // CPU generator, one per component
/// for name in sorted(named_parameters, ordinal)            // the reference (diffusers / transformers) names
///     t = torch.randn(shape, generator: g)                 // float32
///     ndim >= 2:            t *= 1 / sqrt(prod(shape[1..]))   (linear, conv, embedding: fan-in scaling)
///     ndim == 1, *.bias:    t *= 0.02
///     ndim == 1, otherwise: t = t * 0.1 + 1                   (norm scales)
/// </code>
/// Parameters only (buffers such as SD3's sin-cos position grid keep what the model computes).
/// TorchSharp's CPU generator draws the same numbers as PyTorch's for the same seed. Returns the
/// parameter count and the SHA-256 of "name\tshape\n" over the sorted names, which the golden's
/// metadata records, so a test proves both sides drew for the same parameters in the same order.
/// </summary>
public static class SeededInit
{
    public static (int Count, string Sha256) Fill(nn.Module module, long seed, Func<string, string>? referenceName = null)
    {
        var ps = module.named_parameters()
            .Select(p => (Name: referenceName?.Invoke(p.name) ?? p.name, Param: p.parameter))
            .OrderBy(p => p.Name, StringComparer.Ordinal)
            .ToList();
        using var g = new Generator(unchecked((ulong)seed));
        using var _ = torch.no_grad();
        var lines = new StringBuilder();
        foreach (var (name, p) in ps)
        {
            var shape = p.shape;
            using (var scope = torch.NewDisposeScope())
            {
                var t = torch.randn(shape, dtype: ScalarType.Float32, generator: g);
                if (shape.Length >= 2)
                {
                    long fanIn = 1;
                    for (int i = 1; i < shape.Length; i++) fanIn *= shape[i];
                    t.mul_(1.0 / Math.Sqrt(fanIn));
                }
                else if (name.EndsWith("bias", StringComparison.Ordinal))
                {
                    t.mul_(0.02);
                }
                else
                {
                    t.mul_(0.1).add_(1.0);
                }
                p.copy_(t);   // drawn in float32, converted to the parameter's dtype and device
            }
            lines.Append(name).Append('\t').Append(string.Join(",", shape)).Append('\n');
        }
        var digest = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(lines.ToString()))).ToLowerInvariant();
        return (ps.Count, digest);
    }
}

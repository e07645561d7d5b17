using Elect.Models.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Evaluation;

/// <summary>
/// PIE-Bench's structure distance (PnPInversion's <c>LossG.calculate_global_ssim_loss</c>, from Splice's VitExtractor)
/// with the reference's quirks kept: the images are float in 0..255 (not 0..1; masked as the other metrics),
/// resized so the shorter side is the ViT's image size (torchvision <c>Resize(224, max_size=480)</c>: bilinear,
/// antialiased, on the float tensor), "normalised" with ImageNet's mean and std as if they were in 0..1, and compared
/// by the MSE of the cosine self-similarity of the layer-11 attention keys (all heads concatenated, class token
/// included; <c>attn_cosine_sim</c>, eps 1e-8).
/// </summary>
public sealed class StructureDistance : IPairMetric, IDisposable
{
    private static readonly float[] Mean = [0.485f, 0.456f, 0.406f];
    private static readonly float[] Std = [0.229f, 0.224f, 0.225f];
    private readonly DinoVit _vit;

    /// <summary>The layer whose keys are compared (the reference's <c>layer_num=11</c>; the last layer of a 12-layer model).</summary>
    public int Layer { get; }

    public StructureDistance(DinoVit vit, int? layer = null)
    {
        _vit = vit;
        Layer = layer ?? Math.Min(11, vit.Config.NumHiddenLayers - 1);
    }

    /// <summary>Loads facebook/dino-vitb8 (a transformers ViTModel folder).</summary>
    public static StructureDistance Load(string dir) => new(DinoVit.FromPretrained(dir));

    /// <summary>The key self-similarity [tokens, tokens] of one image [1,3,H,W] in 0..255.</summary>
    public Tensor SelfSimilarity(Tensor image255)
    {
        using var scope = torch.NewDisposeScope();
        int s = _vit.Config.ImageSize;
        long h = image255.shape[2], w = image255.shape[3];
        if (h != w) throw new ArgumentException($"structure distance: only square images are supported ({w}x{h})");
        var x = h == s ? image255 : nn.functional.interpolate(image255, [s, s], mode: InterpolationMode.Bilinear, align_corners: false, antialias: true);
        x = (x - torch.tensor(Mean).reshape(1, 3, 1, 1)) / torch.tensor(Std).reshape(1, 3, 1, 1);
        var keys = _vit.Keys(x, Layer);                       // [heads, tokens, d]
        long heads = keys.shape[0], t = keys.shape[1], d = keys.shape[2];
        var c = keys.transpose(0, 1).reshape(t, heads * d);
        var norm = c.norm(1, keepdim: true);
        var sim = c.matmul(c.t()) / (norm.matmul(norm.t())).clamp_min(1e-8);
        return sim.MoveToOuterDisposeScope();
    }

    /// <summary>Images [1,3,H,W] in [0,1] (masked already), scaled to 0..255 as the reference feeds them.</summary>
    public double Score(Tensor source, Tensor target)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var a = SelfSimilarity(source.to(ScalarType.Float32) * 255);
        var b = SelfSimilarity(target.to(ScalarType.Float32) * 255);
        return nn.functional.mse_loss(b, a).item<float>();
    }

    public void Dispose() => _vit.Dispose();
}

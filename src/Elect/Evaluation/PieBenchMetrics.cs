using Elect.Imaging;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Evaluation;

/// <summary>A learned image-pair metric (LPIPS, DINO structure distance): both images [1,3,H,W] in [0,1], masked already.</summary>
public interface IPairMetric
{
    double Score(Tensor source, Tensor target);
}

/// <summary>
/// PIE-Bench's metrics by the names of cure-lab/PnPInversion's evaluation/evaluate.py (<c>psnr</c>, <c>mse</c>,
/// <c>ssim</c>, <c>lpips</c>, <c>structure_distance</c>, each also as <c>_unedit_part</c> and <c>_edit_part</c>),
/// computed as it does: the item's RLE mask decoded at 512x512 with the border set to 1 (<see cref="Mask"/>);
/// for a part, both images are multiplied by the part's mask (<c>1 - mask</c> for the unedited background, the mask
/// for the edited part) and the metric is taken over the whole image; a part whose mask is empty is <c>nan</c>.
/// </summary>
public static class PieBenchMetrics
{
    /// <summary>The size PIE-Bench's masks are decoded at.</summary>
    public const int MaskSize = 512;

    /// <summary>Every metric name <see cref="Compute"/> knows.</summary>
    public static readonly IReadOnlyList<string> All = BuildAll();

    /// <summary>The CLIP scores (<see cref="ClipScore"/>): source image vs original prompt, target vs editing prompt, whole and edited part.</summary>
    public static readonly IReadOnlyList<string> ClipMetrics =
        ["clip_similarity_source_image", "clip_similarity_target_image", "clip_similarity_target_image_edit_part"];

    /// <summary>The metrics that need no model.</summary>
    public static readonly IReadOnlyList<string> PixelOnly = All.Where(m => Base(m) is "psnr" or "mse" or "ssim").ToArray();

    private static string[] BuildAll()
    {
        var names = new List<string>();
        foreach (var b in new[] { "structure_distance", "psnr", "lpips", "mse", "ssim" })
        {
            names.Add(b);
            names.Add(b + "_unedit_part");
            names.Add(b + "_edit_part");
        }
        names.AddRange(["clip_similarity_source_image", "clip_similarity_target_image", "clip_similarity_target_image_edit_part"]);
        return names.ToArray();
    }

    /// <summary>The metric without its part suffix (<c>psnr_unedit_part</c> → <c>psnr</c>).</summary>
    public static string Base(string metric) =>
        metric.EndsWith("_unedit_part", StringComparison.Ordinal) ? metric[..^"_unedit_part".Length]
        : metric.EndsWith("_edit_part", StringComparison.Ordinal) ? metric[..^"_edit_part".Length]
        : metric;

    /// <summary>The factor the paper's table multiplies a metric by (MSE x10^4, LPIPS and structure distance x10^3, SSIM x10^2).</summary>
    public static double TableScale(string metric) => Base(metric) switch
    {
        "mse" => 1e4,
        "lpips" or "structure_distance" => 1e3,
        "ssim" => 1e2,
        _ => 1,
    };

    /// <summary>
    /// A CLIP score of PIE-Bench's evaluation: <c>clip_similarity_source_image</c> (source vs the original prompt),
    /// <c>clip_similarity_target_image</c> (target vs the editing prompt), <c>_edit_part</c> (the target times the mask;
    /// NaN when the mask is empty or absent). Prompts have their brackets removed already.
    /// </summary>
    public static double ComputeClip(string metric, ClipScore clip, RgbImage source, RgbImage target, bool[,]? mask,
                                     string originalPrompt, string editingPrompt)
    {
        ArgumentNullException.ThrowIfNull(clip);
        return metric switch
        {
            "clip_similarity_source_image" => clip.Score(source, originalPrompt),
            "clip_similarity_target_image" => clip.Score(target, editingPrompt),
            "clip_similarity_target_image_edit_part" => mask is null || !mask.Cast<bool>().Any() ? double.NaN : clip.Score(target, editingPrompt, mask),
            _ => throw new ArgumentException($"'{metric}' is not a CLIP metric ({string.Join(", ", ClipMetrics)})"),
        };
    }

    /// <summary>PIE-Bench's <c>mask_decode</c>: the RLE at 512x512, first and last rows and columns set. True = edited.</summary>
    public static bool[,] Mask(IReadOnlyList<int> rle) => RleMask.Decode(rle, MaskSize, MaskSize, markBorder: true);

    /// <summary><see cref="Mask"/> as an image (255 = edited).</summary>
    public static GrayImage MaskImage(IReadOnlyList<int> rle) => RleMask.DecodeImage(rle, MaskSize, MaskSize, markBorder: true);

    /// <summary>
    /// One metric of one item. <paramref name="source"/> and <paramref name="target"/> are [1,3,H,W] in [0,1];
    /// <paramref name="mask"/> is the decoded mask (null when the item has none: part metrics are then nan). Returns
    /// NaN where the reference writes "nan" (a part with an empty mask).
    /// </summary>
    /// <exception cref="ArgumentException">an unknown metric, a learned metric without its model, or a mask whose size is not the images'.</exception>
    public static double Compute(string metric, Tensor source, Tensor target, bool[,]? mask,
                                 IPairMetric? lpips = null, IPairMetric? structureDistance = null)
    {
        ArgumentNullException.ThrowIfNull(metric);
        if (!All.Contains(metric)) throw new ArgumentException($"unknown metric '{metric}' (known: {string.Join(", ", All)})");
        if (ClipMetrics.Contains(metric)) throw new ArgumentException($"metric '{metric}' takes images and prompts: use {nameof(ComputeClip)}");
        string b = Base(metric);
        Func<Tensor, Tensor, double> f = b switch
        {
            "psnr" => (s, t) => ImageMetrics.Psnr(t, s),
            "mse" => (s, t) => ImageMetrics.Mse(t, s),
            "ssim" => (s, t) => ImageMetrics.Ssim(t, s),
            "lpips" => lpips is null ? throw new ArgumentException($"metric '{metric}' needs the LPIPS model") : lpips.Score,
            _ => structureDistance is null ? throw new ArgumentException($"metric '{metric}' needs the DINO model") : structureDistance.Score,
        };
        if (b == metric) return f(source, target);
        if (mask is null) return double.NaN;
        if (mask.GetLength(0) != source.shape[2] || mask.GetLength(1) != source.shape[3])
            throw new ArgumentException($"the {mask.GetLength(1)}x{mask.GetLength(0)} mask does not match the {source.shape[3]}x{source.shape[2]} image");
        bool unedit = metric.EndsWith("_unedit_part", StringComparison.Ordinal);
        using var scope = torch.NewDisposeScope();
        var m = ImageMetrics.MaskTensor(mask, invert: unedit);
        if (m.sum().item<float>() == 0) return double.NaN;
        return f(source * m, target * m);
    }
}

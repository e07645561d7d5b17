using Elect.Imaging;
using static TorchSharp.torch;

namespace Elect.Selection;

/// <summary>
/// A known edit region at image resolution, values in [0,1] (1 = edited). The engine averages it over each latent
/// cell (area resampling to the latent grid) and then uses it exactly where BIS uses the estimated relevance map:
/// background = bilinear upsampling of (1 − M) (<see cref="ElectMath.Bis"/>), so its edge is softened the same way.
/// </summary>
public sealed class KnownMask
{
    public int Width { get; }
    public int Height { get; }

    /// <summary>Row-major values in [0,1].</summary>
    public float[] Values { get; }

    public KnownMask(int width, int height, float[] values)
    {
        if (width < 1 || height < 1) throw new ArgumentException($"known mask size must be positive, got {width}x{height}");
        if (values.Length != (long)width * height) throw new ArgumentException($"known mask of {width}x{height} needs {width * height} values, got {values.Length}");
        if (values.Any(v => !(v >= 0 && v <= 1))) throw new ArgumentException("known mask values must lie in [0, 1]");
        if (values.All(v => v >= 1)) throw new ArgumentException("the known mask covers the whole image: no background is left to score");
        (Width, Height, Values) = (width, height, values);
    }

    /// <summary>A gray image: value/255 (white = edited region).</summary>
    public static KnownMask FromImage(GrayImage image) => new(image.Width, image.Height, image.Data.Select(b => b / 255f).ToArray());

    /// <summary>
    /// A mask image for an input that was resized by <see cref="ImageOps.ImageResize"/> to <paramref name="width"/> x
    /// <paramref name="height"/>: cropped and resampled the same way (<see cref="ImageOps.Fit"/>), then its gray level.
    /// </summary>
    public static KnownMask Fit(RgbImage mask, int width, int height) => FromImage(ImageOps.Fit(mask, width, height).ToGray());

    /// <summary>
    /// A PIE-Bench RLE mask of an image of <paramref name="imageWidth"/> x <paramref name="imageHeight"/> (decoded as the ELECT
    /// repository's <c>rle_decode</c>: no border marking), fitted like the image to <paramref name="width"/> x <paramref name="height"/>.
    /// </summary>
    public static KnownMask FromRle(IReadOnlyList<int> rle, int imageWidth, int imageHeight, int width, int height)
    {
        var bits = RleMask.Decode(rle, imageHeight, imageWidth, markBorder: false);
        var rgb = new RgbImage(imageWidth, imageHeight);
        for (int y = 0; y < imageHeight; y++)
            for (int x = 0; x < imageWidth; x++)
                if (bits[y, x])
                {
                    int i = (y * imageWidth + x) * 3;
                    rgb.Data[i] = rgb.Data[i + 1] = rgb.Data[i + 2] = 255;
                }
        return Fit(rgb, width, height);
    }

    /// <summary>A decoded PIE-Bench RLE mask (<see cref="RleMask.Decode"/>), true = edited.</summary>
    public static KnownMask FromBits(bool[,] bits)
    {
        int h = bits.GetLength(0), w = bits.GetLength(1);
        var v = new float[h * w];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                v[y * w + x] = bits[y, x] ? 1f : 0f;
        return new KnownMask(w, h, v);
    }

    /// <summary>The mask averaged over the cells of an [h,w] latent grid (area resampling), float32 on <paramref name="device"/>.</summary>
    public Tensor AtLatentResolution(long h, long w, Device device)
    {
        using var full = tensor(Values, [1, 1, Height, Width]);
        using var area = nn.functional.interpolate(full, [h, w], mode: InterpolationMode.Area);
        using var map = area.reshape(h, w);
        return map.to(device);
    }
}

/// <summary>One check of adaptive stopping: the leading candidate (index into the seeds) and its relative margin.</summary>
public readonly record struct ScoreCheck(int Step, int Leader, double Margin)
{
    /// <summary>
    /// The leader (lowest BIS) of the scored <paramref name="candidates"/> and its relative margin over the runner-up,
    /// (BIS₂ − BIS₁)/BIS₁ (infinite for a single candidate or a zero leader score with a positive runner-up).
    /// </summary>
    public static ScoreCheck Of(int step, IReadOnlyList<int> candidates, IReadOnlyList<double> bis)
    {
        var (first, second) = AdaptiveStopping.TopTwo(bis);
        double margin = second < 0 ? double.PositiveInfinity : AdaptiveStopping.RelativeMargin(bis[first], bis[second]);
        return new ScoreCheck(step, candidates[first], margin);
    }
}

/// <summary>The rule of adaptive stopping, a pure function of the checks so far.</summary>
public static class AdaptiveStopping
{
    /// <summary>
    /// True when the last <paramref name="patience"/> checks all have the same leader and the latest margin is at
    /// least <paramref name="minMargin"/>.
    /// </summary>
    public static bool ShouldStop(IReadOnlyList<ScoreCheck> checks, int patience, double minMargin)
    {
        if (patience < 1) throw new ArgumentOutOfRangeException(nameof(patience), "patience must be at least 1");
        if (checks.Count < patience) return false;
        var last = checks[^1];
        for (int k = checks.Count - patience; k < checks.Count; k++)
            if (checks[k].Leader != last.Leader) return false;
        return last.Margin >= minMargin;
    }

    /// <summary>The step the rule stops at over a sequence of checks (the last check's step when it never fires).</summary>
    public static int StopStep(IReadOnlyList<ScoreCheck> checks, int patience, double minMargin)
    {
        for (int n = 1; n <= checks.Count; n++)
            if (ShouldStop(checks.Take(n).ToArray(), patience, minMargin)) return checks[n - 1].Step;
        return checks[^1].Step;
    }

    /// <summary>(second − first)/first; 0 when equal, infinite when first is 0 and second is not.</summary>
    public static double RelativeMargin(double first, double second) =>
        second == first ? 0 : first == 0 ? double.PositiveInfinity : (second - first) / Math.Abs(first);

    /// <summary>Indices of the lowest and second lowest scores (second = -1 for a single score); ties go to the first.</summary>
    internal static (int First, int Second) TopTwo(IReadOnlyList<double> bis)
    {
        int first = 0;
        for (int k = 1; k < bis.Count; k++) if (bis[k] < bis[first]) first = k;
        int second = -1;
        for (int k = 0; k < bis.Count; k++)
            if (k != first && (second < 0 || bis[k] < bis[second])) second = k;
        return (first, second);
    }
}

/// <summary>
/// How much the selection can be trusted. BIS is only a relative score: the flags say when it cannot tell the
/// candidates apart, or when the relevance map suggests the edit failed (nearly empty) or edited everything (nearly full).
/// </summary>
public sealed record SelectionConfidence
{
    /// <summary>All final scores within this relative spread, (max − min)/min: <c>candidates_close</c>.</summary>
    public const double CloseSpread = 0.02;

    /// <summary>Cells of the relevance map at or above this value count as edited.</summary>
    public const double EditedLevel = 0.5;

    /// <summary>Edited fraction below this: <c>mask_nearly_empty</c>.</summary>
    public const double NearlyEmpty = 0.01;

    /// <summary>Edited fraction above this: <c>mask_nearly_full</c>.</summary>
    public const double NearlyFull = 0.9;

    /// <summary>BIS of the runner-up minus the winner's (null with a single final candidate).</summary>
    public double? Margin { get; init; }

    /// <summary>Margin / winner's BIS.</summary>
    public double? RelativeMargin { get; init; }

    /// <summary>(max − min)/min of the final scores.</summary>
    public double Spread { get; init; }

    /// <summary>Fraction of the map used for scoring (estimated or known) at or above <see cref="EditedLevel"/>.</summary>
    public double MaskCoverage { get; init; }

    /// <summary><c>candidates_close</c>, <c>mask_nearly_empty</c>, <c>mask_nearly_full</c>; empty when none fires.</summary>
    public IReadOnlyList<string> Flags { get; init; } = [];

    /// <summary>The confidence of a selection among <paramref name="finalBis"/> (the winner is the lowest) with this coverage.</summary>
    public static SelectionConfidence Of(IReadOnlyList<double> finalBis, double maskCoverage)
    {
        var (first, second) = AdaptiveStopping.TopTwo(finalBis);
        double min = finalBis[first], max = finalBis.Max();
        double spread = AdaptiveStopping.RelativeMargin(min, max);
        var flags = new List<string>();
        if (finalBis.Count > 1 && spread < CloseSpread) flags.Add("candidates_close");
        if (maskCoverage < NearlyEmpty) flags.Add("mask_nearly_empty");
        if (maskCoverage > NearlyFull) flags.Add("mask_nearly_full");
        return new SelectionConfidence
        {
            Margin = second < 0 ? null : finalBis[second] - min,
            RelativeMargin = second < 0 ? null : AdaptiveStopping.RelativeMargin(min, finalBis[second]),
            Spread = spread,
            MaskCoverage = maskCoverage,
            Flags = flags,
        };
    }
}
